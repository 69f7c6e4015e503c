"""Kinematic post-processing of the student plan: jerk-penalised least-squares fit.

A learned planner's waypoints carry per-pose noise (±0.3-0.5 m on the student) that finite
differences turn into huge jerk and yaw rate. As real stacks do (Autoware's smoother after
the planners, fitted waypoints before tracking), the arbiter fits a smooth trajectory to
them *before* its checks and publishes the fit:

    minimise  sum_k raw_dt * |p(t_k) - raw_k|^2                       (fit, raw poses)
            + w_jerk  * sum_j dt * |d3 p_j / dt^3|^2                   (jerk)
            + w_accel * sum_j dt * |d2 p_j / dt^2|^2                   (acceleration)

over positions ``p_1..p_n`` on the published ``dt`` grid, with ``p_0`` fixed at the ego
(origin) and two ghost poses before t=0 from the ego's speed, acceleration and yaw rate, so
the fit starts continuous with the ego state. It is one symmetric linear solve for x and y
together (closed form, numpy only, ~0.1 ms). The heading is the direction of the *fitted*
velocity (the model's noisy yaw channel only tells forwards from backwards).

Safety: the fit must not launder a bad plan. :func:`smooth_student` returns the largest
distance between a raw pose and the fit at the same time; the arbiter rejects the student
when it exceeds ``student_smoothing.max_residual_m`` (check ``student.smoothing_residual``),
and every other check runs on the smoothed trajectory, which is what gets published.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import ConfigError
from vla_edge.planning.kinematics import wrap
from vla_edge.types import Trajectory

METHODS = ("jerk_ls",)


@dataclass(frozen=True)
class SmoothingParams:
    """``arbiter.student_smoothing`` of ``arbiter.yaml``.

    Attributes:
        enabled: Fit the student before the checks (False: C2 spline through the raw poses).
        method: ``"jerk_ls"`` (the only method).
        jerk_weight: Weight of the integrated squared jerk (s^6; per unit of fit weight).
        accel_weight: Weight of the integrated squared acceleration (s^4).
        max_residual_m: Largest accepted distance raw pose - fit (m).
        min_speed_for_heading: Below this fitted speed (m/s) the heading is held.
        stop_hold_max_m: A fit that creeps back at most this far (m) behind the point where it
            first moves backwards is held still there (:func:`hold_at_stop`); 0 = never.
    """

    enabled: bool
    method: str
    jerk_weight: float
    accel_weight: float
    max_residual_m: float
    min_speed_for_heading: float
    stop_hold_max_m: float = 0.0

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SmoothingParams:
        """From the merged config (``arbiter.student_smoothing``)."""
        s = require(cfg, "arbiter", "student_smoothing", where="arbiter.yaml")
        p = cls(
            enabled=bool(require(s, "enabled")),
            method=str(require(s, "method")),
            jerk_weight=float(require(s, "weights", "jerk")),
            accel_weight=float(require(s, "weights", "accel")),
            max_residual_m=float(require(s, "max_residual_m")),
            min_speed_for_heading=float(require(cfg, "arbiter", "limits", "min_speed_for_curvature")),
            stop_hold_max_m=float(s.get("stop_hold_max_m", 0.0)),
        )
        if p.method not in METHODS:
            raise ConfigError(
                f"arbiter.student_smoothing.method={p.method!r} is unknown; use one of {METHODS}"
            )
        if not (p.jerk_weight >= 0 and p.accel_weight >= 0 and p.jerk_weight + p.accel_weight > 0):
            raise ConfigError(
                "arbiter.student_smoothing.weights must be >= 0 with jerk + accel > 0; fix arbiter.yaml"
            )
        if not p.max_residual_m > 0:
            raise ConfigError("arbiter.student_smoothing.max_residual_m must be > 0 m; fix arbiter.yaml")
        return p


def _diff_matrix(m: int, order: int) -> np.ndarray:
    """``[m - order, m]`` forward-difference operator of the given order."""
    return np.diff(np.eye(m), n=order, axis=0)


@lru_cache(maxsize=64)
def _system(
    raw_times: tuple[float, ...], raw_dt: float, n: int, dt: float, w_jerk: float, w_accel: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factor-free pieces of the normal equations (cached: the student's grid never changes).

    The extended unknown vector is ``q = [g_-2, g_-1, p_0, p_1..p_n]`` (3 known entries).

    Returns:
        ``(N_inv, B_known, S)``: inverse normal matrix ``[n, n]``, coupling of the known
        entries into the right-hand side ``[n, 3]``, and the (linear) interpolation matrix
        ``S`` ``[K, n + 3]`` from the grid to the raw times.
    """
    m = n + 3
    t_grid = dt * (np.arange(m) - 2.0)
    t_raw = np.asarray(raw_times)
    idx = np.clip(np.searchsorted(t_grid, t_raw, side="right") - 1, 0, m - 2)
    frac = np.clip((t_raw - t_grid[idx]) / dt, 0.0, 1.0)
    S = np.zeros((len(t_raw), m))
    S[np.arange(len(t_raw)), idx] = 1.0 - frac
    S[np.arange(len(t_raw)), idx + 1] += frac
    H = raw_dt * S.T @ S
    if w_jerk > 0:
        D3 = _diff_matrix(m, 3) / dt**3
        H += w_jerk * dt * D3.T @ D3
    if w_accel > 0:
        D2 = _diff_matrix(m, 2)[1:] / dt**2  # accelerations from t=0 on
        H += w_accel * dt * D2.T @ D2
    free = slice(3, m)
    N_inv = np.linalg.inv(H[free, free])
    return N_inv, H[free, :3], S


def smooth_student(
    traj: Trajectory,
    dt: float,
    v0: float,
    a0: float,
    lat_a0: float,
    params: SmoothingParams,
) -> tuple[Trajectory, float, int]:
    """Fit and resample a (finite) student plan to ``dt``.

    Args:
        traj: Student plan in the ego frame at its stamp (ego at the origin, heading 0).
        dt: Published step (s).
        v0: Ego speed (m/s), initial velocity ``(v0, 0)``.
        a0: Ego longitudinal acceleration (m/s^2), for the ghost poses before t=0.
        lat_a0: Ego lateral acceleration ``v * yaw_rate`` (m/s^2), ditto.
        params: Smoothing parameters.

    Returns:
        ``(smoothed, residual, index)``: the fitted plan at ``dt`` over the raw horizon
        (speeds from the positions), the largest distance raw pose - fit (m) and the index
        of that raw pose.
    """
    n = max(1, int(np.floor(traj.horizon / dt + 1e-9)))
    raw_t = tuple(float(t) for t in np.round(traj.times, 9))
    raw_dt = float(traj.dt)
    N_inv, B, S = _system(raw_t, raw_dt, n, float(dt), params.jerk_weight, params.accel_weight)
    raw_xy = np.asarray(traj.poses[:, :2], dtype=np.float64)
    known = np.array(
        [
            [-2.0 * v0 * dt + 2.0 * a0 * dt * dt, 2.0 * lat_a0 * dt * dt],
            [-v0 * dt + 0.5 * a0 * dt * dt, 0.5 * lat_a0 * dt * dt],
            [0.0, 0.0],
        ]
    )
    rhs = raw_dt * S[:, 3:].T @ raw_xy - B @ known
    p = N_inv @ rhs  # [n, 2]
    q = np.vstack([known, p])
    fit_at_raw = S @ q
    dist = np.hypot(*(fit_at_raw - raw_xy).T)
    i = int(np.argmax(dist))
    return Trajectory(_with_heading(q, traj, dt, params.min_speed_for_heading), dt, traj.stamp,
                      _speeds(p, dt), traj.source), float(dist[i]), i  # fmt: skip


def hold_at_stop(traj: Trajectory, max_back_m: float) -> tuple[Trajectory, int]:
    """The plan held still from its first backwards step on (a stop, not a reversal).

    A student that brakes to a stop has learnt the expert's stops, but its waypoints (and the
    jerk fit through them) carry the deceleration on past zero, so the tail of a stopping plan
    creeps backwards and fails ``min_speed`` (and the jerk and curvature of the turn-round).
    The vehicle never reverses here, so the creep means "stop": as a velocity smoother clamps
    speed at 0 at a stop point, the poses from the first step that moves against the plan's
    heading on are the last forward pose. The held plan goes no further than the raw plan
    did, and every check still runs on it. A plan that goes back further than ``max_back_m``
    means to reverse: it is left as it is, for ``min_speed`` to refuse.

    Returns:
        ``(held, k)``: the plan and the index of the first held pose (-1: nothing held).
    """
    poses = traj.with_origin()
    seg = np.diff(poses[:, :2], axis=0)
    fwd = seg[:, 0] * np.cos(poses[1:, 2]) + seg[:, 1] * np.sin(poses[1:, 2])
    back = np.flatnonzero(fwd < 0.0)
    if not len(back):
        return traj, -1
    k = int(back[0])
    progress = np.cumsum(fwd)  # along each step's heading, from the origin
    stop = progress[k - 1] if k else 0.0
    if stop - progress[k:].min() > max_back_m:
        return traj, -1
    held = traj.poses.copy()
    held[k:] = poses[k]  # the pose before the first backwards step (the origin when k = 0)
    speeds = None
    if traj.speeds is not None:
        speeds = traj.speeds.copy()
        speeds[k:] = 0.0
    return Trajectory(held, traj.dt, traj.stamp, speeds, traj.source), k


def _speeds(p: np.ndarray, dt: float) -> np.ndarray:
    full = np.vstack([np.zeros((1, 2)), p])
    return np.hypot(*np.diff(full, axis=0).T) / dt


def _with_heading(q: np.ndarray, traj: Trajectory, dt: float, min_speed: float) -> np.ndarray:
    """Poses ``[n, 3]`` with the heading of the fitted velocity (held when slow).

    The raw yaw channel only decides the sign: where the fitted motion points against it,
    the plan drives backwards and the heading is the motion direction + pi, so the
    backwards motion stays visible to the ``min_speed`` check.
    """
    pos = q[2:]  # p_0..p_n
    vel = np.empty_like(pos[1:])
    vel[:-1] = (pos[2:] - pos[:-2]) / (2.0 * dt)
    vel[-1] = (pos[-1] - pos[-2]) / dt
    direction = np.arctan2(vel[:, 1], vel[:, 0])
    times = dt * np.arange(1, len(pos))
    raw_yaw = np.interp(times, np.concatenate([[0.0], traj.times]),
                        np.unwrap(np.concatenate([[0.0], traj.poses[:, 2]])))  # fmt: skip
    backwards = np.cos(direction - raw_yaw) < 0.0
    direction = np.where(backwards, direction + np.pi, direction)
    moving = np.hypot(vel[:, 0], vel[:, 1]) > min_speed
    # Hold the last moving heading (0 = ego heading before the first moving pose).
    last = np.maximum.accumulate(np.where(moving, np.arange(len(moving)), -1))
    held = np.where(last >= 0, direction[np.maximum(last, 0)], 0.0)
    yaw = np.unwrap(np.concatenate([[0.0], wrap(held)]))[1:]
    return np.column_stack([pos[1:], yaw])


def fit_operator(
    raw_times: tuple[float, ...], raw_dt: float, dt: float, w_jerk: float, w_accel: float
) -> tuple[np.ndarray, np.ndarray]:
    """The fit of :func:`smooth_student`, read back at the raw times, as a linear map.

    ``fit(raw)[k] = F @ raw + G @ known`` with ``known`` the three fixed grid poses
    ``[g_-2, g_-1, p_0]`` (ghosts from the ego state, origin). The student model applies this
    same operator to its output (``training/model/smooth.py``), so its raw plans are smooth by
    construction and the arbiter's fit of them moves them by almost nothing.

    Returns:
        ``(F [K, K], G [K, 3])`` for ``K = len(raw_times)``.
    """
    n = max(1, int(np.floor(raw_times[-1] / dt + 1e-9)))
    N_inv, B, S = _system(tuple(raw_times), float(raw_dt), n, float(dt), float(w_jerk), float(w_accel))
    S_known, S_free = S[:, :3], S[:, 3:]
    F = raw_dt * S_free @ N_inv @ S_free.T
    G = S_known - S_free @ N_inv @ B
    return F, G


def ghost_poses(v0: np.ndarray, a0: np.ndarray, lat_a0: np.ndarray, dt: float) -> np.ndarray:
    """Known grid poses ``[..., 3, 2]`` (t = -2dt, -dt, 0) from the ego's speed and accelerations."""
    v0, a0, lat = np.asarray(v0), np.asarray(a0), np.asarray(lat_a0)
    x = np.stack([-2.0 * v0 * dt + 2.0 * a0 * dt * dt, -v0 * dt + 0.5 * a0 * dt * dt, 0.0 * v0], -1)
    y = np.stack([2.0 * lat * dt * dt, 0.5 * lat * dt * dt, 0.0 * lat], -1)
    return np.stack([x, y], -1)
