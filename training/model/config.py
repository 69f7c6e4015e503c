"""Typed model configuration built from ``config/model.yaml`` and a preset name."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from vla_edge.config import load_config, require
from vla_edge.errors import ConfigError
from vla_edge.pillarize import PillarSpec


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
    loss: dict[str, float]
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
                spec=PillarSpec.from_config(cfg),
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
                loss={k: float(v) for k, v in require(cfg, "loss", where=where).items()},
                smoothing=dict(tr.get("smoothing") or {"enabled": False}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: bad value for preset '{preset}': {exc!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored in the engine manifest as ``model_config``)."""
        out = asdict(self)
        out["grid_size"] = list(self.spec.grid_size)
        return out


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
