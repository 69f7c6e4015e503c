"""Multi-sweep model input: earlier LiDAR sweeps moved into the current ``base_link``.

One sweep shows where things are, not where they go: a cart about to cross the lane looks
like a parked one, so a single-sweep student cannot yield to it in time. A multi-sweep model
(a preset with ``sweeps``, ``PillarSpec.sweep_lags``) also sees earlier sweeps,
motion-compensated with the odometry poses and tagged with their time lag as a fifth point
column, as PointPillars does with nuScenes' ten sweeps. Static things line up across sweeps;
moving ones leave a trail whose direction and length the model can read.

The :class:`~vla_edge.frame_assembly.FrameAssembler` keeps the earlier usable sweeps
(``Frame.history``); this module picks one per configured lag and composes the cloud. Only
planar ego motion (x, y, yaw) is compensated: pitch and roll changes between sweeps 0.1-0.5 s
apart are below the pillar resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vla_edge.pillarize import ModelInputError, PillarSpec
from vla_edge.types import EgoState, PastSweep


def select_sweeps(
    stamp: float, history: Sequence[PastSweep], spec: PillarSpec
) -> list[tuple[float, PastSweep]]:
    """For each of ``spec.sweep_lags``, the earlier sweep whose age is nearest to it.

    A sweep is used when its age is within ``spec.sweep_lag_tolerance`` of the lag; a lag
    with no such sweep (start-up, dropped sweeps, a clock jump) is left out, so the model
    sees fewer sweeps rather than wrong ones.

    Returns:
        ``(age, sweep)`` pairs in the order of the lags.
    """
    if not history:
        return []
    out: list[tuple[float, PastSweep]] = []
    ages = np.array([stamp - h.stamp for h in history], dtype=np.float64)
    for lag in spec.sweep_lags:
        i = int(np.argmin(np.abs(ages - lag)))
        if abs(ages[i] - lag) <= spec.sweep_lag_tolerance and ages[i] > 0:
            out.append((float(ages[i]), history[i]))
    return out


def to_current_frame(points: np.ndarray, past: EgoState, current: EgoState) -> np.ndarray:
    """Points in the ``base_link`` of pose ``past`` expressed in that of ``current`` (planar)."""
    dyaw = past.yaw - current.yaw
    c, s = np.cos(current.yaw), np.sin(current.yaw)
    dx, dy = past.x - current.x, past.y - current.y
    tx, ty = c * dx + s * dy, -s * dx + c * dy  # past origin in the current frame
    cr, sr = np.cos(dyaw), np.sin(dyaw)
    p = np.asarray(points, dtype=np.float64)
    out = np.empty((len(p), 4), dtype=np.float64)
    out[:, 0] = cr * p[:, 0] - sr * p[:, 1] + tx
    out[:, 1] = sr * p[:, 0] + cr * p[:, 1] + ty
    out[:, 2:4] = p[:, 2:4]
    return out


def compose_sweeps(
    points: np.ndarray,
    ego: EgoState | None,
    history: Sequence[PastSweep],
    spec: PillarSpec,
    stamp: float | None = None,
) -> np.ndarray:
    """The multi-sweep cloud: N x 5 float32 (x, y, z, intensity, time lag in s).

    The current sweep comes first (lag 0), so it fills a pillar's ``M`` point slots before
    any earlier sweep does; then one earlier sweep per lag (:func:`select_sweeps`).

    Args:
        points: The current sweep, N x >=4 in ``base_link``.
        ego: Ego state at the current sweep (its pose); None only when ``history`` is empty.
        history: Earlier sweeps, newest first (``Frame.history``).
        spec: A multi-sweep spec (``sweep_lags`` set).
        stamp: The current sweep's stamp; default ``ego.stamp``.

    Raises:
        ModelInputError: Points that are not N x >=4, or earlier sweeps without an ego pose.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 4:
        raise ModelInputError(f"a sweep must be N x 4 points (x, y, z, intensity), got shape {pts.shape}")
    parts = [np.hstack([pts[:, :4].astype(np.float32), np.zeros((len(pts), 1), np.float32)])]
    if history:
        if ego is None or not ego.is_finite():
            raise ModelInputError("a multi-sweep model needs the finite ego pose of the sweep (odometry)")
        t = float(ego.stamp if stamp is None else stamp)
        for age, past in select_sweeps(t, history, spec):
            if not past.ego.is_finite():
                continue
            moved = to_current_frame(past.points, past.ego, ego)
            parts.append(np.hstack([moved, np.full((len(moved), 1), age)]).astype(np.float32))
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
