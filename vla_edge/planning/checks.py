"""Trajectory checks as free functions (Autoware planning_validator style, minus the Node).

Every function measures one quantity and returns ``(value, index)``: the measured value and
the index of the offending (worst) pose, -1 when no pose is involved. Comparing the value
with its threshold is the arbiter's job, so each check is testable on plain arrays.
Values are always finite: non-finite inputs are reported by :func:`nonfinite_count`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.planning.kinematics import Profile
from vla_edge.planning.obstacles import Footprint, Obstacles
from vla_edge.planning.reference_path import ReferencePath
from vla_edge.types import Trajectory

Measured = tuple[float, int]

#: Stand-in for "unbounded" so that every reported value stays JSON-safe and finite.
BIG = 1e9
#: Poses within this distance (m) of the ego's current position are "standing still".
STILL_RADIUS = 0.1


def finite_value(v: float) -> float:
    """Clamp a measurement into a finite float (NaN -> BIG)."""
    v = float(v)
    if math.isnan(v):
        return BIG
    return min(max(v, -BIG), BIG)


def nonfinite_count(*arrays: np.ndarray | None) -> Measured:
    """Number of NaN/Inf entries over all arrays; index of the first bad row of the first array."""
    total, first = 0, -1
    for arr in arrays:
        if arr is None:
            continue
        a = np.asarray(arr, dtype=np.float64)
        bad = ~np.isfinite(a)
        n = int(np.count_nonzero(bad))
        if n and first < 0:
            rows = bad.reshape(len(a), -1).any(axis=1) if a.ndim else bad.reshape(1)
            first = int(np.argmax(rows))
        total += n
    return float(total), first


@dataclass(frozen=True)
class Corridor:
    """Drivable corridor around the reference path (``arbiter.yaml`` ``corridor``).

    Attributes:
        left: Drivable width left of the reference path (m).
        right: Drivable width right of the reference path (m).
        half_width: Half the vehicle body width plus the edge margin (m), so the body edge
            (kept ``edge_margin`` inside) is what is checked.
        tolerance: Allowed excess (m).
    """

    left: float
    right: float
    half_width: float
    tolerance: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Corridor:
        """From the merged config (``arbiter.corridor`` and ``vehicle.width``)."""
        c = require(cfg, "arbiter", "corridor", where="arbiter.yaml")
        return cls(
            left=float(require(c, "left_width")),
            right=float(require(c, "right_width")),
            half_width=0.5 * float(require(cfg, "vehicle", "width", where="vehicle.yaml"))
            + float(require(c, "edge_margin")),
            tolerance=float(require(c, "tolerance")),
        )


def max_of(values: np.ndarray) -> Measured:
    """Largest value and its index (``(-BIG, -1)`` when empty)."""
    if values.size == 0:
        return -BIG, -1
    i = int(np.argmax(values))
    return finite_value(values[i]), i


def min_of(values: np.ndarray) -> Measured:
    """Smallest value and its index (``(BIG, -1)`` when empty)."""
    if values.size == 0:
        return BIG, -1
    i = int(np.argmin(values))
    return finite_value(values[i]), i


def max_abs_of(values: np.ndarray) -> Measured:
    """Largest magnitude and its index (``(0, -1)`` when empty)."""
    if values.size == 0:
        return 0.0, -1
    i = int(np.argmax(np.abs(values)))
    return finite_value(abs(values[i])), i


def kinematics(prof: Profile) -> dict[str, Measured]:
    """Kinematic measurements of one trajectory profile.

    Returns:
        ``max_speed``, ``min_speed``, ``max_lon_accel``, ``min_lon_accel``, ``jerk``
        (max |jerk|), ``lat_accel`` (max |a_lat|), ``yaw_rate`` (max |yaw rate|),
        ``curvature`` (max |kappa| above the curvature speed), ``heading_error`` (max |yaw
        column - direction of motion|, i.e. sideways or inconsistent plans).
    """
    return {
        "max_speed": max_of(prof.speed),
        "min_speed": min_of(prof.speed),
        "max_lon_accel": max_of(prof.accel),
        "min_lon_accel": min_of(prof.accel),
        "jerk": max_abs_of(prof.jerk),
        "lat_accel": max_abs_of(prof.lat_accel),
        "yaw_rate": max_abs_of(prof.yaw_rate),
        "curvature": max_abs_of(prof.curvature),
        "heading_error": max_abs_of(prof.heading_error),
    }


def collision_levels(
    x: np.ndarray,
    y: np.ndarray,
    yaw: np.ndarray,
    t: np.ndarray,
    obstacles: Obstacles,
    footprint: Footprint,
    extras: tuple[float, ...] = (0.0,),
) -> list[np.ndarray]:
    """Per-pose collision of the footprint, for several extra clearances at once.

    A pose collides when a footprint circle centre lies in a static cell inflated by the
    footprint radius + margin (+ ``extra``), or within the predicted occupancy of a predicted
    cluster at the pose's time (``prediction.segments``: constant velocity with growing
    uncertainty, swept under the crossing hypothesis) grown by the same amount.

    Args:
        x, y, yaw: Poses of shape ``[..., T]`` (ego frame).
        t: ``[T]`` times of the poses in seconds (for the constant-velocity prediction).
        obstacles: Inflated obstacles.
        footprint: Vehicle footprint circles.
        extras: Additional clearances in metres (0 = collision, buffer = TTC check).

    Returns:
        One boolean array ``[..., T]`` per entry of ``extras``.
    """
    cx, cy = footprint.centres(x, y, yaw)
    codes = np.bitwise_or.reduce(obstacles.codes_at(cx, cy, extras), axis=-1)  # any circle
    masks = [((codes >> i) & 1).astype(bool) for i in range(len(extras))]
    from vla_edge.planning.prediction import segments

    if not np.any(obstacles.predicted_mask()):
        return masks
    a, b, r = segments(obstacles, t)  # [M, T, 2], [M, T, 2], [M, T]
    grow = obstacles.inflation_radius + max(extras)
    lo = np.minimum(a, b) - (r + grow)[..., None]  # [M, T, 2] bounding boxes of the capsules
    hi = np.maximum(a, b) + (r + grow)[..., None]
    # Prune: only (cluster, step) pairs whose capsule meets the box spanned by all footprint
    # circles at that step are evaluated, so many (or mis-tracked) clusters stay cheap.
    axes = (*range(cx.ndim - 2), cx.ndim - 1)  # all but the time axis
    bx0, bx1 = cx.min(axis=axes), cx.max(axis=axes)  # [T]
    by0, by1 = cy.min(axis=axes), cy.max(axis=axes)
    near = (hi[..., 0] >= bx0) & (lo[..., 0] <= bx1) & (hi[..., 1] >= by0) & (lo[..., 1] <= by1)
    for m in np.flatnonzero(near.any(axis=1)):
        steps = np.flatnonzero(near[m])
        ax, ay = a[m, steps, 0], a[m, steps, 1]
        ux, uy = b[m, steps, 0] - ax, b[m, steps, 1] - ay  # [k]
        len2 = np.maximum(ux**2 + uy**2, 1e-12)
        dx = cx[..., steps, :] - ax[:, None]
        dy = cy[..., steps, :] - ay[:, None]
        k = np.clip((dx * ux[:, None] + dy * uy[:, None]) / len2[:, None], 0.0, 1.0)
        dx, dy = dx - k * ux[:, None], dy - k * uy[:, None]
        d2 = (dx**2 + dy**2).min(-1)
        for i, e in enumerate(extras):
            masks[i][..., steps] |= d2 < (r[m, steps] + obstacles.inflation_radius + e) ** 2
    return masks


def collision(traj: Trajectory, obstacles: Obstacles, footprint: Footprint) -> Measured:
    """Number of poses whose footprint hits an (inflated / predicted) obstacle; first index."""
    return collision_and_ttc(traj, obstacles, footprint, 0.0)[0]


def time_to_collision(
    traj: Trajectory, obstacles: Obstacles, footprint: Footprint, buffer: float
) -> Measured:
    """Time (s) until the footprint plus ``buffer`` first meets an obstacle along the plan.

    Returns the plan horizon (and index -1) when no buffered contact happens.
    """
    return collision_and_ttc(traj, obstacles, footprint, buffer)[1]


def collision_and_ttc(
    traj: Trajectory, obstacles: Obstacles, footprint: Footprint, buffer: float
) -> tuple[Measured, Measured]:
    """:func:`collision` and :func:`time_to_collision` from one footprint lookup."""
    p, t = traj.poses, traj.times
    hit, near = collision_levels(p[:, 0], p[:, 1], p[:, 2], t, obstacles, footprint, (0.0, buffer))
    # Standing where the ego already is cannot be made safer by braking (it is what the
    # emergency stop does): such poses are exempt, so a stop plan is not rejected for it.
    still = np.hypot(p[:, 0], p[:, 1]) < STILL_RADIUS
    hit, near = hit & ~still, near & ~still
    n = int(np.count_nonzero(hit))
    coll = (float(n), int(np.argmax(hit)) if n else -1)
    if not near.any():
        return coll, (float(traj.horizon), -1)
    i = int(np.argmax(near))
    return coll, (float(t[i]), i)


def lateral_deviation(traj: Trajectory, ref: ReferencePath) -> Measured:
    """Max |d| of the poses from the reference path (local-window projection)."""
    _, d = ref.project_trajectory(traj.poses[:, :2])
    return max_abs_of(d)


def corridor_excess(d: np.ndarray, d0: float, corridor: Corridor) -> np.ndarray:
    """How far the body edge leaves the corridor beyond where the ego already is (m).

    Args:
        d: Lateral offsets of the rear-axle points from the reference path, any shape
            ``[..., T]`` (left positive).
        d0: Lateral offset of the ego now.
        corridor: Drivable widths left and right of the reference path and half the body width.

    Returns:
        ``[...]``: max over ``T`` of the edge excess minus the ego's current excess (when
        the ego is already outside, e.g. after an evasive manoeuvre, a plan may stay as far
        out but not go further); <= 0 means the plan keeps the body inside the corridor.
    """
    hw = corridor.half_width
    excess = np.maximum(d + hw - corridor.left, hw - d - corridor.right)
    now = max(d0 + hw - corridor.left, hw - d0 - corridor.right, 0.0)
    return excess.max(axis=-1) - now


def corridor_check(traj: Trajectory, ref: ReferencePath, corridor: Corridor) -> Measured:
    """:func:`corridor_excess` of a trajectory (value in m, index of the worst pose)."""
    _, d = ref.project_trajectory(traj.poses[:, :2])
    if d.size == 0:
        return 0.0, -1
    _, d0 = ref.ego_frenet()
    hw = corridor.half_width
    excess = np.maximum(d + hw - corridor.left, hw - d - corridor.right)
    now = max(d0 + hw - corridor.left, hw - d0 - corridor.right, 0.0)
    i = int(np.argmax(excess))
    return finite_value(excess[i] - now), i


def continuity(traj: Trajectory, previous: Trajectory | None, window: float) -> Measured:
    """Max distance to the previous published plan over the first ``window`` seconds.

    Both trajectories must be in the same ego frame and time base (``previous`` already
    shifted and re-anchored). Without a previous plan the value is 0.
    """
    if previous is None:
        return 0.0, -1
    n = int(np.floor(window / traj.dt + 1e-9))
    n = min(n, len(traj.poses), len(previous.poses))
    if n < 1:
        return 0.0, -1
    d = np.hypot(*(traj.poses[:n, :2] - previous.poses[:n, :2]).T)
    return max_of(d)


def start_speed_jump(prof: Profile, v0: float) -> Measured:
    """|speed over the first step - ego speed| (no jump at t0)."""
    if prof.speed.size == 0:
        return 0.0, -1
    return finite_value(abs(float(prof.speed[0]) - float(v0))), 0


def start_offset(start_xy: np.ndarray) -> Measured:
    """Distance of a held plan's t=0 point from the ego (tracking error)."""
    return finite_value(float(np.hypot(*np.asarray(start_xy, dtype=np.float64)[:2]))), 0


def softmax_confidence(scores: np.ndarray | None) -> Measured:
    """Softmax probability of the best mode (1.0 when no scores are given)."""
    if scores is None:
        return 1.0, -1
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0 or not np.all(np.isfinite(s)):
        return 0.0, -1
    e = np.exp(s - s.max())
    p = e / e.sum()
    i = int(np.argmax(p))
    return float(p[i]), i


def progress_within(traj: Trajectory, horizon: float) -> float:
    """Distance driven along ``traj`` in its first ``horizon`` seconds (arc length, m)."""
    poses = traj.with_origin()
    t = np.concatenate([[0.0], traj.times])
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(poses[:, :2], axis=0).T))])
    return float(np.interp(min(horizon, float(t[-1])), t, s))


def progress_ratio(student: Trajectory, frenet: Trajectory, min_frenet: float = 0.0) -> Measured | None:
    """The student's progress over the common horizon as a fraction of the Frenet plan's, or
    None when the Frenet plan drives less than ``min_frenet`` metres (nothing to compare)."""
    horizon = min(student.horizon, frenet.horizon)
    fp = progress_within(frenet, horizon)
    if fp < min_frenet:
        return None
    return (progress_within(student, horizon) / fp if fp > 0 else 1.0), -1
