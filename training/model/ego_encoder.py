"""Ego conditioning: ego state + reference path -> ego query and ego context tokens."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(c_in: int, c_hidden: int, c_out: int) -> nn.Sequential:
    """Two-layer MLP with ReLU."""
    return nn.Sequential(nn.Linear(c_in, c_hidden), nn.ReLU(inplace=True), nn.Linear(c_hidden, c_out))


class EgoEncoder(nn.Module):
    """Encode ``ego_state [B, 6]`` and ``reference_path [B, K, 2]`` (metres).

    The path is normalised with the trajectory x/y normalisation so it lives on the same
    scale as the diffusion samples.

    Returns from :meth:`forward`: ``(ego_query [B, D], ego_tokens [B, 1 + K, D])`` where
    token 0 is the ego query and tokens 1..K are the path points (with a learned index
    embedding).
    """

    def __init__(
        self,
        d_model: int,
        num_path_points: int,
        norm_offset: tuple[float, float],
        norm_scale: tuple[float, float],
    ) -> None:
        super().__init__()
        self.register_buffer("offset", torch.tensor(norm_offset, dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.tensor(norm_scale, dtype=torch.float32), persistent=False)
        self.state = mlp(6, d_model, d_model)
        self.path_global = mlp(2 * num_path_points, d_model, d_model)
        self.point = nn.Linear(2, d_model)
        self.index = nn.Parameter(torch.randn(num_path_points, d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, ego_state: Tensor, reference_path: Tensor) -> tuple[Tensor, Tensor]:
        path = (reference_path - self.offset) / self.scale
        query = self.norm(self.state(ego_state) + self.path_global(path.flatten(1)))
        tokens = self.point(path) + self.index
        return query, torch.cat([query[:, None], tokens], dim=1)
