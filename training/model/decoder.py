"""Cascade decoder layer of the diffusion head (DiffusionDrive style).

Each layer: BEV cross-attention by bilinear grid-sampling the BEV map at the trajectory
points -> cross-attention to the ego tokens -> FFN -> timestep FiLM -> regress a pose offset
(added to the input trajectory) and a mode score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import Tensor, nn

from training.model.ego_encoder import mlp


class CrossAttention(nn.Module):
    """Multi-head cross-attention written with plain matmuls (exports to any ONNX runtime).

    Head sizes are python ints fixed at construction: shape arithmetic on traced sizes would
    become tensor ops in TorchScript (a host sync that breaks CUDA-graph capture).
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.h, self.dh, self.d = num_heads, d_model // num_heads, d_model
        self.scale = float(self.dh) ** -0.5
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """``query [B, A, D]``, ``context [B, L, D]`` -> ``[B, A, D]``."""
        B, A = query.shape[0], query.shape[1]
        L = context.shape[1]
        q = self.q(query).reshape(B, A, self.h, self.dh).transpose(1, 2)
        k, v = self.kv(context).reshape(B, L, 2, self.h, self.dh).permute(2, 0, 3, 1, 4)
        w = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.out((w @ v).transpose(1, 2).reshape(B, A, self.d))


class BevPointAttention(nn.Module):
    """Sample BEV features at the T trajectory points and pool them with learned weights.

    The weights (per head, softmax over the T points) come from the query; the sampled
    features are the BEV value map (already projected to ``d_model``).
    """

    def __init__(self, d_model: int, num_heads: int, num_poses: int, bev_range: tuple[float, ...]) -> None:
        super().__init__()
        self.h, self.t, self.dh, self.d = num_heads, num_poses, d_model // num_heads, d_model
        x0, y0, _, x1, y1, _ = bev_range
        self.register_buffer("lo", torch.tensor([x0, y0], dtype=torch.float32), persistent=False)
        self.register_buffer("span", torch.tensor([x1 - x0, y1 - y0], dtype=torch.float32), persistent=False)
        self.weights = nn.Linear(d_model, num_heads * num_poses)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, query: Tensor, traj: Tensor, bev_value: Tensor) -> Tensor:
        """``query [B, A, D]``, ``traj [B, A, T, 3]`` metres, ``bev_value [B, D, Hb, Wb]``."""
        B, A = query.shape[0], query.shape[1]
        grid = 2.0 * (traj[..., :2] - self.lo) / self.span - 1.0  # x -> width, y -> height
        feats = F.grid_sample(bev_value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        feats = feats.reshape(B, self.h, self.dh, A, self.t).permute(0, 3, 1, 4, 2)  # B A h T d
        w = torch.softmax(self.weights(query).reshape(B, A, self.h, self.t, 1), dim=3)
        return self.out((w * feats).sum(3).reshape(B, A, self.d))


class DecoderLayer(nn.Module):
    """One cascade stage; returns the updated query, refined trajectory and mode logits."""

    def __init__(
        self, d_model: int, num_heads: int, ffn_dim: int, num_poses: int, bev_range: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.t = num_poses
        self.bev_attn = BevPointAttention(d_model, num_heads, num_poses, bev_range)
        self.ego_attn = CrossAttention(d_model, num_heads)
        self.ffn = mlp(d_model, ffn_dim, d_model)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 2 * d_model))
        self.reg = mlp(d_model, d_model, num_poses * 3)
        self.cls = mlp(d_model, d_model, 1)

    def forward(
        self, query: Tensor, traj: Tensor, bev_value: Tensor, ego_tokens: Tensor, t_emb: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Args: ``query [B, A, D]``, ``traj [B, A, T, 3]`` metres, BEV value, ego tokens,
        ``t_emb [B, D]``. Returns ``(query, traj + offset, logits [B, A])``."""
        B, A, _ = query.shape
        query = self.norms[0](query + self.bev_attn(query, traj, bev_value))
        query = self.norms[1](query + self.ego_attn(query, ego_tokens))
        query = self.norms[2](query + self.ffn(query))
        scale, shift = self.film(t_emb)[:, None].chunk(2, dim=-1)
        query = query * (1.0 + scale) + shift
        refined = traj + self.reg(query).reshape(B, A, self.t, 3)
        return query, refined, self.cls(query).squeeze(-1)
