"""Frenet planner: polynomial boundary conditions, vectorised candidates, avoidance, limits."""

from __future__ import annotations

import numpy as np
import pytest
from planning_scenes import box, cloud, ground

from vla_edge.planning import Footprint, FrenetPlanner, ObstacleParams, ReferencePath, ReferencePathParams
from vla_edge.planning import checks as ck
from vla_edge.planning.cycle import load_planning_config
from vla_edge.planning.frenet import quartic_lon, quintic_lat
from vla_edge.planning.kinematics import trajectory_profile
from vla_edge.planning.obstacles import extract_obstacles
from vla_edge.types import EgoState


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_planning_config()


@pytest.fixture(scope="module")
def planner(cfg) -> FrenetPlanner:
    return FrenetPlanner.from_config(cfg)


def _ref(cfg, pts=None):
    pts = np.stack([np.linspace(-5, 80, 60), np.zeros(60)], 1) if pts is None else pts
    return ReferencePath.from_polyline(pts, ReferencePathParams.from_config(cfg))


def _obstacles(cfg, *boxes, seed=0):
    rng = np.random.default_rng(seed)
    params = ObstacleParams.from_config(cfg)
    ob = extract_obstacles(cloud(ground(rng), *[box(rng, *b) for b in boxes]), 0.0, params)
    ob.inflate(Footprint.from_config(cfg).radius + params.margin)
    return ob


def test_polynomial_boundary_conditions():
    t = np.linspace(0, 6, 601)
    T = np.array([[2.0, 4.0]])
    s, sd, sdd, _ = quartic_lon(1.0, 5.0, -0.5, np.array([[0.0], [7.0]]), T, t)
    for i, Ti in enumerate(T[0]):
        k = round(Ti * 100)
        np.testing.assert_allclose([s[0, i, 0], sd[0, i, 0], sdd[0, i, 0]], [1.0, 5.0, -0.5], atol=1e-9)
        np.testing.assert_allclose(sd[:, i, k], [0.0, 7.0], atol=1e-9)
        np.testing.assert_allclose(sdd[:, i, k], 0.0, atol=1e-9)
        np.testing.assert_allclose(sd[:, i, -1], [0.0, 7.0], atol=1e-9)  # constant after T
    d, dd, ddd, _ = quintic_lat(0.3, 0.2, 0.1, np.array([[-2.0], [1.5]]), T, t)
    for i, Ti in enumerate(T[0]):
        k = round(Ti * 100)
        np.testing.assert_allclose([d[0, i, 0], dd[0, i, 0], ddd[0, i, 0]], [0.3, 0.2, 0.1], atol=1e-9)
        np.testing.assert_allclose(d[:, i, k], [-2.0, 1.5], atol=1e-9)
        np.testing.assert_allclose(dd[:, i, k], 0.0, atol=1e-9)
        np.testing.assert_allclose(ddd[:, i, k], 0.0, atol=1e-9)


def test_candidates_are_vectorised_over_the_configured_grid(planner, cfg):
    c = planner.candidates(_ref(cfg), EgoState(0, 0, 0, 0, 5.0), prefilter=False)
    n = planner.params.n_candidates
    assert n == 800 and c["n_total"] == n  # the default
    assert c["x"].shape == (n, len(planner.t)) and c["yaw"].shape == (n, len(planner.t))
    pre = planner.candidates(_ref(cfg), EgoState(0, 0, 0, 0, 5.0))
    assert len(pre["x"]) + pre["n_prefiltered"] == n and pre["n_prefiltered"] > 0
    assert np.all(c["x"][:, 0] == 0) and np.all(c["y"][:, 0] == 0)


def test_free_road_keeps_lane_and_respects_vehicle_limits(planner, cfg):
    res = planner.plan(_ref(cfg), EgoState(0, 0, 0, 0, 5.0), _obstacles(cfg), 1.0)
    traj = res.trajectory
    assert traj is not None and traj.source == "frenet" and traj.stamp == 1.0
    assert traj.dt == pytest.approx(0.1) and len(traj.poses) == 50
    assert res.params["d1"] == pytest.approx(0.0)
    assert np.abs(traj.poses[:, 1]).max() < 1e-6
    p = planner.params
    kin = ck.kinematics(trajectory_profile(traj, p.min_speed_for_curvature))
    assert kin["max_lon_accel"][0] <= p.max_accel + 1e-6
    assert kin["jerk"][0] <= p.max_jerk + 1e-6
    assert kin["max_speed"][0] <= p.max_speed + 0.1
    np.testing.assert_allclose(traj.speeds[0], 5.0, atol=0.2)


def test_avoids_box_on_path(planner, cfg):
    ob = _obstacles(cfg, (18.0, 0.0, 1.5, 1.5, 1.5))
    res = planner.plan(_ref(cfg), EgoState(0, 0, 0, 0, 5.0), ob, 0.0)
    traj = res.trajectory
    assert traj is not None
    assert ck.collision(traj, ob, planner.footprint)[0] == 0
    near = np.argmin(np.abs(traj.poses[:, 0] - 18.0))
    assert abs(traj.poses[near, 1]) > 1.5  # swerved around it
    assert res.rejected["collision"] > 0


def test_follows_curved_route(planner, cfg):
    a = np.linspace(-0.1, 1.2, 80)
    r = 40.0
    ref = _ref(cfg, np.stack([r * np.sin(a), r - r * np.cos(a)], 1))
    res = planner.plan(ref, EgoState(0, 0, 0, 0, 5.0), _obstacles(cfg), 0.0)
    assert res.trajectory is not None
    assert ck.lateral_deviation(res.trajectory, ref)[0] < 0.2
    assert res.trajectory.poses[-1, 2] > 0.3  # turned left with the road


def test_wall_across_corridor_has_no_candidate(planner, cfg):
    ob = _obstacles(cfg, (8.0, 0.0, 1.0, 30.0, 2.0, 8000))
    res = planner.plan(_ref(cfg), EgoState(0, 0, 0, 0, 6.0), ob, 0.0)
    assert res.trajectory is None and res.n_feasible == 0


def test_distant_wall_slows_down_so_it_can_still_stop(planner, cfg):
    wall = 27.0
    ob = _obstacles(cfg, (wall, 0.0, 1.0, 30.0, 2.0, 8000))
    res = planner.plan(_ref(cfg), EgoState(0, 0, 0, 0, 5.0), ob, 0.0)
    traj = res.trajectory
    assert traj is not None
    assert res.rejected["terminal_stop"] > 0  # fast candidates that could not stop in time
    v_end = traj.speeds[-1]
    assert v_end < 5.0
    stop_x = traj.poses[-1, 0] + v_end**2 / (2 * planner.params.max_decel)
    front = planner.footprint.offsets[-1] + planner.footprint.radius
    assert stop_x + front < wall - 0.5


def test_from_standstill_the_low_speed_mode_pulls_around_an_obstacle(planner, cfg):
    assert planner.params.low_speed > 0.0
    ob = _obstacles(cfg, (9.0, 0.0, 1.5, 1.5, 1.5))
    res = planner.plan(_ref(cfg), EgoState(0, 0, 0, 0, 0.0), ob, 0.0)
    traj = res.trajectory
    assert traj is not None and abs(res.params["d1"]) >= 1.5 and res.params["v1"] > 0
    assert ck.collision(traj, ob, planner.footprint)[0] == 0
    # Alongside the box at the end, off to the side, instead of creeping up to it and stopping.
    assert traj.poses[-1, 0] > 9.0 - 0.75 - 1.0 and abs(traj.poses[-1, 1]) > 1.5
    kin = ck.kinematics(trajectory_profile(traj, planner.params.min_speed_for_curvature))
    assert (
        kin["yaw_rate"][0] <= planner.params.max_yaw_rate
        and kin["curvature"][0] <= planner.params.max_curvature
    )
