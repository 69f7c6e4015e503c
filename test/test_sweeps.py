"""Multi-sweep input: history in the FrameAssembler, motion compensation, 11-feature pillars."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_torch

from vla_edge.config import load_config
from vla_edge.errors import ConfigError, ManifestError
from vla_edge.frame_assembly import FrameAssembler
from vla_edge.model_inputs import frame_points, model_inputs, model_points
from vla_edge.pillarize import ModelInputError, PillarSpec, pillarize
from vla_edge.sweeps import compose_sweeps, select_sweeps, to_current_frame
from vla_edge.types import EgoState, PastSweep

SPEC = PillarSpec.from_config(load_config("model")).with_sweeps([0.3], 0.05)


def _cloud(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([-30, -30, -2, 0], [30, 30, 1, 1], (n, 4)).astype(np.float32)


def test_a_static_point_lands_where_it_is_now_after_ego_motion() -> None:
    world = np.array([[20.0, 3.0], [5.0, -7.0]])
    past = EgoState(0.0, 1.0, 2.0, 0.4, 5.0)
    now = EgoState(0.3, 2.4, 2.6, 0.47, 5.0)

    def in_frame(e: EgoState) -> np.ndarray:
        c, s = np.cos(e.yaw), np.sin(e.yaw)
        d = world - [e.x, e.y]
        return np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], [0.5, -1], [0.2, 0.9]])

    moved = to_current_frame(in_frame(past), past, now)
    np.testing.assert_allclose(moved, in_frame(now), atol=1e-9)


def test_compose_picks_the_sweep_nearest_each_lag_and_tags_its_age() -> None:
    ego = EgoState(10.0, 0.0, 0.0, 0.0, 0.0)
    a, b = _cloud(50, 1), _cloud(70, 2)
    hist = (PastSweep(9.9, ego, a), PastSweep(9.72, ego, b), PastSweep(9.5, ego, a))
    out = compose_sweeps(_cloud(100), ego, hist, SPEC)
    assert out.shape == (170, 5) and out.dtype == np.float32
    assert (out[:100, 4] == 0).all() and np.allclose(out[100:, 4], 0.28)
    np.testing.assert_allclose(out[100:, :4], b, atol=1e-6)  # ego did not move: same place
    # nothing within the tolerance (0.3 +- 0.05): current sweep only, never a wrong lag
    far = (PastSweep(9.9, ego, a), PastSweep(9.6, ego, b))
    assert compose_sweeps(_cloud(100), ego, far, SPEC).shape == (100, 5)
    assert select_sweeps(10.0, (), SPEC) == []


def test_earlier_sweeps_without_an_ego_pose_are_an_error() -> None:
    ego = EgoState(10.0, 0.0, 0.0, 0.0, 0.0)
    hist = (PastSweep(9.7, ego, _cloud(10)),)
    with pytest.raises(ModelInputError, match="ego pose"):
        model_inputs(SPEC, _cloud(10), np.array([[0.0, 0.0], [10.0, 0.0]]), ego=(1.0, 0.0, 0.0), history=hist)
    # a single-sweep spec ignores history entirely (the shipped engine)
    single = PillarSpec.from_config(load_config("model"))
    pts = _cloud(10)
    assert model_points(single, pts, None, hist) is pts


def test_lag_is_the_eleventh_feature_and_needs_five_columns() -> None:
    pts = np.hstack([_cloud(300), np.full((300, 1), 0.3, np.float32)])
    f, _, n = pillarize(pts, SPEC)
    assert f.shape[-1] == 11 and n > 0
    used = np.abs(f).sum(-1) > 0
    assert np.allclose(f[used][:, 10], 0.3)
    with pytest.raises(ModelInputError, match="N x 5"):
        pillarize(_cloud(10), SPEC)


@pytest.mark.parametrize(
    ("lags", "tol"), [([0.3, 0.2], 0.05), ([0.0], 0.05), ([3.0], 0.05), ([0.1], 0.06), ([0.3], 0.0)]
)
def test_bad_sweep_settings_are_refused(lags: list[float], tol: float) -> None:
    with pytest.raises(ConfigError, match="sweeps"):
        SPEC.with_sweeps(lags, tol)


def _assembler(history_s: float = 0.5) -> FrameAssembler:
    cfg = load_config("frame")
    cfg["lidar"]["history_s"] = history_s
    asm = FrameAssembler(cfg)
    asm.set_reference_path(np.array([[0.0, 0.0], [100.0, 0.0]]), 0.0, "odom")
    return asm


def _sweep(asm: FrameAssembler, t: float, x: float, seed: int = 0) -> object:
    asm.add_ego_state(EgoState(t, x, 0.0, 0.0, 5.0), "odom")
    asm.add_ego_state(EgoState(t + 0.05, x + 0.25, 0.0, 0.0, 5.0), "odom")
    return asm.make_frame_from_points(t, _cloud(3000, seed), "base_link")


def test_assembler_keeps_usable_sweeps_and_frame_points_compensates_them() -> None:
    asm = _assembler()
    frames = [_sweep(asm, 1.0 + 0.1 * i, 5.0 * 0.1 * i, i) for i in range(6)]
    last = frames[-1]
    assert [round(last.stamp - h.stamp, 3) for h in last.history] == [0.1, 0.2, 0.3, 0.4, 0.5]
    pts = frame_points(last, SPEC)
    lagged = pts[pts[:, 4] > 0]
    assert np.allclose(lagged[:, 4], 0.3)
    src = frames[2].points  # the sweep 0.3 s earlier, 1.5 m behind: its points move 1.5 m back
    np.testing.assert_allclose(lagged[:, 0], src[:, 0] - 1.5, atol=1e-4)
    # the history is dropped after a clock jump back (replay loop), and stale sweeps are not kept
    back = _sweep(asm, 0.5, 0.0)
    assert back.history == ()
    asm.add_ego_state(EgoState(5.0, 0.0, 0.0, 0.0, 5.0), "odom")
    asm.make_frame_from_points(5.0, np.zeros((3, 4), np.float32), "base_link")  # unusable (lidar stale)
    nxt = _sweep(asm, 5.1, 0.5)
    assert all(h.stamp != 5.0 for h in nxt.history)


def test_an_odometry_jump_clears_the_history() -> None:
    """A relocalisation (or a hostile odometry message) must not place old sweeps as ghosts."""
    asm = _assembler()
    for i in range(3):
        _sweep(asm, 1.0 + 0.1 * i, 0.5 * i)
    jumped = _sweep(asm, 1.3, 50.0)  # 48.5 m in 0.1 s
    assert jumped.history == ()
    after = _sweep(asm, 1.4, 50.5)
    assert [round(h.stamp, 3) for h in after.history] == [1.3]


def test_history_off_costs_nothing() -> None:
    asm = _assembler(history_s=0.0)
    assert all(_sweep(asm, 1.0 + 0.1 * i, 0.5 * i).history == () for i in range(3))


def test_engine_decides_the_sweeps_and_old_manifests_mean_one() -> None:
    from vla_edge.inference import engine_spec

    base = PillarSpec.from_config(load_config("model"))
    assert engine_spec(base, {"spec": {"max_pillars": base.max_pillars}}).sweep_lags == ()
    got = engine_spec(base, {"spec": {"sweep_lags": [0.3], "sweep_lag_tolerance": 0.05}})
    assert got.sweep_lags == (0.3,) and got.num_features == 11
    with pytest.raises(ManifestError, match="multi-sweep"):
        engine_spec(base, {"spec": {"sweep_lags": [-1.0]}})


@requires_torch
def test_torch_pillarizer_matches_numpy_with_the_lag_column() -> None:
    import torch

    from vla_edge.backends.torch_pillarize import pillarize_torch

    ego = EgoState(10.0, 1.0, 2.0, 0.3, 4.0)
    past = EgoState(9.7, -0.1, 1.7, 0.28, 4.0)
    pts = compose_sweeps(_cloud(20000), ego, (PastSweep(9.7, past, _cloud(20000, 5)),), SPEC)
    f, c, n = pillarize(pts, SPEC)
    ft, ct, nt = pillarize_torch(torch.from_numpy(pts), SPEC)
    assert n == nt
    np.testing.assert_array_equal(f, ft.numpy())
    np.testing.assert_array_equal(c, ct.numpy())


@requires_torch
def test_widened_checkpoint_computes_what_the_single_sweep_one_did() -> None:
    import torch

    from training.export import example_inputs
    from training.model.presets import build_model
    from training.trainer import widen_point_features

    tiny, motion = build_model("tiny", seed=1), build_model("tiny_motion", seed=2)
    motion.load_state_dict(widen_point_features(tiny.state_dict(), motion.state_dict()))
    x = example_inputs(tiny)
    feats = x["pillar_features"]
    x5 = dict(x, pillar_features=torch.cat([feats, torch.zeros_like(feats[..., :1])], -1))
    with torch.no_grad():
        a, b = tiny(x), motion(x5)
    torch.testing.assert_close(a["trajectories"], b["trajectories"])


@requires_torch
def test_a_multi_sweep_engine_runs_on_assembled_frames_without_config_edits(tmp_path) -> None:
    """The runtime takes the sweeps from the manifest and feeds the composed cloud (ONNX Runtime)."""
    from training.export import main as export_main
    from vla_edge.inference import StudentRunner

    out = tmp_path / "motion"
    args = ["--random-seed", "4", "--preset", "tiny_motion", "--out-dir", str(out), "--no-torchscript"]
    assert export_main(args) == 0
    runner = StudentRunner.from_config(load_config("model"), "onnxruntime", out / "student.onnx")
    assert runner.spec.sweep_lags == (0.3,)
    asm = _assembler()
    counts = []
    for i in range(5):
        frame = _sweep(asm, 1.0 + 0.1 * i, 0.5 * i, seed=i)
        cand = runner.run(frame)
        assert np.isfinite(cand.trajectories).all()
        counts.append(cand.pillar_count)
    single, composed = counts[0], counts[4]  # frame 4 has the sweep of frame 1 beside its own
    assert composed > single
    runner.close()
