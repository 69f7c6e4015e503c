"""Backend factory: names, "auto" resolution and load + warm-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from backends_helpers import inference_cfg, make_contract_onnx

from vla_edge.backends import tensorrt_backend
from vla_edge.backends.factory import create_backend, resolve_auto
from vla_edge.errors import BackendUnavailableError, ConfigError


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_contract_onnx(tmp_path_factory.mktemp("factory") / "student.onnx")


def test_auto_matches_what_is_installed(onnx: Path) -> None:
    expected = "tensorrt" if tensorrt_backend.available() else "onnxruntime"
    assert resolve_auto() == expected
    be = create_backend("auto", onnx, inference_cfg(onnx.parent))
    try:
        assert be.loaded and be.name == expected
    finally:
        be.close()
    assert not be.loaded


def test_engine_path_from_config(onnx: Path) -> None:
    cfg = inference_cfg()
    cfg["engine"] = str(onnx)
    be = create_backend("onnxruntime", None, cfg, load=False)
    assert be.onnx_path == onnx.resolve() and not be.loaded


def test_unknown_backend(onnx: Path) -> None:
    with pytest.raises(ConfigError, match="unknown inference backend 'openvino'"):
        create_backend("openvino", onnx, inference_cfg())


@pytest.mark.skipif(tensorrt_backend.available(), reason="TensorRT is installed here")
def test_named_tensorrt_without_tensorrt_says_what_to_install(onnx: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"pip install tensorrt"):
        create_backend("tensorrt", onnx, inference_cfg(onnx.parent))
