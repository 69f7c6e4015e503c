"""``config/frame.yaml``: FrameAssembler buffers and staleness limits."""

from __future__ import annotations

from vla_edge.config_schema._base import Count, NonNeg, Pos, Section, irng, ordered, rng


class Odometry(Section):
    buffer_span_s: Pos  # a negative span meant "no frame ever" with a misleading error (issue 14)
    max_samples: Count
    max_extrapolation_s: NonNeg
    accel_window_s: Pos
    backward_jump_samples: Count
    quaternion_norm_tolerance: rng(gt=0, le=1)
    max_yaw_rate: rng(gt=0, le=100)  # 1e30 rad/s was accepted (issue 14)


class Lidar(Section):
    max_stamp_skew_s: rng(gt=0, le=3600)
    min_valid_points: irng(ge=0, le=10_000_000)
    min_range_m: rng(ge=0, le=10)
    max_range_m: rng(gt=0, le=1e4)
    min_plausible_ratio: rng(ge=0, le=1)
    history_s: rng(ge=0, le=5)
    history_max_sweeps: irng(ge=0, le=50)
    history_max_speed_mps: rng(gt=0, le=200)
    check_order = ordered(("min_range_m", "max_range_m"), strict=True)


class ReferencePath(Section):
    behind_m: NonNeg
    lookahead_m: Pos


class Images(Section):
    buffer_size: Count
    decode: bool
    max_decoded_pixels: irng(ge=1, le=1_000_000_000)


class MaxAge(Section):
    odometry: Pos
    reference_path: Pos
    camera: Pos


class FrameFile(Section):
    odometry: Odometry
    lidar: Lidar
    reference_path: ReferencePath
    images: Images
    max_age_s: MaxAge
