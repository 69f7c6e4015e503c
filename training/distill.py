"""Distillation loss: a pure function returning a dict of weighted terms, plus the feature projector.

    L = α·Huber(τ_s⁺, τ_gt) + w_step·L1(Δτ_s⁺, Δτ_gt) + w_cls·Focal(z_s, a_gt)
      + β·MSE(τ_s^t, τ_teacher) + γ·MSE(proj(f_s), f_teacher)
      + δ·T²·KL(softmax(z_teacher/T) ‖ softmax(z_s/T)) + w_sl·CE(z_stop_line, bin_gt)

* ``τ_s⁺`` is the student's trajectory for the anchor nearest the ground truth (winner takes all,
  as DiffusionDrive trains its positive mode); ``τ_s^t`` the one for the anchor nearest the
  teacher's trajectory. Both are chosen by the caller (``gt_mode`` / ``teacher_mode``).
* ``Δτ`` are the x/y steps between consecutive poses, from the origin: what the vehicle follows.
  A plan 0.2 m off at every pose costs the Huber term little, but one that steps back and forth
  by 0.2 m round a stop point reads as speed, and the vehicle creeps into what it stopped for
  (docs/training.md). L1, not Huber: these errors are small, where Huber is quadratic.
* The focal classification term (weight ``cls_weight``) is the model's own task loss over the
  anchor modes; without it a GT-only student would never learn its mode scores. Setting
  β = γ = δ = 0 gives the GT-only objective used for the teacher and the GT-only student.
* The T² factor keeps the KL gradient magnitude independent of the temperature (Hinton 2015).
* Teacher terms are averaged over the samples that have a label (``teacher_mask``); a batch
  without any teacher label contributes exactly 0 for them.
* ``w_sl·CE(stop_line_logits, stop_line)`` (weight ``stop_line_weight``): the camera presets'
  training-only auxiliary head, the distance bin of the next stop line (docs/model.md, "Camera
  branch"). Averaged over the samples whose class is known (``stop_line >= 0``; -1 = unknown:
  frames stored before the label existed, or no usable image); 0 for a model without the head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn


@dataclass(frozen=True)
class LossWeights:
    """Weights of the distillation loss (all from ``config/train.yaml`` → ``loss``).

    Attributes:
        alpha: Weight of the Huber term to the ground truth.
        beta: Weight of the MSE term to the teacher trajectory.
        gamma: Weight of the BEV feature-matching term.
        delta: Weight of the temperature-scaled KL term over mode logits.
        temperature: Softmax temperature T of the KL term.
        cls_weight: Weight of the focal classification term over anchor modes (GT mode target).
        huber_delta: Huber transition point in metres/radians.
        focal_gamma: Focusing parameter of the focal loss (0 = cross-entropy).
        step_weight: Weight of the L1 term on the positive mode's x/y steps between poses.
        yaw_step_weight: Weight of the L1 term on its (wrapped) yaw steps between poses: the
            arbiter reads a stopped plan's heading from the yaw column, and a yaw that
            disagrees with the motion by more than 90 degrees makes the plan drive backwards.
        stop_line_weight: Weight of the cross-entropy of the camera's stop-line distance head
            (training-only; no effect on presets without it).
    """

    alpha: float
    beta: float
    gamma: float
    delta: float
    temperature: float
    cls_weight: float
    huber_delta: float
    focal_gamma: float
    step_weight: float
    yaw_step_weight: float
    stop_line_weight: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> LossWeights:
        """Build from the ``loss`` mapping of ``config/train.yaml`` (every key required)."""
        missing = [k for k in cls.__dataclass_fields__ if k not in cfg]
        if missing:
            from vla_edge.errors import ConfigError

            raise ConfigError(f"train.yaml loss: missing keys {missing}; see config/train.yaml")
        w = cls(**{k: float(cfg[k]) for k in cls.__dataclass_fields__})
        if w.temperature <= 0:
            from vla_edge.errors import ConfigError

            raise ConfigError(f"train.yaml loss.temperature must be > 0, got {w.temperature}")
        return w

    def gt_only(self) -> LossWeights:
        """The same weights with every teacher term switched off."""
        return dataclasses.replace(self, beta=0.0, gamma=0.0, delta=0.0)


class FeatureProjector(nn.Module):
    """Maps student BEV features ``[B, Cs, Hs, Ws]`` onto the teacher's ``[B, Ct, Ht, Wt]``.

    A 1x1 convolution changes the channels; bilinear resampling matches the label resolution.
    Used only in training (never exported).
    """

    def __init__(self, student_channels: int, teacher_channels: int, out_size: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
        self.out_size = (int(out_size[0]), int(out_size[1]))

    def forward(self, feats: Tensor) -> Tensor:
        """Project and resample student features to the teacher's channels and resolution."""
        x = self.proj(feats)
        if tuple(x.shape[-2:]) != self.out_size:
            x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return x


def kl_at_temperature(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) per sample, shape ``[B]``."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)
    return kl * (t * t)


def focal_loss(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    """Softmax focal loss over modes per sample, ``[B]`` (gamma = 0 is cross-entropy)."""
    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, target[:, None]).squeeze(-1)
    return -((1.0 - log_p.exp()) ** gamma) * log_p


def select_mode(trajectories: Tensor, mode: Tensor) -> Tensor:
    """Pick ``trajectories[b, mode[b]]`` → ``[B, T, 3]`` from ``[B, A, T, 3]``."""
    idx = mode.long().view(-1, 1, 1, 1).expand(-1, 1, *trajectories.shape[2:])
    return trajectories.gather(1, idx).squeeze(1)


def nearest_anchor(traj: Tensor, anchors: Tensor) -> Tensor:
    """Index of the anchor nearest (mean xy distance) to each trajectory ``[B,T,3]``; anchors ``[A,T,3]``."""
    d = (traj[:, None, :, :2] - anchors[None, :, :, :2].to(traj)).norm(dim=-1).mean(dim=-1)
    return d.argmin(dim=1)


def _steps(traj: Tensor) -> Tensor:
    """Steps ``[B, T, 3]`` (x, y, yaw wrapped to [-pi, pi]) between consecutive poses of
    ``[B, T, 3]``, the origin (0, 0, 0) first."""
    d = torch.diff(traj, dim=-2, prepend=torch.zeros_like(traj[..., :1, :]))
    return torch.cat([d[..., :2], torch.atan2(torch.sin(d[..., 2:]), torch.cos(d[..., 2:]))], dim=-1)


def stop_line_ce(logits: Tensor, target: Tensor | None) -> Tensor:
    """Mean cross-entropy of the stop-line head over the samples with a known class (``target >= 0``).

    ``logits [B, K]``, ``target [B]`` int (-1 = unknown; None = all unknown). Stays in the graph
    (zero gradient) when nothing is known, so DDP sees the head used on every step.
    """
    logits = logits.float()
    if target is None:
        return logits.sum() * 0.0
    known = target >= 0
    ce = F.cross_entropy(logits, target.long().clamp_min(0), reduction="none")
    return _masked_mean(ce, known)


def _masked_mean(per_sample: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return per_sample.mean()
    m = mask.to(per_sample.dtype)
    return (per_sample * m).sum() / m.sum().clamp_min(1.0)


def distillation_loss(
    student: dict[str, Tensor],
    target: dict[str, Tensor],
    weights: LossWeights,
    projector: nn.Module | None = None,
) -> dict[str, Tensor]:
    """Compute every loss term and their weighted sum.

    Args:
        student: ``trajectories [B,A,T,3]``, ``scores [B,A]`` (last cascade layer), optional
            ``aux``: list of ``(trajectories, scores)`` of earlier cascade layers (GT terms are
            averaged over all layers; teacher terms use the last), for γ > 0 ``bev_features``,
            and ``stop_line_logits [B,K]`` for a preset with the stop-line head.
        target: ``gt [B,T,3]``, ``gt_mode [B]``; with teacher labels also ``teacher_traj [B,T,3]``,
            ``teacher_mode [B]``, ``teacher_logits [B,A]``, ``teacher_bev [B,Ct,Ht,Wt]`` and
            ``teacher_mask [B]`` (bool, which samples carry a label; all when absent); optional
            ``stop_line [B]`` int (bin of the next stop line, -1 = unknown).
        weights: Term weights and temperature.
        projector: Maps student BEV features to the teacher's; required when γ > 0.

    Returns:
        Unweighted terms ``huber_gt``, ``step``, ``yaw_step``, ``cls``, ``mse_teacher``,
        ``feat``, ``kl``, ``stop_line`` and the weighted ``total`` (every value a scalar tensor;
        absent teacher terms and ``stop_line`` without the head are 0).
    """
    traj = student["trajectories"].float()
    zero = traj.new_zeros(())
    gt = target["gt"].to(traj)
    layers = [(traj, student["scores"]), *student.get("aux", [])]
    huber, step, yaw_step, cls = zero, zero, zero, zero
    gt_steps = _steps(gt)
    for layer_traj, layer_scores in layers:  # every cascade layer is supervised by the GT
        pos = select_mode(layer_traj.float(), target["gt_mode"])
        huber = huber + F.huber_loss(pos, gt, delta=weights.huber_delta)
        err = (_steps(pos) - gt_steps).abs()
        step = step + err[..., :2].mean()
        yaw_step = yaw_step + err[..., 2].mean()
        cls = cls + focal_loss(layer_scores, target["gt_mode"].long(), weights.focal_gamma).mean()
    terms = {
        "huber_gt": huber / len(layers),
        "step": step / len(layers),
        "yaw_step": yaw_step / len(layers),
        "cls": cls / len(layers),
        "mse_teacher": zero,
        "feat": zero,
        "kl": zero,
        "stop_line": zero,
    }
    if "stop_line_logits" in student:
        terms["stop_line"] = stop_line_ce(student["stop_line_logits"], target.get("stop_line"))
    mask = target.get("teacher_mask")
    if weights.beta > 0 and "teacher_traj" in target:
        s_t = select_mode(traj, target["teacher_mode"])
        mse = ((s_t - target["teacher_traj"].to(traj)) ** 2).mean(dim=(1, 2))
        terms["mse_teacher"] = _masked_mean(mse, mask)
    if weights.gamma > 0 and "teacher_bev" in target:
        if projector is None:
            raise ValueError("distillation_loss: gamma > 0 needs a FeatureProjector")
        f_t = target["teacher_bev"].float()
        f_s = projector(student["bev_features"].float())
        feat = ((f_s - f_t) ** 2).mean(dim=(1, 2, 3))
        terms["feat"] = _masked_mean(feat, mask)
    if weights.delta > 0 and "teacher_logits" in target:
        kl = kl_at_temperature(student["scores"], target["teacher_logits"], weights.temperature)
        terms["kl"] = _masked_mean(kl, mask)
    terms["total"] = (
        weights.alpha * terms["huber_gt"]
        + weights.step_weight * terms["step"]
        + weights.yaw_step_weight * terms["yaw_step"]
        + weights.cls_weight * terms["cls"]
        + weights.beta * terms["mse_teacher"]
        + weights.gamma * terms["feat"]
        + weights.delta * terms["kl"]
        + weights.stop_line_weight * terms["stop_line"]
    )
    return terms
