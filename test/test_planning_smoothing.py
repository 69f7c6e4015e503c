"""Student smoothing (planning/smoothing.py): exact on smooth plans, cleans noise, rejects garbage."""

from __future__ import annotations

import numpy as np
import pytest
from planning_scenes import cloud, cycle, frame_at, ground

from vla_edge.errors import ConfigError
from vla_edge.planning import checks as ck
from vla_edge.planning import load_planning_config
from vla_edge.planning.kinematics import smooth_resample, trajectory_profile
from vla_edge.planning.smoothing import SmoothingParams, hold_at_stop, smooth_student
from vla_edge.types import Trajectory

V = 5.0
T = 0.5 * np.arange(1, 9)  # the student's 8 poses at 0.5 s
PARAMS = SmoothingParams.from_config(load_planning_config())
GROUND = cloud(ground(np.random.default_rng(0), n=4000))


def _lane_change(t: np.ndarray, width: float = 1.0, duration: float = 4.0) -> np.ndarray:
    """Expert-like plan: constant speed with a smooth (quintic) lateral shift, heading from motion."""
    u = np.clip(t / duration, 0, 1)
    y = width * u**3 * (10 - 15 * u + 6 * u**2)
    dy = width * 30 * u**2 * (1 - u) ** 2 / duration
    return np.stack([V * t, y, np.arctan2(dy, V)], 1)


def _noisy(poses: np.ndarray, rng: np.random.Generator, radius: float) -> np.ndarray:
    """Poses moved by a seeded random offset of length <= radius (yaw channel noisy too)."""
    ang = rng.uniform(-np.pi, np.pi, len(poses))
    r = radius * np.sqrt(rng.uniform(0, 1, len(poses)))
    noise = np.stack([r * np.cos(ang), r * np.sin(ang), rng.normal(0, 0.3, len(poses))], 1)
    return poses + noise


def _drive(cyc, n, student_fn):
    out = []
    for k in range(n):
        t = 0.1 * k
        x = V * t
        fr = frame_at(t, GROUND - np.array([x, 0, 0, 0], dtype=np.float32), V, x=x)
        out.append(cyc.step(fr, Trajectory(student_fn(k), 0.5, t, None, "student"), t, t + 0.05))
    return out


def test_exact_and_deterministic_on_constant_speed_straight_plan():
    raw = Trajectory(np.stack([V * T, 0 * T, 0 * T], 1), 0.5, 0.0)
    a, res, _ = smooth_student(raw, 0.1, V, 0.0, 0.0, PARAMS)
    b, res_b, _ = smooth_student(raw, 0.1, V, 0.0, 0.0, PARAMS)
    assert res < 1e-6 and res == res_b
    assert np.array_equal(a.poses, b.poses)
    assert a.dt == pytest.approx(0.1) and len(a.poses) == 40
    t = a.times
    np.testing.assert_allclose(a.poses, np.stack([V * t, 0 * t, 0 * t], 1), atol=1e-6)
    np.testing.assert_allclose(a.speeds, V, atol=1e-6)


def test_nearly_exact_on_constant_speed_circle():
    w = 0.25  # rad/s at 5 m/s: radius 20 m
    raw = Trajectory(np.stack([V / w * np.sin(w * T), V / w * (1 - np.cos(w * T)), w * T], 1), 0.5, 0.0)
    s, res, _ = smooth_student(raw, 0.1, V, 0.0, V * w, PARAMS)
    assert res < 0.02  # only the (tiny) jerk of the circle is penalised
    t = s.times
    np.testing.assert_allclose(s.poses[:, 2], w * t, atol=0.02)
    np.testing.assert_allclose(s.poses[:, 0], V / w * np.sin(w * t), atol=0.02)


def test_noisy_but_sane_student_is_smoothed_passes_and_is_chosen_after_hysteresis():
    rng = np.random.default_rng(7)
    cyc = cycle()
    n_good = cyc.arbiter.params.student_good_cycles
    ds = _drive(cyc, n_good + 3, lambda k: _noisy(_lane_change(T + 0.1 * k) - [V * 0.1 * k, 0, 0], rng, 0.4))
    # The raw poses alone would fail the comfort checks (this is what smoothing is for) ...
    raw = Trajectory(_noisy(_lane_change(T), np.random.default_rng(7), 0.4), 0.5, 0.0)
    raw_kin = ck.kinematics(trajectory_profile(smooth_resample(raw, 0.1, V, 0.0), 0.5))
    assert raw_kin["jerk"][0] > cyc.arbiter.params.max_jerk
    # ... the fitted plan passes every check and takes over after the hysteresis.
    assert [d.choice for d in ds[: n_good - 1]] == ["frenet"] * (n_good - 1)
    assert all(d.choice == "student" for d in ds[n_good - 1 :])
    for d in ds:
        res = d.checks["student.smoothing_residual"]
        assert res.ok and 0.0 < res.value <= 0.4 + 0.2
        assert all(v.ok for k, v in d.checks.items() if k.startswith("student."))
    pub = ds[-1].trajectory
    assert pub.source == "student" and pub.dt == pytest.approx(0.1) and pub.is_finite()
    kin = ck.kinematics(trajectory_profile(pub, 0.5))
    assert kin["jerk"][0] <= cyc.arbiter.params.max_jerk
    assert kin["yaw_rate"][0] <= cyc.arbiter.params.max_yaw_rate
    assert abs(pub.speeds[0] - V) < 0.5  # continuous with the ego at t0


@pytest.mark.parametrize(
    "garbage",
    [
        lambda rng: np.stack([V * T, 2.0 * (-1.0) ** np.arange(8), 0 * T], 1),  # zig-zag +-2 m
        lambda rng: _noisy(np.stack([V * T, 0 * T, 0 * T], 1), rng, 3.0),  # large noise
    ],
)
def test_garbage_student_is_rejected_by_the_residual_check(garbage):
    rng = np.random.default_rng(3)
    cyc = cycle()
    ds = _drive(cyc, cyc.arbiter.params.student_good_cycles + 2, lambda k: garbage(rng))
    assert all(d.choice != "student" for d in ds)
    assert sum("student_smoothing_residual" in d.reasons for d in ds) >= len(ds) - 1
    res = ds[0].checks["student.smoothing_residual"]
    assert res.threshold == pytest.approx(PARAMS.max_residual_m) and res.value > res.threshold


def test_smoothing_does_not_hide_driving_backwards():
    raw = Trajectory(np.stack([-1.0 * T, 0 * T, 0 * T], 1), 0.5, 0.0)  # reverses, nose forward
    s, _, _ = smooth_student(raw, 0.1, 0.0, 0.0, 0.0, PARAMS)
    prof = trajectory_profile(s, 0.5)
    assert ck.kinematics(prof)["min_speed"][0] < -0.5  # the min_speed check still sees it


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"method": "magic"}, "method"),
        ({"weights": {"jerk": 0.0, "accel": 0.0}}, "weights"),
        ({"max_residual_m": 0.0}, "max_residual_m"),
    ],
)
def test_bad_smoothing_config_is_a_config_error(override, match):
    with pytest.raises(ConfigError, match=match):
        cycle(arbiter={"student_smoothing": override})


def _stopping_plan(creep: float) -> Trajectory:
    """Brakes from 3 m/s to a stop at 2 s (3 m on), then creeps back at ``creep`` m/s."""
    t = 0.1 * np.arange(1, 41)
    x = np.where(t < 2.0, 3.0 * t - 0.75 * t**2, 3.0 - creep * (t - 2.0))
    return Trajectory(np.stack([x, 0.0 * t, 0.0 * t], 1), 0.1, 0.0)


def test_a_stop_that_creeps_back_is_held_where_it_turns():
    plan = _stopping_plan(0.2)  # 0.4 m back by 4 s
    assert ck.kinematics(trajectory_profile(plan, 0.5))["min_speed"][0] < -0.15
    held, k = hold_at_stop(plan, 0.5)
    assert k == 20  # the first step after the stop at 2 s
    np.testing.assert_allclose(held.poses[:k], plan.poses[:k])
    np.testing.assert_allclose(held.poses[k:], np.tile([3.0, 0.0, 0.0], (40 - k, 1)), atol=1e-9)
    kin = ck.kinematics(trajectory_profile(held, 0.5))
    assert kin["min_speed"][0] >= 0.0
    assert held.poses[:, 0].max() <= plan.poses[:, 0].max()  # never further than the plan


def test_a_plan_that_means_to_reverse_is_not_held():
    plan = _stopping_plan(1.0)  # 2 m back: a reversal, left for min_speed to refuse
    held, k = hold_at_stop(plan, 0.5)
    assert k == -1 and held is plan
    forward = Trajectory(np.stack([V * T, 0 * T, 0 * T], 1), 0.5, 0.0)
    assert hold_at_stop(forward, 0.5) == (forward, -1)


def test_the_arbiter_drives_a_creeping_stop_held_and_refuses_it_with_the_hold_off():
    def run(max_m: float) -> list:
        # progress off: on this open road Frenet drives on, and a stopping student gives way
        cyc = cycle(arbiter={"student_smoothing": {"stop_hold_max_m": max_m}, "progress": {"min_ratio": 0.0}})
        plan = _stopping_plan(0.15)  # 0.3 m back
        out = []
        for k in range(cyc.arbiter.params.student_good_cycles + 2):
            t, x = 0.1 * k, 0.3 * k  # the ego keeps 3 m/s; each plan brakes from there
            fr = frame_at(t, GROUND - np.array([x, 0, 0, 0], dtype=np.float32), 3.0, x=x)
            out.append(cyc.step(fr, Trajectory(plan.poses, 0.1, t, None, "student"), t, t + 0.05))
        return out

    held = run(0.5)
    assert held[-1].choice == "student" and held[-1].checks["student.min_speed"].ok
    assert held[-1].trajectory.speeds[-1] == pytest.approx(0.0, abs=1e-6)
    off = run(0.0)
    assert all(d.choice != "student" for d in off)
    assert not off[-1].checks["student.min_speed"].ok
