"""``config/model.yaml``: pillarization, model inputs, diffusion head, size presets."""

from __future__ import annotations

from itertools import pairwise

from pydantic import Field, model_validator

from vla_edge.config_schema._base import AnyFloat, Count, NonNeg, NonNegInt, Pos, Section, ordered, rng


class Pillars(Section):
    point_cloud_range: list[AnyFloat] = Field(min_length=6, max_length=6)
    voxel_size: list[Pos] = Field(min_length=3, max_length=3)
    max_pillars: Count
    max_points_per_pillar: Count
    intensity_scale: Pos
    point_features: list[str] = Field(min_length=1)


class RefPathInput(Section):
    num_points: Count
    spacing: Pos


class EgoStateInput(Section):
    v: Pos
    a: Pos
    yaw_rate: Pos
    clip: Pos


class Inputs(Section):
    reference_path: RefPathInput
    ego_state: EgoStateInput


class Smoothing(Section):
    enabled: bool
    grid_dt: rng(gt=0, le=1.0)
    jerk_weight: NonNeg
    accel_weight: NonNeg
    accel_clip: list[AnyFloat] = Field(min_length=2, max_length=2)
    max_lat_accel: Pos
    hold_stop: bool = False


class Trajectory(Section):
    num_poses: Count
    dt: Pos
    num_anchors: Count
    norm_offset: list[AnyFloat] = Field(min_length=3, max_length=3)
    norm_scale: list[Pos] = Field(min_length=3, max_length=3)
    smoothing: Smoothing


class Schedule(Section):
    start_timestep: NonNegInt
    num_steps: Count


class Diffusion(Section):
    num_train_timesteps: Count
    beta_start: rng(gt=0, lt=1)
    beta_end: rng(gt=0, lt=1)
    train_max_timestep: Count
    truncated: Schedule
    vanilla: Schedule
    check_order = ordered(("beta_start", "beta_end"))


class CameraPreset(Section):
    name: str = Field(min_length=1)
    image_size: list[Count] = Field(min_length=2, max_length=2)
    mean: list[AnyFloat] = Field(min_length=3, max_length=3)
    std: list[Pos] = Field(min_length=3, max_length=3)
    stages: list[list[Count]] = Field(min_length=1)
    bev_channels: Count
    depth_bins: Count
    depth_range: list[Pos] = Field(min_length=2, max_length=2)
    samples: Count
    # Training-only auxiliary target (never exported): upper edges [m] of the distance bins of
    # "distance to the next stop line"; absent = no aux head.
    stop_line_bins: list[Pos] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _increasing_bins(self) -> CameraPreset:
        b = self.stop_line_bins
        if b is not None and any(x >= y for x, y in pairwise(b)):
            raise ValueError(f"'stop_line_bins' {b} must be strictly increasing")
        return self


class Sweeps(Section):
    lags_s: list[rng(gt=0, le=2)]  # target ages of the earlier sweeps (increasing; PillarSpec checks)
    lag_tolerance_s: Pos


class Preset(Section):
    # Every key optional: a preset may `extends` another and override a few keys.
    extends: str | None = None
    pfn_channels: Count | None = None
    stages: list[list[Count]] | None = None
    bev_channels: Count | None = None
    neck_stride: Count | None = None
    d_model: Count | None = None
    num_heads: Count | None = None
    ffn_dim: Count | None = None
    decoder_layers: Count | None = None
    vanilla: bool | None = None
    camera: CameraPreset | None = None
    sweeps: Sweeps | None = None


class ModelFile(Section):
    pillars: Pillars
    inputs: Inputs
    trajectory: Trajectory
    diffusion: Diffusion
    presets: dict[str, Preset] = Field(min_length=1)
    default_preset: str
