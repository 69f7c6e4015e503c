"""``vla-edge demo``: a synthetic airside drive through the live graph, end to end.

1. Generates a seeded synthetic airside bag with the simulator (or reuses the cached one).
2. Starts the drive graph (inference + arbiter nodes, shipped ``engines/student.onnx``,
   ONNX Runtime, ``use_sim_time``): one process per node as on the vehicle (default), or in
   this process with ``--processes 1``; node logs then go to ``<out>/graph.log``.
3. Plays the bag over DDS on loopback (with ``/clock``) into the graph.
4. Prints and saves a summary (``summary.json`` + ``summary.txt``): frames, decisions by
   type, end-to-end latency p50/p99 (sweep publish -> final trajectory receipt), fallback
   reasons. Exits non-zero when the graph produced no trajectory.

DDS stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a ROS_DOMAIN_ID and the
Fast DDS profile ``config/fastdds_shm.xml`` (shared memory + 127.0.0.1) are set when the
environment does not set them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import struct
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.path.expanduser("~/.cache/vla_edge/demo"))
# /clock between messages: every /clock message wakes each node's time source (Python work on
# the shared GIL); sweeps and odometry already advance the clock at 20 Hz or more.
DEMO_CLOCK_HZ = 40.0


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="play a synthetic airside bag through the live graph and summarise the decisions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seed", type=int, default=0, help="scenario seed (default 0)")
    p.add_argument(
        "--seconds", type=float, default=25.0, help="length of the synthetic drive in s (default 25)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("out/demo"), help="where summary.json/.txt go (default out/demo)"
    )
    p.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"bag cache directory (default {DEFAULT_CACHE})"
    )
    p.add_argument("--regenerate", action="store_true", help="generate the bag even if a cached one exists")
    p.add_argument("--bag", type=Path, default=None, help="play this rosbag2 instead of a synthetic one")
    p.add_argument("--backend", default=None, help="inference backend override (default: onnxruntime)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0, real time)")
    p.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        default=2,
        help="2 = inference and arbiter nodes in their own processes, as ros2 launch and vla-edge drive run "
        "them (default); 1 = composed in this process (the bag player shares its GIL)",
    )
    p.set_defaults(func=run)


def _ros_env() -> None:
    """Keep DDS on loopback and off other people's domains (before rclpy starts)."""
    from vla_edge.nodes.qos import local_dds_env

    local_dds_env()


def header_stamp(cdr: bytes) -> float:
    """Header stamp of a serialised message that starts with ``std_msgs/Header`` (CDR)."""
    little = cdr[1] == 1  # encapsulation id 0x0001 = CDR little endian
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", cdr, 4)
    return round(sec + nanosec * 1e-9, 6)


def ensure_bag(args: argparse.Namespace) -> Path:
    """The synthetic bag for ``--seed``/``--seconds`` (generated once, then cached)."""
    from vla_edge.sim.bag import write_scenario_bag

    path = args.cache / f"airside_seed{args.seed}_{args.seconds:g}s"
    if path.exists() and not args.regenerate:
        print(f"[1/4] reusing cached synthetic airside bag {path}")
        return path
    print(f"[1/4] generating synthetic airside bag (seed {args.seed}, {args.seconds:g} s) -> {path}")
    t0 = time.monotonic()
    args.cache.mkdir(parents=True, exist_ok=True)
    # The graph does not use the camera; leaving it out keeps generation fast.
    write_scenario_bag(path, seed=args.seed, seconds=args.seconds, overwrite=True, camera_mode="none")
    print(f"      done in {time.monotonic() - t0:.1f} s")
    return path


def read_messages(bag: Path, topics: dict[str, Any]) -> tuple[list[Any], dict[str, str]]:
    """Raw records of the graph's input topics, sorted by time, and their types."""
    from vla_edge.bagio import read_raw
    from vla_edge.nodes.bag_player import RawMessage

    wanted = {topics["inputs"][k] for k in ("lidar", "odometry", "reference_path")}
    records, types = [], {}
    for topic, msgtype, t_ns, data in read_raw(bag, topics=wanted):
        records.append(RawMessage(topic, msgtype, t_ns, bytes(data)))
        types[topic] = msgtype
    records.sort(key=lambda r: r.timestamp_ns)
    return records, types


def run(args: argparse.Namespace) -> int:
    """Generate/reuse the bag, play it into the live graph, summarise."""
    _ros_env()
    t_start = time.monotonic()
    from vla_edge.config import load_config

    topics = load_config("topics")
    bag = args.bag if args.bag is not None else ensure_bag(args)
    records, types = read_messages(bag, topics)
    lidar_topic = topics["inputs"]["lidar"]
    n_sweeps = sum(1 for r in records if r.topic == lidar_topic)
    if n_sweeps == 0:
        print(f"bag {bag} has no {lidar_topic} messages", file=sys.stderr)
        return 1
    span = (records[-1].timestamp_ns - records[0].timestamp_ns) * 1e-9
    print(f"      {n_sweeps} LiDAR sweeps, {len(records)} messages, {span:.1f} s of driving")

    from vla_edge.nodes.bag_player import BagPlayer
    from vla_edge.nodes.graph import DriveGraph, NodeProcesses, helper_executor, ros_session, spin_in_thread
    from vla_edge.nodes.monitor import GraphMonitor
    from vla_edge.params import resolve_overrides

    values = resolve_overrides(None, {"use_sim_time": True, "backend": args.backend or "onnxruntime"})
    # Keep the console for the demo's own lines; node/backend INFO logs with -v.
    verbose = bool(getattr(args, "verbose", False))
    if not verbose:
        logging.getLogger("vla_edge").setLevel(logging.WARNING)
    session = ros_session(None if verbose else ["vla-edge", "--ros-args", "--log-level", "warn"])
    session.__enter__()
    graph = procs = player = monitor = executor = None
    stop = threading.Event()
    spin = None
    args.out.mkdir(parents=True, exist_ok=True)
    graph_log = None
    try:
        layout = "one process per node" if args.processes != 1 else "in this process"
        print(f"[2/4] starting the drive graph (inference + arbiter, ONNX Runtime, use_sim_time, {layout})")
        if args.processes != 1:
            graph_log = (args.out / "graph.log").open("w")
            procs = NodeProcesses(
                values, output=graph_log, ros_args=[] if verbose else ["--log-level", "warn"]
            )
        else:
            graph = DriveGraph(values, share_frames=True).start()
        player = BagPlayer(types, rate=args.rate, clock_hz=DEMO_CLOCK_HZ)
        monitor = GraphMonitor(topics)
        executor = helper_executor(monitor)
        spin = spin_in_thread(executor, stop)
        # Separate processes load the model first (interpreter + ONNX Runtime start): wait longer.
        wait_s = 20.0 if procs is None else 90.0
        if not player.wait_for_subscribers(types, timeout=wait_s) or not _wait(monitor.matched, wait_s):
            print(
                f"the graph's subscriptions did not match within {wait_s:.0f} s (DDS discovery)",
                file=sys.stderr,
            )
            return 1
        print(f"[3/4] playing {span:.0f} s of sensor data over DDS (loopback) at {args.rate:g}x")
        published: dict[float, float] = {}

        def on_publish(rec: Any, wall: float) -> None:
            if rec.topic == lidar_topic:
                published[header_stamp(rec.data)] = wall

        stats = player.play(_progress(records, lidar_topic, n_sweeps), on_publish=on_publish)
        _wait(lambda: len(monitor.first_rx) >= len(published), 2.0)
        stop.set()
        summary = summarise(monitor, graph, published, stats, bag, time.monotonic() - t_start)
    finally:
        stop.set()
        if spin is not None:
            spin.join(timeout=5)
        if graph is not None:
            graph.stop()
        if procs is not None:
            codes = procs.stop()
            if any(codes.values()):
                log.warning("graph processes exited with %s (see %s)", codes, args.out / "graph.log")
        if graph_log is not None:
            graph_log.close()
        for node in (player, monitor):
            if node is not None:
                node.destroy_node()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        session.__exit__(None, None, None)
    demo_cfg = load_config("demo")
    waits = (float(values["arbiter.deadline_ms"]), float(values["inference.deadline_ms"]))
    text = render(summary) + "\n" + render_expectations(summary, demo_cfg, args, waits)
    summary["expectations"] = [
        {"key": k, "measured": v, "expected": e, "within": ok}
        for k, v, e, ok in expectation_rows(summary, demo_cfg)
    ]
    print("[4/4] summary")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.txt").write_text(text + "\n")
    print(f"saved {args.out / 'summary.json'} and {args.out / 'summary.txt'}")
    if summary["trajectories"] == 0:
        print("FAIL: the graph produced no trajectory", file=sys.stderr)
        return 1
    return 0


def _wait(pred: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def _progress(records: list[Any], lidar_topic: str, n_sweeps: int) -> Any:
    """Yield records, drawing a tqdm bar over LiDAR sweeps."""
    from tqdm import tqdm

    with tqdm(
        total=n_sweeps,
        unit="sweep",
        desc="      playing",
        leave=False,
        file=sys.stdout,
        disable=None,
        mininterval=0.5,
    ) as bar:
        for rec in records:
            yield rec
            if rec.topic == lidar_topic:
                bar.update(1)


def summarise(
    monitor: Any, graph: Any, published: dict[float, float], stats: Any, bag: Path, wall: float
) -> dict:
    """Numbers for the summary (JSON-ready)."""
    import numpy as np

    lat = monitor.latencies_ms(published)
    with monitor.lock:
        decisions = list(monitor.decisions)
        infos = list(monitor.infos)
    per_frame: dict[float, dict] = {}
    for d in decisions:  # the first decision for each sweep (later ones re-plan on it)
        per_frame.setdefault(round(float(d["frame_stamp"]), 6), d)
    by_choice = Counter(d["choice"] for d in per_frame.values())
    reasons = Counter(r for d in per_frame.values() if d["choice"] != "student" for r in d.get("reasons", []))
    # The "model" figure is StudentRunner.run: pillarization (numpy, in the inference process)
    # plus the backend's run; both parts are reported too, so the figure compares like with
    # like against a bench of the network alone (docs/profiling.md, "What the demo's model
    # figure measures").
    model, pillarize, network = (
        stage_times(infos, key) for key in ("total_ms", "pillarize_ms", "inference_ms")
    )
    # Composed graph: its own counters; separate processes: the same figures from the outputs.
    candidates = sum(
        1
        for i in infos
        if i["name"] == "vla_edge/candidate" and i["values"].get("deadline_missed") == "False"
    )
    inf = graph.inference.stats if graph is not None else {"candidates": candidates, "skipped": None}
    arb = (
        graph.arbiter.stats
        if graph is not None
        else {"cycles": len(decisions), "watchdog": sum(d.get("trigger") == "watchdog" for d in decisions)}
    )

    def pct(a: Any, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 1) if len(a) else None

    return {
        "bag": str(bag),
        "frames": len(published),
        "trajectories": len(lat),
        "dropped_frames": len(published) - len(lat),
        "cycles": int(arb["cycles"]),
        "decisions": dict(by_choice.most_common()),
        "fallback_reasons": dict(reasons.most_common()),
        "latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": pct(lat, 100)},
        "model_ms": {"p50": pct(model, 50), "p99": pct(model, 99)},
        "pillarize_ms": {"p50": pct(pillarize, 50), "p99": pct(pillarize, 99)},
        "network_ms": {"p50": pct(network, 50), "p99": pct(network, 99)},
        "candidates": int(inf["candidates"]),
        "skipped_frames": None if inf["skipped"] is None else int(inf["skipped"]),
        "watchdog_fallbacks": int(arb["watchdog"]),
        "bag_seconds": round(stats.bag_span_s, 1),
        "wall_seconds": round(wall, 1),
    }


def stage_times(infos: list[dict[str, Any]], key: str) -> list[float]:
    """``key`` (e.g. ``total_ms``) of every ``vla_edge/candidate`` status that has a number there."""
    out = []
    for i in infos:
        if i.get("name") != "vla_edge/candidate":
            continue
        try:
            out.append(float(i["values"][key]))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def expectation_rows(summary: dict[str, Any], cfg: dict[str, Any]) -> list[tuple[str, Any, str, bool | None]]:
    """``(key, measured, expected range, within?)`` for every ``expect`` key of ``config/demo.yaml``.

    ``within`` is None when the summary lacks the figure (e.g. no student decision at all
    counts as 0 for ``decisions.*``).

    Raises:
        ConfigError: An ``expect`` entry that is not ``[min, max]``.
    """
    from vla_edge.config import require
    from vla_edge.errors import ConfigError

    rows = []
    for key, bounds in require(cfg, "expect", where="demo.yaml").items():
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ConfigError(f"demo.yaml expect.{key}: need [min, max] (null = unbounded), got {bounds!r}")
        lo, hi = bounds
        node: Any = summary
        for part in str(key).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and str(key).startswith("decisions."):
            node = 0  # a choice that never happened
        expected = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        ok = None if node is None else (lo is None or node >= lo) and (hi is None or node <= hi)
        rows.append((str(key), node, expected, ok))
    return rows


def render_expectations(
    summary: dict[str, Any],
    cfg: dict[str, Any],
    args: argparse.Namespace,
    waits_ms: tuple[float, float] | None = None,
) -> str:
    """The measured figures next to the README's (``config/demo.yaml``), with the machine load.

    ``waits_ms`` (``arbiter.deadline_ms``, ``inference.deadline_ms`` of the run) adds a line
    saying so when the model alone took longer than the arbiter waits for it.
    """
    sc = cfg["scenario"]
    lines = [f"  expectations (config/demo.yaml; measured on: {cfg['measured_on']})"]
    if args.bag is not None or args.seed != int(sc["seed"]) or args.seconds != float(sc["seconds"]):
        lines.append(f"    (they hold for seed {sc['seed']}, {sc['seconds']:g} s; this run differs)")
    for key, got, expected, ok in expectation_rows(summary, cfg):
        mark = "n/a" if ok is None else ("ok" if ok else "OUTSIDE")
        lines.append(f"    {key:<26} {got!s:>8}   expected {expected:<12} {mark}")
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    per_core = load / cores
    note = (
        "  <- loaded machine: latency and drops grow" if per_core > float(cfg["load_warn_per_core"]) else ""
    )
    lines.append(f"    this machine: {cores} cores, load average {load:.1f} ({per_core:.2f} per core){note}")
    hint = late_student_hint(summary, waits_ms)
    if hint:
        lines.append(hint)
    return "\n".join(lines)


def late_student_hint(summary: dict[str, Any], waits_ms: tuple[float, float] | None) -> str:
    """Why the student did not drive when its model is slower than the arbiter's wait ("" else)."""
    model_p50 = (summary.get("model_ms") or {}).get("p50")
    if waits_ms is None or model_p50 is None or not model_p50 > waits_ms[0]:
        return ""
    return (
        f"    the student came too late to drive: model p50 {model_p50} ms, and the arbiter waits at most "
        f"{waits_ms[0]:g} ms for a sweep's plan (config/drive.yaml arbiter.deadline_ms; plans later than "
        f"inference.deadline_ms {waits_ms[1]:g} ms are withheld). This CPU is slower than the one the "
        "expectations were measured on: run a GPU backend (--backend tensorrt or torch_cuda), try the "
        "INT8 engine (vla-edge-train quantize), or see docs/profiling.md"
    )


def _model_split(s: dict) -> list[str]:
    """The model figure's two parts, when the summary has them (older summaries do not)."""
    pil, net = s.get("pillarize_ms") or {}, s.get("network_ms") or {}
    if pil.get("p50") is None or net.get("p50") is None:
        return []
    return [
        f"  model = pillarize  p50 {pil['p50']} ms   p99 {pil['p99']} ms   + network run (backend)"
        f"  p50 {net['p50']} ms   p99 {net['p99']} ms"
    ]


def render(s: dict) -> str:
    """Short human-readable summary."""
    lines = [
        f"  bag                {s['bag']}",
        f"  LiDAR frames       {s['frames']}  ->  final trajectories {s['trajectories']}"
        f" (dropped {s['dropped_frames']}; student candidates {s['candidates']},"
        f" skipped frames {s['skipped_frames']})",
        f"  latency e2e        p50 {s['latency_ms']['p50']} ms   p99 {s['latency_ms']['p99']} ms"
        f"   (model p50 {s['model_ms']['p50']} ms, p99 {s['model_ms']['p99']} ms)",
        *_model_split(s),
        "  decisions          " + ("  ".join(f"{k} {v}" for k, v in s["decisions"].items()) or "none"),
    ]
    if s["fallback_reasons"]:
        lines.append("  fallback reasons   (sweeps the student did not drive; top 8 arbiter codes)")
        lines.extend(f"    {v:>5}  {k}" for k, v in list(s["fallback_reasons"].items())[:8])
    lines.append(f"  watchdog fallbacks {s['watchdog_fallbacks']}   wall time {s['wall_seconds']} s")
    return "\n".join(lines)
