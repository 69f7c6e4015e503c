"""`vla-edge demo` prints its figures next to the README's (config/demo.yaml)."""

from __future__ import annotations

import argparse

import pytest

from vla_edge.cli.demo import expectation_rows, render_expectations
from vla_edge.config import load_config
from vla_edge.errors import ConfigError

SUMMARY = {
    "frames": 250,
    "trajectories": 172,
    "decisions": {"frenet": 104, "emergency_stop": 63},
    "latency_ms": {"p50": 40.5, "p99": 800.0},
}


def test_rows_compare_each_expected_figure() -> None:
    rows = {k: (v, ok) for k, v, _, ok in expectation_rows(SUMMARY, load_config("demo"))}
    assert rows["frames"] == (250, True)
    assert rows["trajectories"] == (172, False)
    assert rows["decisions.student"] == (0, False)  # never chosen counts as 0, not missing
    assert rows["decisions.emergency_stop"] == (63, False)
    assert rows["latency_ms.p50"] == (40.5, True)


def test_render_names_machine_and_other_scenarios() -> None:
    cfg = load_config("demo")
    text = render_expectations(SUMMARY, cfg, argparse.Namespace(bag=None, seed=3, seconds=25.0))
    assert cfg["measured_on"] in text and "this run differs" in text and "OUTSIDE" in text
    assert "load average" in text


def test_a_student_slower_than_the_wait_is_explained() -> None:
    cfg, args = load_config("demo"), argparse.Namespace(bag=None, seed=0, seconds=25.0)
    slow = dict(SUMMARY, model_ms={"p50": 101.6, "p99": 102.9})
    text = render_expectations(slow, cfg, args, (70.0, 100.0))
    assert "came too late to drive: model p50 101.6 ms" in text and "arbiter.deadline_ms" in text
    fast = dict(SUMMARY, model_ms={"p50": 38.8, "p99": 50.0})
    assert "too late" not in render_expectations(fast, cfg, args, (70.0, 100.0))
    assert "too late" not in render_expectations(slow, cfg, args)


def test_bad_expectation_is_named() -> None:
    with pytest.raises(ConfigError, match=r"demo.yaml expect.frames: need \[min, max\]"):
        expectation_rows(SUMMARY, {"expect": {"frames": 250}})


def test_model_figure_is_split_into_pillarize_and_network() -> None:
    from vla_edge.cli.demo import render, stage_times

    infos = [
        {
            "name": "vla_edge/candidate",
            "values": {"total_ms": "40.0", "pillarize_ms": "4.0", "inference_ms": "35.5"},
        },
        {"name": "vla_edge/candidate", "values": {"total_ms": "n/a"}},  # not a number: left out
        {"name": "vla_edge/timing", "values": {"total_ms": "99.0"}},  # another status: left out
    ]
    assert stage_times(infos, "total_ms") == [40.0]
    assert stage_times(infos, "pillarize_ms") == [4.0] and stage_times(infos, "inference_ms") == [35.5]
    base = dict(
        SUMMARY, bag="b", dropped_frames=0, candidates=1, skipped_frames=None, fallback_reasons={},
        watchdog_fallbacks=0, wall_seconds=1.0, model_ms={"p50": 40.0, "p99": 40.0},
    )  # fmt: skip
    split = dict(base, pillarize_ms={"p50": 4.0, "p99": 4.0}, network_ms={"p50": 35.5, "p99": 35.5})
    assert "pillarize  p50 4.0 ms" in render(split) and "network run (backend)  p50 35.5 ms" in render(split)
    assert "pillarize" not in render(base)  # summaries without the split still render
