"""TensorRT backend: the parts that run without TensorRT, and execution where it exists.

No machine of this project has TensorRT, so ``test_tensorrt_matches_onnxruntime`` is
skipped here with its reason; calibration-set parsing, option/key plumbing, the probe,
the CUDA memory wrapper (where cuda-python and a GPU exist) and the build-engine CLI run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from backends_helpers import inference_cfg, make_contract_onnx

from vla_edge.backends import tensorrt_backend as tb
from vla_edge.backends.base import dummy_inputs
from vla_edge.backends.manifest import load_manifest, manifest_path_for, sha256_file
from vla_edge.cli import main as cli_main
from vla_edge.errors import BackendUnavailableError, ModelError

HAVE_TRT = tb.available()
try:
    _cuda = tb.CudaApi.select()
    HAVE_CUDA_BINDING = _cuda.device_count() > 0
except BackendUnavailableError:
    HAVE_CUDA_BINDING = False


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_contract_onnx(tmp_path_factory.mktemp("trt") / "student.onnx")


def _calib_npz(path: Path, onnx: Path, n: int = 3, **override: np.ndarray) -> Path:
    man = load_manifest(onnx)
    rng = np.random.default_rng(0)
    arrays = {s.name: rng.normal(size=(n, *s.shape)).astype(s.dtype) for s in man.inputs}
    arrays.update(override)
    np.savez(path, **arrays)
    return path


def test_calibration_set_loads_and_checks(onnx: Path, tmp_path: Path) -> None:
    man = load_manifest(onnx)
    calib = tb.CalibrationSet(_calib_npz(tmp_path / "c.npz", onnx, n=5), man, max_samples=4)
    assert len(calib) == 4
    sample = calib.sample(2)
    assert {k: v.shape for k, v in sample.items()} == {s.name: s.shape for s in man.inputs}
    assert sample["pillar_coords"].dtype == np.int32


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("missing_file", "calibration set not found"),
        ("not_npz", "not a readable .npz"),
        ("missing_input", "lacks input 'noise'"),
        ("bad_shape", r"'ego_state' has shape \(3, 1, 7\)"),
        ("uneven", "different/zero sample counts"),
    ],
)
def test_calibration_set_errors(onnx: Path, tmp_path: Path, kind: str, match: str) -> None:
    man = load_manifest(onnx)
    path = tmp_path / "c.npz"
    if kind == "not_npz":
        path.write_bytes(b"definitely not a zip")
    elif kind == "missing_input":
        _calib_npz(path, onnx)
        with np.load(path) as d:
            keep = {k: d[k] for k in d.files if k != "noise"}
        np.savez(path, **keep)
    elif kind == "bad_shape":
        _calib_npz(path, onnx, ego_state=np.zeros((3, 1, 7), np.float32))
    elif kind == "uneven":
        _calib_npz(path, onnx, ego_state=np.zeros((2, 1, 6), np.float32))
    with pytest.raises(ModelError, match=match):
        tb.CalibrationSet(path, man, max_samples=8)


def test_build_options_from_config(onnx: Path, tmp_path: Path) -> None:
    cfg = inference_cfg(tmp_path)
    opts = tb.build_options(cfg, None, None)
    assert (opts.precision, opts.workspace_mb) == (
        cfg["tensorrt"]["precision"],
        cfg["tensorrt"]["workspace_mb"],
    )
    assert opts.calibration_sha256 == ""
    calib = _calib_npz(tmp_path / "c.npz", onnx)
    int8 = tb.build_options(cfg, "int8", calib)
    assert int8.calibration_sha256 == sha256_file(calib)  # new calibration data -> new engine key
    assert tb.build_options(cfg, "fp16", calib).calibration_sha256 == ""


def test_calibration_cache_is_per_onnx_hash(onnx: Path, tmp_path: Path) -> None:
    man = load_manifest(onnx)
    p = tb.calibration_cache_path(tmp_path, onnx, man)
    assert p.name == f"student.{man.sha256[:16]}.calib"


def test_probe_reports_every_component() -> None:
    found = tb.probe()
    assert set(found) == {"tensorrt", "cuda", "gpu"} and all(isinstance(v, str) and v for v in found.values())


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_backend_without_tensorrt_is_unavailable(onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"TensorRT is not importable .*pip install tensorrt"):
        tb.TensorRTBackend(onnx, inference_cfg(tmp_path)).load()


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_build_engine_cli_without_tensorrt(onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["build-engine", "--onnx", str(onnx), "--precision", "fp16"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "TensorRT is required" in err and "checked:" in err and "tensorrt: not importable" in err


def test_build_engine_cli_refuses_tampered_onnx(
    onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dst = tmp_path / "student.onnx"
    shutil.copy(onnx, dst)
    shutil.copy(manifest_path_for(onnx), manifest_path_for(dst))
    with dst.open("ab") as fh:
        fh.write(b"!")
    assert cli_main(["build-engine", "--onnx", str(dst)]) != 0
    assert "refusing to load" in capsys.readouterr().err


def test_build_engine_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        cli_main(["build-engine", "--help"])
    assert ex.value.code == 0
    out = capsys.readouterr().out
    assert "--precision" in out and "--calib" in out and "--force" in out


@pytest.mark.skipif(not HAVE_CUDA_BINDING, reason="no cuda-python/pycuda binding with a visible GPU")
def test_cuda_memory_round_trip() -> None:
    """The device-buffer path the TensorRT backend uses (H2D, D2H on a stream)."""
    cuda = tb.CudaApi.select()
    assert tuple(int(x) for x in cuda.compute_capability(0).split(".")) >= (5, 0)
    src = np.arange(4096, dtype=np.float32).reshape(64, 64)
    dst = np.zeros_like(src)
    stream = cuda.stream()
    dev = cuda.malloc(src.nbytes)
    try:
        cuda.h2d(dev, src, stream)
        cuda.d2h(dst, dev, stream)
        cuda.sync(stream)
        assert isinstance(cuda.stream_handle(stream), int)
    finally:
        cuda.free(dev)
        cuda.stream_destroy(stream)
    np.testing.assert_array_equal(dst, src)


@pytest.mark.skipif(
    not HAVE_TRT, reason="TensorRT >= 10 with cuda-python/pycuda and a GPU is not installed here"
)
def test_tensorrt_matches_onnxruntime(onnx: Path, tmp_path: Path) -> None:  # pragma: no cover - no TRT here
    from vla_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    cfg = inference_cfg(tmp_path)
    cfg["tensorrt"]["precision"] = "fp32"
    feed = dummy_inputs(load_manifest(onnx).inputs)
    feed["noise"] = np.random.default_rng(0).standard_normal(feed["noise"].shape).astype(np.float32)
    with tb.TensorRTBackend(onnx, cfg) as trt_be, OnnxRuntimeBackend(onnx, cfg) as ort_be:
        a, b = trt_be.infer(feed), ort_be.infer(feed)
        assert trt_be.cached.built
    np.testing.assert_allclose(a.trajectories, b.trajectories, atol=1e-4)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    with tb.TensorRTBackend(onnx, cfg) as again:  # second start: cache hit, no rebuild
        assert not again.cached.built
