"""The privileged expert: never collides, stays on drivable ground, explains itself."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest

from vla_edge.config import load_config
from vla_edge.sim.expert import Expert
from vla_edge.sim.rollout import expert_policy, run_closed_loop
from vla_edge.sim.scenarios import FAMILIES, ScenarioSpec, make_scenario, suite
from vla_edge.sim.world import SimError

CFG = load_config("sim")
SECONDS = 12.0


def _fast_cfg() -> dict:
    """Events closer to the start so a short run covers them (keeps the test fast)."""
    cfg = copy.deepcopy(CFG)
    cfg["scenario"]["event_distance"] = [30.0, 50.0]
    return cfg


@pytest.mark.parametrize("half", [0, 1])
def test_expert_never_collides_over_50_seeded_scenarios(half: int) -> None:
    """50 scenarios (10 per family, mixed difficulty), split in two halves for xdist."""
    cfg = _fast_cfg()
    specs = suite(50, 77, list(FAMILIES), "mixed", cfg)
    assert Counter(s.family for s in specs) == {f: 10 for f in FAMILIES}
    stopped = blocked = 0
    for spec in specs[half::2]:
        world = make_scenario(spec, cfg, SECONDS)
        log = run_closed_loop(world, expert_policy(Expert(cfg)), SECONDS, cfg)
        assert log.collisions == [], f"{spec.name}: expert collided {log.collisions}"
        assert not log.offroad.any(), f"{spec.name}: expert left the drivable area"
        unsafe = [round(f.t, 1) for f in log.frames if not f.info["safe"]]
        assert not unsafe, f"{spec.name}: no collision-free plan at t={unsafe[:3]}"
        if spec.family == "blocked_lane":
            assert log.ego_s[-1] < world.info["block_s"] - 3.0, f"{spec.name}: drove into the block"
            blocked += 1
            stopped += log.ego[-1, 3] < 0.2
    assert stopped >= blocked // 2  # most stop for good within the run (not merely slow)


@pytest.mark.parametrize(
    ("family", "words"),
    [
        ("blocked_lane", ("fuel truck", "barriers")),
        ("crew_stepping_out", ("ground crew",)),
        ("crossing_cart", ("baggage-cart train",)),
        ("narrow_pass", ("Nudging", "no room to pass")),
    ],
)
def test_reasoning_names_the_cause(family: str, words: tuple[str, ...]) -> None:
    cfg = _fast_cfg()
    world = make_scenario(ScenarioSpec(family, 5, 0.7), cfg, SECONDS)
    log = run_closed_loop(world, expert_policy(Expert(cfg)), SECONDS, cfg, check_collisions=False)
    texts = [f.info["reasoning"] for f in log.frames]
    assert all(isinstance(t, str) and 10 < len(t) < 120 for t in texts)
    assert any(any(w in t for w in words) for t in texts), set(texts)
    with_dist = [t for t in texts if any(w in t for w in words) and " m ahead" in t]
    assert with_dist, "the causal sentence should say how far ahead"


def test_expert_is_deterministic() -> None:
    runs = []
    for _ in range(2):
        world = make_scenario(ScenarioSpec("crossing_cart", 9, 0.8), CFG, 6.0)
        runs.append(run_closed_loop(world, expert_policy(Expert(CFG)), 6.0, CFG).ego)
    assert np.array_equal(runs[0], runs[1])


def test_bad_scenario_arguments() -> None:
    with pytest.raises(SimError, match="unknown scenario family"):
        make_scenario(ScenarioSpec("runway_incursion", 1, 0.5), CFG, 5.0)
    with pytest.raises(SimError, match="difficulty"):
        make_scenario(ScenarioSpec("empty_road", 1, 1.5), CFG, 5.0)
    with pytest.raises(SimError, match="difficulty"):
        suite(2, 0, None, "hard", CFG)
    with pytest.raises(SimError, match="at least one"):
        suite(0, 0, None, None, CFG)
    with pytest.raises(SimError, match="unknown scenario family"):
        suite(2, 0, ["taxiway"], None, CFG)
