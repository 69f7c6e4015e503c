"""Student model: shapes per preset, determinism, scheduler, anchors, loss (tiny overfit)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_torch

pytestmark = requires_torch


@pytest.fixture(scope="module")
def tiny():
    from training.model.presets import build_model

    return build_model("tiny", seed=0)


@pytest.fixture(scope="module")
def inputs(tiny):
    from training.export import example_inputs

    return example_inputs(tiny)


def test_tiny_output_shapes_and_finite(tiny, inputs) -> None:
    import torch

    cfg = tiny.cfg
    with torch.no_grad():
        out = tiny(inputs)
    h, w = cfg.spec.grid_size
    s = cfg.net.neck_stride
    assert out["trajectories"].shape == (1, cfg.num_anchors, cfg.num_poses, 3)
    assert out["scores"].shape == (1, cfg.num_anchors)
    assert out["bev_features"].shape == (1, cfg.net.bev_channels, h // s, w // s)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())


@pytest.mark.parametrize(
    ("preset", "lo", "hi"), [("base", 50e6, 70e6), ("teacher", 120e6, 400e6), ("vanilla", 50e6, 70e6)]
)
def test_big_presets_on_meta_device(preset: str, lo: float, hi: float) -> None:
    import torch

    from training.model.presets import build_model

    model = build_model(preset, anchors=np.zeros((20, 8, 3)), device="meta")
    n = sum(p.numel() for p in model.parameters())
    assert lo <= n <= hi, f"{preset} has {n / 1e6:.1f}M params"
    cfg = model.cfg
    P, M, C = cfg.spec.max_pillars, cfg.spec.max_points, cfg.spec.num_features
    with torch.device("meta"):
        x = {
            "pillar_features": torch.zeros(1, P, M, C),
            "pillar_coords": torch.zeros(1, P, 2, dtype=torch.int32),
            "pillar_count": torch.zeros(1, dtype=torch.int32),
            "ego_state": torch.zeros(1, 6),
            "reference_path": torch.zeros(1, cfg.spec.num_path_points, 2),
            "noise": torch.zeros(1, cfg.num_anchors, cfg.num_poses, 3),
        }
    out = model(x)
    assert out["trajectories"].shape == (1, cfg.num_anchors, cfg.num_poses, 3)
    assert out["scores"].shape == (1, cfg.num_anchors)
    ts = model.head.timesteps
    if cfg.net.vanilla:
        assert len(ts) == 20 and ts[0] == 999 and ts[-1] <= 50 and all(np.diff(ts) < 0)
    else:
        assert ts == [8, 4]


def test_presets_are_ordered_by_size() -> None:
    from training.model.presets import count_params

    assert count_params("tiny") < 5e6 < count_params("base") < count_params("teacher")


def test_determinism_with_fixed_noise(tiny, inputs) -> None:
    import torch

    from training.model.presets import build_model

    other = build_model("tiny", seed=0)
    with torch.no_grad():
        a, b = tiny(inputs), other(inputs)
        c = tiny({**inputs, "noise": inputs["noise"] + 1.0})
    assert torch.equal(a["trajectories"], b["trajectories"]) and torch.equal(a["scores"], b["scores"])
    assert not torch.allclose(a["trajectories"], c["trajectories"]), "the noise input must matter"


def test_scheduler_truncated_schedule_and_exact_step() -> None:
    import torch

    from training.model.scheduler import DDIMScheduler

    assert DDIMScheduler.inference_timesteps(8, 2) == [8, 4]
    assert DDIMScheduler.inference_timesteps(999, 20)[:2] == [999, 949]
    s = DDIMScheduler(1000, 1e-4, 0.02)
    x0, eps = torch.randn(2, 5), torch.randn(2, 5)
    x8 = s.add_noise(x0, eps, 8)
    # a perfect x0 prediction makes the DDIM update land on the t=4 sample of the same noise
    torch.testing.assert_close(s.step(x0, x8, 8, 4), s.add_noise(x0, eps, 4))
    torch.testing.assert_close(s.step(x0, x8, 4, -1), x0)
    assert s.alpha_bar(8) > 0.99 > s.alpha_bar(999) * 100 and s.alpha_bar(-1) == 1.0
    xt = s.add_noise(x0, eps, torch.tensor([8, 8]))
    torch.testing.assert_close(xt, x8.float())


def test_anchor_kmeans_and_kinematic_sweep() -> None:
    from training.model.anchors import kinematic_anchors, kmeans_anchors

    rng = np.random.default_rng(0)
    centres = np.stack([np.full((8, 3), v) for v in (0.0, 10.0, 20.0)])
    data = np.concatenate([c + rng.normal(0, 0.1, (50, 8, 3)) for c in centres])
    got = kmeans_anchors(data, 3, seed=1)
    np.testing.assert_allclose(np.sort(got[:, 0, 0]), [0.0, 10.0, 20.0], atol=0.1)
    a1, a2 = kinematic_anchors(20, 8, 0.5, seed=3), kinematic_anchors(20, 8, 0.5, seed=3)
    assert a1.shape == (20, 8, 3) and np.array_equal(a1, a2)
    assert np.all(np.diff(a1[:, :, 0], axis=1) >= -1e-3), "forward motion only"
    with pytest.raises(ValueError, match="at least k"):
        kmeans_anchors(data[:2], 3)


def test_positive_mode_is_the_nearest_anchor() -> None:
    import torch

    from training.distill import nearest_anchor

    anchors = torch.stack([torch.full((8, 3), float(v)) for v in range(4)])
    target = torch.cat([anchors[[2]] + 0.1, anchors[[0]] - 0.3])
    assert nearest_anchor(target, anchors).tolist() == [2, 0]


def test_tiny_overfit_reduces_the_training_loss() -> None:
    """The tiny network learns a reachable target under the one training loss
    (``distillation_loss`` with the config's ground-truth weights)."""
    import torch

    from training.distill import LossWeights, distillation_loss, nearest_anchor
    from training.export import example_inputs
    from training.model.presets import build_model
    from training.modelio import train_forward
    from vla_edge.config import load_config

    # a small grid keeps this CPU test fast; the network is the tiny preset's
    cfg = load_config("model")
    cfg["pillars"].update(point_cloud_range=[-8.0, -8.0, -3.0, 8.0, 8.0, 3.0], max_pillars=128)
    cfg["pillars"]["max_points_per_pillar"] = 8
    model = build_model("tiny", cfg, seed=1).train()
    x = example_inputs(model)
    x = {k: v.expand(2, *v.shape[1:]).contiguous() for k, v in x.items()}
    target = model.head.anchors[[3, 11]].clone() + torch.tensor([0.5, -0.3, 0.02])
    with torch.no_grad():  # a target the smooth output layer can reach (starts at the ego state)
        target = model.head.smooth(target[:, None], x["ego_state"])[:, 0]
    weights = LossWeights.from_config(load_config("train")["loss"]).gt_only()
    labels = {"gt": target, "gt_mode": nearest_anchor(target, model.head.anchors)}
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    t = torch.tensor([10, 30])
    noise = torch.randn((2, *model.head.anchors.shape), generator=gen)
    history = []
    for _ in range(15):
        terms = distillation_loss(train_forward(model, x, t, noise), labels, weights)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in terms.items()})
    assert history[-1]["cls"] < 0.5 * history[0]["cls"]
    assert history[-1]["huber_gt"] < 0.5 * history[0]["huber_gt"]


def test_smooth_output_is_the_arbiters_fit() -> None:
    """The model's output layer equals vla_edge's smooth_student fit at the raw times."""
    import numpy as np
    import torch

    from training.model.config import ModelConfig
    from training.model.smooth import SmoothOutput
    from vla_edge.config import load_config
    from vla_edge.planning.smoothing import SmoothingParams, smooth_student
    from vla_edge.types import Trajectory

    cfg = ModelConfig.from_config(load_config("model"), "tiny")
    assert cfg.smoothing["enabled"]
    layer = SmoothOutput(cfg)
    rng = np.random.default_rng(4)
    t = cfg.dt * np.arange(1, cfg.num_poses + 1)
    raw = np.stack([6.0 * t + rng.normal(0, 0.4, len(t)), rng.normal(0, 0.4, len(t)), np.zeros(len(t))], 1)
    v, a, r = 6.0, 0.5, 0.1
    ego = torch.tensor(
        [[v / cfg.spec.ego_scale[0], a / cfg.spec.ego_scale[1], r / cfg.spec.ego_scale[2], 0, 0, 0]]
    )
    out = layer(torch.tensor(raw, dtype=torch.float32)[None, None], ego)[0, 0].numpy()
    sc = cfg.smoothing
    params = SmoothingParams(True, "jerk_ls", sc["jerk_weight"], sc["accel_weight"], 1.0, 0.5)
    fit, _, _ = smooth_student(Trajectory(raw, cfg.dt, 0.0, None, "s"), sc["grid_dt"], v, a, v * r, params)
    step = round(cfg.dt / sc["grid_dt"])
    np.testing.assert_allclose(out[:, :2], fit.poses[step - 1 :: step, :2], atol=1e-4)
    assert np.abs(np.diff(out[:, 0], 3)).max() < np.abs(np.diff(raw[:, 0], 3)).max()


def test_smooth_output_hold_stop_is_the_arbiters_hold() -> None:
    """With ``smoothing.hold_stop`` the layer holds every mode still from its first backwards
    step, as vla_edge's hold_at_stop does (unbounded), and leaves forward plans alone."""
    import dataclasses

    import numpy as np
    import torch

    from training.model.config import ModelConfig
    from training.model.smooth import SmoothOutput
    from vla_edge.config import load_config
    from vla_edge.planning.smoothing import hold_at_stop
    from vla_edge.types import Trajectory

    cfg = ModelConfig.from_config(load_config("model"), "tiny")
    cfg = dataclasses.replace(cfg, smoothing={**cfg.smoothing, "hold_stop": True})
    layer = SmoothOutput(cfg)
    rng = np.random.default_rng(5)
    t = cfg.dt * np.arange(1, cfg.num_poses + 1)
    stop = np.stack([np.minimum(3.0 * t - 0.75 * t**2, 3.0) - 0.3 * np.maximum(t - 2.0, 0), 0 * t, 0 * t], 1)
    plans = np.stack([stop, np.stack([-t, 0 * t, 0 * t], 1), np.stack([5 * t, 0.1 * t, 0 * t], 1)])
    plans = np.concatenate([plans, rng.normal(0, 1.0, (5, len(t), 3))]).astype(np.float32)
    out = layer.held(torch.tensor(plans)[None])[0].numpy()
    for raw, got in zip(plans, out):
        want, _ = hold_at_stop(Trajectory(raw.astype(np.float64), cfg.dt, 0.0), 1e9)
        np.testing.assert_allclose(got, want.poses, atol=1e-6)
    np.testing.assert_allclose(out[2], plans[2])  # a forward plan is unchanged
    np.testing.assert_allclose(out[1], 0.0)  # backwards from the first step: held at the origin
    assert out[0, -1, 0] == pytest.approx(out[0, 4, 0]) and out[0, 4, 0] == pytest.approx(plans[0, 3, 0])


@pytest.mark.parametrize("preset", ["tiny", "tiny_cam"])
def test_half_precision_forward_matches_fp32(preset: str) -> None:
    """``model.half()`` is how bench_model_gpu and the FP16 paths run the presets: every buffer
    (the smooth layer's fit included) must work in half and stay close to FP32 (CPU here)."""
    import torch

    from training.export import example_inputs
    from training.model.presets import build_model

    model = build_model(preset, seed=0).eval()
    x = example_inputs(model)
    with torch.no_grad():
        ref = model(x)["trajectories"]
        half = model.half()({k: v.half() if v.is_floating_point() else v for k, v in x.items()})[
            "trajectories"
        ]
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert (half.float() - ref).abs().max().item() < 0.1


def test_pillar_net_packed_training_path_equals_the_dense_one() -> None:
    """In training the pillar net runs on the occupied slots only; output and gradients match
    the dense form that eval and export use (ties and empty pillars included)."""
    import torch

    from training.model.pillars import PillarFeatureNet

    torch.manual_seed(0)
    net = PillarFeatureNet(10, 16)
    f = torch.randn(2, 64, 8, 10) * (torch.rand(2, 64, 8, 1) < 0.3)
    f[0, :5] = 0.0  # empty pillars
    f[1, 7, 1] = f[1, 7, 0]  # a tie inside a pillar
    w = torch.randn(16)
    outs, grads = [], []
    for train in (False, True):
        net.train(train)
        net.zero_grad()
        y = net(f)
        (y * w).sum().backward()
        outs.append(y.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-6)
    assert torch.all(outs[1][0, :5] == 0)
    for gd, gp in zip(*grads):
        torch.testing.assert_close(gp, gd, rtol=1e-4, atol=1e-5)


def test_folded_pillar_net_equals_the_dense_one() -> None:
    """The export's folded pillar net (LayerNorm folded into one matmul) gives the dense result:
    empty slots, empty pillars, full pillars, ties and large features, trained-like weights."""
    import torch

    from training.model.pillars import PillarFeatureNet

    torch.manual_seed(1)
    net = PillarFeatureNet(10, 48).eval()
    with torch.no_grad():
        net.norm.weight.uniform_(0.5, 1.5)
        net.norm.bias.normal_(0.0, 0.3)  # a bias > 0 would leak from empty slots without the mask
    f = torch.randn(1, 256, 16, 10) * 20 * (torch.rand(1, 256, 16, 1) < 0.4)
    f[0, :8] = 0.0  # empty pillars
    f[0, 8:12] = torch.randn(4, 16, 10) * 40  # full pillars, large coordinates
    f[0, 12, 1] = f[0, 12, 0]  # a tie
    net.fold_for_export()
    with torch.no_grad():
        dense, folded = net(f), net.folded(f)
    torch.testing.assert_close(folded, dense, rtol=1e-5, atol=1e-5)
    assert torch.all(folded[0, :8] == 0)
    with torch.no_grad():  # FP16, as the torch-CUDA backend's half mode runs the trace
        half = PillarFeatureNet(10, 48).eval()
        half.load_state_dict(net.state_dict())
        half.fold_for_export()
        half = half.half()
        got = half.folded(f.half()).float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, dense, rtol=2e-2, atol=2e-2)
