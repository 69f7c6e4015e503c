"""Model manifest: the JSON file next to an exported ONNX model.

The manifest records the ONNX file's sha256, its tensor names, shapes and dtypes, the
model config and the anchors (see ``docs/architecture.md``, "Model I/O"). Runtime
backends refuse an ONNX file whose hash disagrees with its manifest, so a tampered or
half-copied model never reaches the vehicle planner.

Pure ``json`` + ``hashlib``: the exporter in ``training/`` and the runtime both import it
and neither needs torch or numpy here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_edge.errors import ManifestError, ModelError
from vla_edge.fsutil import atomic_write

FORMAT = "vla_edge.manifest/1"
MIN_OPSET = 17
WEIGHTS_KINDS = ("trained", "random-seeded")
DTYPES = ("float32", "float16", "int32", "int64", "int8", "uint8", "bool")
_CHUNK = 1 << 20  # bytes read per hash update
_REEXPORT = "re-export with `python -m training.export` or restore the file"


@dataclass(frozen=True)
class TensorSpec:
    """Name, static shape and dtype of one model input or output.

    Attributes:
        name: Tensor name in the ONNX graph.
        shape: Static shape (batch included).
        dtype: numpy dtype name (``"float32"``, ``"int32"``...).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form ``{"name", "shape", "dtype"}``."""
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest.

    Attributes:
        path: Where the manifest was read from.
        onnx: ONNX file name, relative to the manifest's directory.
        sha256: Hex sha256 of the ONNX file.
        preset: Model size preset (``"tiny"``, ``"base"``...).
        weights: ``"trained"`` or ``"random-seeded"``.
        opset: ONNX opset of the export.
        inputs: Input tensor specs in graph order.
        outputs: Output tensor specs in graph order.
        model_config: The model config the export was built from.
        anchors: A x T x 3 anchor trajectories (nested lists).
        created: ISO-8601 creation time.
        extra: Every other top-level key (``"training"``...).
    """

    path: Path
    onnx: str
    sha256: str
    preset: str
    weights: str
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    model_config: dict[str, Any]
    anchors: list[Any]
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def onnx_path(self) -> Path:
        """Absolute path of the ONNX file this manifest describes."""
        return (self.path.parent / self.onnx).resolve()

    def input(self, name: str) -> TensorSpec:
        """Spec of the input called ``name`` (ManifestError if absent)."""
        return _find(self.inputs, name, "input", self.path)

    def output(self, name: str) -> TensorSpec:
        """Spec of the output called ``name`` (ManifestError if absent)."""
        return _find(self.outputs, name, "output", self.path)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Input names in graph order."""
        return tuple(s.name for s in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Output names in graph order."""
        return tuple(s.name for s in self.outputs)

    @property
    def dt(self) -> float:
        """Trajectory time step in seconds, from ``model_config``.

        Looks for ``dt`` at the top of ``model_config`` or in one of its sections
        (``trajectory``, ``head``, ``model``).
        """
        value = _lookup_dt(self.model_config)
        if value is None:
            raise ManifestError(f"manifest {self.path}: model_config has no trajectory 'dt'; {_REEXPORT}")
        return value


def _find(specs: tuple[TensorSpec, ...], name: str, kind: str, where: Path) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    names = ", ".join(s.name for s in specs)
    raise ManifestError(f"manifest {where}: no {kind} named '{name}' (has: {names})")


def _lookup_dt(cfg: Mapping[str, Any]) -> float | None:
    if isinstance(cfg.get("dt"), (int, float)):
        return float(cfg["dt"])
    for section in ("trajectory", "head", "model"):
        sub = cfg.get(section)
        if isinstance(sub, Mapping) and isinstance(sub.get("dt"), (int, float)):
            return float(sub["dt"])
    return None


def manifest_path_for(onnx_path: str | os.PathLike[str]) -> Path:
    """The manifest path that belongs to ``onnx_path`` (same stem, ``.json``)."""
    return Path(onnx_path).with_suffix(".json")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in chunks.

    Raises:
        ModelError: If the file is missing or unreadable.
    """
    p = Path(path)
    digest = hashlib.sha256()
    try:
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise ModelError(f"model file not found: {p}") from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {p}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    # numpy arrays/scalars arrive from the exporter; duck-type them so no numpy import.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON serialisable")


def _spec(raw: Any, kind: str, where: Path | str) -> TensorSpec:
    if isinstance(raw, TensorSpec):
        return raw
    if isinstance(raw, (tuple, list)) and len(raw) == 3:
        raw = {"name": raw[0], "shape": raw[1], "dtype": raw[2]}
    if not isinstance(raw, Mapping):
        raise ManifestError(f"manifest {where}: {kind} entry must be {{name, shape, dtype}}, got {raw!r}")
    try:
        name, shape, dtype = raw["name"], raw["shape"], str(raw["dtype"])
    except KeyError as exc:
        raise ManifestError(f"manifest {where}: {kind} entry {raw!r} lacks '{exc.args[0]}'") from None
    if not isinstance(name, str) or not name:
        raise ManifestError(f"manifest {where}: {kind} name must be a non-empty string, got {name!r}")
    if hasattr(shape, "tolist"):
        shape = shape.tolist()
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ManifestError(
            f"manifest {where}: {kind} '{name}' shape must be positive static ints, got {shape!r}"
        )
    if dtype not in DTYPES:
        raise ManifestError(f"manifest {where}: {kind} '{name}' dtype '{dtype}' not one of {DTYPES}")
    return TensorSpec(name, tuple(int(d) for d in shape), dtype)


def _specs(raw: Any, kind: str, where: Path | str) -> tuple[TensorSpec, ...]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ManifestError(f"manifest {where}: '{kind}s' must be a non-empty list")
    specs = tuple(_spec(r, kind, where) for r in raw)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ManifestError(f"manifest {where}: duplicate {kind} names {names}")
    return specs


def write_manifest(
    onnx_path: str | os.PathLike[str],
    *,
    inputs: Iterable[Any],
    outputs: Iterable[Any],
    model_config: Mapping[str, Any],
    anchors: Any,
    weights: str,
    preset: str,
    opset: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.json`` next to ``onnx_path`` describing the (already written) ONNX.

    Args:
        onnx_path: The exported ONNX file; it must exist (its sha256 is recorded).
        inputs: Input specs in graph order: ``{"name", "shape", "dtype"}`` dicts,
            ``(name, shape, dtype)`` tuples or :class:`TensorSpec`.
        outputs: Output specs, same forms.
        model_config: The model config mapping used for the export (``dt`` included).
        anchors: A x T x 3 anchors (nested lists or a numpy array).
        weights: ``"trained"`` or ``"random-seeded"``.
        preset: Size preset name.
        opset: ONNX opset (>= 17).
        extra: More top-level keys, e.g. ``{"training": {...}}``; may not override the
            keys above.

    Returns:
        Path of the manifest written (atomically: temp file + rename).

    Raises:
        ModelError: If the ONNX file is missing.
        ManifestError: If an argument is invalid.
    """
    onnx = Path(onnx_path)
    out = manifest_path_for(onnx)
    if weights not in WEIGHTS_KINDS:
        raise ManifestError(f"manifest {out}: weights must be one of {WEIGHTS_KINDS}, got {weights!r}")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ManifestError(f"manifest {out}: opset must be an int >= {MIN_OPSET}, got {opset!r}")
    if not isinstance(model_config, Mapping):
        raise ManifestError(f"manifest {out}: model_config must be a mapping")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "onnx": onnx.name,
        "sha256": sha256_file(onnx),
        "preset": str(preset),
        "weights": weights,
        "opset": opset,
        "inputs": [s.to_dict() for s in _specs(list(inputs), "input", out)],
        "outputs": [s.to_dict() for s in _specs(list(outputs), "output", out)],
        "model_config": dict(model_config),
        "anchors": anchors,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for key, value in (extra or {}).items():
        if key in doc:
            raise ManifestError(f"manifest {out}: extra key '{key}' would override a required key")
        doc[key] = value
    try:
        text = json.dumps(doc, indent=1, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"manifest {out}: cannot serialise: {exc}") from None
    atomic_write(out, text + "\n")
    return out


_REQUIRED = ("format", "onnx", "sha256", "preset", "weights", "opset", "inputs", "outputs",
             "model_config", "anchors")  # fmt: skip


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest.

    Args:
        path: The manifest ``.json``, or the ``.onnx`` it belongs to.

    Returns:
        The parsed :class:`Manifest` (the ONNX hash is NOT checked here; call
        :func:`verify_onnx`).

    Raises:
        ManifestError: If it is missing, not JSON, of another format or incomplete.
    """
    p = Path(path)
    if p.suffix == ".onnx":
        p = manifest_path_for(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"manifest not found: {p} (the exporter writes it next to the ONNX; {_REEXPORT})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {p}: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {p} is not valid JSON ({exc}); {_REEXPORT}") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest {p} must hold a JSON object")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise ManifestError(f"manifest {p} lacks keys {missing}; {_REEXPORT}")
    if doc["format"] != FORMAT:
        raise ManifestError(f"manifest {p} has format {doc['format']!r}, expected {FORMAT!r}")
    sha = doc["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ManifestError(f"manifest {p}: sha256 must be 64 lower-case hex chars, got {sha!r}")
    onnx = doc["onnx"]
    if not isinstance(onnx, str) or not onnx or Path(onnx).name != onnx:
        raise ManifestError(f"manifest {p}: 'onnx' must be a bare file name next to it, got {onnx!r}")
    if not isinstance(doc["opset"], int) or doc["opset"] < MIN_OPSET:
        raise ManifestError(f"manifest {p}: opset must be an int >= {MIN_OPSET}, got {doc['opset']!r}")
    if doc["weights"] not in WEIGHTS_KINDS:
        raise ManifestError(f"manifest {p}: weights must be one of {WEIGHTS_KINDS}, got {doc['weights']!r}")
    if not isinstance(doc["model_config"], dict):
        raise ManifestError(f"manifest {p}: model_config must be an object")
    if not isinstance(doc["anchors"], list):
        raise ManifestError(f"manifest {p}: anchors must be a list (A x T x 3)")
    extra = {k: v for k, v in doc.items() if k not in _REQUIRED and k != "created"}
    return Manifest(
        path=p.resolve(),
        onnx=onnx,
        sha256=sha,
        preset=str(doc["preset"]),
        weights=doc["weights"],
        opset=doc["opset"],
        inputs=_specs(doc["inputs"], "input", p),
        outputs=_specs(doc["outputs"], "output", p),
        model_config=doc["model_config"],
        anchors=doc["anchors"],
        created=str(doc.get("created", "")),
        extra=extra,
    )


def verify_onnx(manifest: Manifest, onnx_path: str | os.PathLike[str] | None = None) -> Path:
    """Check that an ONNX file is the one the manifest describes.

    Args:
        manifest: The loaded manifest.
        onnx_path: The file to check; defaults to ``manifest.onnx_path``. A different
            file name than the manifest names is refused (manifest points elsewhere).

    Returns:
        The verified ONNX path.

    Raises:
        ModelError: If the file is missing or unreadable.
        ManifestError: If the name or the sha256 disagrees with the manifest.
    """
    target = manifest.onnx_path if onnx_path is None else Path(onnx_path).resolve()
    if target != manifest.onnx_path:
        raise ManifestError(
            f"manifest {manifest.path} describes {manifest.onnx_path}, not {target}; "
            "pass the manifest that belongs to this model"
        )
    actual = sha256_file(target)
    if actual != manifest.sha256:
        raise ManifestError(
            f"ONNX file {target} has sha256 {actual[:16]}... but its manifest {manifest.path} "
            f"says {manifest.sha256[:16]}...; the model was modified or corrupted, refusing to "
            f"load; {_REEXPORT}"
        )
    return target
