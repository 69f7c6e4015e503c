"""Kalman tracking, predicted occupancy and airside rules on real point sets through the real cycle."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planning_scenes import box, cloud, cycle, frame_at, ground

from vla_edge.errors import ConfigError
from vla_edge.planning import checks as ck
from vla_edge.planning import load_planning_config
from vla_edge.planning.obstacles import ObstacleParams, extract_obstacles
from vla_edge.planning.prediction import segments
from vla_edge.planning.rules import RulesParams, classify

RNG = np.random.default_rng(3)
GROUND = ground(RNG, n=6000)


def _person(rng: np.random.Generator, x: float, y: float) -> np.ndarray:
    return box(rng, x, y, 0.5, 0.6, 1.8, 600)


def _run(agents, v_ego: float, frames: int, seed: int = 0):
    """Drive a fresh cycle ``frames`` sweeps; agents are ``(x0, y0, vx, vy, sx, sy, h)`` in odom."""
    cyc = cycle()
    rng = np.random.default_rng(seed)
    dec = None
    x_ego = 0.0
    for k in range(frames):
        t = 0.1 * k
        parts = [GROUND]
        for x0, y0, vx, vy, sx, sy, h in agents:
            parts.append(box(rng, x0 + vx * t - x_ego, y0 + vy * t, sx, sy, h, 800))
        dec = cyc.step(frame_at(100.0 + t, cloud(*parts), v_ego, x=x_ego), None, None, 100.0 + t)
        x_ego += v_ego * 0.1
    return cyc, dec


def test_kalman_track_converges_and_new_tracks_are_uncertain():
    cyc, dec = _run([(25.0, -6.0, 0.0, 1.5, 0.5, 0.6, 1.8)], 0.0, 15)
    ob = dec.obstacles
    i = int(np.argmin(np.hypot(ob.centroids[:, 0] - 25.0, ob.centroids[:, 1] - (-6.0 + 1.4))))
    assert abs(ob.velocities[i, 1] - 1.5) < 0.3 and abs(ob.velocities[i, 0]) < 0.3
    assert ob.velocity_std[i] < 0.6 and ob.hits[i] >= 10
    assert ob.moving[i] and ob.classes[i] == "person"
    # A cluster seen for the first time carries the initial velocity uncertainty.
    fresh = extract_obstacles(cloud(GROUND, _person(RNG, 12.0, 3.0)), 0.0, cyc.obstacle_params)
    cyc.tracker.reset()
    cyc.tracker.update(fresh, (0.0, 0.0, 0.0))
    assert np.allclose(fresh.velocity_std, cyc.tracker.params.initial_speed_std)


def test_crossing_person_is_swept_and_the_plan_stops_before_its_way():
    # Crew walking across the road 14 m ahead at 1.4 m/s, from the right shoulder.
    _, dec = _run([(14.0, -4.0, 0.0, 1.4, 0.5, 0.6, 1.8)], 4.0, 8)
    ob = dec.obstacles
    pred = np.flatnonzero(ob.predicted_mask())
    assert len(pred) and ob.sweep[pred].any()  # crossing hypothesis
    assert dec.choice in ("frenet", "emergency_stop")
    end_x = dec.trajectory.poses[:, 0].max()
    person_x = 14.0 - 4.0 * 0.7  # ego moved 0.7 * 4 m during the run
    assert end_x + 2.6 < person_x - 0.25, "the plan must stay short of the crossing person's way"


def test_person_near_the_lane_caps_the_speed():
    # A person standing 3.2 m right of the path, 25 m ahead: near_personnel applies.
    _, dec = _run([(25.0, -3.2, 0.0, 0.0, 0.5, 0.6, 1.8)], 6.0, 6)
    assert "near_personnel" not in dec.reasons  # a zone, not a failure
    traj = dec.trajectory
    assert dec.choice == "frenet"
    x = np.concatenate([[0.0], traj.poses[:, 0]])
    v = np.diff(x) / traj.dt
    at_person = (x[1:] > 25.0 - 12.0 - 6.0 * 0.5) & (x[1:] < 25.0 + 3.0 - 6.0 * 0.5)
    assert at_person.any() and v[at_person].max() <= 3.0 + 0.35


def test_classes_from_shape_and_height():
    pts = cloud(
        GROUND,
        _person(RNG, 10.0, 4.0),  # person: small, tall, on the ground
        box(RNG, 10.0, -6.0, 0.5, 0.5, 0.7, 400),  # cone: too low
        box(RNG, 20.0, 8.0, 4.0, 2.0, 1.7, 2000),  # tug: too long
    )
    cfg = load_planning_config()
    ob = extract_obstacles(pts, 0.0, ObstacleParams.from_config(cfg))
    cls = classify(ob, RulesParams.from_config(cfg))
    near = {(round(c[0]), round(c[1])): k for c, k in zip(ob.centroids, cls)}
    assert near[(10, 4)] == "person"
    assert near[(10, -6)] == "object" and near[(20, 8)] == "object"


def test_rules_config_is_checked():
    cfg = copy.deepcopy(load_planning_config())
    cfg["planner"]["rules"]["zones"]["near_stand"] = 50.0
    with pytest.raises(ConfigError, match=r"planner\.rules\.zones\.near_stand"):
        RulesParams.from_config(cfg)
    del cfg["planner"]["rules"]["clearance"]["person"]
    with pytest.raises(ConfigError, match="person"):
        RulesParams.from_config(cfg)


agents = st.lists(
    st.tuples(
        st.floats(8.0, 35.0),  # x0
        st.floats(-7.0, 7.0),  # y0
        st.floats(-4.0, 4.0),  # vx
        st.floats(-1.8, 1.8),  # vy
        st.sampled_from([(0.5, 0.6, 1.8), (3.0, 1.6, 1.7), (0.6, 0.5, 1.7)]),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agents, st.floats(0.0, 6.5), st.integers(0, 10_000))
def test_no_published_plan_enters_a_predicted_footprint(ags, v_ego, seed):
    """Property: with predicted occupancy, a published student/Frenet/held plan never enters a
    predicted agent footprint (inflated by the footprint radius) within its horizon."""
    spec = [(x, y, vx, vy, *size) for x, y, vx, vy, size in ags]
    cyc, dec = _run(spec, v_ego, 6, seed)
    if dec.choice == "emergency_stop":
        return  # no feasible plan: the stop is the fallback, not a checked plan
    traj, ob = dec.trajectory, dec.obstacles
    assert ob is not None
    p = traj.poses
    hit = ck.collision_levels(p[:, 0], p[:, 1], p[:, 2], traj.times, ob, cyc.footprint)[0]
    hit &= np.hypot(p[:, 0], p[:, 1]) >= ck.STILL_RADIUS
    assert not hit.any(), f"{dec.choice} plan enters a predicted footprint at t={traj.times[hit][:3]}"
    # The same from the capsules directly (independent of collision_levels' pruning).
    a, b, r = segments(ob, traj.times)
    cx, cy = cyc.footprint.centres(p[:, 0], p[:, 1], p[:, 2])
    moving_away = np.hypot(p[:, 0], p[:, 1]) >= ck.STILL_RADIUS
    for m in range(len(a)):
        u = b[m] - a[m]
        q = np.stack([cx, cy], -1) - a[m][:, None, :]
        k = np.clip((q * u[:, None, :]).sum(-1) / np.maximum((u**2).sum(-1), 1e-12)[:, None], 0, 1)
        dist = np.hypot(*(q - k[..., None] * u[:, None, :]).transpose(2, 0, 1)).min(-1)
        inside = (dist < r[m] + ob.inflation_radius - 1e-3) & moving_away
        assert not inside.any()
