"""The student: pillars -> BEV backbone -> ego encoder -> truncated diffusion head.

Named tensor dicts in and out. Input keys (the ONNX input names): ``pillar_features
[B, P, M, C]``, ``pillar_coords [B, P, 2]`` int, ``pillar_count [B]`` int, ``ego_state [B, 6]``,
``reference_path [B, K, 2]``, ``noise [B, A, T, 3]``; camera presets add ``image [B, 3, H, W]``
(:func:`vla_edge.camera_input.image_tensor`) and ``camera_valid [B, 1]`` (0 = LiDAR-only).
Output keys: ``trajectories
[B, A, T, 3]``, ``scores [B, A]``, ``bev_features [B, Cb, Hb, Wb]``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from training.model.backbone import BevBackbone, conv_bn_relu
from training.model.camera import CameraBranch
from training.model.config import ModelConfig
from training.model.ego_encoder import EgoEncoder
from training.model.head import DiffusionHead
from training.model.pillars import PillarFeatureNet, scatter_to_bev

INPUT_NAMES = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path", "noise")
CAMERA_INPUT_NAMES = ("image", "camera_valid")
OUTPUT_NAMES = ("trajectories", "scores", "bev_features")


class StudentModel(nn.Module):
    """PointPillars BEV + ego query + DiffusionDrive-style head.

    Args:
        cfg: Model config (preset resolved).
        anchors: ``[A, T, 3]`` anchors in metres/radians.
        camera_geometry: :class:`~vla_edge.camera_input.CameraGeometry` the camera branch's
            lift is built from (camera presets only).
    """

    def __init__(self, cfg: ModelConfig, anchors: Tensor, camera_geometry: Any = None) -> None:
        super().__init__()
        n = cfg.net
        self.cfg = cfg
        self.register_buffer("slots", torch.arange(cfg.spec.max_pillars), persistent=False)
        self.pfn = PillarFeatureNet(cfg.spec.num_features, n.pfn_channels)
        self.backbone = BevBackbone(n.pfn_channels, n.stages, n.bev_channels, n.neck_stride)
        self.camera: CameraBranch | None = None
        if n.camera is not None:
            if camera_geometry is None:
                raise ValueError(f"preset '{cfg.preset}' has a camera branch: pass camera_geometry")
            self.camera = CameraBranch(n.camera, camera_geometry, cfg.spec, n.neck_stride)
            self.fuse = conv_bn_relu(n.bev_channels + n.camera.bev_channels, n.bev_channels, 1, 1)
            # Start as "LiDAR BEV through, camera ignored": a LiDAR-only checkpoint loaded with
            # strict=False (trainer init_from / --init) then plans as before until the camera
            # weights learn (the backbone's BEV is post-ReLU, so BN(eval) + ReLU keep it).
            with torch.no_grad():
                w = self.fuse[0].weight
                w.zero_()
                w[:, : n.bev_channels, 0, 0] = torch.eye(n.bev_channels)
        self.bev_proj = nn.Conv2d(n.bev_channels, n.d_model, 1)
        self.ego = EgoEncoder(n.d_model, cfg.spec.num_path_points, cfg.norm_offset[:2], cfg.norm_scale[:2])
        self.head = DiffusionHead(cfg, anchors)

    def encode(self, inputs: dict[str, Tensor], camera_columns: bool = False) -> dict[str, Tensor]:
        """BEV features, BEV value map and ego query/tokens (everything before the head).

        ``camera_columns``: also return the camera's column features (``camera_columns``, for
        the training-only stop-line head); off for inference, whose traced graph is unchanged.
        """
        pillars = self.pfn(inputs["pillar_features"])
        canvas = scatter_to_bev(
            pillars, inputs["pillar_coords"], inputs["pillar_count"], self.slots, self.cfg.spec.grid_size
        )
        bev = self.backbone(canvas)
        out: dict[str, Tensor] = {}
        if self.camera is not None:
            cols = None
            if camera_columns:
                cols = out["camera_columns"] = self.camera.column_features(inputs["image"])
            cam = self.camera(inputs["image"], inputs["camera_valid"], cols)
            bev = self.fuse(torch.cat([bev, cam], 1))
        query, tokens = self.ego(inputs["ego_state"], inputs["reference_path"])
        return {
            "bev_features": bev,
            "bev_value": self.bev_proj(bev),
            "ego_query": query,
            "ego_tokens": tokens,
            "ego_state": inputs["ego_state"],
            **out,
        }

    @property
    def has_stop_line_head(self) -> bool:
        """True for a camera preset with ``camera.stop_line_bins`` (training-only head)."""
        return self.camera is not None and self.camera.stop_line_head is not None

    def stop_line_logits(self, inputs: dict[str, Tensor], cols: Tensor | None = None) -> Tensor:
        """Training-only stop-line distance logits ``[B, len(stop_line_bins) + 1]`` (needs the head).

        ``cols``: the camera's column features when already computed (else from ``inputs["image"]``:
        the image encoder only, cheap enough for validation).
        """
        assert self.camera is not None
        cols = self.camera.column_features(inputs["image"]) if cols is None else cols
        return self.camera.stop_line_logits(cols)

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Inference: trajectories, scores and BEV features."""
        enc = self.encode(inputs)
        out = self.head(inputs["noise"], enc, enc["bev_value"])
        out["bev_features"] = enc["bev_features"]
        return out

    def forward_train(
        self, inputs: dict[str, Tensor], timesteps: Tensor, noise: Tensor | None = None
    ) -> dict[str, list[Tensor] | Tensor]:
        """Training pass: noise the anchors to ``timesteps [B]`` (< ``train_max_timestep``), denoise once.

        Returns:
            ``{"trajectories": [per layer [B, A, T, 3]], "scores": [per layer [B, A]],
            "bev_features": [B, Cb, Hb, Wb]}`` (the trainer's :func:`training.distill.distillation_loss`),
            plus ``stop_line_logits [B, K]`` when the preset has the stop-line head.
        """
        enc = self.encode(inputs, camera_columns=self.has_stop_line_head)
        B = timesteps.shape[0]
        x0 = self.head.normalize(self.head.anchors)[None].expand(B, -1, -1, -1)
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.head.sched.add_noise(x0, noise, timesteps)
        trajs, logits = self.head.denoise(x_t, timesteps, enc, enc["bev_value"])
        out = {"trajectories": trajs, "scores": logits, "bev_features": enc["bev_features"]}
        if self.has_stop_line_head:
            out["stop_line_logits"] = self.stop_line_logits(inputs, enc["camera_columns"])
        return out


def without_training_heads(model: StudentModel) -> StudentModel:
    """``model`` itself, or a copy without the training-only stop-line head (export: the ONNX graph
    and the TorchScript module hold exactly what they held before the head existed)."""
    if not model.has_stop_line_head:
        return model
    out = copy.deepcopy(model)
    assert out.camera is not None
    out.camera.stop_line_head = None
    return out


class ExportWrapper(nn.Module):
    """Positional-argument wrapper for ONNX / TorchScript export (names in :meth:`input_names` order)."""

    def __init__(self, model: StudentModel, with_bev: bool = True) -> None:
        super().__init__()
        self.model = without_training_heads(model)
        self.model.pfn.fold_for_export()  # traces of this wrapper use the folded pillar net
        self.with_bev = with_bev

    def input_names(self) -> tuple[str, ...]:
        """Graph input names: the contract six, then ``image`` and ``camera_valid`` with a camera."""
        return INPUT_NAMES + (CAMERA_INPUT_NAMES if self.model.camera is not None else ())

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        out = self.model(dict(zip(self.input_names(), args)))
        if self.with_bev:
            return out["trajectories"], out["scores"], out["bev_features"]
        return out["trajectories"], out["scores"]
