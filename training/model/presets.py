"""Build a :class:`StudentModel` for a preset; parameter counts without allocating weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from training.model.anchors import kinematic_anchors
from training.model.config import ModelConfig
from training.model.model import StudentModel
from vla_edge.calibration import Calibration
from vla_edge.camera_input import CameraSpec, camera_geometry
from vla_edge.config import load_config

PRESETS = ("tiny", "tiny_motion", "tiny_cam", "base", "teacher", "vanilla")


def build_model(
    preset: str | None = None,
    cfg: dict[str, Any] | None = None,
    anchors: np.ndarray | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    calibration: Calibration | None = None,
) -> StudentModel:
    """Instantiate the student for ``preset`` with seeded weights.

    Args:
        preset: Preset name (default: ``default_preset`` of ``config/model.yaml``).
        cfg: Parsed ``config/model.yaml`` (loaded when None).
        anchors: ``[A, T, 3]`` anchors; default: seeded kinematic placeholder anchors.
        seed: Seed of the weight initialisation and placeholder anchors.
        device: Where to build (``"meta"`` builds shapes only, for parameter counts).
        calibration: Camera presets: the intrinsics/extrinsics the lift is built from
            (default: ``config/calibration.yaml``). A checkpoint's own lift replaces it on load.

    Returns:
        The model in eval mode.
    """
    mc = ModelConfig.from_config(cfg, preset)
    if anchors is None:
        anchors = kinematic_anchors(mc.num_anchors, mc.num_poses, mc.dt, seed=seed)
    anchors_t = torch.as_tensor(np.asarray(anchors, dtype=np.float32))
    geometry = None
    if mc.net.camera is not None:
        calib = calibration or Calibration.from_config(load_config("calibration"))
        cam = mc.net.camera
        spec = CameraSpec(cam.name, cam.image_size[0], cam.image_size[1], cam.mean, cam.std)
        geometry = camera_geometry(calib, spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device is not None and str(device) == "meta":
            with torch.device("meta"):
                model = StudentModel(mc, anchors_t.to("meta"), geometry)
        else:
            model = StudentModel(mc, anchors_t, geometry)
            if device is not None:
                model = model.to(device)
    return model.eval()


def count_params(preset: str, cfg: dict[str, Any] | None = None) -> int:
    """Number of trainable parameters of ``preset`` (built on the meta device)."""
    model = build_model(preset, cfg, anchors=np.zeros((1, 1, 3)), device="meta")
    return sum(p.numel() for p in model.parameters())
