"""The one interface every inference backend implements, plus model-file checks.

A backend is created from the path of the exported ONNX file. Before any backend-specific
parsing, :func:`open_model` checks that the file exists, is an ``.onnx`` file, has a
well-formed manifest next to it, matches that manifest's sha256 and declares the contract
tensors of ``docs/architecture.md``. Every failure is a :class:`~vla_edge.errors.ModelError`
(or subclass) that names the file, so a bad model degrades the plan instead of crashing
the node.
"""

from __future__ import annotations

import abc
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.backends.manifest import Manifest, TensorSpec, load_manifest, manifest_path_for, verify_onnx
from vla_edge.candidate import Candidate
from vla_edge.errors import ManifestError, ModelError, VlaEdgeError

log = logging.getLogger(__name__)

# Contract tensor names (docs/architecture.md, "Model I/O"); bev_features is optional.
CONTRACT_INPUTS = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path", "noise")
CONTRACT_OUTPUTS = ("trajectories", "scores")
OPTIONAL_OUTPUTS = ("bev_features",)


class InferenceInputError(ModelError):
    """Inputs handed to a backend do not match the model's manifest (names, shapes, dtypes)."""


def open_model(path: str | Path) -> tuple[Path, Manifest]:
    """Check a model file and its manifest before any backend parses it.

    Args:
        path: The exported ``.onnx`` file (its manifest is ``<stem>.json`` beside it).

    Returns:
        ``(resolved onnx path, manifest)`` with the sha256 verified.

    Raises:
        ModelError: Missing file, not a file, wrong extension.
        ManifestError: Missing/malformed manifest, sha256 mismatch, manifest describing
            another file, or contract tensors absent.
    """
    p = Path(path).expanduser()
    if p.suffix.lower() != ".onnx":
        raise ModelError(
            f"unknown model file type {p} (expected an exported .onnx with its .json manifest; "
            "TensorRT engines are built from the ONNX and cached by the backend)"
        )
    if not p.exists():
        raise ModelError(f"model file not found: {p} (export it with `python -m training.export`)")
    if not p.is_file():
        raise ModelError(f"model path {p} is not a regular file")
    manifest = load_manifest(manifest_path_for(p))
    verified = verify_onnx(manifest, p)
    check_contract(manifest)
    return verified, manifest


def check_contract(manifest: Manifest) -> None:
    """Raise ManifestError when the manifest lacks a contract input/output or has batch != 1."""
    missing_in = [n for n in CONTRACT_INPUTS if n not in manifest.input_names]
    missing_out = [n for n in CONTRACT_OUTPUTS if n not in manifest.output_names]
    if missing_in or missing_out:
        raise ManifestError(
            f"manifest {manifest.path} does not follow the model I/O contract: missing inputs "
            f"{missing_in}, missing outputs {missing_out} (see docs/architecture.md); re-export"
        )
    for spec in (*manifest.inputs, *manifest.outputs):
        if spec.shape[0] != 1:
            raise ManifestError(
                f"manifest {manifest.path}: tensor '{spec.name}' must have batch 1, got {spec.shape}"
            )
    traj, scores = manifest.output("trajectories").shape, manifest.output("scores").shape
    if len(traj) != 4 or traj[3] != 3 or scores != traj[:2]:
        raise ManifestError(
            f"manifest {manifest.path}: trajectories {traj} / scores {scores} must be [1,A,T,3] / [1,A]"
        )


def validate_inputs(specs: tuple[TensorSpec, ...], inputs: dict[str, np.ndarray], where: str) -> None:
    """Check names, shapes and dtypes of ``inputs`` against the manifest's specs.

    Raises:
        InferenceInputError: Naming every offending tensor and what was expected.
    """
    expected = {s.name: s for s in specs}
    problems = []
    missing = sorted(set(expected) - set(inputs))
    extra = sorted(set(inputs) - set(expected))
    if missing:
        problems.append(f"missing {missing}")
    if extra:
        problems.append(f"unexpected {extra}")
    for name, spec in expected.items():
        if name not in inputs:
            continue
        arr = inputs[name]
        if not isinstance(arr, np.ndarray):
            problems.append(f"'{name}' must be a numpy array, got {type(arr).__name__}")
            continue
        if tuple(arr.shape) != spec.shape:
            problems.append(f"'{name}' shape {tuple(arr.shape)} != {spec.shape}")
        if arr.dtype != np.dtype(spec.dtype):
            problems.append(f"'{name}' dtype {arr.dtype} != {spec.dtype}")
    if problems:
        raise InferenceInputError(f"inputs for {where} do not match its manifest: " + "; ".join(problems))


def dummy_inputs(specs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    """Zero tensors of the manifest's shapes and dtypes (for warm-up and graph capture)."""
    return {s.name: np.zeros(s.shape, dtype=np.dtype(s.dtype)) for s in specs}


class InferenceBackend(abc.ABC):
    """Load, warm up, then infer; subclasses implement :meth:`_load` and :meth:`_run`.

    Args:
        onnx_path: The exported ONNX model (checked with :func:`open_model`).
        cfg: The parsed ``config/inference.yaml`` mapping.
    """

    name: str = "base"

    def __init__(self, onnx_path: str | Path, cfg: dict[str, Any]) -> None:
        self.onnx_path, self.manifest = open_model(onnx_path)
        self.cfg = cfg
        self._loaded = False

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """Input specs from the manifest, in graph order."""
        return self.manifest.inputs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """Output specs from the manifest, in graph order."""
        return self.manifest.outputs

    @property
    def loaded(self) -> bool:
        """True once :meth:`load` succeeded and :meth:`close` was not called."""
        return self._loaded

    def load(self) -> InferenceBackend:
        """Parse/build the model and allocate what inference needs. Idempotent.

        Returns:
            ``self``, to allow ``backend = X(path, cfg).load()``.

        Raises:
            ModelError: The model cannot be loaded by this backend (names the file).
            BackendUnavailableError: This backend cannot run here.
        """
        if not self._loaded:
            t0 = time.perf_counter()
            self._load()
            self._loaded = True
            log.info(
                "%s backend loaded %s in %.0f ms", self.name, self.onnx_path, 1e3 * (time.perf_counter() - t0)
            )
        return self

    def warmup(self, n: int) -> None:
        """Run ``n`` inferences on zero inputs (first-call allocations, autotuning)."""
        dummy = dummy_inputs(self.input_specs)
        for _ in range(max(0, int(n))):
            self.infer(dummy)

    def infer(self, inputs: dict[str, np.ndarray]) -> Candidate:
        """Run one inference.

        Args:
            inputs: One array per manifest input, exact shapes and dtypes.

        Returns:
            A :class:`~vla_edge.candidate.Candidate` with ``trajectories``, ``scores``, ``bev``
            and ``timing_ms`` (batch dimension removed; no frame stamp yet).

        Raises:
            InferenceInputError: Inputs do not match the manifest.
            ModelError: The backend failed or returned tensors of the wrong shape.
        """
        if not self._loaded:
            self.load()
        validate_inputs(self.input_specs, inputs, f"{self.name} model {self.onnx_path.name}")
        t0 = time.perf_counter()
        timing: dict[str, float] = {}
        try:
            outputs = self._run(inputs, timing)
        except VlaEdgeError:
            raise
        except Exception as exc:
            raise ModelError(
                f"{self.name} backend failed running {self.onnx_path}: {type(exc).__name__}: {exc}"
            ) from exc
        timing["infer"] = 1e3 * (time.perf_counter() - t0)
        return self._result(outputs, timing)

    def _result(self, outputs: dict[str, np.ndarray], timing: dict[str, float]) -> Candidate:
        for name in CONTRACT_OUTPUTS:
            if name not in outputs:
                raise ModelError(f"{self.name} model {self.onnx_path} produced no output '{name}'")
        for spec in self.output_specs:
            arr = outputs.get(spec.name)
            if arr is not None and tuple(arr.shape) != spec.shape:
                raise ModelError(
                    f"{self.name} model {self.onnx_path}: output '{spec.name}' has shape "
                    f"{tuple(arr.shape)}, manifest says {spec.shape}"
                )
        bev = outputs.get("bev_features")
        return Candidate(
            trajectories=np.asarray(outputs["trajectories"][0], dtype=np.float32),
            scores=np.asarray(outputs["scores"][0], dtype=np.float32),
            bev=None if bev is None else np.asarray(bev[0], dtype=np.float32),
            timing_ms=timing,
        )

    def close(self) -> None:
        """Release sessions, engines and device buffers. Safe to call twice."""
        if self._loaded:
            self._close()
        self._loaded = False

    def __enter__(self) -> InferenceBackend:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def _load(self) -> None:
        """Backend-specific load."""

    @abc.abstractmethod
    def _run(self, inputs: dict[str, np.ndarray], timing: dict[str, float]) -> dict[str, np.ndarray]:
        """Backend-specific inference: validated inputs in, outputs by name (with batch) out."""

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Backend-specific release."""
