"""Diagnostic levels from thresholds in config/drive.yaml (pure, no ROS)."""

from __future__ import annotations

import math

import pytest

from vla_edge.diagnostics import (
    ERROR,
    OK,
    WARN,
    DropCounter,
    Thresholds,
    candidate_status,
    decision_status,
    error_status,
    inputs_status,
    level_for,
    timing_status,
    worst_level,
)
from vla_edge.errors import ConfigError, PointCloudError
from vla_edge.params import default_params_file, load_params_file, unflatten


@pytest.fixture
def th() -> Thresholds:
    return Thresholds.from_config(unflatten(load_params_file(default_params_file())))


def test_thresholds_come_from_drive_yaml(th: Thresholds) -> None:
    raw = unflatten(load_params_file(default_params_file()))["diagnostics"]
    assert th.stage_warn_ms == raw["stage_warn_ms"] and th.age_error_s == raw["age_error_s"]
    assert th.stage_warn_ms < th.stage_error_ms and th.drop_warn_ratio < th.drop_error_ratio


def test_missing_threshold_is_config_error() -> None:
    cfg = unflatten(load_params_file(default_params_file()))
    del cfg["diagnostics"]["age_warn_s"]
    with pytest.raises(ConfigError, match=r"diagnostics\.age_warn_s"):
        Thresholds.from_config(cfg)


def test_bad_level_is_config_error() -> None:
    cfg = unflatten(load_params_file(default_params_file()))
    cfg["diagnostics"]["estop_level"] = 7
    with pytest.raises(ConfigError, match="estop_level"):
        Thresholds.from_config(cfg)


def test_level_for_boundaries() -> None:
    assert level_for(1.0, 2.0, 3.0) == OK
    assert level_for(2.0, 2.0, 3.0) == WARN
    assert level_for(3.0, 2.0, 3.0) == ERROR
    assert level_for(math.nan, 2.0, 3.0) == ERROR
    assert level_for(math.inf, 2.0, 3.0) == ERROR


@pytest.mark.parametrize(
    ("choice", "attr"), [("student", None), ("frenet", "fallback_level"), ("emergency_stop", "estop_level")]
)
def test_decision_levels(th: Thresholds, choice: str, attr: str | None) -> None:
    st = decision_status(
        {
            "choice": choice,
            "reasons": ["student_stale"],
            "checks": {"jerk": {"value": 1.0, "threshold": 8.37, "ok": True}},
        },
        th,
    )
    assert st["level"] == (OK if attr is None else getattr(th, attr))
    assert st["values"]["choice"] == choice
    assert "threshold=8.37" in st["values"]["check.jerk"]
    assert st["name"] == "vla_edge/decision" and st["hardware_id"] == th.hardware_id


def test_unknown_choice_is_error(th: Thresholds) -> None:
    assert decision_status({"choice": "???"}, th)["level"] == ERROR


def test_timing_levels_and_missing_stages(th: Thresholds) -> None:
    fast = timing_status({"conversion": 1.0, "arbiter": 2.0}, None, th)
    assert fast["level"] == OK
    assert fast["values"]["inference_ms"] == "n/a" and fast["values"]["model_exec_ms"] == "n/a"
    warn = timing_status({"conversion": th.stage_warn_ms + 1}, 1.0, th)
    assert warn["level"] == WARN and "conversion" in warn["message"]
    err = timing_status({"arbiter": 1.0}, th.model_error_ms + 1, th)
    assert err["level"] == ERROR and "model" in err["message"]


def test_inputs_stale_is_error_and_ages_graded(th: Thresholds) -> None:
    assert inputs_status({"odometry": 0.01}, [], 0.0, th)["level"] == OK
    assert inputs_status({"odometry": th.age_warn_s + 0.01}, [], 0.0, th)["level"] == WARN
    st = inputs_status({"odometry": 0.01}, {"odometry"}, 0.0, th)
    assert st["level"] == ERROR and "stale: odometry" in st["message"]
    drops = inputs_status({}, [], th.drop_error_ratio + 0.01, th)
    assert drops["level"] == ERROR and drops["values"]["frame_drop_ratio"] != "n/a"


def test_candidate_and_error_status(th: Thresholds) -> None:
    c = candidate_status(12.5, [0.1, 2.0, -1.0], {"inference": 3.0}, {"odometry": 0.02}, [], 0.0, th)
    assert c["level"] == OK and c["values"]["best_mode"] == "1" and c["values"]["stamp"] == "12.500000000"
    late = candidate_status(12.5, None, {"inference": 3.0}, {}, [], 0.0, th, deadline_missed=True)
    assert late["level"] == WARN and late["values"]["deadline_missed"] == "True"
    assert "camera" not in c["values"]  # LiDAR-only model: no camera field
    cam_ok = candidate_status(12.5, [1.0], {"inference": 3.0}, {}, [], 0.0, th, camera="ok")
    assert cam_ok["level"] == OK and cam_ok["values"]["camera"] == "ok"
    stale = candidate_status(12.5, [1.0], {"inference": 3.0}, {}, [], 0.0, th, camera="stale")
    assert stale["level"] == WARN and stale["values"]["camera"] == "stale"
    assert "camera stale: planned LiDAR-only" in stale["message"]
    e = error_status("frame_assembly", PointCloudError("no field 'x'"), 3.0, th)
    assert (
        e["level"] == ERROR and e["values"]["error_type"] == "PointCloudError" and "skipped" in e["message"]
    )
    assert worst_level([c, late, e]) == ERROR and worst_level([]) == OK


def test_drop_counter_window() -> None:
    d = DropCounter(4)
    assert d.ratio == 0.0
    for dropped in (True, False, False, False, False):
        d.record(dropped)
    assert d.ratio == 0.0 and d.received == 5 and d.dropped == 1  # the drop left the window
    d.record(True)
    assert d.ratio == 0.25
    with pytest.raises(ConfigError):
        DropCounter(0)


def test_sweep_gaps_counts_missing_sweeps() -> None:
    from vla_edge.diagnostics import SweepGaps

    g = SweepGaps()
    stamps = [0.1 * i for i in range(10)]
    assert sum(g.missed(s) for s in stamps) == 0  # steady 10 Hz, first intervals learn the rate
    assert g.missed(1.2) == 2  # 1.0 and 1.1 never arrived
    assert g.missed(1.3) == 0
    assert g.missed(1.25) == 0  # out of order / duplicate: not a gap
