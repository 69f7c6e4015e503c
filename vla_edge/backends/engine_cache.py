"""Validated cache of serialized TensorRT engines, next to the ONNX they come from.

An engine is only valid for the TensorRT version and the GPU (compute capability) that
built it, the exact ONNX bytes and the builder options. The cache key covers all of them:

``<cache_dir>/<onnx stem>.<precision>.<key id>.engine`` plus a ``.json`` sidecar holding
the full key and the engine's sha256.

Rules (``docs/backends.md``):

* the ONNX must match its manifest sha256, else :class:`ManifestError` (refused, no build);
* no engine for this key -> build; the log line names the key fields that differ from the
  newest engine cached for the same model, e.g. ``tensorrt_version 10.0.1 -> 10.3.0``;
* a cached engine whose sha256 disagrees with its sidecar, whose sidecar is missing or
  unreadable, or that fails to deserialize is deleted and rebuilt, with a log line;
* engine and sidecar are written to a temp file, fsynced and renamed, so a crash never
  leaves a half-written engine under the final name.

The TensorRT-specific parts (version, compute capability, build, deserialize) come from an
:class:`EngineToolkit`, so this logic runs in tests without TensorRT (``FakeTensorRT``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vla_edge.backends.manifest import Manifest, sha256_file, verify_onnx
from vla_edge.errors import ModelError
from vla_edge.fsutil import atomic_write

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8", "fp8")
SIDECAR_FORMAT = "vla_edge.engine/1"
STALE_TMP_S = 600.0  # s; temp files older than this are leftovers of a crashed write


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings that change the engine (all part of the cache key).

    Attributes:
        precision: ``"fp32" | "fp16" | "int8" | "fp8"``.
        workspace_mb: Builder workspace memory pool limit in MiB.
        optimization_level: TensorRT builder optimisation level (0..5).
        calibration_sha256: sha256 of the INT8 calibration set ("" when unused).
    """

    precision: str
    workspace_mb: int
    optimization_level: int
    calibration_sha256: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ModelError(f"unknown engine precision '{self.precision}'; use one of {PRECISIONS}")
        if self.workspace_mb <= 0:
            raise ModelError(f"engine workspace must be > 0 MiB, got {self.workspace_mb}")


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on.

    Attributes:
        tensorrt_version: ``tensorrt.__version__`` of the builder.
        compute_capability: GPU compute capability, ``"8.7"`` (Orin), ``"9.0"`` (H100)...
        onnx_sha256: sha256 of the ONNX bytes (as verified against the manifest).
        precision: Engine precision.
        workspace_mb: Builder workspace in MiB.
        optimization_level: Builder optimisation level.
        calibration_sha256: INT8 calibration set hash, "" otherwise.
    """

    tensorrt_version: str
    compute_capability: str
    onnx_sha256: str
    precision: str
    workspace_mb: int
    optimization_level: int
    calibration_sha256: str = ""

    @property
    def id(self) -> str:
        """16 hex chars identifying the key (file-name part)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def diff(self, other: EngineKey) -> list[str]:
        """``"field old -> new"`` for every field where ``other`` (old) differs from self (new)."""
        new, old = asdict(self), asdict(other)
        return [f"{k} {old[k]!r} -> {new[k]!r}" for k in new if new[k] != old[k]]


class EngineToolkit(Protocol):
    """What the cache needs from TensorRT (real: ``TensorRTToolkit``; tests: ``FakeTensorRT``)."""

    @property
    def version(self) -> str:
        """TensorRT version string."""
        ...

    def compute_capability(self) -> str:
        """``"major.minor"`` of the GPU engines are built for."""
        ...

    def build(self, onnx_path: Path, manifest: Manifest, options: BuildOptions) -> bytes:
        """Build and serialize an engine; raise ModelError on failure."""
        ...

    def deserialize(self, data: bytes) -> Any:
        """Deserialize an engine; raise ModelError (or return None) on failure."""
        ...


@dataclass
class CachedEngine:
    """Result of :meth:`EngineCache.get`.

    Attributes:
        engine: The toolkit's deserialized engine object.
        path: The cached engine file.
        key: Its cache key.
        built: True when it was (re)built by this call.
        reason: Why it was built ("" when loaded from cache).
    """

    engine: Any
    path: Path
    key: EngineKey
    built: bool
    reason: str = ""
    events: list[str] = field(default_factory=list)


def writable_dir(primary: Path, fallback: Path) -> Path:
    """``primary`` when it can be created and written, else ``fallback`` (logged).

    Raises:
        ModelError: Neither directory is writable.
    """
    for i, cand in enumerate((primary, fallback)):
        try:
            cand.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cand, prefix=".probe.", suffix=".tmp"):
                pass
        except OSError as exc:
            if i == 0:
                log.warning("engine cache: %s not writable (%s); using %s", primary, exc.strerror, fallback)
            continue
        return cand
    raise ModelError(f"no writable engine cache directory: {primary} and {fallback} both fail")


class EngineCache:
    """Find, validate, build and store engines for one cache directory.

    Args:
        cache_dir: Directory of ``*.engine`` + ``*.json`` pairs (created on demand).
        toolkit: The TensorRT adapter.
        prune_stale: Delete cached engines of the same model and precision built for a
            different key once a new one is stored (they can never be used again here).
    """

    def __init__(self, cache_dir: str | Path, toolkit: EngineToolkit, *, prune_stale: bool) -> None:
        self.cache_dir = Path(cache_dir)
        self.toolkit = toolkit
        self.prune_stale = prune_stale

    def key_for(self, manifest: Manifest, options: BuildOptions) -> EngineKey:
        """The key an engine for ``manifest`` built with ``options`` on this machine has."""
        return EngineKey(
            tensorrt_version=str(self.toolkit.version),
            compute_capability=str(self.toolkit.compute_capability()),
            onnx_sha256=manifest.sha256,
            precision=options.precision,
            workspace_mb=int(options.workspace_mb),
            optimization_level=int(options.optimization_level),
            calibration_sha256=options.calibration_sha256,
        )

    def paths_for(self, onnx_path: Path, key: EngineKey) -> tuple[Path, Path]:
        """``(engine, sidecar)`` paths of ``key``."""
        stem = f"{onnx_path.stem}.{key.precision}.{key.id}"
        return self.cache_dir / f"{stem}.engine", self.cache_dir / f"{stem}.json"

    def get(
        self, onnx_path: str | Path, manifest: Manifest, options: BuildOptions, *, force: bool = False
    ) -> CachedEngine:
        """Return a deserialized engine for ``onnx_path``, building it when needed.

        Args:
            onnx_path: The ONNX file; refused if its sha256 differs from ``manifest``.
            manifest: The model manifest.
            options: Builder options.
            force: Rebuild even when a valid cached engine exists.

        Raises:
            ManifestError: The ONNX does not match its manifest (never built).
            ModelError: Build or deserialization of a fresh engine failed.
        """
        onnx = verify_onnx(manifest, onnx_path)
        self._clean_temp_files()
        key = self.key_for(manifest, options)
        engine_path, sidecar = self.paths_for(onnx, key)
        events: list[str] = []
        if force:
            reason = "forced rebuild (--force)"
        elif not engine_path.exists():
            reason = self._why_missing(onnx, key)
        else:
            problem = self._validate_cached(engine_path, sidecar, key)
            engine = None
            if problem is None:
                engine, problem = self._try_deserialize(engine_path)
            if problem is None:
                log.info("engine cache: using %s (key %s)", engine_path, key.id)
                return CachedEngine(engine, engine_path, key, built=False, events=events)
            reason = f"cached engine {engine_path.name} is unusable ({problem}); deleted"
            engine_path.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
        log.warning("engine cache: building %s: %s", engine_path.name, reason)
        events.append(reason)
        return self._build(onnx, manifest, options, key, engine_path, sidecar, reason, events)

    def _clean_temp_files(self) -> None:
        # A temp file exists only for the seconds of a write; an old one is a crash leftover.
        now = time.time()
        for tmp in self.cache_dir.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > STALE_TMP_S:
                    tmp.unlink()
                    log.info("engine cache: removed leftover temp file %s", tmp)
            except OSError:
                pass

    def _why_missing(self, onnx: Path, key: EngineKey) -> str:
        newest: tuple[float, EngineKey] | None = None
        for side in self.cache_dir.glob(f"{onnx.stem}.*.json"):
            other = _read_sidecar_key(side)
            if other is None:
                continue
            mtime = side.stat().st_mtime
            if newest is None or mtime > newest[0]:
                newest = (mtime, other)
        if newest is None:
            return f"no cached engine for {onnx.name} in {self.cache_dir}"
        changes = key.diff(newest[1])
        return "cache key changed: " + ", ".join(changes) if changes else "no engine file for this key"

    def _validate_cached(self, engine_path: Path, sidecar: Path, key: EngineKey) -> str | None:
        try:
            doc = json.loads(sidecar.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "sidecar missing (interrupted write?)"
        except (OSError, ValueError) as exc:
            return f"sidecar unreadable: {exc}"
        side_key = _key_from_doc(doc)
        if side_key is None:
            return "sidecar malformed"
        if side_key != key:
            return "sidecar key differs: " + ", ".join(key.diff(side_key))
        actual = sha256_file(engine_path)
        if actual != doc.get("engine_sha256"):
            return "engine sha256 differs from its sidecar (truncated or modified)"
        return None

    def _try_deserialize(self, engine_path: Path) -> tuple[Any, str | None]:
        try:
            engine = self.toolkit.deserialize(engine_path.read_bytes())
        except ModelError as exc:
            return None, f"deserialization failed: {exc}"
        except OSError as exc:
            return None, f"unreadable: {exc}"
        if engine is None:
            return None, "deserialization failed"
        return engine, None

    def _build(
        self,
        onnx: Path,
        manifest: Manifest,
        options: BuildOptions,
        key: EngineKey,
        engine_path: Path,
        sidecar: Path,
        reason: str,
        events: list[str],
    ) -> CachedEngine:
        data = self.toolkit.build(onnx, manifest, options)
        if not data:
            raise ModelError(f"TensorRT produced an empty engine for {onnx}")
        doc = {
            "format": SIDECAR_FORMAT,
            "key": asdict(key),
            "key_id": key.id,
            "onnx": onnx.name,
            "engine_sha256": hashlib.sha256(data).hexdigest(),
            "engine_bytes": len(data),
            "reason": reason,
        }
        # engine first: a crash before the sidecar lands leaves an engine without sidecar,
        # which the next start treats as unusable and rebuilds.
        atomic_write(engine_path, data)
        atomic_write(sidecar, json.dumps(doc, indent=1) + "\n")
        engine = self.toolkit.deserialize(data)
        if engine is None:
            raise ModelError(f"freshly built engine {engine_path} failed to deserialize")
        log.info("engine cache: stored %s (%d bytes, key %s)", engine_path, len(data), key.id)
        if self.prune_stale:
            self._prune(onnx, key, events)
        return CachedEngine(engine, engine_path, key, built=True, reason=reason, events=events)

    def _prune(self, onnx: Path, key: EngineKey, events: list[str]) -> None:
        for side in self.cache_dir.glob(f"{onnx.stem}.{key.precision}.*.json"):
            other = _read_sidecar_key(side)
            if other is None or other == key:
                continue
            stale = side.parent / (side.name[: -len(".json")] + ".engine")
            stale.unlink(missing_ok=True)
            side.unlink(missing_ok=True)
            msg = f"pruned stale engine {stale.name} (" + ", ".join(key.diff(other)) + ")"
            log.info("engine cache: %s", msg)
            events.append(msg)


def _key_from_doc(doc: Any) -> EngineKey | None:
    if (
        not isinstance(doc, dict)
        or doc.get("format") != SIDECAR_FORMAT
        or not isinstance(doc.get("key"), dict)
    ):
        return None
    try:
        return EngineKey(**doc["key"])
    except TypeError:
        return None


def _read_sidecar_key(path: Path) -> EngineKey | None:
    try:
        return _key_from_doc(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
