"""PlanningCycle.prepare / decide: same decisions as step(), decide is the cheap half."""

from __future__ import annotations

import numpy as np
from planning_scenes import box, cloud, cycle, frame_at, ground, student_straight

from vla_edge.planning.cycle import PreparedFrame

V = 5.0


def _scene(seed: int = 3):
    rng = np.random.default_rng(seed)
    base = ground(rng)
    obstacle = box(rng, 30.0, 0.0, 1.5, 1.5, 1.5)  # on the path: student fails, Frenet avoids

    def points(x: float) -> np.ndarray:
        shift = np.array([x, 0, 0, 0])
        return cloud(base - shift, obstacle - shift)

    return points


def _frames(n: int):
    points = _scene()
    for k in range(n):
        t = 0.1 * k
        yield t, frame_at(t, points(V * t), V, x=V * t)


def test_prepare_then_decide_equals_step():
    a, b = cycle(), cycle()
    for k, (t, fr) in enumerate(_frames(12)):
        student = student_straight(V, t) if k % 4 else None
        da = a.step(fr, student, None if student is None else t, t + 0.05)
        prepared = b.prepare(fr, t)
        db = b.decide(prepared, student, None if student is None else t, t + 0.05)
        assert da.choice == db.choice and da.reasons == db.reasons
        np.testing.assert_array_equal(da.trajectory.poses, db.trajectory.poses)
        np.testing.assert_array_equal(da.trajectory.speeds, db.trajectory.speeds)
        assert {k: c.value for k, c in da.checks.items()} == {k: c.value for k, c in db.checks.items()}
    assert {"obstacles", "frenet", "prepare", "decide", "arbiter", "total"} <= set(db.timing_ms)


def test_decide_does_not_redo_the_frame_work():
    cyc = cycle()
    frames = list(_frames(6))
    for t, fr in frames[:-1]:
        cyc.step(fr, None, None, t + 0.05)
    t, fr = frames[-1]
    prepared = cyc.prepare(fr, t)
    assert isinstance(prepared, PreparedFrame) and prepared.frenet is not None
    calls = []
    orig_plan = cyc.planner.plan
    cyc.planner.plan = lambda *a, **k: calls.append(1) or orig_plan(*a, **k)  # type: ignore[method-assign]
    d1 = cyc.decide(prepared, student_straight(V, t), t, t + 0.05)
    # Deciding the same frame again (the node's periodic re-plan) reuses the prepared work
    # and does not add reasons twice.
    d2 = cyc.decide(prepared, None, None, t + 0.1)
    assert calls == [] and d1.choice == "frenet" and d2.choice in ("frenet", "hold_previous")
    assert d2.reasons.count("student_missing") == 1
    assert d1.timing_ms["prepare"] == prepared.timing["prepare"]


def test_prepare_failure_becomes_a_straight_stop(monkeypatch):
    cyc = cycle()
    t, fr = next(iter(_frames(1)))

    def broken(*args, **kwargs):
        raise RuntimeError("simulated planner bug")

    monkeypatch.setattr(cyc.planner, "plan", broken)
    prepared = cyc.prepare(fr, t)
    assert prepared.error is not None
    d = cyc.decide(prepared, student_straight(V, t), t, t + 0.05)
    assert d.choice == "emergency_stop" and "internal_error_RuntimeError" in d.reasons
    assert d.trajectory.is_finite()


def test_pipeline_plan_with_and_without_prepared_frame_agree():
    from vla_edge.candidate import Candidate
    from vla_edge.pipeline import DrivePipeline

    ahead, inline = DrivePipeline(None, cycle()), DrivePipeline(None, cycle())
    stale = None
    for k, (t, fr) in enumerate(_frames(8)):
        cand = Candidate(t, student_straight(V, t)) if k % 3 else None
        # A prepared frame of another sweep is not used: plan() prepares this one itself.
        prepared = stale if k == 5 else ahead.prepare(fr, t)
        da = ahead.plan(fr, cand, t + 0.05, prepared=prepared)
        db = inline.plan(fr, cand, t + 0.05)
        assert da.choice == db.choice and da.reasons == db.reasons
        np.testing.assert_array_equal(da.trajectory.poses, db.trajectory.poses)
        stale = prepared
