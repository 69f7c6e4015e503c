"""``config/sim.yaml``: airside simulator world, sensors, expert, harness."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vla_edge.config_schema._base import (
    AnyFloat,
    Count,
    Frac,
    FracPair,
    NonNeg,
    NonNegPair,
    Pair,
    Pos,
    Section,
    irng,
    ordered,
    rng,
)

RGB = Annotated[list[irng(ge=0, le=255)], Field(min_length=3, max_length=3)]


class Time(Section):
    physics_dt: Pos
    frame_dt: Pos
    path_period: Pos
    start_epoch: NonNeg
    seed_stride: NonNeg
    horizon_extra: NonNeg


class Frames(Section):
    odom: str = Field(min_length=1)
    base_link: str = Field(min_length=1)


class Route(Section):
    lane_width: Pos
    sample_step: Pos
    straight_min: Pos
    straight_max: Pos
    turn_radius_min: Pos
    turn_radius_max: Pos
    turn_angle_min_deg: rng(gt=0, le=180)
    turn_angle_max_deg: rng(gt=0, le=180)
    length_margin: NonNeg
    crossing_width: Pos
    map_resolution: Pos
    map_margin: NonNeg
    map_max_pixels: Count
    check_order = ordered(
        ("straight_min", "straight_max"),
        ("turn_radius_min", "turn_radius_max"),
        ("turn_angle_min_deg", "turn_angle_max_deg"),
    )


class Ego(Section):
    length: Pos
    width: Pos
    height: Pos
    rear_overhang: NonNeg
    wheelbase: Pos
    max_steer_deg: rng(gt=0, lt=90)
    max_steer_rate_deg: Pos
    max_accel: Pos
    max_decel: Pos
    max_jerk: Pos
    max_speed: Pos


class Controller(Section):
    lookahead_min: Pos
    lookahead_gain: NonNeg
    speed_kp: Pos
    speed_preview: NonNeg
    fallback_decel: Pos


class Expert(Section):
    cruise_speed: Pos
    max_lat_accel: Pos
    accel: Pos
    decels: list[Pos] = Field(min_length=1)
    speed_levels: Count
    horizon: Pos
    plan_dt: Pos
    lookahead: Pos
    lateral_margin: NonNeg
    nudge_clearance: NonNeg
    nudge_slope: Pos
    road_edge_margin: NonNeg
    gap_static: NonNeg
    gap_time: NonNeg
    crew_caution_dist: NonNeg
    crew_caution_lateral: NonNeg
    crew_caution_speed: Pos
    nudge_speed: Pos
    oncoming_margin: NonNeg
    agent_accel_max: NonNeg
    agent_decel: Pos
    ttc_check: NonNeg
    stop_line_margin: NonNeg
    stand_lateral: Pos
    stand_speed: Pos


class Agents(Section):
    idm_time_headway: Pos
    idm_min_gap: NonNeg
    idm_exponent: Pos
    comfort_decel: Pos
    max_decel: Pos
    lateral_margin: NonNeg
    crew_speed: NonNegPair
    crew_accel: Pos
    vehicle_accel: Pos
    crew_yield_dist: NonNeg
    train_gap: NonNeg


class ObjectClass(Section):
    size: list[Pos] = Field(min_length=3, max_length=3)
    reflectivity: Frac


class Ground(Section):
    asphalt: Frac
    concrete: Frac
    paint: Frac
    zone_paint: Frac


Family = Literal[
    "empty_road", "crossing_cart", "crew_stepping_out", "blocked_lane", "narrow_pass",  # default suite
    "pushback", "slow_lead", "crew_occluded", "debris_in_lane", "stand_approach", "intersection",
    "lidar_degraded",  # safety suite (vla_edge/sim/scenarios.py SAFETY_FAMILIES)
    "stop_line",  # camera families (vla_edge/sim/scenarios.py CAMERA_FAMILIES)
]  # fmt: skip


class Scenario(Section):
    families: list[Family] = Field(min_length=1)
    difficulty: Frac | Literal["mixed"]
    ego_start_s: NonNeg
    ego_start_speed: NonNegPair
    agent_speed: NonNegPair
    lead_gap: NonNegPair
    lead_speed: NonNegPair
    aircraft_gap: NonNegPair
    crossing_half_length: Pos
    crossing_start_dist: NonNegPair
    crew_start_offset: NonNegPair
    event_distance: NonNegPair
    aircraft_per_100m: NonNegPair
    cones_per_100m: NonNegPair
    fod_per_100m: NonNegPair
    oncoming_per_100m: NonNegPair
    lead_vehicle_prob: FracPair
    crossing_train_carts: Annotated[list[irng(ge=0)], Field(min_length=2, max_length=2)]
    crew_trigger_dist: NonNegPair
    narrow_intrusion: NonNegPair
    narrow_left_cones: NonNegPair
    crossing_slack: Pair
    crew_pause: NonNegPair
    # safety-suite families (vla_edge/sim/families.py): [easy, hard] unless noted
    pushback_gap: NonNegPair
    pushback_intrusion: NonNegPair
    pushback_speed: NonNegPair
    pushback_trigger: NonNegPair
    slow_lead_speed: NonNegPair
    slow_lead_gap: NonNegPair
    occluded_crew_offset: NonNegPair
    occluded_trigger: NonNegPair
    debris_intrusion: NonNegPair
    debris_size: Annotated[list[Pos], Field(min_length=3, max_length=3)]
    stand_gap: NonNegPair
    stand_crew: NonNegPair
    intersection_slack: Pair
    lidar_range_noise: NonNegPair
    lidar_dropout: FracPair
    lidar_rain_clutter: FracPair
    lidar_rain_range: NonNegPair
    lidar_blocked_from_deg: rng(ge=-360, le=360)
    lidar_blocked_width_deg: NonNegPair
    # stand markings and the stop_line camera family
    stand_lead_in_extra: NonNeg
    stand_line_width: Pos
    stand_stop_bar_length: Pos
    stop_line_distance: NonNegPair
    stop_line_dwell: NonNegPair
    stop_line_wear: FracPair
    stop_line_width: Pos
    stop_line_zone: Pos
    stop_line_stop_speed: Pos


class LidarPreset(Section):
    beams: Count
    columns: Count


class Lidar(Section):
    presets: dict[str, LidarPreset] = Field(min_length=1)
    preset: str
    vfov_deg: Annotated[list[rng(ge=-90, le=90)], Field(min_length=2, max_length=2)]
    min_range: NonNeg
    max_range: Pos
    range_noise: NonNeg
    dropout: Frac
    blocked_sectors: list[Pair]
    intensity_noise: NonNeg
    intensity_scale: Pos
    intensity_falloff: Pos
    layout: str
    organized: bool
    check_order = ordered(("min_range", "max_range"), strict=True)


class Camera(Section):
    name: str = Field(min_length=1)
    width: Count
    height: Count
    hfov_deg: rng(gt=0, lt=180)
    max_depth: Pos
    jpeg_quality: irng(ge=0, le=100)
    mode: Literal["raw", "jpeg", "none"]
    sky_color: RGB
    light_dir: list[AnyFloat] = Field(min_length=3, max_length=3)
    ground_colors: dict[str, RGB]
    class_colors: dict[str, RGB]
    detail_colors: dict[str, RGB]


class ReferencePath(Section):
    behind: NonNeg
    ahead: Pos
    step: Pos


class Comfort(Section):
    max_lat_accel: Pos
    min_lon_accel: rng(lt=0)
    max_lon_accel: Pos
    max_jerk: Pos
    max_yaw_rate: Pos


class Harness(Section):
    seconds: Pos
    plan_dt: Pos
    render_lidar: bool
    render_camera: bool
    ttc_threshold: NonNeg
    ep_min_reference: NonNeg
    static_collision_nc: Frac
    stop_line_slc: Frac
    comfort: Comfort


class SuiteFault(Section):
    stopped_speed: NonNeg
    comfort_decel: Pos
    reaction_time: NonNeg
    path_margin: NonNeg


class Suite(Section):
    scenarios: Count
    seconds: Pos
    ci_scenarios: Count
    ci_seconds: Pos
    fault: SuiteFault


class SimFile(Section):
    time: Time
    frames: Frames
    route: Route
    ego: Ego
    controller: Controller
    expert: Expert
    agents: Agents
    classes: dict[str, ObjectClass]
    ground: Ground
    scenario: Scenario
    lidar: Lidar
    camera: Camera
    reference_path: ReferencePath
    harness: Harness
    suite: Suite
