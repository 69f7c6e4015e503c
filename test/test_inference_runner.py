"""StudentRunner end to end on the real KITTI scan through real ONNX Runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from backends_helpers import SHIPPED_ONNX, inference_cfg, make_contract_onnx

from vla_edge.backends.manifest import manifest_path_for
from vla_edge.config import load_config
from vla_edge.errors import ManifestError, ModelError
from vla_edge.inference import StudentRunner
from vla_edge.pillarize import ModelInputError
from vla_edge.types import EgoState, Frame

MODELS = ["contract"] + (["shipped"] if SHIPPED_ONNX.exists() else [])


@pytest.fixture(scope="module")
def model_cfg() -> dict:
    return load_config("model")


@pytest.fixture(scope="module")
def contract_onnx(tmp_path_factory: pytest.TempPathFactory, model_cfg: dict) -> Path:
    return make_contract_onnx(tmp_path_factory.mktemp("runner") / "student.onnx", model_cfg)


@pytest.fixture(scope="module")
def kitti_frame(committed_scan: np.ndarray) -> Frame:  # name kept: any real scan
    pts = committed_scan  # the Apache-2.0 Hesai scan of test/data (always present)
    xs = np.linspace(-2.0, 60.0, 32)
    path = np.stack([xs, 0.02 * np.clip(xs, 0.0, None) ** 1.5], axis=1)  # gentle left curve
    ego = EgoState(stamp=12.5, x=0.0, y=0.0, yaw=0.0, v=6.0, a=0.2, yaw_rate=0.05)
    return Frame(stamp=12.5, points=pts, ego=ego, reference_path=path)


@pytest.fixture(scope="module", params=MODELS)
def runner(request: pytest.FixtureRequest, model_cfg: dict, contract_onnx: Path):
    onnx = SHIPPED_ONNX if request.param == "shipped" else contract_onnx
    r = StudentRunner.from_config(model_cfg, "onnxruntime", onnx, inference_cfg())
    yield r
    r.close()


def test_runs_on_real_scan(runner: StudentRunner, kitti_frame: Frame) -> None:
    out = runner.run(kitti_frame)
    A, T = runner.backend.manifest.output("scores").shape[1], runner.backend.manifest.input("noise").shape[2]
    assert out.trajectories.shape == (A, T, 3) and out.scores.shape == (A,)
    assert out.best_index == int(np.argmax(out.scores))
    traj = out.trajectory
    assert traj.source == "student" and traj.stamp == kitti_frame.stamp
    assert traj.dt == runner.backend.manifest.dt == 0.5 and traj.poses.shape == (T, 3)
    np.testing.assert_array_equal(traj.poses, out.trajectories[out.best_index])
    assert traj.is_finite()
    assert 100 < out.pillar_count <= runner.spec.max_pillars  # a real 64-beam scan fills hundreds
    assert set(out.timing_ms) == {"pillarize", "inference", "total"}
    assert out.timing_ms["total"] >= out.timing_ms["inference"] > 0


def test_deterministic_with_fixed_seed(runner: StudentRunner, kitti_frame: Frame) -> None:
    a, b = runner.run(kitti_frame), runner.run(kitti_frame)
    np.testing.assert_array_equal(a.trajectories, b.trajectories)
    np.testing.assert_array_equal(a.scores, b.scores)
    c, d = runner.run(kitti_frame, noise_seed=7), runner.run(kitti_frame, noise_seed=7)
    np.testing.assert_array_equal(c.trajectories, d.trajectories)
    assert not np.array_equal(a.trajectories, c.trajectories)  # the noise input matters


def test_default_seed_comes_from_config(runner: StudentRunner, kitti_frame: Frame) -> None:
    seed = inference_cfg()["noise"]["seed"]
    np.testing.assert_array_equal(runner.run(kitti_frame).scores, runner.run(kitti_frame, seed).scores)


def test_empty_cloud_still_plans(runner: StudentRunner, kitti_frame: Frame) -> None:
    frame = Frame(
        kitti_frame.stamp, np.zeros((0, 4), np.float32), kitti_frame.ego, kitti_frame.reference_path
    )
    out = runner.run(frame)
    assert out.pillar_count == 0 and out.trajectory.is_finite()


def test_bad_frame_inputs_are_typed_errors(runner: StudentRunner, kitti_frame: Frame) -> None:
    with pytest.raises(ModelInputError, match="N x 4"):
        runner.run(Frame(1.0, np.zeros((5, 3), np.float32), kitti_frame.ego, kitti_frame.reference_path))
    with pytest.raises(ModelInputError, match="no finite point"):
        runner.run(Frame(1.0, kitti_frame.points, kitti_frame.ego, np.full((4, 2), np.nan)))


def test_non_finite_outputs_raise_model_error(tmp_path: Path, model_cfg: dict, kitti_frame: Frame) -> None:
    import onnx
    from onnx import numpy_helper

    onnx_path = make_contract_onnx(tmp_path / "nan.onnx", model_cfg)
    model = onnx.load(str(onnx_path))
    for i, init in enumerate(model.graph.initializer):
        if init.name == "anchors":
            arr = numpy_helper.to_array(init).copy()
            arr[0, 3, 2, 1] = np.nan  # one poisoned anchor value
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, "anchors"))
    onnx.save(model, str(onnx_path))
    doc = json.loads(manifest_path_for(onnx_path).read_text())
    from vla_edge.backends.manifest import write_manifest

    keys = ("inputs", "outputs", "model_config", "anchors", "weights", "preset", "opset")
    write_manifest(onnx_path, **{k: doc[k] for k in keys})
    r = StudentRunner.from_config(model_cfg, "onnxruntime", onnx_path, inference_cfg())
    with r, pytest.raises(ModelError, match=r"nan\.onnx .* non-finite outputs \(1 trajectory values"):
        r.run(kitti_frame)


def test_model_config_mismatch_refused(tmp_path: Path, model_cfg: dict, contract_onnx: Path) -> None:
    cfg = json.loads(json.dumps(model_cfg))
    cfg["pillars"]["voxel_size"] = [0.4, 0.5, 6.0]  # same tensor shapes, different geometry
    cfg["trajectory"]["dt"] = 0.25
    with pytest.raises(ManifestError, match=r"spec.voxel_size: exported \[0.5, 0.5, 6.0\].*trajectory.dt"):
        StudentRunner.from_config(cfg, "onnxruntime", contract_onnx, inference_cfg())


def test_pillar_budget_mismatch_refused(model_cfg: dict, contract_onnx: Path) -> None:
    cfg = json.loads(json.dumps(model_cfg))
    cfg["pillars"]["max_pillars"] = 1024
    with pytest.raises(ManifestError, match=r"spec.max_pillars: exported 4096, config 1024"):
        StudentRunner.from_config(cfg, "onnxruntime", contract_onnx, inference_cfg())


def test_manifest_without_spec_still_checks_shapes(tmp_path: Path, model_cfg: dict) -> None:
    """Older manifests carry no resolved spec: the tensor shapes still catch a budget change."""
    onnx_path = make_contract_onnx(tmp_path / "student.onnx", model_cfg)
    doc = json.loads(manifest_path_for(onnx_path).read_text())
    doc["model_config"] = {"dt": 0.5}
    manifest_path_for(onnx_path).write_text(json.dumps(doc))
    cfg = json.loads(json.dumps(model_cfg))
    cfg["pillars"]["max_pillars"] = 1024
    with pytest.raises(ManifestError, match=r"exported for another pillar/input spec .*pillar_features"):
        StudentRunner.from_config(cfg, "onnxruntime", onnx_path, inference_cfg())


def test_tampered_model_refused_by_runner(tmp_path: Path, model_cfg: dict, contract_onnx: Path) -> None:
    dst = tmp_path / "student.onnx"
    shutil.copy(contract_onnx, dst)
    shutil.copy(manifest_path_for(contract_onnx), manifest_path_for(dst))
    with dst.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="refusing to load"):
        StudentRunner.from_config(model_cfg, "onnxruntime", dst, inference_cfg())
