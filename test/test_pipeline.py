"""DrivePipeline with the real ONNX student and the real planning cycle (no ROS)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from doubles import RaisingBackend, SlowBackend

from vla_edge.errors import ConfigError, ModelError
from vla_edge.params import default_params_file, load_params_file, unflatten
from vla_edge.pipeline import DrivePipeline, engine_path, load_runner
from vla_edge.types import EgoState, Frame

CHOICES = {"student", "frenet", "emergency_stop", "hold_previous"}


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    values = load_params_file(default_params_file())
    values["backend"] = "onnxruntime"
    return unflatten(values)


@pytest.fixture(scope="module")
def runner(cfg: dict[str, Any]) -> Any:
    r = load_runner(cfg)
    yield r
    r.close()


@pytest.fixture
def frame(committed_scan: np.ndarray) -> Frame:
    pts = committed_scan
    path = np.stack([np.linspace(-5, 80, 86), np.zeros(86)], axis=1)
    return Frame(stamp=100.0, points=pts, ego=EgoState(100.0, 0.0, 0.0, 0.0, 4.0), reference_path=path)


def test_infer_gives_finite_candidate_with_timing(runner: Any, frame: Frame) -> None:
    p = DrivePipeline(runner, None)
    res = p.infer(frame)
    assert res.error is None and not res.deadline_missed
    assert res.usable and res.stamp == frame.stamp
    assert res.trajectory.is_finite() and res.trajectory.source == "student"
    assert {"pillarize", "inference", "total"} <= set(res.timing_ms)
    assert res.scores is not None and res.scores.ndim == 1
    again = p.infer(frame)  # deterministic noise: same frame, same plan
    np.testing.assert_allclose(again.trajectory.poses, res.trajectory.poses)


def test_model_exception_becomes_error_not_raise(runner: Any, frame: Frame) -> None:
    real = runner.backend
    runner.backend = RaisingBackend(real, ModelError("boom"))
    try:
        res = DrivePipeline(runner, None).infer(frame)
    finally:
        runner.backend = real
    assert not res.usable and res.error is not None and "ModelError: boom" in res.error


def test_unexpected_exception_also_contained(runner: Any, frame: Frame) -> None:
    real = runner.backend
    runner.backend = RaisingBackend(real, RuntimeError("onnxruntime fault"))
    try:
        res = DrivePipeline(runner, None).infer(frame)
    finally:
        runner.backend = real
    assert res.trajectory is None and "RuntimeError" in res.error


def test_deadline_withholds_late_candidate(runner: Any, frame: Frame) -> None:
    real = runner.backend
    runner.backend = SlowBackend(real, 0.15)
    try:
        res = DrivePipeline(runner, None).infer(frame, deadline_s=0.1)
    finally:
        runner.backend = real
    assert res.deadline_missed and res.trajectory is None and res.error is None
    assert res.timing_ms["inference"] >= 150.0


def test_lockstep_step_plans_with_candidate(cfg: dict[str, Any], runner: Any, frame: Frame) -> None:
    pytest.importorskip("vla_edge.planning.cycle")
    from vla_edge.drive_loop import DriveLoop

    p = DrivePipeline.from_config(cfg, runner=runner)
    result, step = DriveLoop.from_config(cfg, p).step(frame)
    assert result is not None and result.usable and step is not None and step.trigger == "candidate"
    decision = step.decision
    assert decision.choice in CHOICES
    assert decision.trajectory.is_finite() and decision.trajectory.dt == pytest.approx(0.1)
    d = decision.to_dict()
    assert d["choice"] == decision.choice
    without = p.plan(frame, None, frame.stamp)
    assert without.choice != "student" and without.reasons


def test_engine_path_and_bad_config(cfg: dict[str, Any]) -> None:
    assert engine_path(cfg) is None  # empty: inference.yaml decides
    assert engine_path({**cfg, "engine_path": "engines/student.onnx"}).name == "student.onnx"
    with pytest.raises(ConfigError, match="planning_config"):
        DrivePipeline.from_config({k: v for k, v in cfg.items() if k != "planning_config"}, with_runner=False)


def test_core_and_helpers_import_without_rclpy() -> None:
    """pipeline/diagnostics (core) and the nodes' pure helpers never import rclpy at import time."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['rclpy'] = None\n"
        "import vla_edge.pipeline, vla_edge.diagnostics\n"
        "import vla_edge.nodes, vla_edge.nodes.params, vla_edge.nodes.frames, vla_edge.nodes.qos\n"
        "import vla_edge.cli.drive, vla_edge.cli.demo\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
