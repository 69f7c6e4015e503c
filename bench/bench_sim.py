"""Benchmark the airside simulator: bag generation speed and per-sensor cost.

Prints, from one run on this machine:

* generation of one scenario of ``--seconds`` (default 60 s at 10 Hz = 600 frames) with the
  default sensors: wall time, simulated seconds per wall second, frames per second, and the
  split (expert rollout, LiDAR raycast, camera render, message encoding + MCAP write);
* LiDAR raycast ms per sweep for each preset (32x1024, 128x2048) on the same poses;
* camera render ms per frame;
* the expert-only closed loop (no sensors) in simulated seconds per wall second.

Ratios (e.g. 128x2048 vs 32x1024) are measured in the same run, so they stay comparable
on a shared, noisy machine. Example::

    python bench/bench_sim.py --seconds 60
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(ts))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--seconds", type=float, default=60.0, help="simulated seconds of the generated bag (default 60)"
    )
    p.add_argument("--seed", type=int, default=1, help="scenario seed (default 1)")
    p.add_argument("--family", default="crossing_cart", help="scenario family (default crossing_cart)")
    p.add_argument(
        "--camera", default="jpeg", choices=["raw", "jpeg", "none"], help="camera output (default jpeg)"
    )
    p.add_argument("--reps", type=int, default=20, help="repetitions of the per-sensor timings (default 20)")
    p.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="also write docs figures (camera frame, LiDAR bird's-eye view) into this directory",
    )
    args = p.parse_args(argv)
    if args.figures is not None:
        figures(args.figures)

    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.sim.bag_writer import generate_scenario
    from vla_edge.sim.camera import Camera
    from vla_edge.sim.expert import Expert
    from vla_edge.sim.lidar import Lidar
    from vla_edge.sim.rollout import expert_policy, run_closed_loop
    from vla_edge.sim.scenarios import make_scenario, suite

    cfg = load_config("sim")
    calib = Calibration.from_config(load_config("calibration"))
    topics = load_config("topics")
    spec = suite(1, args.seed, [args.family], None, cfg)[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} cores available to this process, numpy {np.__version__}")
    print(f"scenario: {spec.name}, {args.seconds:g} s, camera {args.camera}, lidar {cfg['lidar']['preset']}")

    with tempfile.TemporaryDirectory() as tmp:
        res = generate_scenario(
            spec, Path(tmp) / "bag", cfg, calib, topics, args.seconds, camera_mode=args.camera
        )
        size = sum(f.stat().st_size for f in (Path(tmp) / "bag").iterdir()) / 1e6
    t = res.timing
    other = t["total"] - t["rollout"] - t["lidar"] - t["camera"] - t["encode"]
    print("\n[generate] one scenario bag")
    print(
        f"  wall {t['total']:.2f} s for {args.seconds:g} simulated s -> "
        f"{args.seconds / t['total']:.2f} sim-s per wall-s"
    )
    print(
        f"  frames {res.frames} -> {res.frames / t['total']:.1f} frames/s; "
        f"messages {res.messages}; bag {size:.0f} MB"
    )
    n = max(res.frames, 1)
    print(
        f"  split: rollout {t['rollout']:.2f} s, lidar {1000 * t['lidar'] / n:.1f} ms/frame, "
        f"camera {1000 * t['camera'] / n:.1f} ms/frame, encode+write {1000 * t['encode'] / n:.1f} ms/frame, "
        f"other {other:.2f} s"
    )

    world = make_scenario(spec, cfg, 30.0)
    poses = [world.lane.interp(s) for s in np.linspace(20.0, 160.0, 8)]
    boxes = world.boxes()
    print("\n[sensors] median over poses x reps")
    lid_ms = {}
    for preset in cfg["lidar"]["presets"]:
        lidar = Lidar(cfg["lidar"], calib, preset)
        rng = np.random.default_rng(0)
        k = iter(range(10**9))
        lid_ms[preset] = _median_ms(
            lambda lidar=lidar, k=k, rng=rng: lidar.scan(
                poses[next(k) % len(poses)], boxes, world.ground, rng
            ),
            args.reps,
        )
        print(f"  lidar {preset:>9s}: {lid_ms[preset]:7.1f} ms/sweep ({lidar.beams * lidar.columns} rays)")
    names = list(lid_ms)
    if len(names) >= 2:
        print(
            f"  ratio {names[1]} / {names[0]}: {lid_ms[names[1]] / lid_ms[names[0]]:.1f}x "
            f"(rays x{(128 * 2048) / (32 * 1024):.0f})"
        )
    cam = Camera(cfg["camera"], calib)
    k2 = iter(range(10**9))
    cam_ms = _median_ms(lambda: cam.render(poses[next(k2) % len(poses)], boxes, world.ground), args.reps)
    print(f"  camera {cam.w}x{cam.h}: {cam_ms:.1f} ms/frame")

    world = make_scenario(spec, cfg, 30.0)
    t0 = time.perf_counter()
    run_closed_loop(world, expert_policy(Expert(cfg)), 30.0, cfg)
    dt = time.perf_counter() - t0
    print(
        f"\n[expert closed loop, no sensors] 30 s simulated in {dt:.2f} s -> {30.0 / dt:.1f} sim-s per wall-s"
    )
    return 0


def figures(out: Path) -> None:
    """Camera frame and LiDAR bird's-eye view of each family at its event (for docs/simulator.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.sim.bag_writer import expert_rollout, future_poses
    from vla_edge.sim.camera import Camera
    from vla_edge.sim.lidar import Lidar
    from vla_edge.sim.scenarios import FAMILIES, ScenarioSpec, make_scenario
    from vla_edge.sim.world import Boxes

    cfg = load_config("sim")
    calib = Calibration.from_config(load_config("calibration"))
    out.mkdir(parents=True, exist_ok=True)
    lidar = Lidar(cfg["lidar"], calib)
    cam = Camera(cfg["camera"], calib)
    fig, axes = plt.subplots(2, len(FAMILIES), figsize=(4.2 * len(FAMILIES), 8.4))
    for col, fam in enumerate(FAMILIES):
        spec = ScenarioSpec(fam, 3, 0.7)
        world = make_scenario(spec, cfg, 30.0)
        log = expert_rollout(world, cfg, 26.0)
        # The frame where the expert is closest to (but before) the event.
        gaps = [world.event_s - log.ego_s[f.step] for f in log.frames[:-45]]  # keep a 4 s future
        k = min(range(len(gaps)), key=lambda i: abs(gaps[i] - 14.0))
        fr = log.frames[k]
        boxes = Boxes.concat([world.static, fr.agents])
        pose = log.ego[fr.step, :3]
        img = cam.render(pose, boxes, world.ground)
        scan = lidar.scan(pose, boxes, world.ground, np.random.default_rng(0))
        pts = calib.transform_points(scan.points, lidar.frame_id)
        fut = future_poses(log, fr.step, 8, 0.5, float(cfg["time"]["physics_dt"]))
        ax = axes[0, col]
        ax.imshow(img)
        ax.set_title(f"{fam} (difficulty 0.7)", fontsize=9)
        ax.axis("off")
        ax = axes[1, col]
        m = (np.abs(pts[:, 0] - 20) < 30) & (np.abs(pts[:, 1]) < 25)
        ax.scatter(-pts[m, 1], pts[m, 0], s=0.3, c=pts[m, 2], cmap="viridis", vmin=-0.2, vmax=3.0)
        ax.plot(-fut[:, 1], fut[:, 0], "r.-", lw=1.5, label="expert future (4 s)")
        ax.set_xlim(-25, 25)
        ax.set_ylim(-10, 50)
        ax.set_aspect("equal")
        ax.set_title(fr.info["reasoning"], fontsize=8)
        ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sim_families.png", dpi=72)
    print(f"figures written to {out}")


if __name__ == "__main__":
    raise SystemExit(main())
