"""Torch pillarization (bit-identical to ``vla_edge.pillarize``), pillar feature net, BEV scatter."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vla_edge.pillarize import ModelInputError, PillarSpec


def pillarize_torch(points: Tensor, spec: PillarSpec) -> tuple[Tensor, Tensor, int]:
    """Torch twin of :func:`vla_edge.pillarize.pillarize` (same rules, float64 arithmetic).

    Args:
        points: N x >=4 tensor (x, y, z, intensity), any float dtype, on any device.
        spec: The pillar spec.

    Returns:
        ``(features [P, M, C] float32, coords [P, 2] int32, count)`` on ``points.device``.
    """
    if points.ndim != 2 or points.shape[1] < 4:
        raise ModelInputError(f"pillarize needs N x 4 points, got shape {tuple(points.shape)}")
    dev = points.device
    P, M, C = spec.max_pillars, spec.max_points, spec.num_features
    H, W = spec.grid_size
    features = torch.zeros((P, M, C), dtype=torch.float32, device=dev)
    coords = torch.zeros((P, 2), dtype=torch.int32, device=dev)
    p = points[:, :4].to(torch.float64)
    lo = torch.tensor(spec.point_cloud_range[:3], dtype=torch.float64, device=dev)
    hi = torch.tensor(spec.point_cloud_range[3:], dtype=torch.float64, device=dev)
    keep = torch.isfinite(p).all(1) & ((p[:, :3] >= lo) & (p[:, :3] < hi)).all(1)
    p = p[keep]
    if p.shape[0] == 0:
        return features, coords, 0
    vx, vy, vz = spec.voxel_size
    col = torch.clamp(torch.floor((p[:, 0] - lo[0]) / vx).long(), max=W - 1)
    row = torch.clamp(torch.floor((p[:, 1] - lo[1]) / vy).long(), max=H - 1)
    lin = row * W + col

    lin_s, order = torch.sort(lin, stable=True)
    uniq, group, counts = torch.unique_consecutive(lin_s, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    if uniq.shape[0] > P:
        cx = spec.point_cloud_range[0] + ((uniq % W).to(torch.float64) + 0.5) * vx
        cy = spec.point_cloud_range[1] + ((uniq // W).to(torch.float64) + 0.5) * vy
        nearest = torch.sort(cx * cx + cy * cy, stable=True).indices[:P]
        kept = torch.zeros(uniq.shape[0], dtype=torch.bool, device=dev)
        kept[nearest] = True
    else:
        kept = torch.ones(uniq.shape[0], dtype=torch.bool, device=dev)
    slot_of_group = torch.cumsum(kept.long(), 0) - 1
    rank = torch.arange(lin_s.shape[0], device=dev) - first[group]
    use = kept[group] & (rank < M)
    q = p[order[use]]
    slot = slot_of_group[group[use]]
    rank = rank[use]

    n_kept = int(kept.sum())
    n_pts = torch.clamp(counts[kept], max=M).to(torch.float64)
    sums = torch.zeros((n_kept, 3), dtype=torch.float64, device=dev).index_add_(0, slot, q[:, :3])
    mean = sums / n_pts[:, None]
    kl = uniq[kept]
    centre = torch.stack(
        [
            lo[0] + ((kl % W).to(torch.float64) + 0.5) * vx,
            lo[1] + ((kl // W).to(torch.float64) + 0.5) * vy,
            torch.full((n_kept,), float(lo[2] + 0.5 * vz), dtype=torch.float64, device=dev),
        ],
        dim=1,
    )
    feat = torch.cat(
        [q[:, :3], q[:, 3:4] / spec.intensity_scale, q[:, :3] - mean[slot], q[:, :3] - centre[slot]], dim=1
    )
    features[slot, rank] = feat.to(torch.float32)
    coords[:n_kept, 0] = (kl // W).to(torch.int32)
    coords[:n_kept, 1] = (kl % W).to(torch.int32)
    return features, coords, n_kept


class PillarFeatureNet(nn.Module):
    """Per-point linear + LayerNorm + ReLU, then max over the pillar's points.

    Empty point slots (all-zero features) are masked to zero before the max, so padding
    never contributes.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=False)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, features: Tensor) -> Tensor:
        """``[B, P, M, C]`` -> ``[B, P, out_channels]``."""
        mask = (features.abs().sum(-1, keepdim=True) > 0).type_as(features)
        x = torch.relu(self.norm(self.linear(features))) * mask
        return x.amax(dim=2)


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
