"""Typed model configuration built from ``config/model.yaml`` and a preset name."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from vla_edge.config import load_config, require
from vla_edge.errors import ConfigError
from vla_edge.pillarize import PillarSpec


@dataclass(frozen=True)
class CameraPresetConfig:
    """The optional camera branch of a preset (``presets.<name>.camera``; docs/model.md)."""

    name: str  # calibration sensor and Frame.images key ("camera_front")
    image_size: tuple[int, int]  # model input (height, width) [px]
    mean: tuple[float, float, float]  # per-channel mean of the [0, 1] RGB image
    std: tuple[float, float, float]  # per-channel std
    stages: tuple[tuple[int, int], ...]  # (channels, stride) of the image encoder
    bev_channels: int  # C: camera BEV channels
    depth_bins: int  # D: fixed depth bins along the optical axis
    depth_range: tuple[float, float]  # [m] near and far edge of the depth bins
    samples: int  # samples per (column, depth bin) and axis when building the lift matrix
    # Training-only stop-line distance head (upper bin edges [m]; () = no head; never exported)
    stop_line_bins: tuple[float, ...] = ()

    @property
    def stop_line_classes(self) -> int:
        """Classes of the stop-line head: one per bin, then "none / beyond" (0 = no head)."""
        return len(self.stop_line_bins) + 1 if self.stop_line_bins else 0

    @property
    def stride(self) -> int:
        """Total stride of the image encoder (input pixels per feature column)."""
        out = 1
        for _, s in self.stages:
            out *= s
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CameraPresetConfig:
        """From the preset's ``camera`` mapping (KeyError/TypeError/ValueError when malformed)."""
        cam = cls(
            name=str(raw["name"]),
            image_size=tuple(int(v) for v in raw["image_size"]),  # type: ignore[arg-type]
            mean=tuple(float(v) for v in raw["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in raw["std"]),  # type: ignore[arg-type]
            stages=tuple(tuple(int(v) for v in s) for s in raw["stages"]),  # type: ignore[misc]
            bev_channels=int(raw["bev_channels"]),
            depth_bins=int(raw["depth_bins"]),
            depth_range=tuple(float(v) for v in raw["depth_range"]),  # type: ignore[arg-type]
            samples=int(raw["samples"]),
            stop_line_bins=tuple(float(v) for v in raw.get("stop_line_bins") or ()),
        )
        h, w = cam.image_size
        if h % cam.stride or w % cam.stride:
            raise ValueError(
                f"camera image_size {cam.image_size} must be a multiple of the stride {cam.stride}"
            )
        if not 0 < cam.depth_range[0] < cam.depth_range[1]:
            raise ValueError(f"camera depth_range {cam.depth_range} must be 0 < near < far")
        b = cam.stop_line_bins
        if b and (b[0] <= 0 or any(x >= y for x, y in pairwise(b))):
            raise ValueError(f"camera stop_line_bins {b} must be positive and strictly increasing")
        return cam


@dataclass(frozen=True)
class PresetConfig:
    """Network sizes of one preset (see ``presets`` in ``config/model.yaml``)."""

    pfn_channels: int
    stages: tuple[tuple[int, int, int], ...]  # (channels, blocks, stride)
    bev_channels: int
    neck_stride: int
    d_model: int
    num_heads: int
    ffn_dim: int
    decoder_layers: int
    vanilla: bool
    camera: CameraPresetConfig | None = None  # None: LiDAR-only (the shipped engine)


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and the inference schedules (truncated and vanilla)."""

    num_train_timesteps: int
    beta_start: float
    beta_end: float
    train_max_timestep: int
    start_timestep: int  # of the schedule this model runs at inference
    num_steps: int


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build the student and its I/O."""

    preset: str
    spec: PillarSpec
    net: PresetConfig
    diffusion: DiffusionConfig
    num_poses: int
    dt: float
    num_anchors: int
    norm_offset: tuple[float, float, float]
    norm_scale: tuple[float, float, float]
    smoothing: dict[str, Any] = field(default_factory=lambda: {"enabled": False})

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None = None, preset: str | None = None) -> ModelConfig:
        """Build from the parsed ``model.yaml`` (loaded when ``cfg`` is None).

        Args:
            cfg: Parsed ``config/model.yaml``.
            preset: Preset name; defaults to ``default_preset``.

        Raises:
            ConfigError: Unknown preset or missing keys.
        """
        cfg = load_config("model") if cfg is None else cfg
        where = "model.yaml"
        preset = preset or str(require(cfg, "default_preset", where=where))
        net = resolve_preset(cfg, preset)
        d = require(cfg, "diffusion", where=where)
        sched = d["vanilla"] if net["vanilla"] else d["truncated"]
        tr = require(cfg, "trajectory", where=where)
        try:
            return cls(
                preset=preset,
                spec=preset_spec(cfg, net),
                net=PresetConfig(
                    pfn_channels=int(net["pfn_channels"]),
                    stages=tuple(tuple(int(v) for v in s) for s in net["stages"]),  # type: ignore[misc]
                    bev_channels=int(net["bev_channels"]),
                    neck_stride=int(net["neck_stride"]),
                    d_model=int(net["d_model"]),
                    num_heads=int(net["num_heads"]),
                    ffn_dim=int(net["ffn_dim"]),
                    decoder_layers=int(net["decoder_layers"]),
                    vanilla=bool(net["vanilla"]),
                    camera=CameraPresetConfig.from_dict(net["camera"]) if net.get("camera") else None,
                ),
                diffusion=DiffusionConfig(
                    num_train_timesteps=int(d["num_train_timesteps"]),
                    beta_start=float(d["beta_start"]),
                    beta_end=float(d["beta_end"]),
                    train_max_timestep=int(d["train_max_timestep"]),
                    start_timestep=int(sched["start_timestep"]),
                    num_steps=int(sched["num_steps"]),
                ),
                num_poses=int(tr["num_poses"]),
                dt=float(tr["dt"]),
                num_anchors=int(tr["num_anchors"]),
                norm_offset=tuple(float(v) for v in tr["norm_offset"]),  # type: ignore[arg-type]
                norm_scale=tuple(float(v) for v in tr["norm_scale"]),  # type: ignore[arg-type]
                smoothing=dict(tr.get("smoothing") or {"enabled": False}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: bad value for preset '{preset}': {exc!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored in the engine manifest as ``model_config``)."""
        out = asdict(self)
        out["grid_size"] = list(self.spec.grid_size)
        return out


def preset_spec(cfg: dict[str, Any], net: dict[str, Any]) -> PillarSpec:
    """The pillar/input spec of model.yaml with the preset's ``sweeps`` (multi-sweep presets)."""
    spec = PillarSpec.from_config(cfg)
    sw = net.get("sweeps")
    return spec.with_sweeps(sw["lags_s"], sw["lag_tolerance_s"]) if sw else spec


def resolve_preset(cfg: dict[str, Any], preset: str) -> dict[str, Any]:
    """Return the preset mapping with ``extends`` applied.

    Raises:
        ConfigError: If the preset (or the one it extends) does not exist.
    """
    presets = require(cfg, "presets", where="model.yaml")
    if preset not in presets:
        raise ConfigError(f"model.yaml: unknown preset '{preset}'; choose one of {sorted(presets)}")
    own = copy.deepcopy(presets[preset])
    parent = own.pop("extends", None)
    if parent is None:
        return own
    base = resolve_preset(cfg, parent)
    base.update(own)
    return base
