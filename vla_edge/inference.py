"""StudentRunner: Frame -> pillarize -> backend -> Candidate (best mode + all modes).

The contract (``docs/architecture.md``): ``StudentRunner.from_config(model_cfg, backend,
engine_path)`` and ``runner.run(frame, noise_seed=None) -> Candidate``. The diffusion
noise is an input drawn from a numpy Generator seeded with ``noise_seed`` or, when None, the
fixed ``noise.seed`` of ``config/inference.yaml``: the same frame gives the same output.

Non-finite outputs raise :class:`~vla_edge.errors.ModelError`; the arbiter treats a missing
student as a failed candidate and falls back.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.backends.base import InferenceBackend
from vla_edge.backends.factory import create_backend
from vla_edge.calibration import Calibration
from vla_edge.camera_input import CameraInputError, CameraSpec, camera_geometry
from vla_edge.candidate import Candidate
from vla_edge.config import load_config, require
from vla_edge.errors import ConfigError, ManifestError, ModelError
from vla_edge.model_inputs import frame_inputs, frame_points
from vla_edge.pillarize import PillarSpec
from vla_edge.types import Frame, Trajectory

log = logging.getLogger(__name__)

# Top-level manifest model_config keys that must equal config/model.yaml "trajectory" keys.
_TRAJ_KEYS = ("dt", "num_poses", "num_anchors")


def _check_model_config(
    spec: PillarSpec, model_cfg: dict[str, Any], exported: dict[str, Any], where: Path
) -> None:
    """The pillar/input spec and trajectory layout of model.yaml must match the export's.

    The exporter records the resolved spec under ``model_config["spec"]`` and the trajectory
    layout at the top level; keys the manifest lacks are not compared.
    """
    diffs = []
    spec_exp = exported.get("spec")
    if isinstance(spec_exp, dict):
        mine = json.loads(json.dumps(asdict(spec)))  # tuples -> lists, as in the JSON manifest
        diffs += [
            f"spec.{k}: exported {spec_exp[k]!r}, config {v!r}"
            for k, v in mine.items()
            if k in spec_exp and spec_exp[k] != v
        ]
    traj = model_cfg.get("trajectory", {})
    diffs += [
        f"trajectory.{k}: exported {exported[k]!r}, config {traj[k]!r}"
        for k in _TRAJ_KEYS
        if k in exported and k in traj and exported[k] != traj[k]
    ]
    if diffs:
        raise ManifestError(
            f"config/model.yaml differs from what model {where} was exported with ({'; '.join(diffs)}); "
            "restore config/model.yaml or re-export with `python -m training.export`"
        )


def engine_spec(spec: PillarSpec, exported: dict[str, Any]) -> PillarSpec:
    """``spec`` with the engine's multi-sweep setting (the engine decides how many sweeps it reads).

    Manifests from before multi-sweep models have no ``sweep_lags``: single sweep.
    """
    spec_exp = exported.get("spec") if isinstance(exported, dict) else None
    spec_exp = spec_exp if isinstance(spec_exp, dict) else {}
    try:
        return spec.with_sweeps(spec_exp.get("sweep_lags", ()), spec_exp.get("sweep_lag_tolerance"))
    except (ConfigError, TypeError, ValueError) as exc:
        raise ManifestError(f"engine manifest has an unusable multi-sweep setting: {exc}") from exc


class CameraConfigError(ConfigError):
    """A camera engine was given no camera (``camera: none``): the node refuses to start."""


def manifest_camera(man: Any) -> CameraSpec | None:
    """The camera input a manifest declares (``image`` input + ``camera`` block), or None.

    Raises:
        ManifestError: An ``image`` input without a well-formed ``camera`` block, or the reverse.
    """
    block = man.extra.get("camera")
    has_image = "image" in man.input_names
    if block is None and not has_image:
        return None
    if not isinstance(block, dict) or not has_image or "camera_valid" not in man.input_names:
        raise ManifestError(
            f"manifest {man.path}: a camera model needs the inputs 'image' and 'camera_valid' and a "
            "'camera' block; re-export with `python -m training.export`"
        )
    try:
        cam = CameraSpec.from_dict(block)
    except CameraInputError as exc:
        raise ManifestError(
            f"manifest {man.path}: {exc}; re-export with `python -m training.export`"
        ) from None
    if man.input("image").shape != (1, 3, cam.height, cam.width):
        raise ManifestError(
            f"manifest {man.path}: input 'image' {man.input('image').shape} disagrees with the camera "
            f"block's image_size {[cam.height, cam.width]}"
        )
    return cam


def engine_declares_camera(onnx_path: str | Path) -> bool:
    """True when the engine's manifest declares a camera input (a ``tiny_cam`` student)."""
    from vla_edge.backends.manifest import load_manifest, manifest_path_for

    return manifest_camera(load_manifest(manifest_path_for(onnx_path))) is not None


def check_camera_calibration(man: Any, cam: CameraSpec, calib: Calibration, atol: float = 1e-3) -> None:
    """The calibration's camera must be the one the lift was exported with.

    Raises:
        ManifestError: Intrinsics, image size or extrinsics differ (beyond ``atol``).
        FrameError: The camera is not in the calibration.
    """
    geo = man.extra["camera"].get("geometry", {})
    mine = camera_geometry(calib, cam).to_dict()
    diffs = []
    for key in ("source_size", "source_K", "cam_to_base"):
        if key in geo and not np.allclose(
            np.asarray(geo[key], float), np.asarray(mine[key], float), atol=atol
        ):
            diffs.append(f"{key}: exported {geo[key]}, calibration {mine[key]}")
    if diffs:
        raise ManifestError(
            f"camera '{cam.name}' of config/calibration.yaml differs from the one model {man.path} "
            f"was exported with ({'; '.join(diffs)}); the lift is built from it: fix "
            f"sensors.{cam.name} or re-export with `python -m training.export`"
        )


class StudentRunner:
    """Runs the student on frames.

    Args:
        backend: A loaded (or loadable) inference backend.
        spec: Pillarization spec (from ``config/model.yaml``).
        noise_seed: Default seed of the noise Generator (``noise.seed`` in inference.yaml).
        camera: Camera input mode (``camera`` of drive.yaml: ``none | raw | compressed``; offline
            tools may pass any other non-``none`` word for "the frames hold the image"). A model
            whose manifest declares a camera input refuses ``none`` (:class:`CameraConfigError`).
        calibration: Calibration the camera image comes with (default: config/calibration.yaml);
            camera models only.

    Attributes:
        camera: The model's camera input spec, or None (LiDAR-only model).
        camera_fallbacks: Frames run LiDAR-only (``camera_valid = 0``) per reason code
            (``missing``, ``stale``, ``undecodable``, ``corrupt``, ``wrong_size``).
        camera_reason: Reason code of the last frame (``ok`` when its image was used).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        spec: PillarSpec,
        noise_seed: int,
        camera: str = "none",
        calibration: Calibration | None = None,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.default_seed = int(noise_seed)
        man = backend.manifest
        self.dt = man.dt
        self._noise_spec = man.input("noise")
        self._noise_cache: dict[int, np.ndarray] = {}
        self._check_spec_matches(man)
        self.camera = manifest_camera(man)
        self.camera_fallbacks: dict[str, int] = {}
        self.camera_reason = ""
        self._source_size: tuple[int, int] | None = None
        if self.camera is not None:
            if str(camera) == "none":
                raise CameraConfigError(
                    f"model {man.path} takes the camera '{self.camera.name}' (manifest input 'image') but "
                    "the camera input is off: set `camera: raw` or `camera: compressed` in drive.yaml "
                    "(ROS parameter `camera`), or run a LiDAR-only engine (engine_path)"
                )
            calib = calibration or Calibration.from_config(load_config("calibration"))
            check_camera_calibration(man, self.camera, calib)
            src = calib.camera_intrinsics(self.camera.name)
            self._source_size = (src.height, src.width)
        if getattr(backend, "pillarize_on_device", False):
            backend.prepare_points(spec)  # buffers and graph now, not on the first frame

    def _check_spec_matches(self, man: Any) -> None:
        P, M, C = self.spec.max_pillars, self.spec.max_points, self.spec.num_features
        want = {
            "pillar_features": (1, P, M, C),
            "pillar_coords": (1, P, 2),
            "reference_path": (1, self.spec.num_path_points, 2),
        }
        bad = [
            f"{n}: model {man.input(n).shape} vs config {s}"
            for n, s in want.items()
            if man.input(n).shape != s
        ]
        if bad:
            raise ManifestError(
                f"model {man.path} was exported for another pillar/input spec ({'; '.join(bad)}); "
                "re-export with `python -m training.export`"
            )

    @classmethod
    def from_config(
        cls,
        model_cfg: dict[str, Any],
        backend: str,
        engine_path: str | Path | None,
        inference_cfg: dict[str, Any] | None = None,
        camera: str = "none",
        calibration: Calibration | None = None,
    ) -> StudentRunner:
        """Create the backend, load and warm it up, and wrap it.

        Args:
            model_cfg: Parsed ``config/model.yaml``.
            backend: ``"auto" | "onnxruntime" | "tensorrt" | "torch_cuda"``.
            engine_path: Exported ONNX; None = ``engine`` of inference.yaml.
            inference_cfg: Parsed ``config/inference.yaml``; None loads it.
            camera: ``camera`` of drive.yaml (``none | raw | compressed``).
            calibration: Camera models: the calibration (default config/calibration.yaml).

        Raises:
            ModelError: Model file missing/corrupt/tampered, or exported for another config
                (camera calibration included).
            ConfigError: A config file is missing or malformed; :class:`CameraConfigError` when
                a camera model gets ``camera: none``.
        """
        inf_cfg = load_config("inference") if inference_cfg is None else inference_cfg
        be = create_backend(backend, engine_path, inf_cfg)
        try:
            spec = engine_spec(PillarSpec.from_config(model_cfg), be.manifest.model_config)
            _check_model_config(spec, model_cfg, be.manifest.model_config, be.onnx_path)
            seed = int(require(inf_cfg, "noise", "seed", where="inference.yaml"))
            return cls(be, spec, seed, camera=camera, calibration=calibration)
        except Exception:
            be.close()
            raise

    def noise(self, seed: int) -> np.ndarray:
        """Standard-normal noise input ``[1, A, T, 3]`` float32 for ``seed`` (cached per seed)."""
        arr = self._noise_cache.get(seed)
        if arr is None:
            rng = np.random.default_rng(seed)
            arr = rng.standard_normal(self._noise_spec.shape, dtype=np.float32)
            if len(self._noise_cache) < 8:  # a few seeds only; replay uses one
                self._noise_cache[seed] = arr
        return arr

    def inputs(self, frame: Frame, noise_seed: int | None = None) -> tuple[dict[str, np.ndarray], int]:
        """Model inputs for ``frame`` and the number of occupied pillars."""
        feed = self._frame_inputs(frame, points=True)
        feed["noise"] = self.noise(self.default_seed if noise_seed is None else int(noise_seed))
        return feed, int(feed["pillar_count"][0])

    def _frame_inputs(self, frame: Frame, points: bool) -> dict[str, np.ndarray]:
        """Batched inputs without the noise; a camera model's bad image is counted by reason."""
        status: dict[str, str] = {}
        feed = frame_inputs(
            frame, self.spec, batch=True, points=points, camera=self.camera,
            source_size=self._source_size, camera_status=status,
        )  # fmt: skip
        if self.camera is not None:
            reason = status["reason"]
            if reason != "ok":
                self.camera_fallbacks[reason] = self.camera_fallbacks.get(reason, 0) + 1
                if reason != self.camera_reason:
                    log.warning(
                        "camera '%s' %s: running LiDAR-only (camera_valid = 0)", self.camera.name, reason
                    )
            elif self.camera_reason not in ("", "ok"):
                log.info("camera '%s' usable again", self.camera.name)
            self.camera_reason = reason
        return feed

    def run(self, frame: Frame, noise_seed: int | None = None) -> Candidate:
        """Infer the student plan for one frame.

        Args:
            frame: The assembled frame (points in base_link, ego, reference path).
            noise_seed: Seed of the diffusion noise; None = the configured default.

        Raises:
            ModelInputError: Unusable points / path / ego state (from vla_edge.pillarize).
            ModelError: Backend failure or non-finite outputs.
        """
        t0 = time.perf_counter()
        if getattr(self.backend, "pillarize_on_device", False):
            # The backend pillarizes on its device (torch_cuda.pillarize_on_gpu): only the
            # points cross, and the CPU does not spend the pillarization (docs/backends.md).
            seed = self.default_seed if noise_seed is None else int(noise_seed)

            def make_inputs() -> dict[str, np.ndarray]:  # the backend calls it while the GPU pillarizes
                rest = self._frame_inputs(frame, points=False)
                rest["noise"] = self.noise(seed)
                return rest

            result, count = self.backend.infer_points(frame_points(frame, self.spec), self.spec, make_inputs)
            t1 = t0 + result.timing_ms["pillarize"] / 1e3
        else:
            feed, count = self.inputs(frame, noise_seed)
            t1 = time.perf_counter()
            result = self.backend.infer(feed)
        t2 = time.perf_counter()
        trajs, scores = result.trajectories, result.scores
        if not (np.all(np.isfinite(trajs)) and np.all(np.isfinite(scores))):
            raise ModelError(
                f"student model {self.backend.onnx_path.name} ({self.backend.name}) returned non-finite "
                f"outputs ({int(np.sum(~np.isfinite(trajs)))} trajectory values, "
                f"{int(np.sum(~np.isfinite(scores)))} scores)"
            )
        best = int(np.argmax(scores))
        traj = Trajectory(poses=trajs[best], dt=self.dt, stamp=frame.stamp, source="student")
        timing = {
            "pillarize": 1e3 * (t1 - t0),
            "inference": 1e3 * (t2 - t1),
            "total": 1e3 * (time.perf_counter() - t0),
        }
        return Candidate(frame.stamp, traj, trajs, scores, best, timing, count, result.bev)

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> StudentRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StudentDisabledError(ModelError):
    """The student is disabled for this run (missing, corrupt or tampered engine)."""


class _NoBackend:
    """``backend`` of a :class:`DisabledStudent` (for the nodes' log lines)."""

    name = "disabled"
    onnx_path = None


class DisabledStudent:
    """Stands in for a :class:`StudentRunner` whose engine could not be loaded.

    The drive graph then runs on the Frenet fallback only: every :meth:`run` raises
    :class:`StudentDisabledError` with the reason, so the inference node publishes an
    ERROR status per sweep (``candidate_info`` and ``/diagnostics``) and the arbiter plans
    at once without a candidate. The bad engine is never used.

    Args:
        reason: Why the student is disabled (the load error's text).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.backend = _NoBackend()

    def run(self, frame: Frame, noise_seed: int | None = None) -> Candidate:
        """Always raises: there is no usable student."""
        raise StudentDisabledError(f"student disabled, Frenet fallback only: {self.reason}")

    def close(self) -> None:
        """Nothing to release."""
