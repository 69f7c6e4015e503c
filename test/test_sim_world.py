"""World geometry, vehicle limits and the controller: the pieces the expert and harness stand on."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vla_edge.config import load_config
from vla_edge.sim.ego import EgoVehicle, PathFollower, Plan, plan_from_trajectory
from vla_edge.sim.rollout import run_closed_loop
from vla_edge.sim.scenarios import ScenarioSpec, make_scenario
from vla_edge.sim.world import Polyline, SimError, box_corners, rect_overlaps
from vla_edge.types import Trajectory

CFG = load_config("sim")


def test_polyline_interp_project_offset() -> None:
    # Quarter circle of radius 10 around the origin, from (10, 0) counter-clockwise.
    th = np.linspace(0, np.pi / 2, 200)
    arc = Polyline(np.stack([10 * np.cos(th), 10 * np.sin(th)], 1))
    assert arc.length == pytest.approx(np.pi * 5, rel=1e-3)
    x, y, yaw = arc.interp(arc.length / 2)
    assert np.hypot(x, y) == pytest.approx(10, abs=1e-3) and yaw == pytest.approx(
        np.pi / 2 + np.pi / 4, abs=0.01
    )
    pts = np.array([[0.0, 8.0], [12.0, 0.5], [-1.0, 20.0]])
    s, d = arc.project(pts)
    assert d[0] == pytest.approx(2.0, abs=0.01)  # inside the curve = left
    assert d[1] == pytest.approx(-2.0, abs=0.02)
    assert s[1] == pytest.approx(10 * np.arctan2(0.5, 12.0), abs=0.02)
    assert s[2] > arc.length  # extrapolated past the end
    inner = arc.offset(1.5)
    assert np.allclose(np.hypot(*inner.xy.T), 8.5, atol=1e-3)
    assert arc.reversed().interp(0.0)[:2] == pytest.approx([0.0, 10.0], abs=1e-9)
    with pytest.raises(SimError, match="N >= 2"):
        Polyline(np.zeros((1, 2)))
    with pytest.raises(SimError, match="distinct"):
        Polyline(np.zeros((3, 2)))


def test_rect_overlaps_separating_axes() -> None:
    a = box_corners(np.array([0.0, 0.0]), 0.0, 4.0, 2.0)[0]
    others = box_corners(
        np.array([[3.9, 0.0], [4.1, 0.0], [2.6, 2.6]]),
        np.array([0.0, 0.0, np.pi / 4]),
        np.array([4.0, 4.0, 2.0]),
        np.array([2.0, 2.0, 2.0]),
    )
    assert rect_overlaps(a, others).tolist() == [True, False, False]


def test_vehicle_limits_and_no_reversing() -> None:
    ego = EgoVehicle(CFG["ego"], 0.0, 0.0, 0.0, 0.0)
    dt = 0.05
    ego.step(dt, 100.0, 1.0)
    assert ego.a == pytest.approx(CFG["ego"]["max_jerk"] * dt)
    assert ego.steer == pytest.approx(np.radians(CFG["ego"]["max_steer_rate_deg"]) * dt)
    for _ in range(200):
        ego.step(dt, -100.0, 0.0)
    assert ego.v == 0.0 and ego.a == 0.0
    for _ in range(400):
        ego.step(dt, 100.0, 0.0)
    assert ego.v == pytest.approx(CFG["ego"]["max_speed"])


def test_follower_tracks_a_curved_plan() -> None:
    th = np.linspace(0, np.pi / 2, 100)
    path = Polyline(np.stack([20 * np.sin(th), 20 - 20 * np.cos(th)], 1))  # left turn, R = 20
    ego = EgoVehicle(CFG["ego"], 0.0, 0.0, 0.0, 3.0)
    follower = PathFollower(CFG["controller"], ego.wheelbase)
    plan = Plan(path, np.array([0.0, 100.0]), np.array([3.0, 3.0]), 0.0)
    err = []
    for i in range(150):
        a, steer = follower.command(ego, plan, i * 0.05)
        ego.step(0.05, a, steer)
        err.append(abs(path.project(ego.xy()[None])[1][0]))
    assert max(err) < 0.5 and ego.v == pytest.approx(3.0, abs=0.1)
    assert follower.command(ego, None, 0.0)[0] == -CFG["controller"]["fallback_decel"]


def test_trajectory_conversion_and_bad_values() -> None:
    ego = EgoVehicle(CFG["ego"], 5.0, 5.0, np.pi / 2, 2.0)
    traj = Trajectory(np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]), 0.5, 0.0, np.array([2.0, 2.0]))
    plan = plan_from_trajectory(traj, ego, 1.0)
    assert plan.path.interp(plan.path.length)[:2] == pytest.approx([5.0, 7.0])
    assert plan.times.tolist() == [0.0, 0.5, 1.0] and plan.t0 == 1.0
    stop = plan_from_trajectory(Trajectory(np.zeros((8, 3)), 0.5, 0.0), ego, 0.0)
    assert stop.path is None and np.all(stop.speeds[1:] == 0)
    with pytest.raises(SimError, match="NaN"):
        plan_from_trajectory(Trajectory(np.full((2, 3), np.nan), 0.5, 0.0), ego, 0.0)


def test_plan_that_jitters_around_a_stop_point_reads_as_standing_still() -> None:
    # A learned plan near a parked truck (blocked_lane_s9200013, shipped student): the poses
    # step back and forth by 0.1-0.2 m. Read as unsigned lengths these were 0.3-0.5 m/s of
    # speed, and the vehicle crept into the truck; the backwards segments are a stop.
    x = np.array([0.13, 0.04, -0.05, 0.01, 0.03, -0.02, 0.02, 0.0])
    poses = np.column_stack([x, np.zeros(8), np.zeros(8)])
    ego = EgoVehicle(CFG["ego"], 0.0, 0.0, 0.0, 0.5)
    plan = plan_from_trajectory(Trajectory(poses, 0.5, 0.0), ego, 0.0)
    unsigned = np.hypot(*np.diff(np.vstack([[0.0, 0.0], poses[:, :2]]), axis=0).T) / 0.5
    assert unsigned[1:].mean() > 0.1  # what the old reading drove at
    assert plan.speeds[2:].max() <= 0.05 + 1e-9
    forward = plan_from_trajectory(
        Trajectory(np.column_stack([np.arange(1, 9.0), np.zeros((8, 2))]), 0.5, 0.0), ego, 0.0
    )
    assert forward.speeds[1:] == pytest.approx(np.full(8, 2.0))


def test_ground_raster_and_drivable_area() -> None:
    world = make_scenario(ScenarioSpec("crossing_cart", 2, 0.9), CFG, 10.0)
    lane = world.lane.resample(2.0)
    assert world.ground.is_drivable(lane).all()
    off = world.route.offset(world.road_half_width + 3.0).resample(2.0)
    crossing = world.crossings[0]
    _, d = crossing.project(off)
    far_from_crossing = np.abs(d) > 0.5 * CFG["route"]["crossing_width"] + 0.5
    assert not world.ground.is_drivable(off[far_from_crossing]).any()
    for zone in world.zones:
        assert not world.ground.is_drivable(zone.mean(0)[None]).any()
    assert not world.ground.is_drivable(np.array([[1e6, 1e6]])).any()
    assert world.drivable_ok()


def test_rollout_rejects_incompatible_rates() -> None:
    cfg = copy.deepcopy(CFG)
    cfg["time"]["frame_dt"] = 0.07
    world = make_scenario(ScenarioSpec("empty_road", 1, 0.0), cfg, 2.0)
    with pytest.raises(SimError, match="multiple"):
        run_closed_loop(world, lambda w: (None, {}), 1.0, cfg)
