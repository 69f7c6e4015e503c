"""Unit tests of the distillation loss terms (training/distill.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import requires_torch

pytestmark = requires_torch


def _weights(**kw):
    from training.distill import LossWeights

    base = dict(
        alpha=1.0,
        beta=0.5,
        gamma=0.1,
        delta=0.3,
        temperature=4.0,
        cls_weight=1.0,
        huber_delta=1.0,
        focal_gamma=0.0,
        step_weight=1.0,
        yaw_step_weight=2.0,
        stop_line_weight=0.2,
    )
    base.update(kw)
    return LossWeights(**base)


def test_kl_hand_computed_two_modes_with_t_squared():
    import torch

    from training.distill import kl_at_temperature

    zs = torch.tensor([[0.0, 0.0]])
    zt = torch.tensor([[4.0, 0.0]])
    T = 4.0
    # softmax([1, 0]) = [e/(e+1), 1/(e+1)]; student uniform
    p = np.array([math.e / (math.e + 1), 1 / (math.e + 1)])
    expected = T * T * float(np.sum(p * np.log(p / 0.5)))
    got = float(kl_at_temperature(zs, zt, T)[0])
    assert got == pytest.approx(expected, rel=1e-5)
    # T = 1 gives a different (unscaled, sharper) value: the temperature is really applied
    p1 = np.exp([4.0, 0.0]) / np.exp([4.0, 0.0]).sum()
    assert float(kl_at_temperature(zs, zt, 1.0)[0]) == pytest.approx(
        float(np.sum(p1 * np.log(p1 / 0.5))), rel=1e-5
    )


def test_kl_zero_for_equal_logits_and_direction():
    import torch

    from training.distill import kl_at_temperature

    z = torch.randn(3, 20)
    assert torch.allclose(kl_at_temperature(z, z, 4.0), torch.zeros(3), atol=1e-6)
    a, b = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 5.0]])
    # direction: KL(p_teacher || p_student), checked against numpy
    ps, pt = (
        np.exp(a[0].numpy()) / np.exp(a[0].numpy()).sum(),
        np.exp(b[0].numpy()) / np.exp(b[0].numpy()).sum(),
    )
    assert float(kl_at_temperature(a, b, 1.0)[0]) == pytest.approx(
        float(np.sum(pt * np.log(pt / ps))), rel=1e-5
    )
    assert abs(float(np.sum(pt * np.log(pt / ps))) - float(np.sum(ps * np.log(ps / pt)))) > 1e-2


def test_t_squared_keeps_gradient_scale():
    import torch

    from training.distill import kl_at_temperature

    torch.manual_seed(0)
    zt = torch.randn(64, 20) * 0.3
    norms = []
    for T in (4.0, 8.0):
        zs = torch.zeros(64, 20, requires_grad=True)
        kl_at_temperature(zs, zt, T).mean().backward()
        norms.append(zs.grad.norm().item())
    # with T² the gradient is ~(z_s - z_t)/A for any large T; without it it would shrink 4x here
    assert 0.8 < norms[0] / norms[1] < 1.25


def test_projector_shapes():
    import torch

    from training.distill import FeatureProjector

    proj = FeatureProjector(64, 768, (20, 20))
    out = proj(torch.randn(2, 64, 40, 40))
    assert out.shape == (2, 768, 20, 20)
    same = FeatureProjector(8, 16, (5, 7))(torch.randn(1, 8, 5, 7))
    assert same.shape == (1, 16, 5, 7)


def _batch(B=4, A=6, T=8, with_teacher=True):
    import torch

    g = torch.Generator().manual_seed(0)
    student = {
        "trajectories": torch.randn(B, A, T, 3, generator=g),
        "scores": torch.randn(B, A, generator=g),
        "bev_features": torch.randn(B, 8, 10, 10, generator=g),
    }
    target = {"gt": torch.randn(B, T, 3, generator=g), "gt_mode": torch.randint(0, A, (B,), generator=g)}
    if with_teacher:
        target.update(
            teacher_traj=torch.randn(B, T, 3, generator=g),
            teacher_mode=torch.randint(0, A, (B,), generator=g),
            teacher_logits=torch.randn(B, A, generator=g),
            teacher_bev=torch.randn(B, 16, 5, 5, generator=g),
            teacher_mask=torch.ones(B, dtype=torch.bool),
        )
    return student, target


def test_total_is_weighted_sum_and_huber_mse_by_hand():
    import torch

    from training.distill import FeatureProjector, distillation_loss, select_mode

    student, target = _batch()
    w = _weights()
    proj = FeatureProjector(8, 16, (5, 5))
    terms = distillation_loss(student, target, w, proj)
    expected = (
        w.alpha * terms["huber_gt"]
        + w.step_weight * terms["step"]
        + w.yaw_step_weight * terms["yaw_step"]
        + w.cls_weight * terms["cls"]
        + w.beta * terms["mse_teacher"]
        + w.gamma * terms["feat"]
        + w.delta * terms["kl"]
    )
    assert torch.allclose(terms["total"], expected)
    pos = select_mode(student["trajectories"], target["gt_mode"]).numpy()
    d = np.abs(pos - target["gt"].numpy())
    huber = np.where(d < 1.0, 0.5 * d**2, d - 0.5).mean()
    assert float(terms["huber_gt"]) == pytest.approx(huber, rel=1e-5)
    tm = select_mode(student["trajectories"], target["teacher_mode"]).numpy()
    assert float(terms["mse_teacher"]) == pytest.approx(
        ((tm - target["teacher_traj"].numpy()) ** 2).mean(), rel=1e-5
    )
    # doubling beta changes the total by exactly beta * mse_teacher
    t2 = distillation_loss(student, target, _weights(beta=1.0), proj)
    assert float((t2["total"] - terms["total"]).detach()) == pytest.approx(
        0.5 * float(terms["mse_teacher"]), rel=1e-4
    )


def test_step_term_costs_a_plan_that_jitters_round_a_stop_point():
    import torch

    from training.distill import distillation_loss

    # GT: standing still. One plan 0.15 m ahead at every pose, one stepping back and forth by
    # 0.15 m (what the shipped student planned near a parked truck, and crept on).
    gt = torch.zeros(1, 8, 3)
    offset = gt.clone()
    offset[..., 0] = 0.15
    jitter = gt.clone()
    jitter[0, :, 0] = torch.tensor([0.15, 0.0, 0.15, 0.0, 0.15, 0.0, 0.15, 0.0])
    target = {"gt": gt, "gt_mode": torch.zeros(1, dtype=torch.long)}
    w = _weights(beta=0.0, gamma=0.0, delta=0.0)
    terms = [
        distillation_loss({"trajectories": p[:, None], "scores": torch.zeros(1, 1)}, target, w)
        for p in (offset, jitter)
    ]
    assert float(terms[1]["huber_gt"]) < float(terms[0]["huber_gt"])  # the position term prefers the jitter
    assert float(terms[0]["step"]) == pytest.approx(0.15 / 16, rel=1e-5)  # one 0.15 m step of 16 values
    assert float(terms[1]["step"]) == pytest.approx(0.15 * 8 / 16, rel=1e-5)
    assert float(terms[1]["total"]) > float(terms[0]["total"])  # the total no longer does


def test_yaw_step_term_costs_a_heading_that_flips_and_wraps_at_pi():
    import torch

    from training.distill import distillation_loss

    # GT: standing still, heading pi (a yaw column may wrap: -pi and pi are the same heading).
    gt = torch.zeros(1, 8, 3)
    gt[..., 2] = torch.pi
    wrapped = gt.clone()
    wrapped[0, 1::2, 2] = -torch.pi  # the same headings, written across the wrap
    flipped = gt.clone()
    flipped[0, 4:, 2] = 0.0  # half-way the heading turns round: a stopped plan that reverses
    target = {"gt": gt, "gt_mode": torch.zeros(1, dtype=torch.long)}
    w = _weights(beta=0.0, gamma=0.0, delta=0.0)
    t_wrap, t_flip = (
        distillation_loss({"trajectories": p[:, None], "scores": torch.zeros(1, 1)}, target, w)
        for p in (wrapped, flipped)
    )
    assert float(t_wrap["yaw_step"]) == pytest.approx(0.0, abs=1e-5)
    assert float(t_flip["yaw_step"]) == pytest.approx(torch.pi / 8, rel=1e-5)  # one pi step of 8
    assert float(t_flip["step"]) == 0.0  # the x/y term cannot see it


def test_gt_only_and_masked_teacher_terms():
    from training.distill import distillation_loss

    student, target = _batch()
    w = _weights().gt_only()
    terms = distillation_loss(student, target, w)
    assert float(terms["kl"]) == 0.0 and float(terms["mse_teacher"]) == 0.0 and float(terms["feat"]) == 0.0
    assert float(terms["total"]) == pytest.approx(
        float(terms["huber_gt"] + terms["step"] + 2.0 * terms["yaw_step"] + terms["cls"]), rel=1e-6
    )
    # mask: a batch without labels contributes 0; half-masked averages over labelled rows only
    target["teacher_mask"][:] = False
    t0 = distillation_loss(student, target, _weights(gamma=0.0))
    assert float(t0["kl"]) == 0.0 and float(t0["mse_teacher"]) == 0.0
    target["teacher_mask"][:2] = True
    half = distillation_loss(student, target, _weights(gamma=0.0))
    sub_s = {k: v[:2] for k, v in student.items()}
    sub_t = {k: v[:2] for k, v in target.items()}
    only = distillation_loss(sub_s, sub_t, _weights(gamma=0.0))
    assert float(half["kl"]) == pytest.approx(float(only["kl"]), rel=1e-5)


def test_feature_term_needs_projector_and_cls_is_cross_entropy_at_gamma0():
    import torch
    import torch.nn.functional as F  # noqa: N812

    from training.distill import distillation_loss

    student, target = _batch()
    with pytest.raises(ValueError, match="FeatureProjector"):
        distillation_loss(student, target, _weights())
    terms = distillation_loss(student, target, _weights(gamma=0.0))
    ce = F.cross_entropy(student["scores"], target["gt_mode"])
    assert torch.allclose(terms["cls"], ce, atol=1e-6)


def test_weights_from_config_rejects_missing_and_bad_temperature():
    from training.distill import LossWeights
    from vla_edge.config import load_config
    from vla_edge.errors import ConfigError

    cfg = load_config("train")["loss"]
    w = LossWeights.from_config(cfg)
    assert (w.alpha, w.beta, w.gamma, w.delta, w.temperature) == (1.0, 0.5, 0.1, 0.3, 4.0)
    bad = dict(cfg)
    bad.pop("delta")
    with pytest.raises(ConfigError, match="delta"):
        LossWeights.from_config(bad)
    with pytest.raises(ConfigError, match="temperature"):
        LossWeights.from_config({**cfg, "temperature": 0})


def test_stop_line_term_is_masked_cross_entropy_by_hand():
    """The camera head's stop-line term: CE over the known rows only (-1 = unknown), weighted."""
    import torch

    from training.distill import distillation_loss

    student, target = _batch(B=4, with_teacher=False)
    w = _weights(beta=0.0, gamma=0.0, delta=0.0, stop_line_weight=0.5)
    base = distillation_loss(student, target, w)
    assert float(base["stop_line"]) == 0.0, "no head (LiDAR-only preset): the term is 0"
    logits = torch.tensor(
        [[0.0, math.log(3.0), 0.0], [2.0, 0.0, 0.0], [5.0, -5.0, 9.0], [0.0, 0.0, 0.0]], requires_grad=True
    )
    cls = torch.tensor([1, 0, -1, -1])  # rows 2, 3 unknown (an old store, a dropped camera)
    terms = distillation_loss({**student, "stop_line_logits": logits}, {**target, "stop_line": cls}, w)
    # row 0: softmax = [1, 3, 1] / 5 -> -log(3/5); row 1: -log(e^2 / (e^2 + 2))
    expected = 0.5 * (-math.log(3 / 5) - math.log(math.e**2 / (math.e**2 + 2)))
    assert float(terms["stop_line"].detach()) == pytest.approx(expected, rel=1e-6)
    assert float((terms["total"] - base["total"]).detach()) == pytest.approx(0.5 * expected, rel=1e-5)
    terms["total"].backward()
    assert logits.grad[2:].abs().sum() == 0.0, "masked rows get no gradient"
    assert logits.grad[:2].abs().sum() > 0
    # nothing known (or no label at all): 0, still in the graph with a zero gradient
    for tgt in ({**target, "stop_line": torch.full((4,), -1)}, target):
        z = logits.detach().clone().requires_grad_(True)
        t0 = distillation_loss({**student, "stop_line_logits": z}, tgt, w)
        assert float(t0["stop_line"].detach()) == 0.0
        t0["total"].backward()
        assert z.grad is not None and not z.grad.any()
    # weight 0: the head's loss leaves the total alone
    off = distillation_loss(
        {**student, "stop_line_logits": logits}, {**target, "stop_line": cls}, _weights(stop_line_weight=0.0)
    )
    assert float(off["total"].detach()) == pytest.approx(float(base["total"]), rel=1e-6)


def test_stop_line_weight_is_a_required_loss_key():
    from training.distill import LossWeights
    from vla_edge.config import load_config
    from vla_edge.errors import ConfigError

    cfg = load_config("train")["loss"]
    assert LossWeights.from_config(cfg).stop_line_weight == 0.2
    assert LossWeights.from_config(cfg).gt_only().stop_line_weight == 0.2, "not a teacher term"
    with pytest.raises(ConfigError, match="stop_line_weight"):
        LossWeights.from_config({k: v for k, v in cfg.items() if k != "stop_line_weight"})
