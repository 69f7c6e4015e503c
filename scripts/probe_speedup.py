"""Does the student speed up on an open road, or hold the speed it has? A probe beside the expert.

A student that is given its own speed can learn to hold it (the "copycat" shortcut of imitation:
most frames cruise, so "keep the current speed" fits nearly every label). The 2026-12-07
multi-sweep candidate did: on ``empty_road`` it held 3 m/s for 20 s where the expert went to
6.5, so in the stack it drove slowly (docs/training.md). This asks that question in seconds:
an ``empty_road`` scenario is driven by an expert capped at ``v0`` up to ``--at`` seconds
(steady, so the earlier sweeps show steady driving too), then the student (raw, best mode) and
the uncapped expert plan from that frame. Printed per ``v0``: the distance each plan covers in
its horizon against holding ``v0``, and whether it speeds up (covers more than holding ``v0``
plus ``--margin`` m, the rule of ``onpolicy.hazard.speedup_margin``).

    python scripts/probe_speedup.py [--engine engines/student.onnx] [--json out.json]
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def main(argv: list[str] | None = None) -> int:
    from probe_obstacles import cruising_world, probe_parser, summarize

    ap = probe_parser(__doc__)
    ap.add_argument("--speeds", default="2,3,4,5", help="steady speeds before the frame, m/s")
    ap.add_argument("--margin", type=float, default=3.0, help="m beyond holding v0 that count as speeding up")
    args = ap.parse_args(argv)

    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.sim.expert import Expert
    from vla_edge.sim.harness import FrameBuilder, plan_to_trajectory
    from vla_edge.sim.planners import make_planner

    cfg = load_config("sim")
    calib = Calibration.from_config(load_config("calibration"))
    student, _ = make_planner("student", cfg, None, args.engine, args.backend)
    expert = Expert(cfg)
    rows: list[dict[str, Any]] = []
    print(f"empty road (seed {args.seed}), steady at v0 until t = {args.at:g} s, then plans over 4 s")
    print(f"{'v0 m/s':>7} {'hold m':>7}  student: reach m, speeds up  expert: reach m, speeds up")
    for v0 in (float(v) for v in args.speeds.split(",")):
        slow = copy.deepcopy(cfg)
        slow["expert"]["cruise_speed"] = v0
        builder = FrameBuilder(cfg, calib, True, False, None)
        world, builder, k = cruising_world(slow, args.seed, args.at, builder)
        frame = builder.build(world, k)
        ours = plan_to_trajectory(expert.plan(world).plan, world, frame.stamp)
        trajs = {"student": student(frame), "expert": ours}
        hold = float(world.ego.v) * trajs["student"].horizon
        row: dict[str, Any] = {"v0": v0, "ego_v": float(world.ego.v), "hold_m": hold}
        for who, traj in trajs.items():
            reach = float(np.hypot(*traj.poses[-1, :2]))
            row[f"{who}_reach_m"] = reach
            row[f"{who}_speeds_up"] = reach > hold + args.margin
        rows.append(row)
        print(
            f"{world.ego.v:7.1f} {hold:7.1f}  {row['student_reach_m']:14.1f}, "
            f"{'yes' if row['student_speeds_up'] else 'HOLDS':>9}  {row['expert_reach_m']:13.1f}, "
            f"{'yes' if row['expert_speeds_up'] else 'HOLDS':>9}"
        )
    return summarize(rows, "speeds_up", "plans that speed up on the open road", args.json)


if __name__ == "__main__":
    sys.exit(main())
