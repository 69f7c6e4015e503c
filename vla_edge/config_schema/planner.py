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


class Prediction(Section):
    k_sigma: NonNeg
    max_growth_person: NonNeg
    max_growth_other: NonNeg
    near_lane: NonNeg
    crossing_angle_deg: rng(gt=0, lt=90)
    uncertain_speed_std: NonNeg


class Zones(Section):
    service_road: rng(ge=0.5, le=30)
    apron: rng(ge=0.5, le=30)
    near_stand: rng(ge=0.5, le=30)
    near_personnel: rng(ge=0.5, le=30)


class Clearance(Section):
    person: rng(ge=0, le=10)
    aircraft: rng(ge=0, le=10)
    object: rng(ge=0, le=10)


class Rules(Section):
    zones: Zones
    clearance: Clearance
    person_max_extent: NonNeg
    person_min_height: NonNeg
    person_max_bottom: NonNeg
    person_min_extent: NonNeg
    person_max_speed: NonNeg
    aircraft_min_extent: NonNeg
    stand_lateral: NonNeg
    stand_margin: NonNeg
    personnel_lateral: NonNeg
    personnel_before: NonNeg
    personnel_after: NonNeg
    apron_offset: NonNeg
    rule_decel: Pos
    tolerance: NonNeg
    pass_offset: NonNeg
    overtake_moving: bool
    oncoming_check: NonNeg


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
    terminal_decel: Pos
    prediction: Prediction
    rules: Rules
    cost: Cost
    reference_path: ReferencePath


class PlannerFile(Section):
    planner: Planner
