"""End-to-end latency of the live drive graph over DDS: LiDAR publish -> /planning/trajectory.

The graph runs as its own process (``python -m vla_edge drive``, ONNX Runtime, the shipped
``engines/student.onnx``); this process publishes odometry (50 Hz), a reference path (1 Hz)
and a real scan (``../shared/data/lidar``, tiled to the requested size) at 10 Hz, and times
the receipt of the final trajectory of each sweep. Model-only time (pillarize + inference,
``total_ms`` of ``candidate_info``) comes from the same run, so the ratio
``e2e p99 / model p99`` is comparable across machines. The graph's calibration uses the scan's
mounting preset (``--lidar-preset``, by file name: the nuScenes scan as mounted on its car,
roof returns cropped), so the planner drives down the clear lane; with the shipped calibration
the car's own returns stood in the lane and every sweep timed an emergency stop.

Printed per cloud size: p50/p99 end-to-end, p50/p99 model-only, p99 compute (student +
planning cycle of the same sweep, i.e. what a lockstep replay would spend), the ratios of
e2e p99 to both, dropped sweeps (no final trajectory for that sweep's stamp) and sweeps
without a student candidate.
Goals: no drops at 10 Hz with 32k points; ratio <= 1.5.

Layouts side by side: ``--processes 1,2`` runs each cloud size once with every node in one
``vla-edge drive`` process and once with one process per node (what ``ros2 launch`` and the
default ``vla-edge drive`` run), in the same invocation, so the ratios compare like with like
on a shared machine. Before the graphs start, the same student runs alone in this process on
the same cloud ("alone" columns), for the in-graph / alone ratio.

    python bench/bench_e2e.py                 # 300 frames at 32k and 262k points, layouts 1 and 2
    python bench/bench_e2e.py --frames 50 --points 32768 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from vla_edge.nodes.qos import local_dds_env  # no rclpy at import

# Before any participant exists: loopback only, own domain, shared-memory profile for big
# clouds (inherited by the graph process). --udp-only measures without the profile.
if "--udp-only" not in sys.argv:
    local_dds_env()
else:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 80))

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCAN = REPO.parent / "shared" / "data" / "lidar" / "nuscenes_lidar_top_1532402927647951.bin"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300, help="sweeps per cloud size (default 300)")
    p.add_argument("--rate", type=float, default=10.0, help="LiDAR rate in Hz (default 10)")
    p.add_argument(
        "--points",
        type=str,
        default="32768,262144",
        help="comma-separated cloud sizes (default 32768,262144)",
    )
    p.add_argument("--scan", type=str, default=str(DEFAULT_SCAN), help="real scan to tile (.bin/.pcd)")
    p.add_argument(
        "--lidar-frame", type=str, default=None, help="cloud frame_id (default: the calibration's LiDAR)"
    )
    p.add_argument(
        "--separate-frames",
        action="store_true",
        help="graph: arbiter assembles its own frames (as under ros2 launch)",
    )
    p.add_argument("--config", default=None, help="drive params file for the graph (default: shipped)")
    p.add_argument(
        "--lidar-preset",
        default="auto",
        help="calibration mounting preset of the scan (calibration.yaml mounting_presets), so that the "
        "graph sees the scan as mounted and plans a drive, not a stop on the car's own returns; "
        "auto = by the scan's file name (nuscenes*, kitti*, hesai*), '' = the calibration as shipped "
        "(default auto)",
    )
    p.add_argument(
        "--processes",
        type=str,
        default="1,2",
        help="comma list of layouts run side by side: `vla-edge drive --processes` counts, each optionally "
        "`N:PARAMS.yaml` with its own drive params file (e.g. a baseline's inference_config) (default 1,2)",
    )
    p.add_argument(
        "--alone-iters", type=int, default=100, help="runs of the student alone per cloud size (0 = skip)"
    )
    p.add_argument(
        "--backend", default=None, help="graph backend override (default: drive.yaml / inference.yaml)"
    )
    p.add_argument(
        "--udp-only",
        action="store_true",
        help="do not load config/fastdds_shm.xml (Fast DDS default transports on loopback)",
    )
    p.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    p.add_argument(
        "--startup-timeout", type=float, default=60.0, help="seconds to wait for the graph to match"
    )
    return p.parse_args(argv)


def _pct(values: list[float] | np.ndarray, q: float) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def lidar_preset(scan: str, preset: str) -> str:
    """The mounting preset of ``--lidar-preset`` ("auto": by the scan's file name; "" = none)."""
    from vla_edge.scans import scan_preset

    return scan_preset(scan) if preset == "auto" else preset


def with_preset(params: str | None, preset: str, tmp: Path) -> str | None:
    """A copy of the drive params file ``params`` (None: the shipped one) whose calibration file
    sets ``lidar_preset: preset``, written under ``tmp``; ``params`` itself when there is no preset."""
    if not preset:
        return params
    import yaml

    from vla_edge.config import load_config, load_yaml
    from vla_edge.params import default_params_file

    src = Path(params) if params else default_params_file()
    data = load_yaml(src)
    ros = data["/**"]["ros__parameters"]
    calib = load_config(str(ros.get("calibration_config") or "calibration"), "calibration")
    calib["lidar_preset"] = preset
    calib_file = tmp / f"calibration_{preset}.yaml"
    calib_file.write_text(yaml.safe_dump(calib, sort_keys=False))
    ros["calibration_config"] = str(calib_file)
    out = tmp / f"{src.stem}_{preset}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(out)


def parse_layout(item: str) -> tuple[int, str | None]:
    """``"2"`` -> (2, None); ``"1:before.yaml"`` -> (1, "before.yaml")."""
    procs, _, config = item.partition(":")
    return int(procs), config or None


def graph_mode(args: argparse.Namespace, processes: int, config: str | None = None) -> str:
    """Short name of how the graph runs."""
    tail = f", {Path(config).name}" if config else ""
    if processes != 1:
        return f"{processes} processes{tail}"
    return ("1 process, separate frames" if args.separate_frames else "1 process, shared frames") + tail


def graph_commands(args: argparse.Namespace, processes: int, config: str | None = None) -> list[list[str]]:
    """The ``vla-edge drive`` command of one layout."""
    cmd = [sys.executable, "-m", "vla_edge", "drive", "--duration", str(args.frames / args.rate + 60)]
    cmd += ["--processes", str(processes)]
    if args.separate_frames:
        cmd.append("--separate-frames")
    if config or args.config:
        cmd += ["--config", config or args.config]
    if args.backend:
        cmd += ["--backend", args.backend]
    return [cmd]


def model_alone(args: argparse.Namespace, n_points: int, preset: str = "") -> dict:
    """p50/p99 of the student (pillarize + inference, ``total``) alone in this process, same cloud
    as the graph sees it (cropped and moved into the base frame with the same calibration)."""
    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.inference import StudentRunner
    from vla_edge.nodes.feeder import load_scan
    from vla_edge.types import EgoState, Frame

    runner = StudentRunner.from_config(load_config("model"), args.backend or "auto", None)
    try:
        calib = Calibration.from_config(load_config("calibration"), preset=preset)
        pts = calib.cloud_to_base(load_scan(args.scan, n_points), calib.sensor_frame("lidar"))
        path = np.stack([np.linspace(-2.0, 40.0, 40), np.zeros(40)], 1)
        frame = Frame(
            stamp=0.0, points=pts, ego=EgoState(0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0), reference_path=path
        )
        for _ in range(5):
            runner.run(frame)
        totals = [runner.run(frame).timing_ms["total"] for _ in range(args.alone_iters)]
    finally:
        runner.close()
    return {"alone_p50_ms": _pct(totals, 50), "alone_p99_ms": _pct(totals, 99)}


def run_size(
    args: argparse.Namespace, n_points: int, lidar_frame: str, processes: int, config: str | None = None
) -> dict:
    """Start the graph, feed ``args.frames`` sweeps of ``n_points``, return the figures."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from tqdm import tqdm

    from vla_edge.config import load_config
    from vla_edge.nodes.feeder import SensorFeeder, load_scan
    from vla_edge.nodes.graph import spin_in_thread
    from vla_edge.nodes.monitor import GraphMonitor

    topics = load_config("topics")
    log = tempfile.NamedTemporaryFile("w+", prefix="bench_e2e_graph_", suffix=".log", delete=False)  # noqa: SIM115
    procs = [
        subprocess.Popen(cmd, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, text=True)
        for cmd in graph_commands(args, processes, config)
    ]
    rclpy.init()
    # One thread: a MultiThreadedExecutor's dispatch loop took ~40 % of a core here (profile in
    # docs/profiling.md), stolen from the graph it measures.
    executor = SingleThreadedExecutor()
    stop = threading.Event()
    spin = None
    try:
        feeder = SensorFeeder(topics, lidar_frame)
        monitor = GraphMonitor(topics)
        executor.add_node(feeder)
        executor.add_node(monitor)
        spin = spin_in_thread(executor, stop)
        feeder.set_cloud(load_scan(args.scan, n_points))

        def inputs_loop() -> None:  # odometry 50 Hz, reference path 1 Hz
            k = 0
            while not stop.is_set():
                now = feeder.clock_now()
                feeder.publish_odometry(now)
                if k % 50 == 0:
                    feeder.publish_reference_path(now)
                k += 1
                time.sleep(0.02)

        feeding = threading.Thread(target=inputs_loop, daemon=True)
        feeding.start()
        end = time.monotonic() + args.startup_timeout
        while time.monotonic() < end:
            r = feeder.readers()
            readers = 2 if args.separate_frames or processes != 1 else 1
            alive = all(p.poll() is None for p in procs)
            if r["lidar"] >= readers and r["odometry"] >= readers and monitor.matched() and alive:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(
                f"graph did not come up in {args.startup_timeout} s: {Path(log.name).read_text()[-2000:]}"
            )
        # Warm-up sweeps (not counted) so first-call allocations do not pollute p99.
        period = 1.0 / args.rate
        for _ in range(10):
            feeder.publish_cloud(feeder.clock_now())
            time.sleep(period)
        time.sleep(0.5)
        published: dict[float, float] = {}
        n_info0 = len(monitor.infos)
        t_next = time.monotonic()
        sweeps = tqdm(range(args.frames), desc=f"{n_points} pts", unit="sweep", leave=False, disable=None)
        for _ in sweeps:
            stamp = round(feeder.clock_now(), 6)
            published[stamp] = feeder.publish_cloud(stamp)
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
        time.sleep(1.0)
        lat = monitor.latencies_ms(published)
        with monitor.lock:
            infos = [
                i
                for i in monitor.infos[n_info0:]
                if round(float(i["values"].get("stamp", -1)), 6) in published
            ]
            decisions = [
                d for d in monitor.decisions if round(float(d.get("frame_stamp", -1)), 6) in published
            ]
        model = [float(i["values"]["total_ms"]) for i in infos if "total_ms" in i["values"]]
        candidates = sum(
            1
            for i in infos
            if i["name"] == "vla_edge/candidate" and i["values"].get("deadline_missed") == "False"
        )
        choices: dict[str, int] = {}
        first: dict[float, dict] = {}
        for d in decisions:
            first.setdefault(round(float(d["frame_stamp"]), 6), d)
        for d in first.values():
            choices[d["choice"]] = choices.get(d["choice"], 0) + 1
        # Pure compute of a sweep with the candidate: student total + planning cycle total.
        model_by_stamp = {
            round(float(i["values"]["stamp"]), 6): float(i["values"]["total_ms"])
            for i in infos
            if "total_ms" in i["values"]
        }
        compute = [
            model_by_stamp[s] + float(d["timing_ms"].get("total", 0.0))
            for s, d in first.items()
            if s in model_by_stamp
            and d.get("candidate_stamp") is not None
            and round(float(d["candidate_stamp"]), 6) == s
        ]
        res = {
            "points": n_points,
            "frames": args.frames,
            "rate_hz": args.rate,
            "e2e_p50_ms": _pct(lat, 50),
            "e2e_p99_ms": _pct(lat, 99),
            "model_p50_ms": _pct(model, 50),
            "model_p99_ms": _pct(model, 99),
            "compute_p99_ms": _pct(compute, 99),
            "dropped": args.frames - int(lat.size),
            "no_candidate": args.frames - candidates,
            "decisions": choices,
            "graph": graph_mode(args, processes, config),
            "processes": processes,
        }
        res["ratio_e2e_model_p99"] = res["e2e_p99_ms"] / res["model_p99_ms"] if model else float("nan")
        res["ratio_e2e_compute_p99"] = res["e2e_p99_ms"] / res["compute_p99_ms"] if compute else float("nan")
        return res
    finally:
        stop.set()
        if spin is not None:
            spin.join(timeout=5)
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        executor.shutdown(timeout_sec=2.0)
        rclpy.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.scan).is_file():
        print(f"scan not found: {args.scan} (pass --scan or provide ../shared/data)", file=sys.stderr)
        return 2
    from vla_edge.nodes.frames import default_lidar_frame

    lidar_frame = args.lidar_frame or default_lidar_frame()
    preset = lidar_preset(args.scan, args.lidar_preset)
    tmp = Path(tempfile.mkdtemp(prefix="bench_e2e_params_"))
    layouts = [parse_layout(x) for x in args.processes.split(",") if x]
    sizes = [int(x) for x in args.points.split(",") if x]
    print(
        f"bench_e2e: {args.frames} sweeps at {args.rate:g} Hz, layouts {layouts} (processes), DDS loopback, "
        f"scan {Path(args.scan).name}, mounting preset {preset or 'none (calibration as shipped)'}"
    )
    alone = {n: model_alone(args, n, preset) if args.alone_iters > 0 else {} for n in sizes}
    params = {config: with_preset(config or args.config, preset, tmp) for _, config in layouts}
    results = []
    cols = ("e2e p50", "e2e p99", "mdl p50", "mdl p99", "alone99", "cmp p99")
    tail = f" {'mdl/aln':>7} {'e2e/cmp':>7} {'dropped':>7} {'no cand':>7}"
    print(f"{'points':>8} {'procs':>5} " + " ".join(f"{c:>8}" for c in cols) + tail)
    for n in sizes:
        for procs, config in layouts:
            r = run_size(args, n, lidar_frame, procs, params[config])
            r.update(alone[n])
            a99 = r.get("alone_p99_ms", float("nan"))
            r["ratio_model_graph_alone_p99"] = r["model_p99_ms"] / a99
            results.append(r)
            print(
                f"{n:>8} {procs:>5} {r['e2e_p50_ms']:>8.1f} {r['e2e_p99_ms']:>8.1f} "
                f"{r['model_p50_ms']:>8.1f} {r['model_p99_ms']:>8.1f} {a99:>8.1f} "
                f"{r['compute_p99_ms']:>8.1f} "
                f"{r['ratio_model_graph_alone_p99']:>7.2f} {r['ratio_e2e_compute_p99']:>7.2f} "
                f"{r['dropped']:>7} {r['no_candidate']:>7}   {r['graph']}; decisions {r['decisions']}",
                flush=True,
            )
    print(
        "ms columns; mdl = student in the graph (pillarize + inference), alone99 = the same student alone\n"
        "in this process before the graphs ran, cmp = student + planning cycle of the same sweep (pure\n"
        "compute); goals: 0 dropped at 32k points, mdl/aln p99 <= 1.3, e2e/cmp p99 <= 1.5"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
