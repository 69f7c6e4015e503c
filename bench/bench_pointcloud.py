"""Benchmark PointCloud2 -> N x 4 float32 against a plain byte copy of the same buffer.

Prints the median time of ``pointcloud2_to_xyzi`` and of ``np.frombuffer(data, np.uint8).copy()``
over the same message buffer, both measured in this run, and their ratio (goal: <= 5x).

    python bench/bench_pointcloud.py            # 262,144 points, Ouster-like 32 B layout
    python bench/bench_pointcloud.py --layout velodyne --runs 50
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from vla_edge.conversions import LAYOUTS, pointcloud2_to_xyzi, xyzi_to_pointcloud2
from vla_edge.conversions.pointcloud import FLOAT32, UINT16, FieldSpec, PointLayout
from vla_edge.msgfactory import RosbagsFactory

# The cloud: x, y, z, intensity, ring, time in a 32-byte point.
BENCH_LAYOUT = PointLayout(
    "xyzirt32",
    (
        FieldSpec("x", 0, FLOAT32),
        FieldSpec("y", 4, FLOAT32),
        FieldSpec("z", 8, FLOAT32),
        FieldSpec("intensity", 16, FLOAT32),
        FieldSpec("ring", 20, UINT16),
        FieldSpec("time", 24, FLOAT32),
    ),
    32,
)


def _median_s(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=262_144, help="points in the cloud (default 262144)")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per method, median reported (>= 20)")
    ap.add_argument(
        "--layout",
        default="xyzirt32",
        choices=["xyzirt32", *sorted(LAYOUTS)],
        help="point layout (default xyzirt32: x,y,z,intensity,ring,time in 32 B)",
    )
    ap.add_argument("--seed", type=int, default=0, help="random seed for the synthetic points")
    ap.add_argument(
        "--nan-fraction", type=float, default=0.0, help="fraction of points set to NaN (no-return), dropped"
    )
    ap.add_argument(
        "--binding",
        choices=["rosbags", "rclpy"],
        default="rosbags",
        help="message binding (rclpy stores data as array.array)",
    )
    args = ap.parse_args(argv)
    if args.runs < 20:
        ap.error("--runs must be >= 20")

    rng = np.random.default_rng(args.seed)
    pts = rng.uniform(-80, 80, size=(args.points, 4)).astype(np.float32)
    n_nan = round(args.nan_fraction * args.points)
    pts[rng.choice(args.points, n_nan, replace=False), :3] = np.nan
    layout = BENCH_LAYOUT if args.layout == "xyzirt32" else LAYOUTS[args.layout]
    names = layout.field_names()
    extra = {}
    if "ring" in names:
        extra["ring"] = (np.arange(args.points) % 128).astype(np.uint16)
    if "time" in names:
        extra["time"] = np.linspace(0, 0.1, args.points, dtype=np.float32)
    if args.binding == "rclpy":
        from vla_edge.msgfactory import RclpyFactory

        factory = RclpyFactory()
    else:
        factory = RosbagsFactory()
    msg = xyzi_to_pointcloud2(pts, factory, 0.0, "lidar", layout, extra=extra)
    data = msg.data

    t_conv = _median_s(lambda: pointcloud2_to_xyzi(msg), args.runs)
    t_copy = _median_s(lambda: np.frombuffer(data, np.uint8).copy(), args.runs)
    out = pointcloud2_to_xyzi(msg)
    assert out.shape == (args.points - n_nan, 4)
    ratio = t_conv / t_copy
    print(
        f"pointcloud2_to_xyzi: {args.points} points, layout {layout.name}, point_step {msg.point_step}, "
        f"{len(data) / 1e6:.1f} MB, {args.binding}, NaN {n_nan}, median of {args.runs}"
    )
    print(f"  convert          {t_conv * 1e3:8.3f} ms")
    print(f"  frombuffer.copy  {t_copy * 1e3:8.3f} ms")
    print(f"  ratio            {ratio:8.2f} x   (goal <= 5x: {'PASS' if ratio <= 5 else 'FAIL'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
