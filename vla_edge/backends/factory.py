"""Create an inference backend by name, with ``"auto"`` picking the best one available.

``auto``: TensorRT when ``tensorrt`` (>= 10) and a CUDA binding import and a GPU is
visible, else ONNX Runtime. When the GPU backend fails to load in ``auto`` mode and
``fallback_to_onnxruntime`` is set, ONNX Runtime is used and the failure is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vla_edge.backends.base import InferenceBackend
from vla_edge.config import require, resolve_path
from vla_edge.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch_cuda")


def backend_class(name: str) -> type[InferenceBackend]:
    """The class implementing backend ``name`` (imports only that module)."""
    if name == "onnxruntime":
        from vla_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend
    if name == "tensorrt":
        from vla_edge.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend
    if name == "torch_cuda":
        from vla_edge.backends.torch_cuda_backend import TorchCudaBackend

        return TorchCudaBackend
    raise ConfigError(f"unknown inference backend '{name}'; use one of {BACKENDS}")


def resolve_auto() -> str:
    """``"tensorrt"`` when TensorRT can run here, else ``"onnxruntime"``."""
    from vla_edge.backends import tensorrt_backend

    return "tensorrt" if tensorrt_backend.available() else "onnxruntime"


def create_backend(
    name: str, engine_path: str | Path | None, cfg: dict[str, Any], *, load: bool = True
) -> InferenceBackend:
    """Build (and by default load and warm up) an inference backend.

    Args:
        name: ``"auto" | "onnxruntime" | "tensorrt" | "torch_cuda"``.
        engine_path: The exported ONNX; None takes ``engine`` from ``cfg``.
        cfg: Parsed ``config/inference.yaml``.
        load: Load and warm up (``warmup_runs`` from ``cfg``) before returning.

    Raises:
        ConfigError: Unknown backend name.
        ModelError: The model cannot be loaded (names the file).
        BackendUnavailableError: A named backend cannot run here.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown inference backend '{name}'; use one of {BACKENDS}")
    path = resolve_path(
        engine_path if engine_path is not None else require(cfg, "engine", where="inference.yaml")
    )
    chosen = resolve_auto() if name == "auto" else name
    if name == "auto":
        log.info("backend auto -> %s", chosen)
    try:
        return _make(chosen, path, cfg, load)
    except ModelError as exc:
        fallback = bool(require(cfg, "fallback_to_onnxruntime", where="inference.yaml"))
        if name != "auto" or chosen == "onnxruntime" or not fallback:
            raise
        log.warning("backend %s failed (%s); falling back to onnxruntime", chosen, exc)
        return _make("onnxruntime", path, cfg, load)


def _make(name: str, path: Path, cfg: dict[str, Any], load: bool) -> InferenceBackend:
    backend = backend_class(name)(path, cfg)
    if load:
        backend.load()
        backend.warmup(int(require(cfg, "warmup_runs", where="inference.yaml")))
    return backend
