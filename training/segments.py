"""Ground-truth futures from odometry and the bad-segment filter (pure numpy).

The ground truth of a frame at ``t0`` is the vehicle's own future: the odometry poses at
``t0 + dt, ..., t0 + T·dt`` (linearly interpolated, yaw unwrapped), expressed in the ego frame
at ``t0``. A frame is dropped when its window ``[t0, t0 + T·dt]``:

* runs past the last odometry sample (``end_of_bag``);
* has a hole between odometry samples longer than ``max_gap`` (``gap``);
* has a jump faster than ``teleport_speed`` between consecutive samples (``teleport``);
* barely moves: travelled distance below ``stationary_distance`` while the speed at ``t0`` is
  below ``stationary_speed`` (``stationary``) — a parked car teaches the planner nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

REASONS = ("ok", "end_of_bag", "gap", "teleport", "stationary", "stale_input")


@dataclass(frozen=True)
class SegmentFilter:
    """Thresholds of the bad-segment filter (``config/train.yaml`` → ``dataset.filter``)."""

    max_gap: float
    teleport_speed: float
    stationary_distance: float
    stationary_speed: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SegmentFilter:
        """Build from the ``dataset.filter`` mapping (every key required)."""
        return cls(**{k: float(cfg[k]) for k in cls.__dataclass_fields__})


@dataclass
class OdometryTrack:
    """Odometry of one bag as arrays sorted by time.

    Attributes:
        t: ``[N]`` stamps in seconds.
        xy: ``[N, 2]`` positions in the odom frame, metres.
        yaw: ``[N]`` heading in radians (odom frame), unwrapped on construction.
        v: ``[N]`` longitudinal speed in m/s.
    """

    t: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    v: np.ndarray

    def __post_init__(self) -> None:
        order = np.argsort(self.t, kind="stable")
        self.t = np.asarray(self.t, dtype=np.float64)[order]
        self.xy = np.asarray(self.xy, dtype=np.float64)[order].reshape(-1, 2)
        self.yaw = np.unwrap(np.asarray(self.yaw, dtype=np.float64)[order])
        self.v = np.asarray(self.v, dtype=np.float64)[order]

    def __len__(self) -> int:
        return len(self.t)


def future_trajectory(track: OdometryTrack, t0: float, horizon: int, dt: float) -> np.ndarray:
    """Future poses ``[T, 3]`` (x, y, yaw) at ``t0 + dt .. t0 + T·dt`` in the ego frame at ``t0``."""
    times = t0 + dt * np.arange(0, horizon + 1)
    x = np.interp(times, track.t, track.xy[:, 0])
    y = np.interp(times, track.t, track.xy[:, 1])
    yaw = np.interp(times, track.t, track.yaw)
    c, s = np.cos(yaw[0]), np.sin(yaw[0])
    dx, dy = x[1:] - x[0], y[1:] - y[0]
    local = np.stack([c * dx + s * dy, -s * dx + c * dy, yaw[1:] - yaw[0]], axis=1)
    return local


def classify_window(track: OdometryTrack, t0: float, horizon: float, filt: SegmentFilter) -> str:
    """Reason code (one of :data:`REASONS`) for the window ``[t0, t0 + horizon]``."""
    if len(track) < 2 or t0 < track.t[0] or t0 + horizon > track.t[-1]:
        return "end_of_bag"
    lo = max(int(np.searchsorted(track.t, t0, side="right")) - 1, 0)
    hi = min(int(np.searchsorted(track.t, t0 + horizon, side="left")), len(track) - 1)
    seg_t = track.t[lo : hi + 1]
    seg_xy = track.xy[lo : hi + 1]
    dts = np.diff(seg_t)
    if dts.size and dts.max() > filt.max_gap:
        return "gap"
    steps = np.linalg.norm(np.diff(seg_xy, axis=0), axis=1)
    if steps.size and np.any(steps > filt.teleport_speed * np.maximum(dts, 1e-3)):
        return "teleport"
    v0 = float(np.interp(t0, track.t, track.v))
    if steps.sum() < filt.stationary_distance and abs(v0) < filt.stationary_speed:
        return "stationary"
    return "ok"
