"""DriveLoop: the arbiter's timing policy on a fake clock, with the real planning cycle.

No DDS and no sleeps: every time is a number handed to the loop.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from planning_scenes import cloud, cycle, frame_at, ground, student_straight

from vla_edge import candidate as codec
from vla_edge.candidate import Candidate
from vla_edge.config import load_config
from vla_edge.drive_loop import DriveLoop
from vla_edge.params import load_params_file, unflatten
from vla_edge.pipeline import DrivePipeline

V = 5.0
DEADLINE, CYCLE = 0.07, 0.1  # s; the shipped values are read in test_from_config_reads_drive_yaml


def _points(x: float) -> np.ndarray:
    return cloud(ground(np.random.default_rng(3)) - np.array([x, 0, 0, 0]))


def _frame(t: float):
    return frame_at(t, _points(V * t), V, x=V * t)


def _loop(**kw) -> DriveLoop:
    return DriveLoop(DrivePipeline(None, cycle()), DEADLINE, CYCLE, **kw)


def _cand(t: float) -> Candidate:
    return Candidate(t, student_straight(V, t), scores=np.zeros(3), timing_ms={"inference": 5.0})


def test_from_config_reads_drive_yaml():
    cfg = unflatten(load_params_file("config/drive.yaml"))
    loop = DriveLoop.from_config(cfg, DrivePipeline(None, cycle()))
    assert loop.deadline_s == pytest.approx(cfg["arbiter"]["deadline_ms"] / 1000.0)
    assert loop.cycle_period_s == pytest.approx(cfg["arbiter"]["cycle_period_ms"] / 1000.0)
    assert loop.time_jump_s == pytest.approx(cfg["arbiter"]["time_jump_ms"] / 1000.0)


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf")])
def test_bad_timing_values_are_refused(bad):
    with pytest.raises(ValueError, match="deadline_s"):
        DriveLoop(DrivePipeline(None, cycle()), bad, CYCLE)


def test_candidate_decides_at_once_and_uses_it():
    loop = _loop()
    assert loop.tick(0.0) == [] and not loop.has_frame
    fr = _frame(1.0)
    loop.offer_frame(fr, 1.0)
    assert loop.tick(1.01) == []  # waiting for the candidate, not yet past the deadline
    loop.offer_candidate(_cand(1.0), 1.02)
    (d,) = loop.tick(1.02)
    assert d.trigger == "candidate" and d.candidate is not None and d.candidate.stamp == 1.0
    assert d.slot.frame is fr and d.now == 1.02 and d.decision.trajectory.is_finite()
    assert loop.tick(1.03) == []  # decided: nothing more until the cycle period


def test_no_candidate_decides_at_once_without_waiting_for_the_deadline():
    loop = _loop()
    loop.offer_frame(_frame(1.0), 1.0)
    loop.offer_candidate(Candidate(1.0, error="ModelError: injected"), 1.005)
    (d,) = loop.tick(1.005)
    assert d.trigger == "no_candidate" and d.candidate is None
    assert "student_missing" in d.decision.reasons


def test_first_frame_with_failed_model_is_decided_at_once():
    # The first frame ever, no candidate ever: the failure report alone decides it.
    loop = _loop()
    loop.offer_candidate(Candidate(1.0, error="ModelError: injected"), 0.99)  # report before frame
    loop.offer_frame(_frame(1.0), 1.0)
    (d,) = loop.tick(1.0)
    assert d.trigger == "no_candidate"


def test_watchdog_exactly_at_the_deadline_whatever_the_peer_does():
    loop = _loop()
    loop.offer_frame(_frame(1.0), 1.0)
    assert loop.tick(1.0 + DEADLINE - 1e-3) == []
    (d,) = loop.tick(1.0 + DEADLINE)
    assert d.trigger == "watchdog" and d.now - d.slot.rx == pytest.approx(DEADLINE)
    assert loop.stats["watchdog"] == 1
    # The late candidate of that frame does not produce a second decision of it.
    loop.offer_candidate(_cand(1.0), 1.2)
    assert [x.trigger for x in loop.tick(1.0 + DEADLINE + 0.01)] == []


def test_watchdog_uses_the_latest_older_candidate():
    loop = _loop()
    loop.offer_frame(_frame(1.0), 1.0)
    loop.offer_candidate(_cand(1.0), 1.01)
    loop.tick(1.01)
    loop.offer_frame(_frame(1.1), 1.1)
    (d,) = loop.tick(1.1 + DEADLINE)
    assert d.trigger == "watchdog" and d.candidate is not None and d.candidate.stamp == 1.0


def test_cycle_redecides_the_latest_frame_without_new_sweeps():
    loop = _loop()
    loop.offer_frame(_frame(1.0), 1.0)
    loop.tick(1.0 + DEADLINE)
    assert loop.tick(1.0 + DEADLINE + CYCLE - 1e-3) == []
    (d,) = loop.tick(1.0 + DEADLINE + CYCLE)
    assert d.trigger == "cycle" and d.slot.frame.stamp == 1.0


@pytest.mark.parametrize("prepare_ahead", [True, False])
def test_each_frame_is_prepared_once(prepare_ahead, monkeypatch):
    """Frame-only work (it advances the tracker) runs once per frame, however often it is decided."""
    loop = _loop(prepare_ahead=prepare_ahead)
    seen = []
    prepare = loop.pipeline.cycle.prepare
    monkeypatch.setattr(loop.pipeline.cycle, "prepare", lambda f, t: seen.append(f.stamp) or prepare(f, t))
    loop.offer_frame(_frame(1.0), 1.0)
    assert loop.tick(1.0) == []  # prepares ahead when on
    loop.offer_candidate(Candidate(1.0, error="E: x"), 1.0)
    triggers = [d.trigger for k in range(6) for d in loop.tick(1.0 + (CYCLE + 1e-6) * k)]
    assert triggers == ["no_candidate"] + ["cycle"] * 5 and seen == [1.0]


@pytest.mark.parametrize("prepare_ahead", [True, False])
def test_superseded_frame_is_decided_before_the_newer_one(prepare_ahead):
    loop = _loop(prepare_ahead=prepare_ahead)
    loop.offer_frame(_frame(1.0), 1.0)
    assert loop.tick(1.0) == []  # prepares frame 1.0 ahead (when on)
    loop.offer_frame(_frame(1.05), 1.05)  # before 1.0's deadline
    loop.offer_candidate(_cand(1.05), 1.06)
    (old,) = loop.tick(1.06)
    (new,) = loop.tick(1.07)  # the caller ticks again with the time after the first decision
    assert (old.trigger, old.slot.frame.stamp, new.trigger, new.slot.frame.stamp) == (
        "superseded",
        1.0,
        "candidate",
        1.05,
    )
    assert old.candidate is None  # never the newer frame's candidate
    assert new.now == 1.07


def test_only_the_newest_undecided_frame_waits():
    loop = _loop()
    for k, t in enumerate((1.0, 1.05, 1.1)):  # two undecided replaced, no tick in between
        loop.offer_frame(_frame(t), t + 0.001 * k)
    stamps = [d.slot.frame.stamp for t in (1.2, 1.21, 1.22) for d in loop.tick(t)]
    assert stamps == [1.05, 1.1] and loop.stats["superseded_dropped"] == 1 and loop.drops.dropped == 1


def test_older_frame_after_a_newer_one_is_refused():
    loop = _loop()
    loop.offer_frame(_frame(2.0), 2.0)
    loop.tick(2.0 + DEADLINE)
    assert not loop.offer_frame(_frame(1.9), 2.1)
    assert not loop.offer_frame(_frame(2.0), 2.1)  # same stamp again
    assert not loop.offer_frame(_frame(float("nan")), 2.1)
    assert loop.stats["out_of_order_frames"] == 3
    assert loop.tick(2.1 + CYCLE)[0].slot.frame.stamp == 2.0  # cycle on the newest only


def test_clock_reset_starts_over():
    loop = _loop()
    loop.offer_frame(_frame(100.0), 100.0)
    loop.tick(100.0 + DEADLINE)
    assert loop.offer_frame(_frame(1.0), 1.0)  # 99 s back: replay loop / clock reset
    (d,) = loop.tick(1.0 + DEADLINE)
    assert d.slot.frame.stamp == 1.0 and loop.stats["time_jumps"] == 1
    # Reported once, on the first decision after the reset (the node puts it on /diagnostics).
    assert d.time_jump_s == pytest.approx(99.0) and "time_jump_reset" in d.decision.reasons
    (again,) = loop.tick(1.0 + DEADLINE + CYCLE)
    assert again.trigger == "cycle" and again.time_jump_s is None
    assert "time_jump_reset" not in again.decision.reasons
    assert loop.candidate is None  # the reset forgot the candidates of the old timeline


def test_malformed_candidate_is_counted_and_ignored():
    loop = _loop()
    loop.offer_frame(_frame(1.0), 1.0)
    for text in ["{", "[]", '{"v": 99}', None, "x" * 100000, '{"v": 1, "stamp": 1.0}']:
        loop.offer_candidate(codec.decode(text), 1.01)
    assert loop.stats["malformed_candidates"] == 6
    assert loop.tick(1.02) == []  # no decision on the strength of garbage
    assert loop.tick(1.0 + DEADLINE)[0].trigger == "watchdog"


def test_candidate_from_the_future_is_refused_and_does_not_lock_the_student_out():
    loop = _loop()
    loop.offer_frame(_frame(1.0), 1.0)
    why = loop.offer_candidate(_cand(3601.0), 1.01)  # a peer's clock fault
    assert why and "after the newest frame" in why and loop.stats["future_candidates"] == 1
    assert loop.candidate is None
    assert loop.offer_candidate(_cand(1.0), 1.02) is None
    (d,) = loop.tick(1.03)
    assert d.trigger == "candidate" and d.candidate.stamp == 1.0 and loop.candidate.stamp == 1.0


def test_planner_exception_is_reported_not_raised(monkeypatch):
    loop = _loop()
    monkeypatch.setattr(loop.pipeline, "plan", lambda *a, **k: 1 / 0)
    loop.offer_frame(_frame(1.0), 1.0)
    (d,) = loop.tick(1.0 + DEADLINE)
    assert d.decision is None and d.error.startswith("ZeroDivisionError") and loop.stats["errors"] == 1


def test_decisions_are_monotonic_under_any_interleaving():
    """Random orders of frames (some late, some duplicated), candidates and ticks."""
    rng = np.random.default_rng(7)
    loop = _loop(time_jump_s=10.0)  # stamps span 2.4 s: every step back is out of order, not a reset
    frames = {round(0.1 * k, 3): _frame(0.1 * k) for k in range(1, 25)}
    stamps = sorted(frames)
    t, last, n = 0.0, -np.inf, 0
    for _ in range(200):
        t += float(rng.uniform(0.0, 0.05))
        op = rng.integers(4)
        s = stamps[int(rng.integers(len(stamps)))]
        if op == 0:
            loop.offer_frame(frames[s], t)
        elif op == 1:
            loop.offer_candidate(_cand(s) if rng.random() < 0.7 else Candidate(s, error="E: x"), t)
        else:
            for d in loop.tick(t):
                assert d.slot.frame.stamp >= last, (d.slot.frame.stamp, last)
                last, n = d.slot.frame.stamp, n + 1
    assert n > 10 and loop.stats["out_of_order_frames"] > 0 and loop.stats["time_jumps"] == 0


def test_codec_round_trip_and_rejections():
    c = _cand(1.25)
    back = codec.decode(codec.encode(c))
    assert back.usable and back.stamp == 1.25 and not back.malformed
    np.testing.assert_allclose(back.trajectory.poses, c.trajectory.poses, atol=1e-4)
    assert back.timing_ms == {"inference": 5.0}
    failed = codec.decode(codec.encode(Candidate(2.0, error="ModelError: x")))
    assert not failed.usable and failed.error == "ModelError: x" and not failed.malformed
    late = codec.decode(codec.encode(_cand(3.0).withheld(deadline_missed=True)))
    assert late.deadline_missed and late.trajectory is None
    bad_poses = codec.encode(c).replace('"poses": [[', '"poses": [["x", ')
    for text in [
        '{"v": 1, "stamp": "nan", "error": "x"}',
        bad_poses,
        '{"v": 1, "stamp": 1, "scores": "[1,"}',
    ]:
        assert codec.decode(text).malformed, text
    nan_pose = json.loads(codec.encode(c))
    nan_pose["trajectory"]["poses"][3][0] = float("nan")  # json writes and reads the NaN token
    assert codec.decode(json.dumps(nan_pose)).error.endswith("ValueError: trajectory has non-finite poses")


def test_lockstep_step_matches_a_plain_pipeline_run():
    """step() (replay, sim) decides each frame with its own candidate at the given time."""
    loop, ref = _loop(), DrivePipeline(None, cycle())
    for _, t in zip(range(6), itertools.count(1.0, 0.1)):
        fr = _frame(t)
        _, d = loop.step(fr, t + 0.02)
        want = ref.plan(fr, None, t + 0.02)
        assert d is not None and d.trigger == "no_candidate" and d.decision.choice == want.choice
        np.testing.assert_array_equal(d.decision.trajectory.poses, want.trajectory.poses)
    assert load_config("topics")  # the loop needs no ROS config beyond drive.yaml


def _modes_cand(t: float) -> Candidate:
    """Four modes: best (index 2), then 0, then 3 (probability ~0.035), then 1 (~0.002)."""
    modes = np.stack([student_straight(V, t, lateral=lat).poses for lat in (1.0, -9.0, 0.0, 2.0)])
    scores = np.array([2.0, -3.0, 3.0, 0.0])
    best = student_straight(V, t)
    return Candidate(t, best, modes.astype(np.float32), scores, 2, {"inference": 5.0})


def test_candidate_alternatives_follow_the_scores_and_the_probability_floor():
    c = _modes_cand(1.0)
    alts = c.alternatives(limit=3, min_probability=0.01)
    assert [a.poses[-1, 1] for a in alts] == pytest.approx([1.0, 2.0])  # modes 0 and 3; mode 1 too unlikely
    assert all(a.dt == 0.5 and a.stamp == 1.0 and a.source == "student" for a in alts)
    assert len(c.alternatives(limit=1, min_probability=0.0)) == 1
    assert len(c.alternatives(limit=3, min_probability=0.0)) == 3
    assert c.alternatives(limit=0, min_probability=0.0) == []
    assert c.withheld(error="x").alternatives(3, 0.0) == []
    assert _cand(1.0).alternatives(3, 0.0) == []  # no modes: the best mode only


def test_codec_carries_the_modes_and_rejects_bad_ones():
    c = _modes_cand(2.0)
    back = codec.decode(codec.encode(c))
    assert not back.malformed and back.best_index == 2
    np.testing.assert_allclose(back.trajectories, c.trajectories, atol=1e-4)
    assert len(back.alternatives(3, 0.01)) == 2
    good = json.loads(codec.encode(c))
    for key, value in [
        ("modes", [[[0.0, 0.0, 0.0]]]),  # wrong shape
        ("best_index", 7),  # not a mode
        ("best_index", True),
        ("scores", [1.0, 2.0]),  # one score per mode
    ]:
        bad = {**good, key: value}
        assert codec.decode(json.dumps(bad)).malformed, key
    nan_mode = json.loads(codec.encode(c))
    nan_mode["modes"][1][2][0] = float("nan")
    assert "non-finite" in codec.decode(json.dumps(nan_mode)).error
    old = {k: v for k, v in good.items() if k not in ("modes", "best_index")}  # an older sender
    legacy = codec.decode(json.dumps(old))
    assert legacy.usable and legacy.trajectories is None and legacy.alternatives(3, 0.0) == []
