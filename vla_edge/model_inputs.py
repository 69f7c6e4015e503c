"""The one builder of the student's input tensors (``docs/architecture.md``, "Model I/O").

Runtime inference, the training dataset, evaluation, export and on-policy collection all
call :func:`model_inputs`, so a change of the input layout happens in one place. The
diffusion ``noise`` input is not built here: its seed policy differs (runtime seed, training
batches).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_edge.camera_input import CameraSpec, frame_image_input
from vla_edge.pillarize import ModelInputError, PillarSpec, ego_state_input, pillarize, reference_path_input
from vla_edge.sweeps import compose_sweeps
from vla_edge.types import EgoState, PastSweep


def model_points(
    spec: PillarSpec,
    points: np.ndarray,
    ego: Any = None,
    history: Sequence[PastSweep] = (),
    stamp: float | None = None,
) -> np.ndarray:
    """The cloud the model pillarizes: ``points`` itself, or the multi-sweep composition.

    Single-sweep specs get ``points`` unchanged. Multi-sweep specs (``spec.sweep_lags``) get
    N x 5 points (:func:`vla_edge.sweeps.compose_sweeps`); a cloud that already has the time
    lag column and no history (e.g. the export's example input) passes through.

    Raises:
        ModelInputError: Earlier sweeps given without the ego pose (an :class:`EgoState`).
    """
    if not spec.sweep_lags:
        return points
    pts = np.asarray(points)
    if pts.ndim == 2 and pts.shape[1] >= 5 and not history:
        return pts
    if history and not isinstance(ego, EgoState):
        raise ModelInputError("a multi-sweep model needs the ego pose (EgoState) to place earlier sweeps")
    return compose_sweeps(pts, ego if isinstance(ego, EgoState) else None, history, spec, stamp)


def frame_points(frame: Any, spec: PillarSpec) -> np.ndarray:
    """:func:`model_points` of a :class:`~vla_edge.types.Frame` (its ``history`` included)."""
    return model_points(spec, frame.points, frame.ego, getattr(frame, "history", ()), frame.stamp)


def model_inputs(
    spec: PillarSpec,
    points: np.ndarray | None,
    reference_path: np.ndarray,
    ego: Any = None,
    batch: bool = False,
    history: Sequence[PastSweep] = (),
    stamp: float | None = None,
) -> dict[str, np.ndarray]:
    """Contract inputs without the noise, as numpy arrays.

    Args:
        spec: Pillar/input spec of the model.
        points: N x 4 (x, y, z, intensity) in ``base_link``; None leaves out the pillar inputs
            (callers that store points sparsely and pillarize later).
        reference_path: M x 2 ego-frame path.
        ego: :class:`~vla_edge.types.EgoState` or ``(v, a, yaw_rate)``; None leaves out ``ego_state``.
        batch: Add a leading batch dimension of 1.
        history: Earlier sweeps, newest first, for multi-sweep specs (:func:`model_points`).
        stamp: Stamp of ``points`` (default ``ego.stamp``), for the sweeps' time lags.

    Returns:
        ``pillar_features`` [P, M, C] float32, ``pillar_coords`` [P, 2] int32, ``pillar_count``
        int32 (shape [1] when batched), ``ego_state`` [6] float32, ``reference_path`` [K, 2] float32.

    Raises:
        ModelInputError: Unusable points, path or ego state.
    """
    out: dict[str, np.ndarray] = {}
    if points is not None:
        feats, coords, count = pillarize(model_points(spec, points, ego, history, stamp), spec)
        out["pillar_features"], out["pillar_coords"] = feats, coords
        out["pillar_count"] = np.array(count, dtype=np.int32)
    if ego is not None:
        out["ego_state"] = ego_state_input(ego, spec)
    out["reference_path"] = reference_path_input(reference_path, spec)
    if batch:
        out = {k: (v.reshape(1) if v.ndim == 0 else v[None]) for k, v in out.items()}
    return out


def frame_inputs(
    frame: Any,
    spec: PillarSpec,
    batch: bool = False,
    points: bool = True,
    camera: CameraSpec | None = None,
    source_size: tuple[int, int] | None = None,
    camera_status: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`model_inputs` of a :class:`~vla_edge.types.Frame`, plus the camera input.

    Args:
        frame: The assembled frame.
        spec: Pillar/input spec of the model.
        batch: Add a leading batch dimension of 1.
        points: False leaves out the pillar inputs.
        camera: The model's camera input (models whose manifest declares ``image``); adds
            ``image`` [3, H, W] float32 and ``camera_valid`` [1] float32 built by
            :func:`vla_edge.camera_input.frame_image_input` (a bad image: zeros and 0).
        source_size: ``(height, width)`` the camera image must have (calibrated size).
        camera_status: When given, ``camera_status["reason"]`` gets the camera reason code
            (``ok``, ``missing``, ``stale``, ``undecodable``, ``corrupt``, ``wrong_size``).
    """
    out = model_inputs(
        spec, frame.points if points else None, frame.reference_path, frame.ego, False,
        history=getattr(frame, "history", ()), stamp=frame.stamp,
    )  # fmt: skip
    if camera is not None:
        img, valid, reason = frame_image_input(frame, camera, source_size)
        out["image"] = img
        out["camera_valid"] = np.array([valid], dtype=np.float32)
        if camera_status is not None:
            camera_status["reason"] = reason
    if batch:
        out = {k: (v.reshape(1) if v.ndim == 0 else v[None]) for k, v in out.items()}
    return out
