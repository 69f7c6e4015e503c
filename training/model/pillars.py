"""Pillar feature net and BEV scatter; the torch pillarizer lives in vla_edge.backends.torch_pillarize."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# One implementation, shared with the runtime's torch-CUDA backend (re-exported here).
from vla_edge.backends.torch_pillarize import pillarize_batch, pillarize_torch

__all__ = ["PillarFeatureNet", "pillarize_batch", "pillarize_torch", "scatter_to_bev"]


class PillarFeatureNet(nn.Module):
    """Per-point linear + LayerNorm + ReLU, then max over the pillar's points.

    Empty point slots (all-zero features) are masked to zero before the max, so padding
    never contributes. In training the same result comes from the occupied slots alone
    (:meth:`packed`): a training frame fills about a fifth of its slots, and the per-point
    LayerNorm over every slot was 44 % of an H100 train step (``bench/bench_train_gpu.py
    --profile``). Eval, tracing and export keep the dense form (static shapes, CUDA graphs).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=False)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, features: Tensor) -> Tensor:
        """``[B, P, M, C]`` -> ``[B, P, out_channels]``."""
        if self.training and not torch.jit.is_tracing():
            return self.packed(features)
        mask = (features.abs().sum(-1, keepdim=True) > 0).type_as(features)
        x = torch.relu(self.norm(self.linear(features))) * mask
        return x.amax(dim=2)

    def packed(self, features: Tensor) -> Tensor:
        """:meth:`forward`'s result from the occupied slots only (a running max per pillar)."""
        B, P, M, C = features.shape
        flat = features.reshape(B * P * M, C)
        rows = torch.nonzero(flat.abs().sum(-1) > 0).squeeze(1)
        x = torch.relu(self.norm(self.linear(flat[rows])))  # >= 0, so the zeros below are neutral
        out = x.new_zeros(B * P, x.shape[1])
        idx = (rows // M)[:, None].expand(-1, x.shape[1])
        return out.scatter_reduce(0, idx, x, "amax", include_self=True).reshape(B, P, -1)


def scatter_to_bev(
    pillar_feats: Tensor, coords: Tensor, count: Tensor, slots: Tensor, grid: tuple[int, int]
) -> Tensor:
    """Scatter pillar features into a dense BEV canvas.

    Slots at or beyond ``count`` go to a discarded extra cell; coordinates are clamped into
    the grid so a malformed input cannot index out of bounds. No tensor is created with an
    explicit device, so a traced (TorchScript) graph moves to CUDA with its module.

    Args:
        pillar_feats: ``[B, P, Cp]``.
        coords: ``[B, P, 2]`` int (row, col).
        count: ``[B]`` int, valid pillars per sample.
        slots: ``[P]`` int64 ``arange(P)`` (a module buffer).
        grid: ``(H, W)``.

    Returns:
        ``[B, Cp, H, W]``.
    """
    B, P, Cp = pillar_feats.shape
    H, W = grid
    row = torch.clamp(coords[..., 0].long(), 0, H - 1)
    col = torch.clamp(coords[..., 1].long(), 0, W - 1)
    valid = slots[None, :] < count.long().reshape(B, 1)
    lin = torch.where(valid, row * W + col, torch.full_like(row, H * W))
    feats = pillar_feats * valid[..., None].type_as(pillar_feats)
    # expand a 1x1 zero instead of allocating a constant: keeps the exported graph small
    canvas = torch.zeros_like(pillar_feats[:, :1, :1]).expand(B, H * W + 1, Cp)
    canvas = canvas.scatter(1, lin[..., None].expand(B, P, Cp), feats)
    return canvas[:, : H * W].permute(0, 2, 1).reshape(B, Cp, H, W)
