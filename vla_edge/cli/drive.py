"""``vla-edge drive``: the live drive graph (no ``ros2 launch`` needed).

Runs the same node classes that ``launch/drive.launch.py`` starts (inference node, arbiter
node, and the recorder node with ``--record``) with the parameters of the same
``config/drive.yaml`` params file, either composed in one process on one
MultiThreadedExecutor (``--processes 1``) or one process per node as ``ros2 launch`` does
(``--processes 2``, 3 with ``--record``), which is the default: on 2 cores it kept the
model's latency in the graph close to the model alone (docs/profiling.md).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

#: Default of ``--processes``; 0 stands for "one per node" (2, or 3 with --record).
DEFAULT_PROCESSES = 0


def register(subparsers: Any) -> None:
    """Add the ``drive`` subcommand."""
    p = subparsers.add_parser(
        "drive",
        help="run the live drive graph (inference + arbiter [+ recorder]) in one process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config", default=None, help="ROS 2 params file (default: the shipped config/drive.yaml)"
    )
    p.add_argument("--backend", default=None, help="override 'backend' (onnxruntime | tensorrt | torch_cuda)")
    p.add_argument("--engine", default=None, help="override 'engine_path' (student ONNX file)")
    p.add_argument("--record", action="store_true", default=None, help="also run the recorder node")
    p.add_argument("--record-dir", default=None, help="override 'output_dir' of the recorder (with --record)")
    p.add_argument("--use-sim-time", action="store_true", default=None, help="follow /clock (bag replay)")
    p.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)"
    )
    p.add_argument(
        "--separate-frames",
        action="store_true",
        help="arbiter subscribes to the sensors and assembles its own frames (as under ros2 launch) "
        "instead of reusing the inference node's",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=DEFAULT_PROCESSES,
        help="1 = every node in this process (shared frames possible); N = one process per node as "
        f"ros2 launch does (N = 2, or 3 with --record) (default {DEFAULT_PROCESSES}: measured in "
        "docs/profiling.md)",
    )
    p.set_defaults(func=run)


def cli_values(args: argparse.Namespace) -> dict[str, Any]:
    """Flat parameter values: shipped drive.yaml < --config < flags."""
    from vla_edge.params import resolve_overrides

    cli = {
        "backend": args.backend,
        "engine_path": args.engine,
        "record": args.record,
        "output_dir": args.record_dir,
        "use_sim_time": args.use_sim_time,
    }
    return resolve_overrides(args.config, cli)


def honour_sigint() -> None:
    """Let Ctrl-C / SIGINT stop the graph even when this process started with SIGINT ignored.

    A background job of a non-interactive shell (``vla-edge drive &``, ``nohup``) inherits
    SIGINT as ignored, and Python then installs no KeyboardInterrupt handler: the supervisor
    could only be killed, and a launcher's or test's SIGINT did nothing. rclpy nodes install
    their own handler the same way. Main thread only (signal handlers live there).
    """
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run(args: argparse.Namespace) -> int:
    """Start rclpy, compose the graph, spin until Ctrl-C / --duration / external shutdown."""
    from vla_edge.nodes.graph import DriveGraph, ros_session

    honour_sigint()
    values = cli_values(args)
    record = bool(values.get("record"))
    per_node = 3 if record else 2
    if args.processes not in (0, 1, per_node):
        print(
            f"error: --processes {args.processes}: use 1 (one process) or {per_node} (one per node"
            f"{', with the recorder' if record else ''})",
            file=sys.stderr,
        )
        return 2
    if args.processes != 1:
        if args.separate_frames:
            log.info("--separate-frames is implied with one process per node")
        return run_processes(values, record, args.duration)
    graph = None
    with ros_session():
        try:
            graph = DriveGraph(values, record=record, share_frames=not args.separate_frames)
            log.info("drive graph up (%s); Ctrl-C to stop", ", ".join(n.get_name() for n in graph.nodes))
            graph.spin(duration=args.duration)
            arb = graph.arbiter.stats
            inf = graph.inference.stats
            log.info(
                "drive graph stopped: %d sweeps, %d candidates, %d skipped, %d cycles %s",
                inf["sweeps"],
                inf["candidates"],
                inf["skipped"],
                arb["cycles"],
                arb["by_choice"],
            )
            if inf["sweeps"] == 0:  # say why nothing happened, with the topic to check
                log.error(
                    "no LiDAR sweep arrived on %s during the whole run (see the NO LIDAR messages "
                    "above and /diagnostics %s)",
                    graph.inference.watch.lidar_topic,
                    "vla_edge/input_watch",
                )
        except KeyboardInterrupt:
            pass
        finally:
            if graph is not None:
                graph.destroy()
    return 0


def preflight(values: dict[str, Any]) -> None:
    """Say here, once and with the reason, what the inference process would log on its own.

    Checks the student model file and its manifest (sha256), the most common start failure. A
    missing or tampered model does not stop the graph (issue 14.8): the inference node runs a
    disabled student and the arbiter drives with the Frenet fallback only.

    Raises:
        ConfigError: Unreadable inference config.
    """
    from vla_edge.backends.base import open_model
    from vla_edge.config import load_config, require, resolve_path
    from vla_edge.errors import ModelError

    engine = str(values.get("engine_path") or "")
    if not engine:
        inf = load_config(str(values.get("inference_config") or "inference"))
        engine = str(require(inf, "engine", where="inference.yaml"))
    try:
        open_model(resolve_path(engine))
    except ModelError as exc:
        log.error("student model unusable, Frenet fallback only: %s", exc)


def run_processes(values: dict[str, Any], record: bool, duration: float | None) -> int:
    """One process per node until Ctrl-C / ``duration`` / a node exits; 1 if one failed."""
    from vla_edge.nodes.graph import NodeProcesses

    preflight(values)
    procs = NodeProcesses(values, record=record)
    log.info(
        "drive graph up as %d processes (%s); Ctrl-C to stop",
        len(procs.procs),
        ", ".join(f"{n} pid {p.pid}" for n, p in procs.procs.items()),
    )
    ended: dict[str, int] = {}
    try:
        ended = procs.wait(duration)
    except KeyboardInterrupt:
        pass
    finally:
        codes = procs.stop()
    # Only a node that ended on its own failed; exit codes after our SIGINT (even one that
    # landed during a node's imports, before rclpy handles it) are a requested stop.
    failed = {n: c for n, c in ended.items() if c != 0}
    if any(c != 0 for c in codes.values()):
        log.debug("node exit codes after stop: %s", codes)
    if failed:
        log.error("drive graph: node processes failed: %s", failed)
        return 1
    log.info("drive graph stopped (%d node processes)", len(codes))
    return 0
