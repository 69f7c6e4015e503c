"""Contracts shared by every module: :class:`EgoState`, :class:`Frame`, :class:`Trajectory`.

Conventions (see ``docs/architecture.md``):

* Times are float seconds (ROS header stamps converted with ``sec + nanosec * 1e-9``).
* Everything geometric is in ``base_link`` (x forward, y left, z up) at the frame stamp
  unless a field says otherwise.
* A :class:`Trajectory` holds poses at ``t = dt, 2*dt, ..., T*dt`` after ``stamp``;
  the current pose ``(0, 0, 0)`` at ``t = 0`` is implicit (DiffusionDrive convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EgoState:
    """Ego vehicle state in the odometry (map/odom) frame.

    Attributes:
        stamp: Time of the state in seconds.
        x: Position x in metres (odom frame).
        y: Position y in metres (odom frame).
        yaw: Heading in radians (odom frame).
        v: Longitudinal speed in m/s.
        a: Longitudinal acceleration in m/s^2.
        yaw_rate: Yaw rate in rad/s.
    """

    stamp: float
    x: float
    y: float
    yaw: float
    v: float
    a: float = 0.0
    yaw_rate: float = 0.0

    def as_array(self) -> np.ndarray:
        """Return ``[x, y, yaw, v, a, yaw_rate]`` as float64."""
        return np.array([self.x, self.y, self.yaw, self.v, self.a, self.yaw_rate], dtype=np.float64)

    def is_finite(self) -> bool:
        """True when every field is a finite number."""
        return bool(np.all(np.isfinite(self.as_array()))) and bool(np.isfinite(self.stamp))


@dataclass(frozen=True)
class PastSweep:
    """An earlier LiDAR sweep kept for multi-sweep models.

    Attributes:
        stamp: Its LiDAR header stamp in seconds.
        ego: Ego state (odometry pose) interpolated to ``stamp``.
        points: N x 4 float32 (x, y, z, intensity) in ``base_link`` at ``stamp``.
    """

    stamp: float
    ego: EgoState
    points: np.ndarray


@dataclass
class Frame:
    """One LiDAR sweep's worth of synchronized input.

    Attributes:
        stamp: LiDAR header stamp in seconds; every other input is aligned to it.
        points: N x 4 float32 (x, y, z, intensity) in ``base_link``, NaN/Inf removed.
        ego: Ego state interpolated to ``stamp``.
        reference_path: M x 2 float reference path in the ego frame at ``stamp``, from
            slightly behind the ego to a configured look-ahead (M varies; the student
            resamples it to its fixed K points, the planner uses it as is).
        images: Optional camera images by camera name, H x W x 3 uint8 (RGB).
        ages: Age in seconds of each input relative to ``stamp`` (``"odometry"``,
            ``"reference_path"``, camera names...).
        stale: Names of inputs whose age exceeds their configured limit. A stale input is
            flagged here, never silently used as fresh.
        frame_id: Frame of ``points`` (always ``base_link`` after assembly).
        history: Earlier usable sweeps, newest first (:class:`PastSweep`, each in its own
            ``base_link``); multi-sweep models motion-compensate them into this frame
            (:mod:`vla_edge.sweeps`). Empty for single-sweep use.
    """

    stamp: float
    points: np.ndarray
    ego: EgoState
    reference_path: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    ages: dict[str, float] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)
    frame_id: str = "base_link"
    history: tuple[PastSweep, ...] = ()

    @property
    def is_fresh(self) -> bool:
        """True when no input is flagged stale."""
        return not self.stale


@dataclass
class Trajectory:
    """Poses at a fixed time step in the ego frame at ``stamp``.

    Attributes:
        poses: T x 3 float (x, y, yaw); pose ``i`` is at ``t = (i + 1) * dt``.
        dt: Time step in seconds.
        stamp: Time (s) of the ego frame the poses are expressed in.
        speeds: Optional T speeds in m/s; when absent they are derived from the poses.
        source: Who produced it: ``"student"``, ``"frenet"``, ``"emergency_stop"``,
            ``"expert"``, ``"teacher"``...
    """

    poses: np.ndarray
    dt: float
    stamp: float
    speeds: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.poses = np.asarray(self.poses, dtype=np.float64)
        if self.poses.ndim != 2 or self.poses.shape[1] != 3:
            raise ValueError(f"Trajectory.poses must be T x 3 (x, y, yaw), got {self.poses.shape}")
        if self.speeds is not None:
            self.speeds = np.asarray(self.speeds, dtype=np.float64)

    @property
    def times(self) -> np.ndarray:
        """Relative times of the poses in seconds: ``dt, 2*dt, ..., T*dt``."""
        return self.dt * np.arange(1, len(self.poses) + 1, dtype=np.float64)

    @property
    def horizon(self) -> float:
        """Time span of the trajectory in seconds."""
        return self.dt * len(self.poses)

    def is_finite(self) -> bool:
        """True when every pose (and speed) is finite."""
        ok = bool(np.all(np.isfinite(self.poses)))
        if self.speeds is not None:
            ok = ok and bool(np.all(np.isfinite(self.speeds)))
        return ok and bool(np.isfinite(self.dt)) and self.dt > 0

    def with_origin(self) -> np.ndarray:
        """Poses with the implicit ``(0, 0, 0)`` at ``t = 0`` prepended, (T+1) x 3."""
        return np.vstack([np.zeros((1, 3)), self.poses])

    def resample(self, dt: float, horizon: float | None = None) -> Trajectory:
        """Linearly resample (yaw unwrapped) to a new step, from the implicit origin.

        Args:
            dt: New time step in seconds.
            horizon: New horizon in seconds; defaults to the current one.

        Returns:
            A new trajectory with poses at ``dt, 2*dt, ...`` up to ``horizon``.
        """
        horizon = self.horizon if horizon is None else horizon
        n = max(1, int(round(horizon / dt)))  # noqa: RUF046 - numpy scalars may round to float
        t_new = dt * np.arange(1, n + 1)
        src_t = np.concatenate([[0.0], self.times])
        src = self.with_origin().copy()
        src[:, 2] = np.unwrap(src[:, 2])
        out = np.stack([np.interp(t_new, src_t, src[:, k]) for k in range(3)], axis=1)
        speeds = None
        if self.speeds is not None:
            v0 = self.speeds[0] if len(self.speeds) else 0.0
            speeds = np.interp(t_new, src_t, np.concatenate([[v0], self.speeds]))
        return Trajectory(out, dt, self.stamp, speeds, self.source)


_BIG = 1e9  # JSON has no NaN/Inf: non-finite values are written clamped (the codec's readers reject them)


def trajectory_to_json(traj: Trajectory | None) -> dict[str, Any] | None:
    """The one JSON form of a trajectory: ``{"stamp", "dt", "source", "poses"[, "speeds"]}``.

    Poses and speeds are rounded to 0.1 mm (byte-identical reruns); non-finite values are
    clamped to +-1e9 so the text is valid JSON. None stays None.
    """
    if traj is None:
        return None

    def clean(a: np.ndarray) -> list[Any]:
        return np.round(np.nan_to_num(a, nan=_BIG, posinf=_BIG, neginf=-_BIG), 4).tolist()

    out: dict[str, Any] = {
        "stamp": float(np.nan_to_num(traj.stamp, nan=_BIG)),
        "dt": round(float(np.nan_to_num(traj.dt, nan=_BIG)), 6),
        "source": traj.source,
        "poses": clean(traj.poses),
    }
    if traj.speeds is not None:
        out["speeds"] = clean(traj.speeds)
    return out


def trajectory_from_json(
    data: Any, stamp: float | None = None, source: str | None = None
) -> Trajectory | None:
    """Inverse of :func:`trajectory_to_json`; None when absent, malformed or not finite.

    Args:
        data: The JSON object.
        stamp: Stamp to use instead of the stored one (older records have none).
        source: Source to use instead of the stored one.
    """
    if not isinstance(data, dict) or "poses" not in data or "dt" not in data:
        return None
    try:
        speeds = data.get("speeds")
        traj = Trajectory(
            np.asarray(data["poses"], dtype=np.float64),
            float(data["dt"]),
            float(data.get("stamp", np.nan) if stamp is None else stamp),
            None if speeds is None else np.asarray(speeds, dtype=np.float64),
            str(data.get("source", "") if source is None else source),
        )
    except (TypeError, ValueError):
        return None
    ok = (
        traj.is_finite()
        and len(traj.poses)
        and (traj.speeds is None or traj.speeds.shape == (len(traj.poses),))
    )
    return traj if ok and np.all(np.abs(traj.poses) < _BIG) else None
