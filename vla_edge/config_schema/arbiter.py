"""``config/arbiter.yaml``: safety arbiter, emergency stop, student smoothing."""

from __future__ import annotations

from typing import Literal

from vla_edge.config_schema._base import Frac, NonNeg, NonNegInt, Pos, Section, ordered, rng


class Limits(Section):
    max_lat_accel: Pos
    max_lon_accel: Pos
    min_lon_accel: rng(lt=0)
    max_jerk: Pos
    max_yaw_rate: Pos
    speed_margin: NonNeg
    min_speed: rng(le=0)
    min_speed_for_curvature: NonNeg
    max_heading_error: rng(gt=0, le=3.1416)


class Timing(Section):
    student_max_age: Pos
    frame_deadline: Pos
    stamp_tolerance: rng(ge=0, le=0.05)
    critical_inputs: list[str]


class Student(Section):
    min_horizon: Pos
    max_horizon: Pos
    min_dt: Pos
    max_dt: Pos
    min_confidence: Frac
    alternative_modes: NonNegInt = 0
    alternative_min_probability: Frac = 0.05
    speed_rule_retime: bool = False
    check_order = ordered(("min_horizon", "max_horizon"), ("min_dt", "max_dt"))


class SmoothingWeights(Section):
    jerk: NonNeg
    accel: NonNeg


class StudentSmoothing(Section):
    enabled: bool
    method: Literal["jerk_ls"]
    weights: SmoothingWeights
    max_residual_m: Pos
    stop_hold_max_m: NonNeg = 0.0


class Corridor(Section):
    max_lateral_deviation: Pos
    left_width: Pos
    right_width: Pos
    edge_margin: NonNeg
    tolerance: NonNeg


class Collision(Section):
    ttc_min: NonNeg
    ttc_buffer: NonNeg


class Continuity(Section):
    window: NonNeg
    max_position_jump: Pos
    max_start_speed_jump: Pos
    max_start_offset: Pos


class Hysteresis(Section):
    student_good_cycles: NonNegInt
    trust_student_at_start: bool
    release_emergency_cycles: NonNegInt


class Progress(Section):
    min_ratio: Frac
    min_frenet_m: NonNeg
    alternative_min_ratio: Frac = 0.9


class HoldPrevious(Section):
    max_age: NonNeg
    max_cycles: NonNegInt
    min_horizon: NonNeg
    blend_time: Pos


class Emergency(Section):
    decel: Pos
    jerk: Pos
    release_jerk: Pos
    horizon: Pos
    integration_dt: rng(gt=0, le=0.1)
    max_path_offset: NonNeg
    max_path_heading: NonNeg
    blend_distance: Pos


class Ego(Section):
    max_valid_speed: Pos
    max_valid_accel: Pos


class Arbiter(Section):
    dt: rng(gt=0, le=1.0)
    limits: Limits
    timing: Timing
    student: Student
    student_smoothing: StudentSmoothing
    corridor: Corridor
    collision: Collision
    continuity: Continuity
    hysteresis: Hysteresis
    progress: Progress
    hold_previous: HoldPrevious
    emergency: Emergency
    ego: Ego


class ArbiterFile(Section):
    arbiter: Arbiter
