"""Planning loss: focal classification over anchors + L1 on the positive mode.

A pure function returning a dict of weighted terms (weights from ``loss`` in
``config/model.yaml``). The positive mode is the anchor closest to the ground truth (mean
x/y distance), as in DiffusionDrive; every cascade layer is supervised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias
from torch import Tensor


def positive_mode(anchors: Tensor, target: Tensor) -> Tensor:
    """Index ``[B]`` of the anchor (``[A, T, 3]``) nearest to each target (``[B, T, 3]``)."""
    d = torch.linalg.norm(target[:, None, :, :2] - anchors[None, :, :, :2], dim=-1).mean(-1)
    return d.argmin(dim=1)


def focal_loss(logits: Tensor, onehot: Tensor, alpha: float, gamma: float) -> Tensor:
    """Sigmoid focal loss summed over anchors, averaged over the batch."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    p_t = p * onehot + (1 - p) * (1 - onehot)
    a_t = alpha * onehot + (1 - alpha) * (1 - onehot)
    return (a_t * (1 - p_t) ** gamma * ce).sum(-1).mean()


def planning_loss(
    outputs: dict[str, list[Tensor]], target: Tensor, anchors: Tensor, weights: dict[str, float]
) -> dict[str, Tensor]:
    """Weighted loss terms.

    Args:
        outputs: ``{"trajectories": [B, A, T, 3] per layer, "scores": [B, A] per layer}``.
        target: Ground-truth trajectories ``[B, T, 3]`` (metres, radians).
        anchors: ``[A, T, 3]``.
        weights: ``cls_weight``, ``reg_weight``, ``focal_alpha``, ``focal_gamma``, ``yaw_weight``.

    Returns:
        ``{"loss": total, "cls": weighted focal term, "reg": weighted L1 term}``.
    """
    pos = positive_mode(anchors, target)
    onehot = F.one_hot(pos, anchors.shape[0]).to(target.dtype)
    dim_w = torch.tensor([1.0, 1.0, weights["yaw_weight"]], dtype=target.dtype, device=target.device)
    cls = target.new_zeros(())
    reg = target.new_zeros(())
    for traj, logits in zip(outputs["trajectories"], outputs["scores"]):
        cls = cls + focal_loss(logits, onehot, weights["focal_alpha"], weights["focal_gamma"])
        best = traj[torch.arange(traj.shape[0], device=traj.device), pos]
        reg = reg + ((best - target).abs() * dim_w).mean()
    cls = weights["cls_weight"] * cls
    reg = weights["reg_weight"] * reg
    return {"loss": cls + reg, "cls": cls, "reg": reg}
