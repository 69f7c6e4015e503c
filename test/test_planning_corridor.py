"""Drivable corridor (arbiter.yaml corridor): Frenet and arbiter keep the body on the road."""

from __future__ import annotations

import numpy as np
import pytest
from planning_scenes import box, cloud, cycle, frame_at, ground, student_straight

from vla_edge.planning import Footprint, FrenetPlanner, ObstacleParams, ReferencePath, ReferencePathParams
from vla_edge.planning import checks as ck
from vla_edge.planning.cycle import load_planning_config
from vla_edge.planning.obstacles import extract_obstacles
from vla_edge.types import EgoState


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_planning_config()


def _ref(cfg):
    pts = np.stack([np.linspace(-5, 80, 60), np.zeros(60)], 1)
    return ReferencePath.from_polyline(pts, ReferencePathParams.from_config(cfg))


def _obstacles(cfg, *boxes):
    rng = np.random.default_rng(0)
    params = ObstacleParams.from_config(cfg)
    ob = extract_obstacles(cloud(ground(rng), *[box(rng, *b) for b in boxes]), 0.0, params)
    ob.inflate(Footprint.from_config(cfg).radius + params.margin)
    return ob


def _edges(cfg, traj, ref):
    corridor = ck.Corridor.from_config(cfg)
    _, d = ref.project_trajectory(traj.poses[:, :2])
    return d.min() - corridor.half_width, d.max() + corridor.half_width, corridor


def test_passes_an_obstacle_on_the_side_the_road_continues(cfg):
    # Default corridor: the ego lane's right edge is 1.75 m right of the path, the oncoming
    # lane is on the left. A box in the lane must be passed on the left, never on the apron.
    planner = FrenetPlanner.from_config(cfg)
    ref = _ref(cfg)
    res = planner.plan(ref, EgoState(0, 0, 0, 0, 5.0), _obstacles(cfg, (25.0, 0.0, 1.5, 1.5, 1.5)), 0.0)
    assert res.trajectory is not None and res.params["d1"] > 0
    right, left, corridor = _edges(cfg, res.trajectory, ref)
    assert right >= -corridor.right - corridor.tolerance and left <= corridor.left + corridor.tolerance
    assert res.rejected["corridor"] > 0


def test_only_gap_off_the_road_means_stopping(cfg):
    # Wall across the lane and the oncoming lane, free only beyond the right road edge:
    # driving round it there would leave the road, so the plan stops before the wall.
    planner = FrenetPlanner.from_config(cfg)
    ob = _obstacles(cfg, (15.0, 3.0, 1.0, 9.0, 2.0, 6000))
    res = planner.plan(_ref(cfg), EgoState(0, 0, 0, 0, 5.0), ob, 0.0)
    assert res.trajectory is not None and res.params["v1"] == 0.0
    assert res.trajectory.poses[:, 0].max() < 15.0 - 0.5
    corridor = {**cfg["arbiter"]["corridor"], "right_width": 5.0}
    wide = {**cfg, "arbiter": {**cfg["arbiter"], "corridor": corridor}}
    res_wide = FrenetPlanner.from_config(wide).plan(_ref(cfg), EgoState(0, 0, 0, 0, 5.0), ob, 0.0)
    assert res_wide.trajectory is not None and res_wide.params["d1"] < -1.0  # the check made the difference


def test_ego_outside_the_corridor_may_return_but_not_go_further(cfg):
    planner = FrenetPlanner.from_config(cfg)
    # Ego 1.6 m right of the path (body edge 0.6 m beyond the right edge), e.g. after a swerve.
    pts = np.stack([np.linspace(-5, 80, 60), np.full(60, 1.6)], 1)
    ref = ReferencePath.from_polyline(pts, ReferencePathParams.from_config(cfg))
    res = planner.plan(ref, EgoState(0, 0, 0, 0, 5.0), _obstacles(cfg), 0.0)
    assert res.trajectory is not None
    _, d = ref.project_trajectory(res.trajectory.poses[:, :2])
    assert d.min() >= -1.6 - 0.06 and d[-1] > -0.5  # back towards the centre line


def test_arbiter_rejects_a_student_leaving_the_road():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    rng = np.random.default_rng(5)
    pts = cloud(ground(rng))
    d = cyc.step(frame_at(0.0, pts, 5.0), student_straight(5.0, 0.0, lateral=-2.0), 0.0, 0.05)
    assert not d.checks["student.corridor"].ok and "student_corridor" in d.reasons
    assert d.choice == "frenet"
    d_ok = cyc.step(frame_at(0.1, pts, 5.0, x=0.5), student_straight(5.0, 0.1, lateral=-0.5), 0.1, 0.15)
    assert d_ok.checks["student.corridor"].ok
    assert d_ok.checks["frenet.corridor"].ok


def test_corridor_check_values():
    corridor = ck.Corridor(left=5.25, right=1.75, half_width=0.75, tolerance=0.05)
    d = np.array([[0.0, -1.0, -1.2], [0.0, 4.0, 4.6], [-1.5, -1.3, -1.0]])
    ex = ck.corridor_excess(d, 0.0, corridor)
    np.testing.assert_allclose(ex[:2], [0.2, 0.1])
    # Ego already 0.5 m outside: a plan that only comes back is fine.
    np.testing.assert_allclose(ck.corridor_excess(d[2:], -1.5, corridor), [0.0])


def _moving_car(cfg, cy):
    """A 5 x 2 m car at (20, cy) driving towards the ego at 5 m/s, as a tracked moving cluster."""
    rng = np.random.default_rng(1)
    params = ObstacleParams.from_config(cfg)
    ob = extract_obstacles(cloud(ground(rng), box(rng, 20.0, cy, 5.0, 2.0, 1.5, 8000)), 0.0, params)
    assert ob.n_clusters == 1
    ob.moving[:] = True
    ob.velocities[:] = [-5.0, 0.0]
    ob.inflate(Footprint.from_config(cfg).radius + params.margin)
    return ob


def test_oncoming_car_in_the_next_lane_does_not_block_the_ego_lane(cfg):
    # The disc round a 5 m car's centroid (radius ~2.7 m) reached 0.3 m into the ego lane
    # from the next lane's centre; the capsule keeps its real width.
    fp = Footprint.from_config(cfg)
    t = 0.1 * np.arange(1, 51)
    x, y, yaw = 5.0 * t, 0.0 * t, 0.0 * t
    next_lane = _moving_car(cfg, 3.5)
    assert next_lane.radii[0] > 2.5  # the old disc model would have hit
    assert not ck.collision_levels(x, y, yaw, t, next_lane, fp)[0].any()
    own_lane = _moving_car(cfg, 0.5)
    hit = ck.collision_levels(x, y, yaw, t, own_lane, fp)[0]
    assert hit.any() and t[np.argmax(hit)] < 2.5  # closing at 10 m/s from 20 m
    _, axis, radius, _ = own_lane.moving_capsules()
    assert abs(axis[0, 0]) > 1.0 and axis[0, 1] == 0.0 and radius[0] < 1.6  # long axis along x
