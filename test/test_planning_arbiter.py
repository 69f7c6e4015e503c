"""PlanningCycle + Arbiter scenarios from issue 4, on synthetic point clouds (ground + boxes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from planning_scenes import box, cloud, cycle, frame_at, ground, student_straight

from vla_edge.config import load_config
from vla_edge.errors import ConfigError
from vla_edge.planning import CHOICES, PlanningCycle
from vla_edge.planning import checks as ck
from vla_edge.planning.kinematics import trajectory_profile
from vla_edge.types import Trajectory

V = 5.0


def _drive(cyc, n, points_fn, student_fn, v=V, now_lag=0.05, stale=None, path=None, t0=0.0):
    """Run n cycles of an ego driving straight at v; returns the decisions."""
    out = []
    for k in range(n):
        t = t0 + 0.1 * k
        x = v * t
        fr = frame_at(t, points_fn(x), v, x=x, stale=stale, path=None if path is None else path(x))
        student = student_fn(k, t)
        out.append(cyc.step(fr, student, None if student is None else t, t + now_lag))
    return out


def _static_scene(seed=0, *boxes_world):
    rng = np.random.default_rng(seed)
    base = ground(rng)
    bxs = [box(rng, *b) for b in boxes_world]

    def points(x):
        shifted = [b - np.array([x, 0, 0, 0]) for b in bxs]
        return cloud(base - np.array([x, 0, 0, 0]), *shifted)

    return points


def _path(x):
    return np.stack([np.linspace(-5, 80, 60), np.zeros(60)], 1)


def test_from_config_without_args_loads_the_four_yaml_files():
    cyc = PlanningCycle.from_config()
    assert cyc.planner.params.n_candidates == 800
    assert cyc.arbiter.params.max_jerk == pytest.approx(8.37)
    assert cyc.arbiter.params.emergency.decel == pytest.approx(2.5)
    assert cyc.arbiter.params.emergency.jerk == pytest.approx(1.5)


def test_partial_arbiter_section_deep_merges_and_bad_values_fail():
    # One key changes; every other key keeps the shipped config/arbiter.yaml value.
    shipped = load_config("arbiter")["arbiter"]
    cyc = PlanningCycle.from_config({"arbiter": {"limits": {"max_jerk": 5.0}}})
    assert cyc.arbiter.params.max_jerk == 5.0
    assert cyc.arbiter.params.max_lat_accel == shipped["limits"]["max_lat_accel"]
    assert cyc.arbiter.params.ttc_min == shipped["collision"]["ttc_min"]
    with pytest.raises(ConfigError, match=r"arbiter\.limits\.max_jerk = -1\.0.*0 < value"):
        PlanningCycle.from_config({"arbiter": {"limits": {"max_jerk": -1.0}}})
    with pytest.raises(ConfigError, match=r"unknown key 'arbiter\.limits\.max_jerkk'"):
        PlanningCycle.from_config({"arbiter": {"limits": {"max_jerkk": 5.0}}})


def test_good_student_is_used_after_hysteresis():
    cyc = cycle()
    n_good = cyc.arbiter.params.student_good_cycles
    ds = _drive(cyc, n_good + 2, _static_scene(0), lambda k, t: student_straight(V, t))
    assert [d.choice for d in ds[: n_good - 1]] == ["frenet"] * (n_good - 1)
    assert "student_hysteresis_wait" in ds[0].reasons
    assert ds[n_good - 1].choice == "student"
    assert ds[-1].choice == "student" and ds[-1].trajectory.source == "student"
    assert all(v.ok for k, v in ds[-1].checks.items() if k.startswith("student."))
    assert ds[-1].trajectory.dt == pytest.approx(0.1)


def test_student_path_through_obstacle_falls_back_to_frenet_that_avoids_it():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    scene = _static_scene(1, (20.0, 0.0, 1.5, 1.5, 1.5))
    ds = _drive(cyc, 3, scene, lambda k, t: student_straight(V, t))
    for d in ds:
        assert d.choice == "frenet"
        assert "student_collision" in d.reasons
        assert d.checks["student.collision"].value > 0 and not d.checks["student.collision"].ok
        assert d.checks["frenet.collision"].value == 0 and d.checks["frenet.collision"].ok
        assert ck.collision(d.trajectory, d.obstacles, cyc.footprint)[0] == 0
        near = np.argmin(np.abs(d.trajectory.poses[:, 0] - (20.0 - V * d.stamp)))
        assert abs(d.trajectory.poses[near, 1]) > 1.5


def test_blocked_corridor_leads_to_jerk_limited_emergency_stop():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    scene = _static_scene(2, (10.0, 0.0, 1.0, 40.0, 2.0, 10000))
    d = _drive(cyc, 1, scene, lambda k, t: student_straight(6.0, t), v=6.0)[0]
    assert d.choice == "emergency_stop"
    assert "frenet_no_feasible_candidate" in d.reasons and "emergency_no_safe_plan" in d.reasons
    traj = d.trajectory
    assert traj.source == "emergency_stop" and traj.is_finite()
    v = traj.speeds
    assert np.all(np.diff(v) <= 1e-9) and v[-1] == pytest.approx(0.0, abs=1e-6)
    a = np.diff(np.concatenate([[6.0], v])) / traj.dt
    assert a.min() >= -2.5 - 1e-6  # MRM deceleration
    build_up = a[: int(2.5 / 1.5 / traj.dt)]
    assert np.all(np.diff(build_up) >= -1.5 * traj.dt - 1e-6)  # MRM jerk while braking builds up
    assert d.checks["emergency.jerk"].ok


def test_nan_student_falls_back():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})

    def student(k, t):
        s = student_straight(V, t)
        s.poses[2, 0] = np.nan
        return s

    d = _drive(cyc, 1, _static_scene(3), student)[0]
    assert d.choice == "frenet"
    assert "student_finite_input" in d.reasons
    assert d.checks["student.finite_input"].value == 1


def test_stale_student_falls_back():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    fr = frame_at(1.0, _static_scene(4)(0.0), V)
    d = cyc.step(fr, student_straight(V, 1.0), 0.5, 1.05)
    assert d.choice == "frenet"
    assert "student_student_age" not in d.reasons and "student_age" in d.reasons
    assert d.checks["student.age"].value == pytest.approx(0.55)
    assert d.checks["student.age"].threshold == pytest.approx(0.3)


NO_SMOOTHING = {"enabled": False}


@pytest.mark.parametrize(
    ("poses_fn", "failing", "smoothing"),
    [
        (lambda t: np.stack([V * t + 3.0 * t**2, 0 * t, 0 * t], 1), "student_lon_accel_max", {}),  # 6 m/s^2
        (lambda t: np.stack([V * t + 3.0 * t**2, 0 * t, 0 * t], 1), "student_lon_accel_max", NO_SMOOTHING),
        # slalom
        (lambda t: np.stack([V * t, 1.5 * np.sin(4 * t), 0 * t], 1), "student_lat_accel", NO_SMOOTHING),
        # smoothing cannot fit a 1.5 m slalom at 0.6 Hz: the residual check rejects it
        (lambda t: np.stack([V * t, 1.5 * np.sin(4 * t), 0 * t], 1), "student_smoothing_residual", {}),
        (lambda t: np.stack([V * t, 0 * t, 1.2 * t], 1), "student_yaw_rate", NO_SMOOTHING),  # spins in place
        (lambda t: np.stack([V * t, 0 * t, 1.2 * t], 1), "student_yaw_rate", {}),
    ],
)
def test_kinematically_infeasible_student_falls_back(poses_fn, failing, smoothing):
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}, "student_smoothing": smoothing})
    t = 0.5 * np.arange(1, 9)
    d = _drive(cyc, 1, _static_scene(5), lambda k, s: Trajectory(poses_fn(t), 0.5, s, None, "student"))[0]
    assert d.choice == "frenet"
    assert failing in d.reasons


def test_flapping_student_is_held_off_by_hysteresis():
    cyc = cycle()
    n_good = cyc.arbiter.params.student_good_cycles

    def student(k, t):
        s = student_straight(V, t)
        if k % 2:
            s.poses[0, 0] = np.inf
        return s

    ds = _drive(cyc, 2 * n_good, _static_scene(6), student)  # ends on a bad cycle
    assert all(d.choice == "frenet" for d in ds)
    assert max(d.state["student_streak"] for d in ds) == 1
    # Then n_good clean cycles in a row hand control back.
    more = _drive(cyc, n_good, _static_scene(6), lambda k, t: student_straight(V, t), t0=0.1 * 2 * n_good)
    assert [d.choice for d in more][-1] == "student"
    assert [d.choice for d in more][:-1] == ["frenet"] * (n_good - 1)


def test_inputs_briefly_missing_hold_previous_then_emergency():
    cyc = cycle()
    scene = _static_scene(7)
    ds = _drive(cyc, 2, scene, lambda k, t: None)
    assert ds[-1].choice == "frenet"
    max_cycles = cyc.arbiter.params.hold_max_cycles
    # Reference path goes stale and no student: nothing fresh can be planned.
    held = _drive(cyc, max_cycles + 1, scene, lambda k, t: None, stale={"reference_path"}, t0=0.2)
    assert [d.choice for d in held[:max_cycles]] == ["hold_previous"] * max_cycles
    assert held[max_cycles].choice == "emergency_stop"
    assert "reference_path_stale" in held[0].reasons and "hold_previous" in held[0].reasons
    # The held plan is the previous one, moved along with the ego: continuous at t0.
    prev, hold = ds[-1].trajectory, held[0].trajectory
    np.testing.assert_allclose(hold.poses[:10, 0], prev.poses[1:11, 0] - prev.poses[0, 0], atol=0.05)


def test_hold_is_refused_when_the_previous_plan_now_collides():
    cyc = cycle()
    rng = np.random.default_rng(8)
    base = ground(rng)
    _drive(cyc, 2, lambda x: cloud(base - [x, 0, 0, 0]), lambda k, t: None)
    blocked = cloud(base, box(rng, 8.0, 0.0, 1.0, 1.0, 1.5))  # appears right ahead
    d = cyc.step(frame_at(0.2, blocked, V, x=1.0, stale={"reference_path"}), None, None, 0.25)
    assert d.choice == "emergency_stop"
    assert not d.checks["hold.collision"].ok


def test_emergency_is_latched_until_plans_pass_again():
    cyc = cycle()
    wall = _static_scene(9, (9.0, 0.0, 1.0, 40.0, 2.0, 10000))
    d = _drive(cyc, 1, wall, lambda k, t: None)[0]
    assert d.choice == "emergency_stop"
    release = cyc.arbiter.params.release_emergency_cycles
    free = _drive(cyc, release, _static_scene(9), lambda k, t: None, t0=0.1)
    assert [x.choice for x in free[:-1]] == ["emergency_stop"] * (release - 1)
    assert "emergency_latched" in free[0].reasons
    assert free[-1].choice == "frenet"


def test_student_from_previous_frame_is_rebased():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    scene = _static_scene(10)
    _drive(cyc, 1, scene, lambda k, t: student_straight(V, t))
    x = V * 0.1
    d = cyc.step(frame_at(0.1, scene(x), V, x=x), student_straight(V, 0.0), 0.05, 0.15)
    assert d.checks["student.frame_known"].ok
    assert d.choice == "student"
    np.testing.assert_allclose(d.trajectory.poses[0, 0], V * 0.1, atol=0.05)
    # A plan from a frame the cycle never saw is refused.
    d = cyc.step(frame_at(0.2, scene(2 * x), V, x=2 * x), student_straight(V, 0.1234), 0.15, 0.25)
    assert not d.checks["student.frame_known"].ok and d.choice != "student"


def test_invalid_ego_state_and_points_degrade_safely():
    cyc = cycle()
    scene = _static_scene(11)
    _drive(cyc, 2, scene, lambda k, t: student_straight(V, t))
    fr = frame_at(0.2, scene(1.0), V, x=1.0)
    fr.ego = type(fr.ego)(0.2, np.nan, 0.0, 0.0, V)
    d = cyc.step(fr, student_straight(V, 0.2), 0.2, 0.25)
    assert "ego_state_invalid" in d.reasons and d.choice == "emergency_stop"
    assert d.trajectory.is_finite()
    fr = frame_at(0.3, np.zeros((5, 2), dtype=np.float32), V, x=1.5)
    d = cyc.step(fr, student_straight(V, 0.3), 0.3, 0.35)
    assert "points_invalid" in d.reasons and d.choice == "emergency_stop"


def test_decision_to_dict_is_json_safe():
    cyc = cycle()
    s = student_straight(V, 0.0)
    s.poses[1, 1] = np.inf
    d = cyc.step(
        frame_at(0.0, _static_scene(12, (20, 0, 1, 1, 1))(0.0), V), s, 0.0, 0.05, np.array([np.nan, 1.0])
    )
    blob = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert blob["choice"] in CHOICES
    assert set(blob["timing_ms"]) >= {"obstacles", "frenet", "arbiter", "total"}
    for c in blob["checks"].values():
        assert set(c) == {"value", "threshold", "ok", "index"}
    assert len(blob["trajectory"]["poses"]) == len(d.trajectory.poses)
    assert blob["obstacles"]["n_clusters"] >= 1


def test_output_is_within_limits_in_all_scenarios():
    cyc = cycle()
    p = cyc.arbiter.params
    scenes = [
        _static_scene(13),
        _static_scene(13, (15, 0, 1.5, 1.5, 1.5)),
        _static_scene(13, (9, 0, 1, 40, 2, 8000)),
    ]
    for scene in scenes:
        for d in _drive(cyc, 3, scene, lambda k, t: student_straight(V, t)):
            kin = ck.kinematics(trajectory_profile(d.trajectory, p.min_speed_for_curvature))
            assert kin["jerk"][0] <= p.max_jerk and kin["lat_accel"][0] <= p.max_lat_accel
            assert p.min_lon_accel <= kin["min_lon_accel"][0] and kin["max_lon_accel"][0] <= p.max_lon_accel
        cyc.reset()


def test_hold_ends_when_the_held_plan_gets_too_old():
    cyc = cycle(arbiter={"hold_previous": {"max_cycles": 100}})
    scene = _static_scene(14)
    _drive(cyc, 2, scene, lambda k, t: None)  # last fresh Frenet plan made at t=0.1
    held = _drive(cyc, 8, scene, lambda k, t: None, stale={"reference_path"}, t0=0.2)
    max_age = cyc.arbiter.params.hold_max_age
    choices = [d.choice for d in held]
    first_stop = choices.index("emergency_stop")
    assert first_stop >= 4 and choices[:first_stop] == ["hold_previous"] * first_stop
    ages = [d.checks["hold.age"].value for d in held[: first_stop + 1]]
    assert all(a <= max_age for a in ages[:-1]) and ages[-1] > max_age  # age of the plan, not of the hold
    assert ages[-1] == pytest.approx(0.1 * first_stop + 0.1)


def test_stale_camera_is_not_critical_but_stale_odometry_is():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    d = _drive(cyc, 1, _static_scene(15), lambda k, t: student_straight(V, t), stale={"camera_front"})[0]
    assert d.choice == "student" and d.checks["student.stale_inputs"].value == 0
    d = _drive(cyc, 1, _static_scene(15), lambda k, t: student_straight(V, t), stale={"odometry"}, t0=0.1)[0]
    assert d.choice not in ("student", "frenet")
    assert not d.checks["student.stale_inputs"].ok and not d.checks["frenet.stale_inputs"].ok


def test_active_student_is_dropped_when_the_ego_state_turns_invalid():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    scene = _static_scene(16)
    assert _drive(cyc, 1, scene, lambda k, t: student_straight(V, t))[0].choice == "student"
    fr = frame_at(0.1, scene(0.5), V, x=0.5)
    fr.ego = type(fr.ego)(0.1, 0.5, 0.0, 0.0, 1e6)  # implausible speed: sensor fault
    d = cyc.step(fr, student_straight(V, 0.1), 0.1, 0.15)
    assert not d.checks["student.ego_valid"].ok and d.choice != "student"
    assert d.trajectory.is_finite()


def test_sideways_student_fails_heading_check():
    # Without smoothing the yaw column is published, so it must agree with the motion.
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}, "student_smoothing": NO_SMOOTHING})
    t = 0.5 * np.arange(1, 9)
    crab = np.stack([V * t, 2.5 * t, 0 * t], 1)  # drifts left at 2.5 m/s with the nose straight ahead
    d = _drive(cyc, 1, _static_scene(17), lambda k, s: Trajectory(crab, 0.5, s, None, "student"))[0]
    assert d.choice == "frenet" and "student_heading_error" in d.reasons
    assert d.checks["student.heading_error"].value >= np.arctan2(2.5, V) - 0.02  # the crab angle (or more)
    # With smoothing the heading comes from the fitted motion (never sideways); the crab becomes
    # a turn out of the ego lane, which the corridor check still rejects.
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    d = _drive(cyc, 1, _static_scene(17), lambda k, s: Trajectory(crab, 0.5, s, None, "student"))[0]
    assert d.choice == "frenet" and "student_corridor" in d.reasons
    assert d.checks["student.heading_error"].value < 0.05


def test_late_frame_holds_then_stops():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    scene = _static_scene(18)
    assert _drive(cyc, 1, scene, lambda k, t: student_straight(V, t))[0].choice == "student"
    late = _drive(cyc, 4, scene, lambda k, t: student_straight(V, t), now_lag=0.4, t0=0.1)
    assert "student_frame_latency" in late[0].reasons and "frenet_frame_latency" in late[0].reasons
    assert [d.choice for d in late] == ["hold_previous"] * 3 + ["emergency_stop"]


def test_clock_jump_back_resets_state():
    cyc = cycle()
    scene = _static_scene(19)
    _drive(cyc, 3, scene, lambda k, t: student_straight(V, t), t0=100.0)
    d = _drive(cyc, 1, scene, lambda k, t: student_straight(V, t), t0=5.0)[0]
    assert "time_jump_reset" in d.reasons
    assert d.state["student_streak"] == 1 and d.state["previous_choice"] == ""


def test_internal_error_still_publishes_a_straight_stop(monkeypatch, caplog):
    cyc = cycle()
    scene = _static_scene(20)
    _drive(cyc, 2, scene, lambda k, t: None)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated planner bug")

    monkeypatch.setattr(cyc.planner, "plan", broken)
    d = cyc.step(frame_at(0.2, scene(1.0), V, x=1.0), None, None, 0.25)
    assert d.choice == "emergency_stop" and "internal_error_RuntimeError" in d.reasons
    assert d.trajectory.is_finite() and d.trajectory.speeds[0] < V
    assert "planning cycle failed" in caplog.text
    json.dumps(d.to_dict(), allow_nan=False)


def test_student_from_the_future_and_garbage_scores_are_rejected():
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})
    fr = frame_at(1.0, _static_scene(21)(0.0), V)
    d = cyc.step(fr, student_straight(V, 1.0), 1.5, 1.05)  # stamped 0.45 s after "now"
    assert not d.checks["student.age"].ok and d.choice != "student"
    d = cyc.step(
        frame_at(1.1, _static_scene(21)(0.5), V, x=0.5), student_straight(V, 1.1), 1.1, 1.15, ["a", "b"]
    )
    assert not d.checks["student.finite_input"].ok and d.choice != "student"


def _student_braking(v: float, stamp: float, decel: float = 1.5, v_end: float = 1.0) -> Trajectory:
    """A comfortable plan that slows to a crawl (8 x 0.5 s): safe, but it stops making progress."""
    t = 0.5 * np.arange(1, 9)
    tb = (v - v_end) / decel
    tq = np.minimum(t, tb)
    x = v * tq - 0.5 * decel * tq**2 + v_end * np.maximum(t - tb, 0.0)
    return Trajectory(np.stack([x, 0 * t, 0 * t], axis=1), 0.5, stamp, None, "student")


def test_stalling_student_gives_way_to_a_frenet_plan_that_drives_on():
    n = cycle().arbiter.params.student_good_cycles + 3
    scene = _static_scene(0)
    # Without the progress comparison the braking student passes every check and drives ...
    off = _drive(
        cycle(arbiter={"progress": {"min_ratio": 0.0}}), n, scene, lambda k, t: _student_braking(V, t)
    )
    assert off[-1].choice == "student", off[-1].reasons
    assert "student.progress" not in off[-1].checks or off[-1].checks["student.progress"].ok
    # ... with it, the Frenet plan (clear road, driving on) is preferred, and the reason says why.
    on = _drive(cycle(), n, scene, lambda k, t: _student_braking(V, t))
    assert [d.choice for d in on] == ["frenet"] * n
    last = on[-1]
    assert "student_progress" in last.reasons
    assert last.checks["student.progress"].value < cycle().arbiter.params.progress_min_ratio
    # A student that keeps pace is not affected by the comparison.
    keep = _drive(cycle(), n, scene, lambda k, t: student_straight(V, t))
    assert keep[-1].choice == "student" and keep[-1].checks["student.progress"].ok


def test_progress_ratio_over_the_common_horizon():
    fast = student_straight(5.0, 0.0)
    half = student_straight(2.5, 0.0)
    assert ck.progress_within(fast, 2.0) == pytest.approx(10.0)
    assert ck.progress_ratio(half, fast)[0] == pytest.approx(0.5)
    assert ck.progress_ratio(fast, Trajectory(np.zeros((8, 3)), 0.5, 0.0, None, "frenet"))[0] == 1.0


def test_a_next_ranked_mode_that_passes_is_published_instead_of_the_fallback():
    """Best mode through an obstacle, second mode too, third passes it on the left: the third drives."""
    scene = _static_scene(1, (20.0, 0.0, 1.5, 1.5, 1.5))
    trust = {"hysteresis": {"trust_student_at_start": True}, "student": {"alternative_modes": 3}}

    def modes(t):
        return [student_straight(V, t, lateral=0.3), student_straight(V, t, lateral=2.5)]

    def run(cyc):
        out = []
        for k in range(3):
            t = 0.1 * k
            fr = frame_at(t, scene(V * t), V, x=V * t)
            out.append(cyc.step(fr, student_straight(V, t), t, t + 0.05, student_alternatives=modes(t)))
        return out

    for d in run(cycle(arbiter=trust)):
        assert d.choice == "student", d.reasons
        assert d.checks["student.mode_rank"].value == 2
        assert "student_alternative_mode" in d.reasons and "best_mode_student_collision" in d.reasons
        assert all(v.ok for k, v in d.checks.items() if k.startswith("student."))
        assert ck.collision(d.trajectory, d.obstacles, cycle().footprint)[0] == 0
        assert d.trajectory.poses[-1, 1] > 2.0
    # Only one extra mode allowed: the second also collides, so the Frenet fallback drives.
    for d in run(cycle(arbiter={**trust, "student": {"alternative_modes": 1}})):
        assert d.choice == "frenet" and "student_collision" in d.reasons
        assert "student.mode_rank" not in d.checks
    # The shipped default (alternative_modes 0): the best mode only.
    for d in run(cycle(arbiter={"hysteresis": {"trust_student_at_start": True}})):
        assert d.choice == "frenet" and "student.mode_rank" not in d.checks


def test_alternatives_are_not_tried_when_the_frame_itself_is_refused():
    """A stale student fails for every mode alike: no mode is checked, the fallback drives."""
    scene = _static_scene(1, (20.0, 0.0, 1.5, 1.5, 1.5))
    cyc = cycle(arbiter={"hysteresis": {"trust_student_at_start": True}, "student": {"alternative_modes": 3}})
    fr = frame_at(1.0, scene(V), V, x=V)
    d = cyc.step(
        fr, student_straight(V, 1.0), 1.0 - 5.0, 1.05, student_alternatives=[student_straight(V, 1.0, 2.5)]
    )
    assert d.choice == "frenet" and "student_age" in d.reasons and "student.mode_rank" not in d.checks


def test_a_slower_alternative_mode_displaces_a_usable_fallback_only_at_nearly_its_pace():
    """Best mode off the road; the next mode is safe but slows down (about 0.75 of the Frenet
    plan's distance): it drives at the best mode's ratio, not at ``alternative_min_ratio``."""
    scene = _static_scene(2)
    trust = {"hysteresis": {"trust_student_at_start": True}, "student": {"alternative_modes": 3}}

    def run(progress):
        cyc = cycle(arbiter={**trust, "progress": progress})
        d = None
        for k in range(3):
            t = 0.1 * k
            fr = frame_at(t, scene(V * t), V, x=V * t)
            slow = _student_braking(V, t, decel=1.0, v_end=0.6 * V)
            d = cyc.step(fr, student_straight(V, t, lateral=-9.0), t, t + 0.05, student_alternatives=[slow])
        return d

    loose = run({"alternative_min_ratio": 0.6})
    assert loose.choice == "student" and loose.checks["student.mode_rank"].value == 1, loose.reasons
    ratio = loose.checks["student.progress"].value
    assert 0.6 < ratio < 0.9
    strict = run({"alternative_min_ratio": 0.9})
    assert strict.choice == "frenet" and "student.mode_rank" not in strict.checks, strict.reasons
