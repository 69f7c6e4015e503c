"""Does the student drive on real LiDAR scans, or only on the simulator's? A probe beside Frenet.

The student is trained on the simulator's LiDAR (with dropout, noise and mounting randomised).
This runs it on each real scan under ``$VLA_EDGE_SHARED_DATA/lidar`` (default ``../shared/data``,
else the committed ``test/data``), moved into the base frame with the scan's mounting preset,
on a straight reference path, at a few ego speeds. Printed per scan and speed: the distance the
student's best mode covers in its horizon, the most any mode covers, and one planning cycle of
the arbiter on that frame: what it chose and the student's failed checks. A scene where Frenet
drives and the student plans a stop is a sim-to-real gap (docs/profiling.md, docs/training.md).

    python scripts/probe_real_scans.py [--engine engines/student.onnx] [--speeds 0,3,5]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def scan_dir() -> Path:
    env = os.environ.get("VLA_EDGE_SHARED_DATA")
    for base in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data", REPO / "test" / "data"]:
        if (base / "lidar").is_dir():
            return base / "lidar"
    raise SystemExit("no real scans: set VLA_EDGE_SHARED_DATA (scripts/fetch_test_data.sh)")


def probe_scan(runner: Any, scan: Path, speeds: list[float]) -> list[dict[str, Any]]:
    """One row per ego speed: the student's reach on ``scan`` and the arbiter's verdict."""
    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.planning import PlanningCycle, load_planning_config
    from vla_edge.scans import load_scan, scan_preset
    from vla_edge.types import EgoState, Frame

    preset = scan_preset(str(scan))
    calib = Calibration.from_config(load_config("calibration"), preset=preset)
    pts = calib.cloud_to_base(load_scan(str(scan)), calib.sensor_frame("lidar"))
    path = np.stack([np.linspace(-10.0, 110.0, 121), np.zeros(121)], 1)
    rows = []
    for v in speeds:
        cycle = PlanningCycle(load_planning_config())
        for k in range(3):  # a few cycles, so the arbiter's hand-over wait is not the verdict
            t = 100.0 + 0.1 * k
            ego = EgoState(v * 0.1 * k, 0.0, 0.0, 0.0, v, 0.0, 0.0)
            frame = Frame(stamp=t, points=pts, ego=ego, reference_path=path - [v * 0.1 * k, 0.0])
            cand = runner.run(frame)
            d = cycle.step(frame, cand.trajectory, t, t, cand.scores, cand.alternatives(4, 0.0))
        rows.append(
            {
                "scan": scan.name,
                "preset": preset,
                "v0": v,
                "best_m": float(cand.trajectories[cand.best_index][-1, 0]),
                "max_m": max(float(np.max(m[:, 0])) for m in cand.trajectories),
                "choice": d.choice,
                "student_failed": sorted(
                    {r.removeprefix("student_") for r in d.reasons if r.startswith("student_")}
                ),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", default=None, help="student ONNX (default: inference.yaml's engine)")
    ap.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    ap.add_argument("--speeds", default="0,3,5", help="ego speeds, m/s (default 0,3,5)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args(argv)

    from vla_edge.config import load_config
    from vla_edge.inference import StudentRunner

    runner = StudentRunner.from_config(load_config("model"), args.backend, args.engine)
    speeds = [float(x) for x in args.speeds.split(",")]
    rows: list[dict[str, Any]] = []
    print(f"{'scan':<44} {'v0':>4} {'best m':>7} {'max m':>6}  arbiter: choice (student's failed checks)")
    try:
        for scan in sorted(p for p in scan_dir().iterdir() if p.suffix in (".bin", ".pcd")):
            for r in probe_scan(runner, scan, speeds):
                rows.append(r)
                print(
                    f"{r['scan']:<44} {r['v0']:>4.1f} {r['best_m']:>7.1f} {r['max_m']:>6.1f}  "
                    f"{r['choice']} ({', '.join(r['student_failed']) or '-'})"
                )
    finally:
        runner.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
