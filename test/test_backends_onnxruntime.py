"""ONNX Runtime backend on real ONNX files: loading, validation, and every bad-model case."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from backends_helpers import SHIPPED_ONNX, inference_cfg, make_contract_onnx

from vla_edge.backends.base import InferenceInputError, dummy_inputs, open_model
from vla_edge.backends.manifest import manifest_path_for, write_manifest
from vla_edge.backends.onnxruntime_backend import OnnxRuntimeBackend, choose_providers
from vla_edge.errors import ConfigError, ManifestError, ModelError


@pytest.fixture(scope="module")
def contract_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_contract_onnx(tmp_path_factory.mktemp("ort") / "student.onnx")


@pytest.fixture
def model_copy(contract_onnx: Path, tmp_path: Path) -> Path:
    """A private copy (ONNX + manifest) a test may damage."""
    dst = tmp_path / "student.onnx"
    shutil.copy(contract_onnx, dst)
    shutil.copy(manifest_path_for(contract_onnx), manifest_path_for(dst))
    return dst


def _backend(path: Path, **ort: object) -> OnnxRuntimeBackend:
    cfg = inference_cfg()
    cfg["onnxruntime"].update(ort)
    return OnnxRuntimeBackend(path, cfg)


def test_loads_and_infers_contract_shapes(contract_onnx: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), _backend(contract_onnx) as be:
        assert be.providers[-1] == "CPUExecutionProvider"
        assert any("providers" in r.getMessage() for r in caplog.records)  # the choice is logged
        feed = dummy_inputs(be.input_specs)
        feed["noise"] = np.ones_like(feed["noise"])
        res = be.infer(feed)
        A, T = be.manifest.output("scores").shape[1], be.manifest.input("noise").shape[2]
        assert res.trajectories.shape == (A, T, 3) and res.scores.shape == (A,)
        assert res.bev is None and res.timing_ms["infer"] > 0
        # noise is wired through: 0.1 * noise shifts every pose
        res0 = be.infer(dummy_inputs(be.input_specs))
        np.testing.assert_allclose(res.trajectories - res0.trajectories, 0.1, atol=1e-5)


@pytest.mark.skipif(not SHIPPED_ONNX.exists(), reason="engines/student.onnx not shipped yet (model session)")
def test_shipped_student_runs() -> None:
    with _backend(SHIPPED_ONNX) as be:
        be.warmup(1)
        res = be.infer(dummy_inputs(be.input_specs))
        assert np.all(np.isfinite(res.trajectories)) and np.all(np.isfinite(res.scores))
        assert be.manifest.weights in ("trained", "random-seeded")


def test_input_validation_names_every_problem(contract_onnx: Path) -> None:
    with _backend(contract_onnx) as be:
        feed = dummy_inputs(be.input_specs)
        feed.pop("noise")
        feed["bogus"] = np.zeros(1, np.float32)
        feed["pillar_coords"] = feed["pillar_coords"].astype(np.int64)
        feed["ego_state"] = np.zeros((1, 5), np.float32)
        with pytest.raises(InferenceInputError) as err:
            be.infer(feed)
        msg = str(err.value)
        parts = ("missing ['noise']", "unexpected ['bogus']", "'pillar_coords' dtype int64", "'ego_state' sh")
        for part in parts:
            assert part in msg
        with pytest.raises(InferenceInputError, match="must be a numpy array"):
            be.infer({**dummy_inputs(be.input_specs), "ego_state": [[0.0] * 6]})  # type: ignore[dict-item]


def test_provider_priority() -> None:
    avail = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["tensorrt", "cuda", "cpu"], avail) == avail
    assert choose_providers(["cpu", "cuda"], avail) == ["CPUExecutionProvider", "CUDAExecutionProvider"]
    assert choose_providers(["tensorrt"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="'rocm' unknown"):
        choose_providers(["rocm"], avail)


def test_bad_session_options(contract_onnx: Path) -> None:
    with pytest.raises(ConfigError, match="graph_optimization 'max'"):
        _backend(contract_onnx, graph_optimization="max").load()


# ---------------------------------------------------------------- bad model files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file not found: .*nope\.onnx"):
        OnnxRuntimeBackend(tmp_path / "nope.onnx", inference_cfg())


def test_wrong_extension(model_copy: Path) -> None:
    other = model_copy.with_suffix(".engine")
    shutil.copy(model_copy, other)
    with pytest.raises(ModelError, match=r"unknown model file type .*student\.engine"):
        OnnxRuntimeBackend(other, inference_cfg())


def test_directory_named_onnx(tmp_path: Path) -> None:
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ModelError, match="not a regular file"):
        open_model(tmp_path / "dir.onnx")


def test_missing_manifest(model_copy: Path) -> None:
    manifest_path_for(model_copy).unlink()
    with pytest.raises(ManifestError, match=r"manifest not found: .*student\.json"):
        OnnxRuntimeBackend(model_copy, inference_cfg())


def test_tampered_onnx_refused(model_copy: Path) -> None:
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"refusing to load; re-export with `python -m training.export`"):
        OnnxRuntimeBackend(model_copy, inference_cfg())


def _rewrite_manifest(onnx: Path, **changes: object) -> None:
    """Re-hash the (damaged) ONNX so the file reaches the parser, as after a bad export."""
    doc = json.loads(manifest_path_for(onnx).read_text())
    doc.update(changes)
    write_manifest(
        onnx,
        inputs=doc["inputs"],
        outputs=doc["outputs"],
        model_config=doc["model_config"],
        anchors=doc["anchors"],
        weights=doc["weights"],
        preset=doc["preset"],
        opset=doc["opset"],
    )


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_onnx_is_a_clear_model_error(model_copy: Path, damage: str) -> None:
    data = model_copy.read_bytes()
    payload = {
        "garbage": np.random.default_rng(1).bytes(4096),
        "truncated": data[: len(data) // 3],
        "empty": b"",
    }[damage]
    model_copy.write_bytes(payload)
    _rewrite_manifest(model_copy)
    be = OnnxRuntimeBackend(model_copy, inference_cfg())  # hash matches: the parser must reject it
    with pytest.raises(ModelError, match=r"ONNX Runtime cannot load model file .*student\.onnx"):
        be.load()
    assert not be.loaded


def test_manifest_pointing_elsewhere(model_copy: Path, contract_onnx: Path) -> None:
    doc = json.loads(manifest_path_for(model_copy).read_text())
    doc["onnx"] = "other.onnx"
    manifest_path_for(model_copy).write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=r"describes .*other\.onnx, not .*student\.onnx"):
        OnnxRuntimeBackend(model_copy, inference_cfg())


def test_manifest_disagreeing_with_graph(model_copy: Path) -> None:
    doc = json.loads(manifest_path_for(model_copy).read_text())
    for spec in doc["inputs"]:
        if spec["name"] == "noise":
            spec["shape"] = [1, 5, 8, 3]  # graph has A=20
    _rewrite_manifest(model_copy, inputs=doc["inputs"])
    with pytest.raises(ManifestError, match=r"input 'noise' graph shape .* != manifest \[1, 5, 8, 3\]"):
        OnnxRuntimeBackend(model_copy, inference_cfg()).load()


def test_manifest_without_contract_tensor(model_copy: Path) -> None:
    doc = json.loads(manifest_path_for(model_copy).read_text())
    doc["outputs"] = [o for o in doc["outputs"] if o["name"] != "scores"]
    _rewrite_manifest(model_copy, outputs=doc["outputs"])
    with pytest.raises(ManifestError, match=r"missing outputs \['scores'\]"):
        OnnxRuntimeBackend(model_copy, inference_cfg())


def test_runtime_failure_becomes_model_error(contract_onnx: Path) -> None:
    """A backend that blows up mid-inference (e.g. a CUDA fault) must not crash the caller."""

    class FaultInjectedBackend(OnnxRuntimeBackend):
        def _run(self, inputs, timing):  # type: ignore[no-untyped-def]
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    be = FaultInjectedBackend(contract_onnx, inference_cfg())
    with pytest.raises(ModelError, match=r"onnxruntime backend failed running .*illegal memory access"):
        be.infer(dummy_inputs(be.input_specs))
