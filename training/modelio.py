"""Thin adapter between the trainer and the model session's :mod:`training.model` API.

Everything the trainer, teachers and evaluation need from the model goes through here, so a
change of the model API touches one file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from training.data import DatasetError
from training.model import build_model

INPUT_KEYS = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path")
#: Extra batch keys of a camera preset (``image [B, 3, H, W]`` from
#: :func:`vla_edge.camera_input.image_tensor`, ``camera_valid [B, 1]``; 0 = LiDAR-only sample).
CAMERA_KEYS = ("image", "camera_valid")


class MissingImagesError(DatasetError):
    """A camera preset got batches without images (the data was collected without the camera)."""


def build(preset: str, model_cfg: dict[str, Any], anchors: np.ndarray, seed: int = 0) -> nn.Module:
    """A freshly initialised model of ``preset`` with the shared anchors, in train mode."""
    return build_model(preset, model_cfg, anchors=np.asarray(anchors, dtype=np.float32), seed=seed).train()


def inputs_of(batch: dict[str, Tensor], model: nn.Module | None = None) -> dict[str, Tensor]:
    """The model-input subset of a batch (plus ``image``/``camera_valid`` for a camera model).

    Raises:
        MissingImagesError: ``model`` has a camera branch and the batch holds no images.
    """
    keys = INPUT_KEYS
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    if getattr(model, "camera", None) is not None:
        missing = [k for k in CAMERA_KEYS if k not in batch]
        if missing:
            raise MissingImagesError(
                f"preset '{model.cfg.preset}' takes the camera but the training batch has no {missing}: "
                "the data holds no images (the bag dataset stores none, nor does on-policy data collected "
                "for a LiDAR-only preset; docs/training.md). Train a LiDAR-only preset or collect with "
                "`vla-edge-train onpolicy --preset tiny_cam`."
            )
        keys = INPUT_KEYS + CAMERA_KEYS
    return {k: batch[k] for k in keys}


def train_forward(model: nn.Module, batch: dict[str, Tensor], t: Tensor, noise: Tensor) -> dict[str, Any]:
    """Training pass: last cascade layer as ``trajectories``/``scores``, earlier ones in ``aux``
    (plus the training-only ``stop_line_logits`` of a preset with the stop-line head)."""
    out = model.forward_train(inputs_of(batch, model), t, noise)
    trajs, scores = out["trajectories"], out["scores"]
    res = {
        "trajectories": trajs[-1],
        "scores": scores[-1],
        "aux": list(zip(trajs[:-1], scores[:-1])),
        "bev_features": out["bev_features"],
    }
    if "stop_line_logits" in out:
        res["stop_line_logits"] = out["stop_line_logits"]
    return res


def infer(model: nn.Module, batch: dict[str, Tensor], noise: Tensor) -> dict[str, Tensor]:
    """Inference pass (truncated diffusion from the anchors) with the given noise."""
    return model({**inputs_of(batch, model), "noise": noise})


def fixed_noise(model: nn.Module, batch: int, seed: int, device: torch.device) -> Tensor:
    """The runtime's noise input for ``seed`` (numpy ``default_rng(seed)``, as ``StudentRunner``), batched."""
    shape = (1, *tuple(model.head.anchors.shape))
    n = np.random.default_rng(int(seed)).standard_normal(shape, dtype=np.float32)
    return torch.from_numpy(n).expand(batch, -1, -1, -1).contiguous().to(device)


def bev_channels(model: nn.Module) -> int:
    """Channels of the model's ``bev_features`` output."""
    return int(model.cfg.net.bev_channels)


def train_max_timestep(model: nn.Module) -> int:
    """Upper bound (exclusive) of training timesteps (truncation)."""
    return int(model.cfg.diffusion.train_max_timestep)


def num_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
