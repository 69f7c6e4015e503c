"""Pillar feature net and BEV scatter; the torch pillarizer lives in vla_edge.backends.torch_pillarize."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# One implementation, shared with the runtime's torch-CUDA backend (re-exported here).
from vla_edge.backends.torch_pillarize import pillarize_batch, pillarize_torch

__all__ = ["PillarFeatureNet", "pillarize_batch", "pillarize_torch", "scatter_to_bev"]


#: Point features enter the folded pillar net divided by this (FP16 headroom; see fold_for_export).
FOLD_SCALE = 4.0


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
        # the folded form's constants (:meth:`fold_for_export`); not part of the state dict
        self.register_buffer("fold_weight", None, persistent=False)
        self.register_buffer("fold_root", None, persistent=False)
        self.fold_eps = 0.0

    def forward(self, features: Tensor) -> Tensor:
        """``[B, P, M, C]`` -> ``[B, P, out_channels]``."""
        if self.training and not torch.jit.is_tracing():
            return self.packed(features)
        if self.fold_weight is not None and torch.jit.is_tracing():
            return self.folded(features)
        mask = (features.abs().sum(-1, keepdim=True) > 0).type_as(features)
        x = torch.relu(self.norm(self.linear(features))) * mask
        return x.amax(dim=2)

    @torch.no_grad()
    def fold_for_export(self) -> None:
        """Precompute :meth:`folded`'s constants from the current weights (float64, then float32).

        The linear map has no bias, so LayerNorm's mean is linear in the point features and
        folds into the weights (``W_c = W - mean_rows(W)``), and its variance is the quadratic
        form ``|R f|^2`` of the C input features, ``R`` the triangular factor of ``W_c / sqrt(out)``.
        The per-slot work over ``out`` channels drops from linear + LayerNorm + ReLU + mask to
        one matmul (pillar net 10.2 -> 5.9 ms of the shipped student on one CPU thread,
        ``python bench/bench_int8_profile.py``). Traces made after this call use it.
        """
        w = self.linear.weight.detach().double().cpu()  # [out, C]
        out = w.shape[0]
        centred = w - w.mean(0, keepdim=True)
        root = torch.linalg.qr(centred / out**0.5, mode="r").R  # [C, C], |root f|^2 = variance
        gain = self.norm.weight.detach().double().cpu()
        bias = self.norm.bias.detach().double().cpu()
        # Features enter as f / FOLD_SCALE, so |root f|^2 stays far inside FP16's range (the
        # torch-CUDA backend halves the traced module); eps shrinks with it, exactly.
        s = FOLD_SCALE
        folded = torch.cat([(gain[:, None] * centred).T / s, bias[None]], 0)  # [C + 1, out]
        dev, dt = self.linear.weight.device, self.linear.weight.dtype
        self.fold_weight = folded.to(dev, dt)
        self.fold_root = (root / s).to(dev, dt)
        self.fold_eps = float(self.norm.eps) / s**2

    def folded(self, features: Tensor) -> Tensor:
        """:meth:`forward`'s result with LayerNorm folded into one matmul (equal up to rounding).

        ``relu(max(x)) == max(relu(x))``, and an empty slot's row is all zeros (its validity
        column is 0), so the max needs no mask and the ReLU runs per pillar, not per slot. A slot
        is empty when ``|R f| == 0``, which for a full-rank ``R`` is ``f == 0``: the dense mask.
        """
        root_f = torch.matmul(features, self.fold_root.T)
        # per-slot scalars without a trailing 1: ONNX Runtime broadcasts [..., 1] one element
        # at a time (this pillar net alone: 4.9 -> 3.6 ms on one CPU thread)
        var = (root_f * root_f).sum(-1)
        valid = (var > 0).type_as(features).unsqueeze(-1)
        scaled = features * torch.rsqrt(var + self.fold_eps).unsqueeze(-1)
        x = torch.matmul(torch.cat([scaled, valid], -1), self.fold_weight)
        return torch.relu(x.amax(dim=2))

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
    # no mask on the features: slots at or beyond count land in the extra cell, cut off below
    feats = pillar_feats.permute(0, 2, 1)
    # expand a 1x1 zero instead of allocating a constant: keeps the exported graph small.
    # Channels first, so the canvas needs no transpose after the scatter (BEV scatter on one
    # CPU thread: 6.7 -> 2.5 ms in ONNX Runtime).
    canvas = torch.zeros_like(pillar_feats[:, :1, :1]).expand(B, Cp, H * W + 1)
    canvas = canvas.scatter(2, lin[:, None, :].expand(B, Cp, P), feats)
    return canvas[..., : H * W].reshape(B, Cp, H, W)
