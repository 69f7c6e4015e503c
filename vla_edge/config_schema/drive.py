"""``config/drive.yaml``: drive-graph parameters (``/**: ros__parameters:``)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from vla_edge.config_schema._base import Count, Frac, Pos, Section, irng, ordered, rng

Level = irng(ge=0, le=2)  # diagnostic_msgs level: 0 OK, 1 WARN, 2 ERROR


class InferenceParams(Section):
    deadline_ms: Pos


class ArbiterParams(Section):
    deadline_ms: Pos
    watchdog_period_ms: Pos
    cycle_period_ms: Pos  # .nan used to stop planning when LiDAR stopped (issue 14 item 7)
    prepare_ahead: bool
    markers: bool
    markers_period_ms: Pos
    markers_max_obstacles: irng(ge=0)
    time_jump_ms: Pos  # a gap between frame stamps above this resets the drive loop


class InputWatchParams(Section):
    lidar_timeout_s: rng(ge=0.1, le=600)
    repeat_s: rng(ge=0.1, le=3600)


class DiagnosticsParams(Section):
    hardware_id: str
    stage_warn_ms: Pos
    stage_error_ms: Pos
    model_warn_ms: Pos
    model_error_ms: Pos
    drop_warn_ratio: Frac
    drop_error_ratio: Frac
    age_warn_s: Pos
    age_error_s: Pos
    fallback_level: Level
    estop_level: Level
    window: Count
    check_order = ordered(
        ("stage_warn_ms", "stage_error_ms"),
        ("model_warn_ms", "model_error_ms"),
        ("drop_warn_ratio", "drop_error_ratio"),
        ("age_warn_s", "age_error_s"),
    )


class DriveParams(Section):
    """The ``ros__parameters`` mapping (nested form)."""

    model_config = ConfigDict(**Section.model_config, protected_namespaces=())

    use_sim_time: bool | None = None  # rclpy declares it; may appear in a params file
    backend: Literal["", "auto", "onnxruntime", "tensorrt", "torch_cuda"]
    engine_path: str
    model_config_: str = Field(alias="model_config")
    inference_config: str
    planning_config: str
    frame_config: str
    calibration_config: str
    topics_config: str
    record: bool
    recorder_config: str
    output_dir: str
    camera: Literal["none", "raw", "compressed"]
    inference: InferenceParams
    arbiter: ArbiterParams
    input_watch: InputWatchParams
    diagnostics: DiagnosticsParams
