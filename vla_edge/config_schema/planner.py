"""``config/planner.yaml``: Frenet fallback planner."""

from __future__ import annotations

from pydantic import Field

from vla_edge.config_schema._base import AnyFloat, Count, NonNeg, Pos, Section, ordered, rng


class LateralOffsets(Section):
    min: AnyFloat
    max: AnyFloat
    count: Count
    check_order = ordered(("min", "max"))


class TargetSpeeds(Section):
    min: NonNeg
    count: Count


class Cost(Section):
    jerk: NonNeg
    lateral_offset: NonNeg
    speed_deviation: NonNeg
    time: NonNeg
    consistency: NonNeg
    clearance: NonNeg


class ReferencePath(Section):
    ds: Pos
    smoothing_window: Count
    smoothing_passes: Count
    max_curvature: Pos
    extend_front: NonNeg
    extend_back: NonNeg
    projection_window: Pos


class Planner(Section):
    dt: rng(gt=0, le=1.0)
    horizon: Pos
    lateral_offsets: LateralOffsets
    target_speeds: TargetSpeeds
    horizons: list[Pos] = Field(min_length=1)
    desired_speed: Pos
    min_speed_for_curvature: NonNeg
    min_speed: rng(le=0)
    low_speed_mode_below: NonNeg
    cost: Cost
    reference_path: ReferencePath


class PlannerFile(Section):
    planner: Planner
