"""ONNX Runtime session settings on this CPU, side by side in one run (model alone).

Times ``engines/student.onnx`` (or ``--engine``) on a real nuScenes sweep pillarized
with the runtime's numpy pillarizer, for every combination of intra-op threads,
spinning and graph-optimisation level given on the command line. Runs are interleaved
round-robin so that load from other processes hits every setting alike. The settings
shipped in ``config/inference.yaml`` were chosen from this table (docs/profiling.md).

With ``--load N`` it also runs N busy Python threads in this process while timing, which
is what the model sees inside the drive graph (DDS callbacks, arbiter, conversions).

    python bench/bench_ort_settings.py                       # threads 1,2 x spin 0,1, level all
    python bench/bench_ort_settings.py --levels basic,all --iters 200 --load 1
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCAN = ROOT.parent / "shared" / "data" / "lidar" / "nuscenes_lidar_top_1532402927647951.bin"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default=str(ROOT / "engines" / "student.onnx"), help="ONNX file")
    p.add_argument("--threads", default="1,2", help="intra-op thread counts (comma list)")
    p.add_argument("--spin", default="0,1", help="allow_spinning values (comma list of 0/1)")
    p.add_argument("--levels", default="all", help="graph optimisation levels (disable,basic,extended,all)")
    p.add_argument("--points", type=int, default=32768, help="cloud size (tiled real scan)")
    p.add_argument("--iters", type=int, default=100, help="timed runs per setting")
    p.add_argument("--load", type=int, default=0, help="busy Python threads running meanwhile")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import onnxruntime as ort

    from vla_edge.config import load_config
    from vla_edge.nodes.feeder import load_scan
    from vla_edge.pillarize import PillarSpec, ego_state_input, pillarize, reference_path_input

    spec = PillarSpec.from_config(load_config("model"))
    pts = load_scan(str(SCAN), args.points)
    feats, coords, count = pillarize(pts, spec)
    rng = np.random.default_rng(0)
    sess0 = ort.InferenceSession(args.engine, providers=["CPUExecutionProvider"])
    noise_shape = [d for d in sess0.get_inputs()[-1].shape]
    feed = {
        "pillar_features": feats[None],
        "pillar_coords": coords[None],
        "pillar_count": np.array([count], np.int32),
        "ego_state": ego_state_input(np.array([5.0, 0.0, 0.0]), spec)[None],
        "reference_path": reference_path_input(np.stack([np.linspace(-2, 40, 40), np.zeros(40)], 1), spec)[
            None
        ],
    }
    for i in sess0.get_inputs():
        if i.name == "noise":
            feed["noise"] = rng.standard_normal(i.shape).astype(np.float32)
    del noise_shape
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    cases = list(
        itertools.product(
            [int(t) for t in args.threads.split(",")],
            [int(s) for s in args.spin.split(",")],
            args.levels.split(","),
        )
    )
    sessions = {}
    for threads, spin, level in cases:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = levels[level]
        so.add_session_config_entry("session.intra_op.allow_spinning", str(spin))
        so.log_severity_level = 3
        sessions[(threads, spin, level)] = ort.InferenceSession(
            args.engine, so, providers=["CPUExecutionProvider"]
        )
    stop = threading.Event()

    def busy() -> None:  # pure-Python work holding the GIL in slices, like rclpy callbacks
        while not stop.is_set():
            sum(i * i for i in range(2000))
            time.sleep(0.001)

    loaders = [threading.Thread(target=busy, daemon=True) for _ in range(args.load)]
    for t in loaders:
        t.start()
    times: dict[tuple, list[float]] = {c: [] for c in cases}
    cpu: dict[tuple, float] = {c: 0.0 for c in cases}
    for s in sessions.values():
        for _ in range(5):
            s.run(None, feed)
    for _ in range(args.iters):
        for c, s in sessions.items():  # round-robin: background load hits every case alike
            t0, c0 = time.perf_counter(), time.process_time()
            s.run(None, feed)
            times[c].append(1e3 * (time.perf_counter() - t0))
            cpu[c] += 1e3 * (time.process_time() - c0)
    stop.set()
    print(f"onnxruntime {ort.__version__}, {Path(args.engine).name}, {args.points} points ({count} pillars), "
          f"{args.iters} runs each, {args.load} busy threads")  # fmt: skip
    print(f"{'threads':>7} {'spin':>4} {'level':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/run':>10}")
    for c in cases:
        arr = np.asarray(times[c])
        print(f"{c[0]:>7} {c[1]:>4} {c[2]:>8} {np.percentile(arr, 50):>8.2f} {np.percentile(arr, 99):>8.2f} "
              f"{cpu[c] / args.iters:>10.2f}")  # fmt: skip
    print("cpu ms/run = process CPU time per run (all threads incl. the busy ones); spinning burns it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
