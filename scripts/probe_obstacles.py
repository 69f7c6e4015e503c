"""Does the student stop for an object in its lane? A probe beside the expert, frame by frame.

Closed-loop scores mix many causes and need minutes per seed; this asks one question in a few
seconds. An ``empty_road`` scenario is driven by the expert to ``--at`` seconds (cruising);
then, one at a time, a box of each class is placed on the lane centre ``d`` metres ahead, the
simulator's LiDAR renders the frame (and the earlier sweeps a multi-sweep model uses), and the
student (raw, best mode) and the privileged expert plan from it. Printed per class and distance:
the LiDAR points on the box, how far each plan gets in its horizon (4 s), and whether the ego
body swept along the plan overlaps the box (going around it, as the expert does where the road
has room, is fine). Written while diagnosing why the student hits crossing carts
(docs/training.md).

    python scripts/probe_obstacles.py [--engine engines/student.onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cruising_world(cfg: dict[str, Any], seed: int, at: float, builder: Any = None) -> tuple[Any, Any, int]:
    """An ``empty_road`` world driven by the expert up to ``at`` s, with ``builder`` building
    every frame on the way (so multi-sweep models get their earlier sweeps): copies of the
    world and the builder at that time, and the frame index there."""
    from vla_edge.sim.expert import Expert
    from vla_edge.sim.rollout import run_closed_loop
    from vla_edge.sim.scenarios import make_scenario, suite

    world = make_scenario(suite(1, seed, ["empty_road"], 0.5, cfg)[0], cfg, 20.0)
    expert, kept, k = Expert(cfg), {}, [0]

    def policy(w: Any) -> tuple[Any, dict]:
        if w.t >= at and "w" not in kept:
            kept["w"], kept["b"] = copy.deepcopy((w, builder))  # one memo: the copy builds on the copy
            kept["k"] = k[0]
        if builder is not None:
            builder.build(w, k[0])
        k[0] += 1
        return expert.plan(w).plan, {}

    run_closed_loop(world, policy, at + 0.2, cfg)
    return kept["w"], kept["b"], kept["k"]


def plan_hits(world: Any, poses: np.ndarray, dt: float, box: np.ndarray) -> bool:
    """Whether the ego body, swept along ``poses`` (ego frame, one every ``dt`` s; the origin
    prepended) at 0.05 s steps, overlaps the box corners ``box`` (1, 4, 2), odom frame."""
    from vla_edge.sim.world import box_corners, rect_overlaps

    e = world.ego
    p = np.vstack([[0.0, 0.0, 0.0], poses])
    t = dt * np.arange(len(p))
    tt = np.arange(0.0, t[-1] + 1e-9, 0.05)
    x, y, yaw = (np.interp(tt, t, p[:, i]) for i in range(3))
    c, s = np.cos(e.yaw), np.sin(e.yaw)
    ox, oy, oyaw = e.x + c * x - s * y, e.y + s * x + c * y, e.yaw + yaw
    centre = np.stack([ox + e.centre_offset * np.cos(oyaw), oy + e.centre_offset * np.sin(oyaw)], 1)
    body = box_corners(centre, oyaw, np.full(len(tt), e.length), np.full(len(tt), e.width))
    return bool(rect_overlaps(np.broadcast_to(box[0], body.shape), body).any())


def probe_parser(doc: str) -> argparse.ArgumentParser:
    """The options every probe takes: engine, backend, scenario seed, probe time, ``--json``."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--engine", default=None, help="student ONNX (default: inference.yaml's engine)")
    ap.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    ap.add_argument("--seed", type=int, default=9200, help="empty_road scenario seed (default 9200)")
    ap.add_argument("--at", type=float, default=8.0, help="scenario time of the probe frame, s (default 8)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = probe_parser(__doc__)
    ap.add_argument("--distances", default="6,10,15,25", help="box distances ahead, m (default 6,10,15,25)")
    args = ap.parse_args(argv)
    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.sim.counterfactual import parked_box, with_boxes
    from vla_edge.sim.expert import Expert
    from vla_edge.sim.harness import FrameBuilder, plan_to_trajectory
    from vla_edge.sim.planners import make_planner

    cfg = load_config("sim")
    builder = FrameBuilder(cfg, Calibration.from_config(load_config("calibration")), True, False, None)
    student, _ = make_planner("student", cfg, None, args.engine, args.backend)
    expert = Expert(cfg)
    base, builder, k = cruising_world(cfg, args.seed, args.at, builder)
    rows = []
    print(f"ego {base.ego.v:.1f} m/s, empty road (seed {args.seed}, t = {args.at:g} s), plans over 4 s")
    print(f"{'object':>13} {'ahead m':>8} {'points':>7}  student: reach m, hits  expert: reach m, hits")
    for cls in ("crew", "baggage_cart", "tug"):
        for d in (float(v) for v in args.distances.split(",")):
            added = parked_box(base, cls, d)
            w, box = with_boxes(base, added), added.corners()
            frame = builder.build_variant(base, k, added)  # the earlier sweeps show it too
            pts = frame.points
            on_box = (np.abs(pts[:, 0] - d) < 0.6 * added.size[0, 0] + 0.3) & (np.abs(pts[:, 1]) < 1.5)
            row: dict[str, Any] = {
                "object": cls,
                "ahead_m": d,
                "points": int(np.sum(on_box & (pts[:, 2] > 0.3))),
            }
            trajs = {
                "student": student(frame),
                "expert": plan_to_trajectory(expert.plan(w).plan, w, frame.stamp),
            }
            for who, traj in trajs.items():
                row[f"{who}_reach_m"] = float(np.hypot(*traj.poses[-1, :2]))
                row[f"{who}_hits"] = plan_hits(w, traj.poses, traj.dt, box)
            rows.append(row)
            print(
                f"{cls:>13} {d:8.0f} {row['points']:7d}  {row['student_reach_m']:14.1f}, "
                f"{'HITS' if row['student_hits'] else 'clear':>5}  {row['expert_reach_m']:13.1f}, "
                f"{'HITS' if row['expert_hits'] else 'clear':>5}"
            )
    return summarize(rows, "hits", "plans that drive into the object", args.json)


def summarize(rows: list[dict[str, Any]], flag: str, what: str, out: Path | None) -> int:
    """Print how many student and expert plans have ``flag`` set; write the rows to ``out``."""
    n = len(rows)
    count = {who: sum(bool(r[f"{who}_{flag}"]) for r in rows) for who in ("student", "expert")}
    print(f"{what}: student {count['student']} of {n}, expert {count['expert']} of {n}")
    if out:
        doc = {"rows": rows, f"student_{flag}": count["student"], f"expert_{flag}": count["expert"], "n": n}
        out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
