"""``config/replay.yaml``: lockstep/realtime replay, metrics, report and regression gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vla_edge.config_schema._base import AnyFloat, Count, NonNeg, NonNegInt, Pos, Section


class Lockstep(Section):
    noise_seed: NonNegInt | None
    plan_delay_ms: NonNeg
    reorder_window_s: NonNeg


class Realtime(Section):
    rate: Pos
    graph: Literal["inprocess", "subprocess", "external"]
    startup_timeout_s: Pos
    settle_s: NonNeg
    max_wait_s: Pos
    deadline_ms: Pos
    clock_hz: Pos


class Collision(Section):
    dt_s: Pos
    horizon_s: Pos
    ttc_threshold_s: NonNeg
    ttc_buffer_m: NonNeg
    min_moving_speed: NonNeg
    ignore_classes: list[str]


class Metrics(Section):
    eval_dt_s: Pos
    horizon_s: Pos
    min_future_s: NonNeg
    comfort_limits_config: str = Field(min_length=1)
    collision: Collision


class Report(Section):
    bev_frames_per_bag: NonNegInt
    bev_range_m: list[AnyFloat] = Field(min_length=4, max_length=4)
    bev_max_points: Count
    dpi: Count


class Gate(Section):
    student_ade_rel: NonNeg
    student_fde_rel: NonNeg
    final_ade_rel: NonNeg
    min_abs_m: NonNeg
    fallback_rate_pp: NonNeg
    emergency_rate_pp: NonNeg
    comfort_violation_rate_pp: NonNeg
    new_collisions: NonNegInt
    new_ttc_violations: NonNegInt
    latency_p99_rel: NonNeg
    deadline_miss_rate_pp: NonNeg
    require_same_frames: bool


class ReplayFile(Section):
    remap: dict[str, str]
    lockstep: Lockstep
    realtime: Realtime
    metrics: Metrics
    report: Report
    gate: Gate
