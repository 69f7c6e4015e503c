"""ONNX/TorchScript export: checker, ORT parity on the real scan, manifest, checkpoints, shipped engine."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO_ROOT, requires_torch

from vla_edge.errors import ManifestError, ModelError

pytestmark = requires_torch

CONTRACT_INPUTS = ["pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path", "noise"]
CONTRACT_OUTPUTS = ["trajectories", "scores", "bev_features"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from training.export import export
    from training.model.presets import build_model

    model = build_model("tiny", seed=7)
    out = tmp_path_factory.mktemp("engine")
    summary = export(model, out, "student", "random-seeded", training_info={"seed": 7})
    return model, out, summary


def _real_inputs(model, pts: np.ndarray) -> dict:
    import torch

    from vla_edge.pillarize import ego_state_input, pillarize, reference_path_input

    spec = model.cfg.spec
    f, c, n = pillarize(pts, spec)
    path = reference_path_input(np.stack([np.linspace(-2, 30, 20), np.linspace(0, 3, 20)], 1), spec)
    gen = torch.Generator().manual_seed(3)
    return {
        "pillar_features": f[None],
        "pillar_coords": c[None],
        "pillar_count": np.array([n], dtype=np.int32),
        "ego_state": ego_state_input(np.array([8.0, 0.5, 0.05]), spec)[None],
        "reference_path": path[None],
        "noise": torch.randn((1, model.cfg.num_anchors, model.cfg.num_poses, 3), generator=gen).numpy(),
    }


def test_onnx_checker_and_contract_names(exported) -> None:
    import onnx

    _, out, summary = exported
    proto = onnx.load(str(out / "student.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == CONTRACT_INPUTS
    assert [o.name for o in proto.graph.output] == CONTRACT_OUTPUTS
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert summary["bytes"] <= 16 * 2**20


def test_onnxruntime_matches_torch_on_real_scan(exported, committed_scan) -> None:
    import onnxruntime as ort
    import torch

    model, out, _ = exported
    feed = _real_inputs(model, committed_scan)
    sess = ort.InferenceSession(str(out / "student.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(CONTRACT_OUTPUTS, feed)
    with torch.no_grad():
        ref = model({k: torch.from_numpy(v) for k, v in feed.items()})
    for name, g in zip(CONTRACT_OUTPUTS, got):
        assert np.abs(g - ref[name].numpy()).max() <= 1e-4, name
    again = sess.run(["trajectories"], feed)[0]
    assert np.array_equal(again, got[0]), "fixed noise -> identical output"


def test_torchscript_artefact_matches_eager(exported, committed_scan) -> None:
    import hashlib

    import torch

    from vla_edge.backends.manifest import load_manifest

    model, out, _ = exported
    man = load_manifest(out / "student.json")
    entry = man.extra["torchscript"]
    ts_path = out / entry["file"]
    assert ts_path.name == "student.ts"
    assert hashlib.sha256(ts_path.read_bytes()).hexdigest() == entry["sha256"]
    assert 0.0 <= entry["fp16_max_abs_traj_m"] < 0.5  # the halved trace ran (the backend's half mode)
    ts = torch.jit.load(str(ts_path))
    feed = {k: torch.from_numpy(v) for k, v in _real_inputs(model, committed_scan).items()}
    with torch.no_grad():
        got = ts(*(feed[n] for n in CONTRACT_INPUTS))
        ref = model(feed)
    for name, g in zip(CONTRACT_OUTPUTS, got):
        torch.testing.assert_close(g, ref[name], atol=1e-5, rtol=1e-5)


def test_manifest_contents_and_tamper_refusal(exported) -> None:
    from vla_edge.backends.manifest import load_manifest, verify_onnx

    model, out, _ = exported
    man = load_manifest(out / "student.json")
    verify_onnx(man)
    cfg = model.cfg
    assert man.weights == "random-seeded" and man.preset == "tiny" and man.opset >= 17
    assert man.input("pillar_features").shape == (
        1, cfg.spec.max_pillars, cfg.spec.max_points, cfg.spec.num_features
    )  # fmt: skip
    assert man.input("pillar_coords").dtype == "int32" and man.input("pillar_count").shape == (1,)
    assert man.output("trajectories").shape == (1, cfg.num_anchors, cfg.num_poses, 3)
    assert np.asarray(man.anchors).shape == (cfg.num_anchors, cfg.num_poses, 3)
    assert man.dt == cfg.dt and man.extra["training"]["seed"] == 7
    data = bytearray((out / "student.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = out / "tampered"
    tampered.mkdir()
    (tampered / "student.onnx").write_bytes(bytes(data))
    (tampered / "student.json").write_text((out / "student.json").read_text())
    with pytest.raises(ManifestError, match="sha256"):
        verify_onnx(load_manifest(tampered / "student.json"))


def test_checkpoint_roundtrip_and_bad_checkpoints(tmp_path) -> None:
    import torch

    from training.export import ExportError, export, load_checkpoint
    from training.model.presets import build_model

    model = build_model("tiny", seed=5)
    with torch.no_grad():
        model.head.anchors.add_(0.25)  # stands in for k-means anchors fitted by the trainer
    ckpt = tmp_path / "student.pt"
    torch.save({"preset": "tiny", "model": model.state_dict(), "training": {"run": "t", "step": 3}}, ckpt)
    loaded, info = load_checkpoint(ckpt, None)
    assert info == {"run": "t", "step": 3}
    assert torch.equal(loaded.head.anchors, model.head.anchors)
    summary = export(loaded, tmp_path / "out", "student", "trained", torchscript=False, training_info=info)
    from vla_edge.backends.manifest import load_manifest

    man = load_manifest(summary["manifest"])
    assert man.weights == "trained" and "torchscript" not in man.extra
    np.testing.assert_allclose(man.anchors, model.head.anchors.numpy(), atol=1e-4)

    from vla_edge.config import load_config

    # the trainer's checkpoints carry the model.yaml they trained with (weights_only-safe types)
    torch.save({"preset": "tiny", "model": model.state_dict(), "model_cfg": load_config("model")}, ckpt)
    assert load_checkpoint(ckpt, None)[0].cfg.preset == "tiny"

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt", None)
    torch.save({"preset": "base", "model": model.state_dict()}, tmp_path / "mismatch.pt")
    with pytest.raises(ExportError, match="does not match preset 'base'"):
        load_checkpoint(tmp_path / "mismatch.pt", None)


def test_hold_stop_switch_on_a_trained_checkpoint(tmp_path) -> None:
    """``--hold-stop on`` puts the output layer's stop hold on a checkpoint trained without it;
    the manifest's model config says so."""
    import copy

    import torch

    from training.export import ExportError, main, set_hold_stop
    from training.model.presets import build_model
    from vla_edge.backends.manifest import load_manifest
    from vla_edge.config import load_config

    cfg = copy.deepcopy(load_config("model"))
    cfg["trajectory"]["smoothing"]["hold_stop"] = False
    model = build_model("tiny", cfg, seed=2)
    assert not model.head.smooth.hold_stop
    ckpt = tmp_path / "old.pt"
    torch.save({"preset": "tiny", "model": model.state_dict(), "model_cfg": cfg}, ckpt)
    out = tmp_path / "out"
    args = ["--checkpoint", str(ckpt), "--out-dir", str(out), "--no-torchscript", "--hold-stop", "on"]
    assert main(args) == 0
    assert load_manifest(out / "student.onnx").model_config["smoothing"]["hold_stop"] is True
    cfg["trajectory"]["smoothing"]["enabled"] = False
    with pytest.raises(ExportError, match="smooth output layer"):
        set_hold_stop(build_model("tiny", cfg, seed=2), True)


def test_export_never_overwrites_the_shipped_engine(tmp_path) -> None:
    """Exports go beside their checkpoint by default; engines/student.* is only reached by promote."""
    from training.export import default_export_dir, export, main
    from training.model.presets import build_model
    from vla_edge.config import engines_dir

    shipped = (engines_dir() / "student.onnx").read_bytes()
    with pytest.raises(ModelError, match="vla-edge-train promote"):
        export(build_model("tiny", seed=1), engines_dir(), "student", "trained")
    assert main(["--random-seed", "1", "--out-dir", str(engines_dir()), "--no-torchscript"]) == 1
    assert (engines_dir() / "student.onnx").read_bytes() == shipped
    assert default_export_dir(tmp_path / "run" / "best.pt") == (tmp_path / "run" / "export").resolve()
    assert default_export_dir(None, 4).name == "export-random-4"


def test_cli_help() -> None:
    from training.export import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


def test_shipped_engine_matches_config() -> None:
    """engines/student.* must be re-exported whenever config/model.yaml changes the I/O."""
    import onnxruntime as ort

    from training.model.config import ModelConfig
    from vla_edge.backends.manifest import load_manifest, verify_onnx

    onnx_path = REPO_ROOT / "engines" / "student.onnx"
    man = load_manifest(onnx_path)
    verify_onnx(man)
    cfg = ModelConfig.from_config(preset=man.preset)
    assert man.input("pillar_features").shape == (
        1, cfg.spec.max_pillars, cfg.spec.max_points, cfg.spec.num_features
    )  # fmt: skip
    assert man.input("reference_path").shape == (1, cfg.spec.num_path_points, 2)
    assert man.input("noise").shape == (1, cfg.num_anchors, cfg.num_poses, 3)
    assert man.model_config["spec"]["point_cloud_range"] == list(cfg.spec.point_cloud_range)
    assert onnx_path.stat().st_size <= 16 * 2**20
    if man.weights == "random-seeded":
        assert "seed" in man.extra["training"]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {
        s.name: np.zeros(s.shape, dtype=np.dtype(s.dtype)) for s in man.inputs
    }  # an empty sweep is a valid input
    traj, scores = sess.run(["trajectories", "scores"], feed)
    assert np.all(np.isfinite(traj)) and np.all(np.isfinite(scores))
