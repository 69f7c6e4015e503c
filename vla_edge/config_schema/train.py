"""``config/train.yaml``: offline training (read by training/ only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vla_edge.config_schema._base import (
    Count,
    Frac,
    FracPair,
    NonNeg,
    NonNegInt,
    NonNegPair,
    Pair,
    Pos,
    Section,
)
from vla_edge.config_schema.sim import Family


class DatasetFilter(Section):
    max_gap: Pos
    teleport_speed: Pos
    stationary_distance: NonNeg
    stationary_speed: NonNeg


class Dataset(Section):
    frame_stride: Count
    val_fraction: Frac
    max_frames_per_bag: NonNegInt
    label_match_tolerance: Pos
    workers: NonNegInt
    filter: DatasetFilter


class Labels(Section):
    bev_size: list[Count] = Field(min_length=2, max_length=2)
    batch_size: Count


class Loss(Section):
    alpha: NonNeg
    beta: NonNeg
    gamma: NonNeg
    delta: NonNeg
    temperature: Pos
    cls_weight: NonNeg
    huber_delta: Pos
    focal_gamma: NonNeg
    step_weight: NonNeg
    yaw_step_weight: NonNeg
    stop_line_weight: NonNeg


class Train(Section):
    batch_size: Count
    epochs: Count
    max_minutes: NonNeg
    lr: Pos
    teacher_lr: Pos
    weight_decay: NonNeg
    warmup_steps: NonNegInt
    min_lr_ratio: Frac
    grad_clip: NonNeg
    amp: Literal["bf16", "fp16", "off"]
    log_every: Count
    val_every: Count
    ckpt_every: Count
    val_max_frames: Count
    data_on_device: bool
    sync_bn: bool


class Progressive(Section):
    enabled: bool
    stages: list[str] = Field(min_length=1)


class LayerReduction(Section):
    enabled: bool
    keep_layers: list[NonNegInt] = Field(min_length=1)


class Calibration(Section):
    frames: Count
    split: Literal["train", "val"]
    seed: NonNegInt


class Quantize(Section):
    method: Literal["minmax", "percentile"]
    scope: list[str]
    per_channel: bool
    dedicated_qdq_pair: bool


class Evaluate(Section):
    closed_loop_scenarios: NonNegInt
    closed_loop_seconds: NonNeg
    results_dir: str = Field(min_length=1)


class Sim(Section):
    train_scenarios: Count
    heldout_scenarios: Count
    duration: Pos
    train_seed: NonNegInt
    heldout_seed: NonNegInt


class Dart(Section):
    lateral_sigma: NonNeg
    lateral_tau: Pos
    speed_sigma: NonNeg


class Takeover(Section):
    lateral: Pos
    heading: Pos
    ttc: NonNeg
    frames: Count


class Randomize(Section):
    dropout: FracPair
    range_noise: NonNegPair
    mount_height: Pair
    mount_pitch_deg: Pair
    pitch_error_deg: Pair
    blocked_sector_prob: Frac
    blocked_sector_deg: NonNegPair


class Hazard(Section):
    oversample: NonNegInt
    ratio: Frac
    min_speed: NonNeg
    speedup_oversample: NonNegInt = 0
    speedup_margin: NonNeg = 3.0


class Counterfactual(Section):
    share: Frac
    parked_share: Frac = 0.75
    distance: NonNegPair
    lateral: Pair
    classes: list[Literal["crew", "baggage_cart", "tug", "cone"]] = Field(min_length=1)


class OnPolicy(Section):
    iterations: NonNegInt
    scenarios: list[Count] = Field(min_length=1)
    seconds: Pos
    stride: Count
    difficulty: Frac | Literal["mixed"]
    families: list[Family] = Field(min_length=1)
    train_seed: NonNegInt
    eval_seed: NonNegInt
    eval_scenarios: NonNegInt
    eval_seconds: Pos
    val_fraction: Frac
    workers: NonNegInt
    minutes: list[NonNeg] = Field(min_length=1)
    epochs: Count
    finetune_lr: NonNeg = 0.0
    expert_share: Frac
    beta: Frac
    camera_dropout: Frac = 0.15
    intensity_dropout: Frac = 0.0
    intensity_gain: list[Pos] = Field(default_factory=lambda: [1.0, 1.0], min_length=2, max_length=2)
    observable_labels: bool = False
    counterfactual: Counterfactual = Counterfactual(
        share=0.0, distance=[5.0, 20.0], lateral=[-1.0, 1.0], classes=["crew", "baggage_cart", "tug", "cone"]
    )
    hazard: Hazard = Hazard(oversample=0, ratio=0.7, min_speed=2.0)
    dart: Dart
    takeover: Takeover
    randomize: Randomize

    @model_validator(mode="after")
    def _gain_order(self) -> OnPolicy:
        lo, hi = self.intensity_gain
        if lo > hi:
            raise ValueError(f"'intensity_gain' low ({lo}) must be <= high ({hi})")
        return self


class TrainFile(Section):
    seed: NonNegInt
    dataset: Dataset
    labels: Labels
    loss: Loss
    train: Train
    progressive: Progressive
    layer_reduction: LayerReduction
    calibration: Calibration
    quantize: Quantize
    evaluate: Evaluate
    sim: Sim
    onpolicy: OnPolicy
