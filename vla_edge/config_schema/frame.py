"""``config/frame.yaml``: FrameAssembler buffers and staleness limits."""

from __future__ import annotations

from vla_edge.config_schema._base import Count, NonNeg, Pos, Section


class Odometry(Section):
    buffer_span_s: Pos  # a negative span meant "no frame ever" with a misleading error (issue 14)
    max_samples: Count
    max_extrapolation_s: NonNeg
    accel_window_s: Pos
    backward_jump_samples: Count


class ReferencePath(Section):
    behind_m: NonNeg
    lookahead_m: Pos


class Images(Section):
    buffer_size: Count
    decode: bool


class MaxAge(Section):
    odometry: Pos
    reference_path: Pos
    camera: Pos


class FrameFile(Section):
    odometry: Odometry
    reference_path: ReferencePath
    images: Images
    max_age_s: MaxAge
