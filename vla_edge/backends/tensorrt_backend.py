"""TensorRT backend (TensorRT >= 10 Python API), with a validated engine cache.

NOT EXECUTED in this project's CI or dev machines: no machine here has TensorRT. The code
follows the TensorRT 10 Python API documentation (named I/O tensors,
``set_tensor_address`` + ``execute_async_v3``, ``build_serialized_network``,
``set_memory_pool_limit``). What runs everywhere is the part that needs no TensorRT: the
engine cache (tested with ``FakeTensorRT``), the calibration-set loader and the
availability probe.

Device memory goes through cuda-python (``cuda.bindings.runtime`` or the older
``cuda.cudart``) or, failing that, pycuda, whichever is importable. All of ``tensorrt``,
``cuda`` and ``pycuda`` are imported lazily; when absent, :class:`BackendUnavailableError`
says what to install.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.backends.base import InferenceBackend
from vla_edge.backends.engine_cache import BuildOptions, EngineCache, writable_dir
from vla_edge.backends.manifest import Manifest, sha256_file
from vla_edge.config import require, resolve_path
from vla_edge.errors import BackendUnavailableError, ManifestError, ModelError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install TensorRT >= 10 for this CUDA version (JetPack ships it on Orin/Thor; on x86: "
    "`pip install tensorrt`) and cuda-python (`pip install cuda-python`) or pycuda"
)
MIN_FP8_CC = (8, 9)  # Ada/Hopper and newer have FP8 tensor cores


# --------------------------------------------------------------------------- probing


def _try_import(name: str) -> tuple[Any, str]:
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
        return None, f"{type(exc).__name__}: {exc}"


def import_tensorrt() -> Any:
    """Import ``tensorrt`` (major version >= 10) or raise BackendUnavailableError."""
    trt, err = _try_import("tensorrt")
    if trt is None:
        raise BackendUnavailableError(f"TensorRT is not importable ({err}); {INSTALL_HINT}")
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} found; this backend needs >= 10. {INSTALL_HINT}"
        )
    return trt


def probe() -> dict[str, str]:
    """What the TensorRT backend would use here, as ``{"tensorrt": ..., "cuda": ..., "gpu": ...}``.

    Each value says what was found or why not; nothing raises.
    """
    out: dict[str, str] = {}
    trt, err = _try_import("tensorrt")
    out["tensorrt"] = f"tensorrt {trt.__version__}" if trt is not None else f"not importable ({err})"
    try:
        cuda = CudaApi.select()
        out["cuda"] = cuda.kind
        n = cuda.device_count()
        out["gpu"] = (
            f"{n} device(s), compute capability {cuda.compute_capability(0)}" if n else "no CUDA device"
        )
    except BackendUnavailableError as exc:
        out["cuda"] = str(exc)
        out["gpu"] = "unknown (no CUDA Python binding)"
    return out


def available() -> bool:
    """True when tensorrt >= 10 and a CUDA binding import and a GPU is visible."""
    try:
        import_tensorrt()
        return CudaApi.select().device_count() > 0
    except (BackendUnavailableError, ModelError):
        return False


# --------------------------------------------------------------------------- CUDA memory


class CudaApi:
    """The few CUDA runtime calls the backend needs, over cuda-python or pycuda."""

    def __init__(self, kind: str, mod: Any) -> None:
        self.kind = kind
        self._m = mod

    @classmethod
    def select(cls) -> CudaApi:
        """Pick the first importable binding: cuda.bindings.runtime, cuda.cudart, pycuda."""
        errors = []
        for name in ("cuda.bindings.runtime", "cuda.cudart"):
            mod, err = _try_import(name)
            if mod is not None:
                return cls(f"cuda-python ({name})", mod)
            errors.append(f"{name}: {err}")
        drv, err = _try_import("pycuda.driver")
        if drv is not None:
            _, ctx_err = _try_import("pycuda.autoinit")  # creates the CUDA context
            if ctx_err:
                raise BackendUnavailableError(f"pycuda found but no CUDA context ({ctx_err})")
            return cls("pycuda", drv)
        errors.append(f"pycuda.driver: {err}")
        raise BackendUnavailableError(
            "no CUDA Python binding importable (" + "; ".join(errors) + f"); {INSTALL_HINT}"
        )

    def _check(self, result: Any) -> Any:
        # cuda-python returns (err, *values); err is a cudaError_t enum, 0 on success.
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self._m.cudaGetErrorName(err)[1] if hasattr(self._m, "cudaGetErrorName") else err
            raise ModelError(f"CUDA runtime error {name}")
        return rest[0] if len(rest) == 1 else rest

    def device_count(self) -> int:
        """Number of visible CUDA devices (0 on failure)."""
        try:
            if self.kind == "pycuda":
                return int(self._m.Device.count())
            return int(self._check(self._m.cudaGetDeviceCount()))
        except Exception:  # noqa: BLE001 - no driver / no device means zero
            return 0

    def compute_capability(self, device: int) -> str:
        """``"major.minor"`` of ``device``."""
        if self.kind == "pycuda":
            major, minor = self._m.Device(device).compute_capability()
            return f"{major}.{minor}"
        attr = self._m.cudaDeviceAttr
        major = self._check(self._m.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMajor, device))
        minor = self._check(self._m.cudaDeviceGetAttribute(attr.cudaDevAttrComputeCapabilityMinor, device))
        return f"{major}.{minor}"

    def malloc(self, nbytes: int) -> Any:
        """Device allocation; returns an object ``int()`` turns into the address."""
        if self.kind == "pycuda":
            return self._m.mem_alloc(max(1, nbytes))
        return self._check(self._m.cudaMalloc(max(1, nbytes)))

    def free(self, ptr: Any) -> None:
        """Release a :meth:`malloc` allocation."""
        if self.kind == "pycuda":
            ptr.free()
        else:
            self._check(self._m.cudaFree(ptr))

    def stream(self) -> Any:
        """A new CUDA stream."""
        if self.kind == "pycuda":
            return self._m.Stream()
        return self._check(self._m.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        """The integer handle TensorRT's ``execute_async_v3`` takes."""
        return int(stream.handle) if self.kind == "pycuda" else int(stream)

    def h2d(self, dptr: Any, host: np.ndarray, stream: Any) -> None:
        """Async host -> device copy of a C-contiguous array."""
        if self.kind == "pycuda":
            self._m.memcpy_htod_async(dptr, host, stream)
        else:
            kind = self._m.cudaMemcpyKind.cudaMemcpyHostToDevice
            self._check(self._m.cudaMemcpyAsync(dptr, host.ctypes.data, host.nbytes, kind, stream))

    def d2h(self, host: np.ndarray, dptr: Any, stream: Any) -> None:
        """Async device -> host copy into a C-contiguous array."""
        if self.kind == "pycuda":
            self._m.memcpy_dtoh_async(host, dptr, stream)
        else:
            kind = self._m.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._check(self._m.cudaMemcpyAsync(host.ctypes.data, dptr, host.nbytes, kind, stream))

    def sync(self, stream: Any) -> None:
        """Wait for ``stream``."""
        if self.kind == "pycuda":
            stream.synchronize()
        else:
            self._check(self._m.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream: Any) -> None:
        """Release a stream (pycuda streams are garbage-collected)."""
        if self.kind != "pycuda":
            self._check(self._m.cudaStreamDestroy(stream))


# --------------------------------------------------------------------------- INT8 calibration


class CalibrationSet:
    """INT8 calibration samples from an ``.npz``: one array per model input, stacked on axis 0.

    ``np.load(file)[name]`` has shape ``[N, *input_shape]`` (N samples of the contract
    shapes, batch 1 included) for every manifest input. ``training/`` writes this file.

    Args:
        path: The ``.npz`` file.
        manifest: The model manifest (names, shapes, dtypes to check against).
        max_samples: Use at most this many samples.

    Raises:
        ModelError: Unreadable file, missing inputs, wrong shapes or inconsistent N.
    """

    def __init__(self, path: str | Path, manifest: Manifest, max_samples: int) -> None:
        self.path = Path(path)
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise ModelError(f"INT8 calibration set not found: {self.path}") from None
        except Exception as exc:  # noqa: BLE001 - np.load raises many types for bad files
            raise ModelError(f"INT8 calibration set {self.path} is not a readable .npz: {exc}") from None
        counts = set()
        self.arrays: dict[str, np.ndarray] = {}
        for spec in manifest.inputs:
            if spec.name not in arrays:
                raise ModelError(
                    f"INT8 calibration set {self.path} lacks input '{spec.name}' (has {sorted(arrays)})"
                )
            arr = arrays[spec.name]
            if tuple(arr.shape[1:]) != spec.shape:
                raise ModelError(
                    f"INT8 calibration set {self.path}: '{spec.name}' has shape {arr.shape}, "
                    f"expected [N, *{spec.shape}]"
                )
            counts.add(arr.shape[0])
            self.arrays[spec.name] = np.ascontiguousarray(arr[:max_samples], dtype=np.dtype(spec.dtype))
        if len(counts) != 1 or 0 in counts:
            raise ModelError(
                f"INT8 calibration set {self.path}: inputs have different/zero sample counts {counts}"
            )

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Sample ``i`` as one input dict (contract shapes)."""
        return {k: v[i] for k, v in self.arrays.items()}


def _make_calibrator(trt: Any, cuda: CudaApi, calib: CalibrationSet | None, cache_path: Path) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``calib`` samples; reuses/writes ``cache_path``."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.index = 0
            self.stream = cuda.stream()
            self.buffers: dict[str, Any] = {}
            if calib is not None:
                first = calib.sample(0)
                self.buffers = {k: cuda.malloc(v.nbytes) for k, v in first.items()}

        def get_batch_size(self) -> int:
            return 1  # inputs carry their explicit batch dimension

        def get_batch(self, names: list[str]) -> list[int] | None:
            if calib is None or self.index >= len(calib):
                return None
            sample = calib.sample(self.index)
            self.index += 1
            for name in names:
                cuda.h2d(self.buffers[name], np.ascontiguousarray(sample[name]), self.stream)
            cuda.sync(self.stream)
            return [int(self.buffers[name]) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            if cache_path.exists():
                log.info("INT8: reusing calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            from vla_edge.fsutil import atomic_write

            atomic_write(cache_path, bytes(cache))
            log.info("INT8: wrote calibration cache %s", cache_path)

    return EntropyCalibrator()


def calibration_cache_path(cache_dir: Path, onnx_path: Path, manifest: Manifest) -> Path:
    """Where the INT8 calibration cache of this exact ONNX lives."""
    return cache_dir / f"{onnx_path.stem}.{manifest.sha256[:16]}.calib"


# --------------------------------------------------------------------------- toolkit


class TensorRTToolkit:
    """The real TensorRT side of :class:`~vla_edge.backends.engine_cache.EngineToolkit`.

    Args:
        trt: The imported ``tensorrt`` module.
        cuda: CUDA API used for calibration buffers and the compute capability.
        device: CUDA device index.
        calibration: INT8 calibration set (None when not building INT8 or reusing a cache).
        calib_cache: INT8 calibration cache path.
    """

    def __init__(
        self,
        trt: Any,
        cuda: CudaApi,
        device: int,
        calibration: CalibrationSet | None = None,
        calib_cache: Path | None = None,
    ) -> None:
        self.trt = trt
        self.cuda = cuda
        self.device = device
        self.calibration = calibration
        self.calib_cache = calib_cache
        self.logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self.logger)

    @property
    def version(self) -> str:
        """TensorRT version string."""
        return str(self.trt.__version__)

    def compute_capability(self) -> str:
        """Compute capability of the configured device."""
        return self.cuda.compute_capability(self.device)

    def build(self, onnx_path: Path, manifest: Manifest, options: BuildOptions) -> bytes:
        """Parse the ONNX, configure precision and workspace, build and serialize."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"TensorRT cannot parse ONNX file {onnx_path}: {errs or 'unknown parser error'}")
        names = {network.get_input(i).name for i in range(network.num_inputs)}
        if names != set(manifest.input_names):
            raise ManifestError(
                f"ONNX {onnx_path} inputs {sorted(names)} != manifest {list(manifest.input_names)}"
            )
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
        config.builder_optimization_level = int(options.optimization_level)
        # A QDQ graph (vla-edge-train quantize, manifest precision "int8") carries its scales:
        # explicit quantisation, no calibrator.
        self._set_precision(config, options.precision, explicit=manifest.extra.get("precision") == "int8")
        log.info(
            "TensorRT %s: building %s engine from %s (workspace %d MiB, opt level %d), this can take minutes",
            self.version,
            options.precision,
            onnx_path.name,
            options.workspace_mb,
            options.optimization_level,
        )
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelError(
                f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)"
            )
        return bytes(serialized)

    def _set_precision(self, config: Any, precision: str, explicit: bool = False) -> None:
        trt = self.trt
        if precision == "fp32":
            return
        config.set_flag(trt.BuilderFlag.FP16)  # int8/fp8 fall back to fp16 where a layer cannot quantize
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if explicit:
                return
            if self.calib_cache is None:
                raise ModelError("INT8 build needs a calibration cache path")
            if self.calibration is None and not self.calib_cache.exists():
                raise ModelError(
                    "INT8 build needs a calibration set (--calib FILE.npz / tensorrt.calibration.file) "
                    f"or an existing calibration cache {self.calib_cache}"
                )
            config.int8_calibrator = _make_calibrator(trt, self.cuda, self.calibration, self.calib_cache)
        elif precision == "fp8":
            flag = getattr(trt.BuilderFlag, "FP8", None)
            cc = tuple(int(x) for x in self.compute_capability().split("."))
            if flag is None or cc < MIN_FP8_CC:
                raise BackendUnavailableError(
                    f"FP8 needs TensorRT with BuilderFlag.FP8 and compute capability >= 8.9; have "
                    f"TensorRT {self.version}, compute capability {self.compute_capability()}; "
                    "use fp16 or int8"
                )
            config.set_flag(flag)
            log.warning(
                "FP8: TensorRT only runs FP8 where the ONNX carries Q/DQ nodes (explicit quantization); "
                "other layers stay FP16"
            )

    def deserialize(self, data: bytes) -> Any:
        """Engine object, or None when TensorRT rejects the bytes."""
        return self._runtime.deserialize_cuda_engine(data)


# --------------------------------------------------------------------------- backend


@dataclass
class _Binding:
    name: str
    is_input: bool
    host: np.ndarray
    device: Any


def build_options(cfg: dict[str, Any], precision: str | None, calib_file: str | Path | None) -> BuildOptions:
    """Builder options from ``config/inference.yaml`` (CLI overrides for precision/calibration)."""
    sec = require(cfg, "tensorrt", where="inference.yaml")
    prec = precision or str(require(sec, "precision", where="inference.yaml tensorrt"))
    calib_sha = ""
    if prec == "int8" and calib_file:
        calib_sha = sha256_file(calib_file)
    return BuildOptions(
        precision=prec,
        workspace_mb=int(require(sec, "workspace_mb", where="inference.yaml tensorrt")),
        optimization_level=int(require(sec, "builder_optimization_level", where="inference.yaml tensorrt")),
        calibration_sha256=calib_sha,
    )


def cache_dir_from_config(cfg: dict[str, Any]) -> Path:
    """The writable engine cache directory (``tensorrt.cache_dir``, else ``fallback_cache_dir``)."""
    sec = require(cfg, "tensorrt", where="inference.yaml")
    return writable_dir(
        resolve_path(require(sec, "cache_dir", where="inference.yaml tensorrt")),
        resolve_path(require(sec, "fallback_cache_dir", where="inference.yaml tensorrt")),
    )


def make_cache(
    cfg: dict[str, Any],
    onnx_path: Path,
    manifest: Manifest,
    precision: str | None = None,
    calib_file: str | Path | None = None,
) -> tuple[EngineCache, BuildOptions, TensorRTToolkit]:
    """Real-TensorRT engine cache + options for ``onnx_path`` (used by the backend and the CLI).

    Raises:
        BackendUnavailableError: TensorRT or a CUDA binding/GPU is missing.
    """
    trt = import_tensorrt()
    cuda = CudaApi.select()
    if cuda.device_count() < 1:
        raise BackendUnavailableError(f"no CUDA device visible ({cuda.kind}); TensorRT needs a GPU")
    sec = cfg["tensorrt"]
    cache_dir = cache_dir_from_config(cfg)
    calib_file = calib_file or (
        str(require(sec, "calibration", "file", where="inference.yaml tensorrt")) or None
    )
    options = build_options(cfg, precision, calib_file)
    calib = None
    if options.precision == "int8" and calib_file:
        max_n = int(require(sec, "calibration", "max_samples", where="inference.yaml tensorrt"))
        calib = CalibrationSet(resolve_path(calib_file), manifest, max_n)
    toolkit = TensorRTToolkit(
        trt,
        cuda,
        int(require(sec, "device", where="inference.yaml tensorrt")),
        calibration=calib,
        calib_cache=calibration_cache_path(cache_dir, onnx_path, manifest),
    )
    # no calibration set given: key the engine on the calibration cache it is built from
    if (
        options.precision == "int8"
        and not calib_file
        and toolkit.calib_cache
        and toolkit.calib_cache.exists()
    ):
        options = BuildOptions(
            options.precision,
            options.workspace_mb,
            options.optimization_level,
            sha256_file(toolkit.calib_cache),
        )
    cache = EngineCache(
        cache_dir, toolkit, prune_stale=bool(require(sec, "prune_stale", where="inference.yaml"))
    )
    return cache, options, toolkit


class TensorRTBackend(InferenceBackend):
    """Builds (or loads from the cache) a TensorRT engine and runs it with ``execute_async_v3``."""

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, cfg: dict[str, Any]) -> None:
        super().__init__(onnx_path, cfg)
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._bindings: list[_Binding] = []
        self._cuda: CudaApi | None = None
        self.cached: Any = None

    def _load(self) -> None:
        cache, options, toolkit = make_cache(self.cfg, self.onnx_path, self.manifest)
        self.cached = cache.get(self.onnx_path, self.manifest, options)
        trt, cuda = toolkit.trt, toolkit.cuda
        self._cuda = cuda
        self._engine = self.cached.engine
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelError(f"TensorRT could not create an execution context for {self.cached.path}")
        self._stream = cuda.stream()
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._check_binding(name, is_input, shape, dtype)
            host = np.empty(shape, dtype=dtype)
            dev = cuda.malloc(host.nbytes)
            self._context.set_tensor_address(name, int(dev))
            self._bindings.append(_Binding(name, is_input, host, dev))

    def _check_binding(self, name: str, is_input: bool, shape: tuple[int, ...], dtype: np.dtype) -> None:
        specs = self.manifest.inputs if is_input else self.manifest.outputs
        spec = next((s for s in specs if s.name == name), None)
        if spec is None:
            if is_input:
                raise ManifestError(
                    f"engine {self.cached.path} has input '{name}' unknown to {self.manifest.path}"
                )
            return  # extra outputs are allocated but ignored
        if shape != spec.shape or dtype != np.dtype(spec.dtype):
            raise ManifestError(
                f"engine {self.cached.path} tensor '{name}' is {shape} {dtype}, manifest says "
                f"{spec.shape} {spec.dtype}; rebuild with `vla-edge build-engine --force`"
            )

    def _run(self, inputs: dict[str, np.ndarray], timing: dict[str, float]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        assert cuda is not None
        for b in self._bindings:
            if b.is_input:
                np.copyto(b.host, inputs[b.name])
                cuda.h2d(b.device, b.host, self._stream)
        if not self._context.execute_async_v3(cuda.stream_handle(self._stream)):
            raise ModelError(f"TensorRT execute_async_v3 failed for {self.cached.path}")
        for b in self._bindings:
            if not b.is_input:
                cuda.d2h(b.host, b.device, self._stream)
        cuda.sync(self._stream)
        return {b.name: b.host.copy() for b in self._bindings if not b.is_input}

    def _close(self) -> None:
        if self._cuda is not None:
            for b in self._bindings:
                self._cuda.free(b.device)
            if self._stream is not None:
                self._cuda.stream_destroy(self._stream)
        self._bindings = []
        self._context = None
        self._engine = None
        self._stream = None
