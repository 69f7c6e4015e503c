"""Property tests: whatever the student sends, the published plan is finite, continuous, in limits."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planning_scenes import box, cloud, cycle, frame_at, ground

from vla_edge.planning import CHOICES
from vla_edge.planning import checks as ck
from vla_edge.planning.emergency import EmergencyParams, stop_profile
from vla_edge.planning.kinematics import trajectory_profile
from vla_edge.types import Trajectory

CYCLE = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
P = CYCLE.arbiter.params
RNG = np.random.default_rng(0)
GROUND = ground(RNG, n=4000)

garbage = st.floats(allow_nan=True, allow_infinity=True, width=64)
plain = st.floats(-1e3, 1e3, allow_nan=False)


@st.composite
def students(draw):
    kind = draw(st.sampled_from(["none", "garbage", "arc", "arc_nan"]))
    if kind == "none":
        return None
    dt = draw(st.sampled_from([0.5, 0.5, 0.1, 0.25, 0.0, -0.5, 1e6, float("nan"), 1e-9]))
    if kind == "garbage":
        n = draw(st.integers(1, 12))
        poses = np.array(draw(st.lists(st.one_of(garbage, plain), min_size=3 * n, max_size=3 * n))).reshape(
            n, 3
        )
        return poses, dt
    v = draw(st.floats(0.0, 12.0))
    acc = draw(st.floats(-6.0, 4.0))
    kappa = draw(st.floats(-0.4, 0.4))
    wobble = draw(st.floats(0.0, 1.0))
    t = 0.5 * np.arange(1, 9)
    s = np.maximum(v * t + 0.5 * acc * t**2, 0.0)
    yaw = kappa * s
    x = np.where(abs(kappa) > 1e-6, np.sin(yaw) / np.where(abs(kappa) > 1e-6, kappa, 1), s)
    y = np.where(abs(kappa) > 1e-6, (1 - np.cos(yaw)) / np.where(abs(kappa) > 1e-6, kappa, 1), 0 * s)
    y = y + wobble * np.sin(3 * t)
    poses = np.stack([x, y, yaw], 1)
    if kind == "arc_nan":
        poses[draw(st.integers(0, 7)), draw(st.integers(0, 2))] = draw(
            st.sampled_from([np.nan, np.inf, 1e300])
        )
    return poses, 0.5


scene = st.lists(
    st.tuples(st.floats(3, 40), st.floats(-6, 6), st.floats(0.3, 3), st.floats(0.3, 3), st.floats(0.3, 2.5)),
    max_size=4,
)


def _assert_safe(d, v0):
    traj = d.trajectory
    assert d.choice in CHOICES
    assert traj.is_finite() and abs(traj.dt - P.dt) < 1e-12 and len(traj.poses) >= 1
    prof = trajectory_profile(traj, P.min_speed_for_curvature)
    kin = ck.kinematics(prof)
    eps = 1e-6
    assert kin["jerk"][0] <= P.max_jerk + eps, d.choice
    assert kin["lat_accel"][0] <= P.max_lat_accel + eps, d.choice
    assert kin["yaw_rate"][0] <= P.max_yaw_rate + eps, d.choice
    assert P.min_lon_accel - eps <= kin["min_lon_accel"][0], d.choice
    assert kin["max_lon_accel"][0] <= P.max_lon_accel + eps, d.choice
    # Continuous at t0: starts at the ego, at the ego's speed, heading along the ego.
    assert ck.start_speed_jump(prof, v0)[0] <= P.max_start_speed_jump + eps, d.choice
    assert abs(traj.poses[0, 2]) <= P.max_yaw_rate * P.dt + eps
    json.dumps(d.to_dict(), allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    student=students(),
    boxes=scene,
    v0=st.one_of(st.floats(0.0, 8.3), st.sampled_from([0.0, 0.05, 0.5, 1.0, 8.3])),
    a0=st.one_of(st.floats(-3.0, 2.0), st.sampled_from([-3.0, -2.5, 0.0, 2.0])),
    lag=st.floats(0.0, 0.6),
    scores=st.one_of(st.none(), st.lists(st.one_of(garbage, plain), min_size=1, max_size=4)),
    stale=st.sampled_from([set(), {"reference_path"}, {"odometry"}]),
)
def test_published_plan_is_always_safe(student, boxes, v0, a0, lag, scores, stale):
    CYCLE.reset()
    rng = np.random.default_rng(len(boxes))
    pts = cloud(GROUND, *[box(rng, *b, n=400) for b in boxes])
    for k in range(3):
        t = 0.1 * k
        x = v0 * t
        fr = frame_at(
            t, pts - np.array([x, 0, 0, 0], dtype=np.float32), v0, x=x, stale=stale if k == 2 else None
        )
        fr.ego = type(fr.ego)(t, x, 0.0, 0.0, v0, a0, 0.0)
        traj = None if student is None else Trajectory(student[0], student[1], t, None, "student")
        sc = None if scores is None else np.array(scores)
        d = CYCLE.step(fr, traj, t, t + lag, sc)
        _assert_safe(d, v0)


@settings(max_examples=60, deadline=None)
@given(v0=st.floats(0.0, 30.0), a0=st.floats(-15.0, 15.0))
def test_stop_profile_is_jerk_limited_and_stops(v0, a0):
    e = EmergencyParams.from_config(CYCLE.cfg)
    s, v, a = stop_profile(v0, a0, e)
    assert np.all(np.isfinite(s)) and np.all(np.diff(s) >= -1e-12) and np.all(v >= 0)
    assert a.min() >= -e.decel - 1e-9 and a.max() <= 1e-9
    a_start = max(min(a0, 0.0), -e.decel, -np.sqrt(2 * e.release_jerk * v0))
    da = np.diff(np.concatenate([[a_start], a])) / e.dt
    assert da.min() >= -e.jerk - 1e-6  # braking builds up no faster than the MRM jerk
    # Easing off before standstill is bounded too (the final snap to a=0 at v=0 is not a
    # jerk of the vehicle: it is already stopped; the published positions are checked above).
    assert da[v > 0].max(initial=0.0) <= e.release_jerk + 1e-6
    if v0 <= 5.0:  # short enough to finish inside the horizon
        assert v[-1] == 0.0
