"""``vla-edge drive``: the live drive graph in one process (no ``ros2 launch`` needed).

Composes the same node classes that ``launch/drive.launch.py`` starts (inference node,
arbiter node, and the recorder node with ``--record``) on one MultiThreadedExecutor, with
the parameters of the same ``config/drive.yaml`` params file.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


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


def run(args: argparse.Namespace) -> int:
    """Start rclpy, compose the graph, spin until Ctrl-C / --duration / external shutdown."""
    from vla_edge.nodes.graph import DriveGraph, ros_session

    values = cli_values(args)
    graph = None
    with ros_session():
        try:
            graph = DriveGraph(
                values, record=bool(values.get("record")), share_frames=not args.separate_frames
            )
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
        except KeyboardInterrupt:
            pass
        finally:
            if graph is not None:
                graph.destroy()
    return 0
