"""The arbiter's speed-rule repair: a student plan too fast past a person is slowed along its
own path (vla_edge/planning/retime.py), checked again and published; the real planning cycle on
a synthetic LiDAR scene (ground + a person-sized box beside the lane)."""

from __future__ import annotations

import numpy as np
import pytest
from planning_scenes import box, cloud, cycle, frame_at, ground, student_straight

from vla_edge.planning.kinematics import trajectory_profile
from vla_edge.planning.retime import retime_along_path
from vla_edge.types import Trajectory

V = 5.0


def _straight(v: float, n: int = 80, dt: float = 0.1) -> Trajectory:
    t = dt * np.arange(1, n + 1)
    return Trajectory(np.column_stack([v * t, np.zeros(n), np.zeros(n)]), dt, 0.0)


def test_slowed_plan_keeps_the_path_and_stays_under_the_cap_or_the_braking_allowance() -> None:
    plan = _straight(6.0)
    slowed = retime_along_path(plan, 6.0, lambda xy: np.where(xy[:, 0] > 20.0, 3.0, 10.0), decel=1.5)
    assert slowed is not None and slowed.poses.shape == plan.poses.shape and slowed.dt == plan.dt
    np.testing.assert_allclose(slowed.poses[:, 1:], 0.0, atol=1e-12)  # same (straight) path
    x = slowed.with_origin()[:, 0]
    assert np.all(np.diff(x) >= -1e-12) and x[-1] < plan.poses[-1, 0]
    seg_v = np.diff(x) / plan.dt
    t = plan.dt * np.arange(1, len(seg_v) + 1)
    beyond = x[1:] > 20.5
    assert np.all(seg_v[beyond] <= np.maximum(3.0, 6.0 - 1.5 * t[beyond]) + 0.05)
    assert np.all(seg_v[x[1:] < 19.0] >= 6.0 - 1.5 * t[x[1:] < 19.0] - 0.05)  # no slower than it must
    np.testing.assert_allclose(slowed.speeds[-10:], 3.0, atol=0.05)


def test_a_plan_under_the_cap_is_unchanged_and_a_standing_plan_has_nothing_to_slow() -> None:
    plan = _straight(4.0)
    same = retime_along_path(plan, 4.0, lambda xy: np.full(len(xy), 6.0), decel=1.5)
    assert same is not None
    np.testing.assert_allclose(same.poses, plan.poses, atol=2e-3)
    assert (
        retime_along_path(Trajectory(np.zeros((8, 3)), 0.5, 0.0), 0.0, lambda xy: np.zeros(len(xy)), 1.5)
        is None
    )
    bad = _straight(4.0)
    bad.poses[3, 0] = np.nan
    assert retime_along_path(bad, 4.0, lambda xy: np.full(len(xy), 1.0), 1.5) is None


def test_a_cap_of_zero_stops_the_plan_where_it_is_reached() -> None:
    slowed = retime_along_path(_straight(2.0), 2.0, lambda xy: np.where(xy[:, 0] > 3.0, 0.0, 5.0), decel=3.0)
    assert slowed is not None
    assert slowed.poses[:, 0].max() <= 3.0 + 1e-9
    assert slowed.speeds[-1] == 0.0


def _person_scene(x_person: float = 25.0, lateral: float = 2.6):
    rng = np.random.default_rng(3)
    base = ground(rng)
    person = box(rng, x_person, lateral, 0.5, 0.5, 1.75, n=600)

    def points(x: float) -> np.ndarray:
        return cloud(base - np.array([x, 0, 0, 0]), person - np.array([x, 0, 0, 0]))

    return points


def _drive(cyc, n: int, points) -> list:
    out = []
    for k in range(n):
        t = 0.1 * k
        fr = frame_at(t, points(V * t), V, x=V * t)
        out.append(cyc.step(fr, student_straight(V, t), t, t + 0.05))
    return out


@pytest.mark.parametrize("retime", [True, False])
def test_student_too_fast_past_a_person_is_slowed_not_replaced(retime: bool) -> None:
    cyc = cycle(arbiter={"student": {"speed_rule_retime": retime}})
    decisions = _drive(cyc, 8, _person_scene())
    last = decisions[-1]
    if not retime:  # the rule vetoes the student: the fallback drives
        assert last.choice != "student" and "student_speed_rule" in last.reasons
        return
    assert last.choice == "student", last.reasons
    assert "student_speed_retimed" in last.reasons and last.checks["student.speed_retimed"].ok
    assert all(v.ok for k, v in last.checks.items() if k.startswith("student."))
    traj = last.trajectory
    assert traj.source == "student" and np.all(np.isfinite(traj.poses))
    # slower than the student asked for, on its path (straight ahead)
    assert traj.poses[-1, 0] < V * traj.times[-1] - 1.0
    assert np.abs(traj.poses[:, 1]).max() < 0.05
    prof = trajectory_profile(traj, 0.5)
    assert prof.speed.max() <= V + 0.3
