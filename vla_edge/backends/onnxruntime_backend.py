"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers when present.

It is the default wherever TensorRT is absent. Execution providers are tried in the
priority order of ``config/inference.yaml`` (``onnxruntime.providers``); the ones this
onnxruntime build lacks are skipped, CPU is always the last resort, and the choice is
logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.backends.base import InferenceBackend
from vla_edge.backends.manifest import sha256_file
from vla_edge.config import require
from vla_edge.errors import BackendUnavailableError, ConfigError, ManifestError, ModelError
from vla_edge.fsutil import atomic_path, atomic_write

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
# ONNX tensor type strings (as onnxruntime reports them) -> manifest dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError(
            f"onnxruntime is not importable ({exc}); install it with `pip install onnxruntime` "
            "(or onnxruntime-gpu on a CUDA machine)"
        ) from None
    return ort


def choose_providers(priority: list[str], available: list[str]) -> list[str]:
    """Execution providers to use, in order: the configured ones that exist, then CPU.

    Args:
        priority: Short names from the config (``"tensorrt"``, ``"cuda"``, ``"cpu"``).
        available: ``onnxruntime.get_available_providers()``.

    Raises:
        ConfigError: For an unknown short name.
    """
    chosen = []
    for short in priority:
        if short not in PROVIDER_NAMES:
            raise ConfigError(
                f"inference.yaml: onnxruntime.providers entry '{short}' unknown; use {list(PROVIDER_NAMES)}"
            )
        full = PROVIDER_NAMES[short]
        if full in available and full not in chosen:
            chosen.append(full)
    if PROVIDER_NAMES["cpu"] not in chosen:
        chosen.append(PROVIDER_NAMES["cpu"])
    return chosen


def qdq_disabled_optimizers(cfg: dict[str, Any]) -> list[str]:
    """ORT graph optimizers skipped for INT8 QDQ engines (``onnxruntime.qdq_disabled_optimizers``).

    ORT's common-subexpression elimination merges the per-consumer QuantizeLinear nodes of a
    branching tensor, and its x86 S8->U8 pass then leaves that Q (two DequantizeLinear
    consumers) signed, so the convs behind it stay FP32 between Q/DQ instead of running as
    integer convs (docs/backends.md). ``training/quantize.py`` opens its sessions the same way.
    """
    names = require(cfg, "onnxruntime", "qdq_disabled_optimizers", where="inference.yaml")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"inference.yaml: onnxruntime.qdq_disabled_optimizers must be a list of names, got {names!r}"
        )
    return sorted(set(names))


class OnnxRuntimeBackend(InferenceBackend):
    """Runs the exported ONNX with onnxruntime.

    Config keys (``config/inference.yaml``, section ``onnxruntime``): ``intra_op_threads``,
    ``inter_op_threads``, ``allow_spinning``, ``graph_optimization``, ``save_optimized``,
    ``qdq_disabled_optimizers``, ``providers``, ``trt_fp16``; and ``tensorrt.cache_dir`` for the
    TensorRT execution provider's engine cache and the saved optimised graph.
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, cfg: dict[str, Any]) -> None:
        super().__init__(onnx_path, cfg)
        self._session: Any = None
        self.providers: list[str] = []
        self.optimized_source: Path | None = None  # saved optimised graph loaded, if any

    def _session_options(self, ort: Any) -> Any:
        sec = require(self.cfg, "onnxruntime", where="inference.yaml")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(require(sec, "intra_op_threads", where="inference.yaml onnxruntime"))
        opts.inter_op_num_threads = int(require(sec, "inter_op_threads", where="inference.yaml onnxruntime"))
        level = str(require(sec, "graph_optimization", where="inference.yaml onnxruntime"))
        if level not in _OPT_LEVELS:
            raise ConfigError(
                f"inference.yaml: onnxruntime.graph_optimization '{level}' not in {list(_OPT_LEVELS)}"
            )
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        spin = require(sec, "allow_spinning", where="inference.yaml onnxruntime")
        if not isinstance(spin, bool):
            raise ConfigError(f"inference.yaml: onnxruntime.allow_spinning must be true/false, got {spin!r}")
        # Idle intra-op threads busy-wait for the next operator unless told not to; on a small
        # CPU that spinning takes the core the graph's own threads need (docs/profiling.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
        opts.log_severity_level = 3  # errors only; our own log says what was chosen
        return opts

    def disabled_optimizers(self) -> list[str]:
        """ORT graph optimizers this engine's session skips: :func:`qdq_disabled_optimizers` for
        an INT8 QDQ engine (manifest ``precision: int8``), none otherwise."""
        if self.manifest.extra.get("precision") != "int8":
            return []
        return qdq_disabled_optimizers(self.cfg)

    def _optimized_cache(self, ort: Any, level: str, providers: list[str]) -> tuple[Path, Path] | None:
        """``(optimised graph, sidecar)`` paths in the engine cache, or None when not used.

        Only for the CPU provider alone: a graph optimised at "extended"/"all" holds
        CPU-specific fused kernels, so the key covers the ONNX sha256, the ORT version, the
        level and the machine; the sidecar holds the saved file's sha256 (tamper check).
        """
        import platform

        from vla_edge.backends.tensorrt_backend import cache_dir_from_config

        sec = self.cfg["onnxruntime"]
        save = require(sec, "save_optimized", where="inference.yaml onnxruntime")
        if not isinstance(save, bool):
            raise ConfigError(f"inference.yaml: onnxruntime.save_optimized must be true/false, got {save!r}")
        if not save or providers != [PROVIDER_NAMES["cpu"]] or level == "disable":
            return None
        tag = f"{self.manifest.sha256[:16]}.ort{ort.__version__}.{level}.{platform.machine()}"
        skipped = self.disabled_optimizers()
        if skipped:  # another set of rewrites is another optimised graph
            tag += ".skip" + hashlib.sha256(",".join(skipped).encode()).hexdigest()[:8]
        folder = cache_dir_from_config(self.cfg)
        return folder / f"{self.onnx_path.stem}.{tag}.onnx", folder / f"{self.onnx_path.stem}.{tag}.json"

    def _cached_optimized(self, paths: tuple[Path, Path] | None) -> bytes | None:
        """The saved optimised graph's bytes when its sidecar vouches for them, else None.

        Read once and hashed in memory, and the session is built from these bytes: another
        process that saves the same cache entry meanwhile cannot hand this one a torn file.
        """
        import hashlib
        import json

        if paths is None or not paths[0].is_file() or not paths[1].is_file():
            return None
        try:
            want = json.loads(paths[1].read_text())["sha256"]
            data = paths[0].read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if want != hashlib.sha256(data).hexdigest():
            log.warning("optimised graph %s does not match its sidecar; optimising again", paths[0])
            return None
        return data

    def _provider_options(self, providers: list[str]) -> list[dict[str, Any]]:
        sec = self.cfg["onnxruntime"]
        out: list[dict[str, Any]] = []
        for prov in providers:
            if prov == PROVIDER_NAMES["tensorrt"]:
                from vla_edge.backends.tensorrt_backend import cache_dir_from_config

                cache = cache_dir_from_config(self.cfg)
                out.append(
                    {
                        "trt_fp16_enable": bool(require(sec, "trt_fp16", where="inference.yaml onnxruntime")),
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(cache),
                    }
                )
            else:
                out.append({})
        return out

    def _load(self) -> None:
        ort = _import_ort()
        opts = self._session_options(ort)
        priority = list(require(self.cfg, "onnxruntime", "providers", where="inference.yaml"))
        available = list(ort.get_available_providers())
        providers = choose_providers(priority, available)
        level = str(self.cfg["onnxruntime"]["graph_optimization"])
        cache = self._optimized_cache(ort, level, providers)
        saved = self._cached_optimized(cache)
        source = None
        if saved is not None:  # already optimised: skip the rewrites at load
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            session = self._open(ort, saved, opts, providers)
            source = cache[0] if cache else None
        elif cache is None:
            session = self._open(ort, str(self.onnx_path), opts, providers)
        else:
            # ORT writes the optimised graph to a private temp file, published whole by a rename:
            # parallel starts (sim workers) never see each other's half-written file.
            with atomic_path(cache[0]) as tmp:
                opts.optimized_model_filepath = str(tmp)
                session = self._open(ort, str(self.onnx_path), opts, providers)
                digest = sha256_file(tmp)
            atomic_write(cache[1], json.dumps({"sha256": digest, "onnx": self.onnx_path.name}))
        self._session = session
        self.optimized_source = source
        self.providers = list(session.get_providers())
        skipped = self.disabled_optimizers()
        log.info(
            "onnxruntime %s: providers %s (configured %s, available %s), %d intra-op threads%s%s",
            ort.__version__,
            self.providers,
            priority,
            available,
            opts.intra_op_num_threads,
            f", optimised graph from {source}" if source else "",
            f", QDQ graph without {skipped}" if skipped else "",
        )

    def _open(self, ort: Any, model: str | bytes, opts: Any, providers: list[str]) -> Any:
        """An ONNX Runtime session of ``model`` (path or bytes) whose tensors match the manifest."""
        try:
            session = ort.InferenceSession(
                model,
                sess_options=opts,
                providers=providers,
                provider_options=self._provider_options(providers),
                disabled_optimizers=self.disabled_optimizers() or None,
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"ONNX Runtime cannot load model file {self.onnx_path}: {first[:300]} "
                "(corrupt or truncated file? re-export with `python -m training.export`)"
            ) from None
        self._check_session(session)
        return session

    def _check_session(self, session: Any) -> None:
        """The graph's tensors must be exactly what the manifest says."""
        problems = []
        for kind, graph_args, specs in (
            ("input", session.get_inputs(), self.manifest.inputs),
            ("output", session.get_outputs(), self.manifest.outputs),
        ):
            graph = {a.name: a for a in graph_args}
            for spec in specs:
                arg = graph.get(spec.name)
                if arg is None:
                    problems.append(f"{kind} '{spec.name}' missing from the graph")
                    continue
                if tuple(arg.shape) != spec.shape:
                    problems.append(
                        f"{kind} '{spec.name}' graph shape {arg.shape} != manifest {list(spec.shape)}"
                    )
                if _ORT_TYPES.get(arg.type) != spec.dtype:
                    problems.append(f"{kind} '{spec.name}' graph type {arg.type} != manifest {spec.dtype}")
            if kind == "input":
                extra = sorted(set(graph) - {s.name for s in specs})
                if extra:
                    problems.append(f"graph inputs {extra} not in the manifest")
        if problems:
            raise ManifestError(
                f"model file {self.onnx_path} disagrees with its manifest {self.manifest.path}: "
                + "; ".join(problems)
                + "; re-export both with `python -m training.export`"
            )

    def _run(self, inputs: dict[str, np.ndarray], timing: dict[str, float]) -> dict[str, np.ndarray]:
        names = list(self.manifest.output_names)
        try:
            values = self._session.run(names, inputs)
        except Exception as exc:  # noqa: BLE001 - ORT runtime failure on this input
            raise ModelError(f"ONNX Runtime failed running {self.onnx_path.name}: {exc}") from None
        return dict(zip(names, values))

    def _close(self) -> None:
        self._session = None
