"""Slow a plan down along its own path: the arbiter's repair for a student over a speed rule.

A learned plan that passes every check but drives too fast past people or a stand is kept on
its own path, with its speed lowered to the rule's limit there. This is how Autoware's velocity
planning treats a speed limit, as a cap on the trajectory's speed profile rather than a veto on
its geometry. The arbiter checks the slowed plan again with every check before it publishes it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vla_edge.types import Trajectory

STOPPED = 0.05  # m/s: below this the slowed plan holds its position
FINE_DT = 0.02  # s, time step of the speed profile's smoothing
WINDOW_S = 0.6  # s, smoothing window: a braking step of 1.5 m/s^2 becomes a 2.5 m/s^3 ramp


def retime_along_path(
    traj: Trajectory,
    v0: float,
    cap_of_xy: Callable[[np.ndarray], np.ndarray],
    decel: float,
    ds: float = 0.1,
) -> Trajectory | None:
    """The same path, driven at ``min(plan speed, max(cap, v0 - decel * t))``.

    Args:
        traj: The plan (ego frame, poses at ``traj.dt`` from the origin).
        v0: Ego speed now (m/s).
        cap_of_xy: Speed cap (m/s) at ego-frame points ``[K, 2]``.
        decel: Deceleration (m/s^2) at which a speed above the cap is brought down to it,
            as the rule check allows (``rules.rule_decel``).
        ds: Arc-length step (m) of the integration.

    Returns:
        The slowed plan (same dt and pose count, explicit speeds), or None when the plan does
        not move or its values are not finite.
    """
    poses = traj.with_origin()
    if not np.all(np.isfinite(poses)) or not np.isfinite(v0):
        return None
    seg = np.hypot(*np.diff(poses[:, :2], axis=0).T)
    sigma = np.concatenate([[0.0], np.cumsum(seg)])
    if sigma[-1] < ds:
        return None
    grid = np.append(np.arange(0.0, sigma[-1], ds), sigma[-1])
    xy = np.column_stack([np.interp(grid, sigma, poses[:, 0]), np.interp(grid, sigma, poses[:, 1])])
    mids = 0.5 * (sigma[:-1] + sigma[1:])
    v_plan = np.interp(grid, np.concatenate([[0.0], mids]), np.concatenate([[v0], seg / traj.dt]))
    cap = np.asarray(cap_of_xy(xy), dtype=np.float64)
    times, speeds = [0.0], [max(v0, 0.0)]
    for k in range(1, len(grid)):
        target = min(v_plan[k], max(cap[k], v0 - decel * times[-1]))
        if target < STOPPED:
            break
        mean = max(0.5 * (speeds[-1] + target), STOPPED)
        times.append(times[-1] + (grid[k] - grid[k - 1]) / mean)
        speeds.append(target)
    # The capped profile has corners (a cap that starts, a stop) that read as jerk. Smooth it on
    # a fine time grid: each sample first takes the lowest target of the next half window (so
    # braking starts early enough), then the window's mean; the result stays under the target
    # but at the start, where the ego's speed is given, by about decel * window / 4.
    horizon = traj.dt * len(traj.poses)
    fine = np.arange(0.0, horizon + FINE_DT / 2, FINE_DT)
    target = np.interp(fine, times, speeds)  # past the plan's end: its last speed (not a stop)
    if len(times) < len(grid):  # stopped before the end of the path
        target[fine > times[-1]] = 0.0
    half = round(0.5 * WINDOW_S / FINE_DT)
    padded = np.concatenate([target, np.full(half, target[-1])])
    ahead = np.lib.stride_tricks.sliding_window_view(padded, half + 1).min(axis=1)
    before = np.concatenate([np.full(half, max(v0, 0.0)), ahead, np.full(half, ahead[-1])])
    smooth = np.convolve(before, np.full(2 * half + 1, 1.0 / (2 * half + 1)), mode="valid")
    travelled = np.concatenate([[0.0], np.cumsum(0.5 * (smooth[1:] + smooth[:-1]) * FINE_DT)])
    t = traj.dt * np.arange(1, len(traj.poses) + 1)
    at = np.minimum(np.interp(t, fine, travelled), sigma[-1])
    yaw = np.unwrap(poses[:, 2])
    out = np.column_stack([np.interp(at, sigma, poses[:, 0]), np.interp(at, sigma, poses[:, 1]),
                           np.interp(at, sigma, yaw)])  # fmt: skip
    return Trajectory(out, traj.dt, traj.stamp, np.interp(t, fine, smooth), traj.source)
