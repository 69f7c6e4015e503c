"""Trajectory kinematics shared by the Frenet planner, the checks and the arbiter.

One implementation derives speed, acceleration, jerk, yaw rate, curvature and lateral
acceleration from *positions* (what is published), so a plan the planner calls feasible is
judged by the arbiter with exactly the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_edge.types import Trajectory


@dataclass
class Profile:
    """Kinematic profile of one or many trajectories (leading batch dimensions allowed).

    With T poses at ``dt`` (origin prepended), arrays have these last-axis lengths:
    ``speed`` T (segment midpoints), ``accel`` T-1, ``jerk`` T-2, ``yaw_rate`` T,
    ``curvature`` T, ``lat_accel`` T, ``heading_error`` T.
    """

    speed: np.ndarray
    accel: np.ndarray
    jerk: np.ndarray
    yaw_rate: np.ndarray
    curvature: np.ndarray
    lat_accel: np.ndarray
    heading_error: np.ndarray


def wrap(a: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi] (rint is much faster than a float modulo)."""
    return a - (2.0 * np.pi) * np.rint(a * (0.5 / np.pi))


def profile(xy: np.ndarray, yaw: np.ndarray, dt: float, min_speed_for_curvature: float) -> Profile:
    """Finite-difference kinematics of poses sampled at ``dt`` *including* the t=0 origin.

    Yaw rate, curvature and lateral acceleration come from the direction of *motion* (the
    positions), not from the yaw column, so a plan cannot hide a slalom behind a constant
    yaw; ``heading_error`` measures how far the yaw column disagrees with the motion. Below
    ``min_speed_for_curvature`` the motion direction is undefined and the yaw column is used.

    Args:
        xy: ``[..., T+1, 2]`` positions, index 0 is the pose at t=0.
        yaw: ``[..., T+1]`` headings (radians, any wrapping).
        dt: Time step in seconds.
        min_speed_for_curvature: Below this speed (m/s) curvature is reported as 0.

    Returns:
        The :class:`Profile`; speeds are signed (negative when moving against the heading).
    """
    seg = np.diff(xy, axis=-2)
    dist = np.hypot(seg[..., 0], seg[..., 1])
    step = wrap(np.diff(yaw, axis=-1))
    mid_yaw = yaw[..., :-1] + 0.5 * step
    motion = np.arctan2(seg[..., 1], seg[..., 0])
    err = wrap(motion - mid_yaw)
    backwards = np.abs(err) > 0.5 * np.pi
    speed = np.where(backwards, -dist, dist) / dt
    accel = np.diff(speed, axis=-1) / dt
    jerk = np.diff(accel, axis=-1) / dt
    moving = dist > min_speed_for_curvature * dt
    err = np.where(backwards, wrap(err + np.pi), err)
    heading = np.where(moving, mid_yaw + err, yaw[..., 1:])  # vehicle heading implied by motion
    full = np.concatenate([yaw[..., :1], heading], axis=-1)
    yaw_rate = wrap(np.diff(full, axis=-1)) / dt
    curvature = np.where(moving, yaw_rate / np.where(moving, speed, 1.0), 0.0)
    lat_accel = speed * yaw_rate
    heading_error = np.where(moving, err, 0.0)
    return Profile(speed, accel, jerk, yaw_rate, curvature, lat_accel, heading_error)


def trajectory_profile(traj: Trajectory, min_speed_for_curvature: float) -> Profile:
    """:func:`profile` of a :class:`Trajectory` (origin prepended)."""
    poses = traj.with_origin()
    return profile(poses[:, :2], poses[:, 2], traj.dt, min_speed_for_curvature)


def se2_inverse_apply(pose: tuple[float, float, float], xy: np.ndarray) -> np.ndarray:
    """Express world points ``xy`` [N, 2] in the frame of ``pose`` (x, y, yaw)."""
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    dx, dy = xy[..., 0] - x, xy[..., 1] - y
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


def se2_apply(pose: tuple[float, float, float], xy: np.ndarray) -> np.ndarray:
    """Map points ``xy`` [N, 2] given in the frame of ``pose`` into the world frame."""
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([x + c * xy[..., 0] - s * xy[..., 1], y + s * xy[..., 0] + c * xy[..., 1]], axis=-1)


def to_world(traj: Trajectory, pose: tuple[float, float, float]) -> np.ndarray:
    """Poses of ``traj`` (origin included) in the odom frame, ``[T+1, 3]``."""
    p = traj.with_origin()
    out = np.empty_like(p)
    out[:, :2] = se2_apply(pose, p[:, :2])
    out[:, 2] = p[:, 2] + pose[2]
    return out


def shift_trajectory(
    traj: Trajectory,
    pose_from: tuple[float, float, float],
    pose_to: tuple[float, float, float],
    new_stamp: float,
    dt: float,
) -> tuple[Trajectory, np.ndarray] | None:
    """Re-express ``traj`` in the ego frame at ``new_stamp`` and drop the elapsed time.

    The poses are moved rigidly from the frame at ``traj.stamp`` (ego pose ``pose_from``)
    into the frame at ``new_stamp`` (ego pose ``pose_to``) and resampled (linearly) at
    ``dt`` from ``t = new_stamp``.

    Returns:
        ``(shifted, start)`` where ``start`` is the (x, y, yaw) the old plan wanted the ego to
        have *now* (the tracking error; not forced to the origin), or ``None`` when nothing of
        the plan lies after ``new_stamp``.
    """
    elapsed = new_stamp - traj.stamp
    if not np.isfinite(elapsed) or elapsed < -1e-9 or elapsed >= traj.horizon - dt * 0.5:
        return None
    world = to_world(traj, pose_from)
    local = np.empty_like(world)
    local[:, :2] = se2_inverse_apply(pose_to, world[:, :2])
    local[:, 2] = np.unwrap(world[:, 2] - pose_to[2])
    src_t = np.concatenate([[0.0], traj.times]) - elapsed
    n = int(np.floor((src_t[-1] + 1e-9) / dt))
    if n < 1:
        return None
    t_new = dt * np.arange(0, n + 1)
    pts = np.stack([np.interp(t_new, src_t, local[:, k]) for k in range(3)], axis=1)
    speeds = None
    if traj.speeds is not None and len(traj.speeds) == len(traj.poses):
        sp = np.concatenate([[traj.speeds[0]], traj.speeds])
        speeds = np.interp(t_new[1:], src_t, sp)
    return Trajectory(pts[1:], dt, new_stamp, speeds, traj.source), pts[0]


def reanchor(traj: Trajectory, start: np.ndarray, blend_time: float) -> Trajectory:
    """Blend the offset ``start`` (pose at t=0 vs the ego origin) out over ``blend_time``.

    The result starts exactly at the ego (origin, heading 0) and joins the original plan
    after ``blend_time`` with a quintic smoothstep, so no jump appears at t0.
    """
    u = np.clip(traj.times / max(blend_time, 1e-6), 0.0, 1.0)
    w = 1.0 - u * u * u * (10.0 + u * (-15.0 + 6.0 * u))
    poses = traj.poses - w[:, None] * np.asarray(start, dtype=np.float64)[None, :3]
    return Trajectory(poses, traj.dt, traj.stamp, traj.speeds, traj.source)


def _clamped_natural_spline(t: np.ndarray, y: np.ndarray, dy0: np.ndarray, t_new: np.ndarray) -> np.ndarray:
    """Cubic spline through ``(t, y)`` with first derivative ``dy0`` at ``t[0]``, natural end.

    Args:
        t: ``[n+1]`` strictly increasing knots.
        y: ``[n+1, C]`` values.
        dy0: ``[C]`` first derivative at the first knot.
        t_new: Query times inside ``[t[0], t[-1]]``.

    Returns:
        ``[len(t_new), C]`` interpolated values.
    """
    n = len(t) - 1
    h = np.diff(t)
    A = np.zeros((n + 1, n + 1))
    rhs = np.zeros((n + 1, y.shape[1]))
    slope = np.diff(y, axis=0) / h[:, None]
    A[0, 0], A[0, 1] = 2 * h[0], h[0]
    rhs[0] = 6 * (slope[0] - dy0)
    for i in range(1, n):
        A[i, i - 1], A[i, i], A[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        rhs[i] = 6 * (slope[i] - slope[i - 1])
    A[n, n] = 1.0
    M = np.linalg.solve(A, rhs)
    idx = np.clip(np.searchsorted(t, t_new, side="right") - 1, 0, n - 1)
    t0, t1, hi = t[idx], t[idx + 1], h[idx][:, None]
    a = (t1 - t_new)[:, None]
    b = (t_new - t0)[:, None]
    return (
        M[idx] * a**3 / (6 * hi)
        + M[idx + 1] * b**3 / (6 * hi)
        + (y[idx] / hi - M[idx] * hi / 6) * a
        + (y[idx + 1] / hi - M[idx + 1] * hi / 6) * b
    )


def smooth_resample(traj: Trajectory, dt: float, v0: float, yaw_rate0: float) -> Trajectory:
    """Resample a coarse plan (e.g. the student's 0.5 s poses) to ``dt`` with a C2 spline.

    The spline starts at the implicit origin with the ego's velocity ``(v0, 0)`` and yaw
    rate ``yaw_rate0`` (clamped start, natural end), so the resampled plan has bounded
    jerk wherever the coarse plan is dynamically consistent, and a plan that contradicts the
    ego's current motion shows up as large accelerations instead of being hidden.

    Args:
        traj: Trajectory to resample (finite poses).
        dt: New step in seconds.
        v0: Ego speed at t=0 in m/s.
        yaw_rate0: Ego yaw rate at t=0 in rad/s.

    Returns:
        A trajectory at ``dt`` over the same horizon, speeds derived from the positions.
    """
    knots_t = np.concatenate([[0.0], traj.times])
    knots = traj.with_origin().copy()
    knots[:, 2] = np.unwrap(knots[:, 2])
    n = max(1, int(np.floor(traj.horizon / dt + 1e-9)))
    t_new = dt * np.arange(1, n + 1)
    if abs(traj.dt - dt) < 1e-12:
        poses = traj.poses.copy()
    else:
        poses = _clamped_natural_spline(knots_t, knots, np.array([v0, 0.0, yaw_rate0]), t_new)
    full = np.vstack([np.zeros((1, 3)), poses])
    speeds = np.hypot(*np.diff(full[:, :2], axis=0).T) / dt
    return Trajectory(poses, dt, traj.stamp, speeds, traj.source)
