"""The student: pillars -> BEV backbone -> ego encoder -> truncated diffusion head.

Named tensor dicts in and out. Input keys (the ONNX input names): ``pillar_features
[B, P, M, C]``, ``pillar_coords [B, P, 2]`` int, ``pillar_count [B]`` int, ``ego_state [B, 6]``,
``reference_path [B, K, 2]``, ``noise [B, A, T, 3]``. Output keys: ``trajectories
[B, A, T, 3]``, ``scores [B, A]``, ``bev_features [B, Cb, Hb, Wb]``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.model.backbone import BevBackbone
from training.model.config import ModelConfig
from training.model.ego_encoder import EgoEncoder
from training.model.head import DiffusionHead
from training.model.pillars import PillarFeatureNet, scatter_to_bev

INPUT_NAMES = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path", "noise")
OUTPUT_NAMES = ("trajectories", "scores", "bev_features")


class StudentModel(nn.Module):
    """PointPillars BEV + ego query + DiffusionDrive-style head.

    Args:
        cfg: Model config (preset resolved).
        anchors: ``[A, T, 3]`` anchors in metres/radians.
    """

    def __init__(self, cfg: ModelConfig, anchors: Tensor) -> None:
        super().__init__()
        n = cfg.net
        self.cfg = cfg
        self.register_buffer("slots", torch.arange(cfg.spec.max_pillars), persistent=False)
        self.pfn = PillarFeatureNet(cfg.spec.num_features, n.pfn_channels)
        self.backbone = BevBackbone(n.pfn_channels, n.stages, n.bev_channels, n.neck_stride)
        self.bev_proj = nn.Conv2d(n.bev_channels, n.d_model, 1)
        self.ego = EgoEncoder(n.d_model, cfg.spec.num_path_points, cfg.norm_offset[:2], cfg.norm_scale[:2])
        self.head = DiffusionHead(cfg, anchors)

    def encode(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """BEV features, BEV value map and ego query/tokens (everything before the head)."""
        pillars = self.pfn(inputs["pillar_features"])
        canvas = scatter_to_bev(
            pillars, inputs["pillar_coords"], inputs["pillar_count"], self.slots, self.cfg.spec.grid_size
        )
        bev = self.backbone(canvas)
        query, tokens = self.ego(inputs["ego_state"], inputs["reference_path"])
        return {
            "bev_features": bev,
            "bev_value": self.bev_proj(bev),
            "ego_query": query,
            "ego_tokens": tokens,
            "ego_state": inputs["ego_state"],
        }

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
            "bev_features": [B, Cb, Hb, Wb]}`` (feed to :func:`training.model.loss.planning_loss`).
        """
        enc = self.encode(inputs)
        B = timesteps.shape[0]
        x0 = self.head.normalize(self.head.anchors)[None].expand(B, -1, -1, -1)
        noise = torch.randn_like(x0) if noise is None else noise
        x_t = self.head.sched.add_noise(x0, noise, timesteps)
        trajs, logits = self.head.denoise(x_t, timesteps, enc, enc["bev_value"])
        return {"trajectories": trajs, "scores": logits, "bev_features": enc["bev_features"]}


class ExportWrapper(nn.Module):
    """Positional-argument wrapper for ONNX / TorchScript export (names in INPUT_NAMES order)."""

    def __init__(self, model: StudentModel, with_bev: bool = True) -> None:
        super().__init__()
        self.model = model
        self.with_bev = with_bev

    def forward(
        self,
        pillar_features: Tensor,
        pillar_coords: Tensor,
        pillar_count: Tensor,
        ego_state: Tensor,
        reference_path: Tensor,
        noise: Tensor,
    ) -> tuple[Tensor, ...]:
        out = self.model(
            {
                "pillar_features": pillar_features,
                "pillar_coords": pillar_coords,
                "pillar_count": pillar_count,
                "ego_state": ego_state,
                "reference_path": reference_path,
                "noise": noise,
            }
        )
        if self.with_bev:
            return out["trajectories"], out["scores"], out["bev_features"]
        return out["trajectories"], out["scores"]
