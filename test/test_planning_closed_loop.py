"""Frenet fallback in closed loop on the simulator (real sim LiDAR -> FrameAssembler -> cycle).

Regression for two faults found with ``vla-edge sim evaluate --planner frenet``: the fallback
swerved off the road round obstacles (no drivable corridor; ties went to the right), and
re-planning from the *measured* acceleration braked a cruising tug to a stop.
"""

from __future__ import annotations

import pytest

from vla_edge.config import load_config
from vla_edge.pipeline import DrivePipeline
from vla_edge.planning.cycle import PlanningCycle
from vla_edge.sim.harness import run_suite
from vla_edge.sim.scenarios import suite


@pytest.fixture(scope="module")
def results():
    cfg = load_config("sim")
    families = ("crew_stepping_out", "blocked_lane", "narrow_pass")
    specs = [s for s in suite(5, 2, cfg=cfg) if s.family in families]  # as sim evaluate --seed 2
    pipe = DrivePipeline(None, PlanningCycle.from_config())
    choices: list[str] = []

    def planner(frame):
        dec = pipe.plan(frame, None, frame.stamp)
        choices.append(dec.choice)
        return dec.trajectory

    def reset(world):
        pipe.cycle.reset()

    planner.reset = reset  # type: ignore[attr-defined]
    return run_suite(planner, specs, seconds=20, cfg=cfg), choices


def test_fallback_stays_on_the_road_and_collision_free(results):
    res, _ = results
    for s in res.scenarios:
        assert s.nc == 1.0, (s.name, s.collisions)
        assert s.dac == 1.0, (s.name, s.offroad_s)


def test_fallback_passes_the_narrow_gap_and_makes_progress(results):
    res, choices = results
    by = {s.family: s for s in res.scenarios}
    assert by["narrow_pass"].ep > 0.9 and by["blocked_lane"].ep > 0.8
    assert res.aggregate["score"] > 0.8
    assert choices.count("frenet") > 0.7 * len(choices)
