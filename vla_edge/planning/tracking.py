"""Cluster velocities between sweeps: constant-velocity Kalman filters with gated association.

Centroids are moved into the odom frame with the ego pose of each sweep, so the ego's own
motion does not show up as obstacle motion. Every track is a constant-velocity Kalman filter
(state x, y, vx, vy in odom; white-acceleration process noise ``accel_noise``; centroid
measurements with ``measurement_noise``). A new cluster is associated with the track whose
*predicted* centroid is its mutual nearest neighbour within the gate; an unmatched cluster
starts a track at rest with velocity standard deviation ``initial_speed_std``, so a cluster
that just appeared (crew stepping out from behind a cart) carries a large velocity
uncertainty that the prediction (``prediction.py``) turns into growing occupancy.

A cluster is *moving* (predicted for the TTC and collision checks) once it has been
associated ``min_hits`` times, is faster than ``static_speed`` and not larger than
``max_moving_extent``; everything else stays in the static occupancy grid (unless the
prediction marks it uncertain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import ConfigError
from vla_edge.planning.kinematics import se2_apply
from vla_edge.planning.obstacles import Obstacles


@dataclass(frozen=True)
class TrackingParams:
    """Parameters from ``obstacles.yaml`` ``obstacles.tracking`` (see the YAML for units)."""

    gate: float
    max_dt: float
    static_speed: float
    min_hits: int
    max_moving_extent: float
    measurement_noise: float
    accel_noise: float
    initial_speed_std: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TrackingParams:
        """Build from the merged config (``{"obstacles": {"tracking": {...}}}``)."""
        t = require(cfg, "obstacles", "tracking", where="obstacles.yaml")
        out = cls(
            gate=float(require(t, "gate")),
            max_dt=float(require(t, "max_dt")),
            static_speed=float(require(t, "static_speed")),
            min_hits=int(require(t, "min_hits")),
            max_moving_extent=float(require(t, "max_moving_extent")),
            measurement_noise=float(require(t, "measurement_noise")),
            accel_noise=float(require(t, "accel_noise")),
            initial_speed_std=float(require(t, "initial_speed_std")),
        )
        for k in ("gate", "max_dt", "measurement_noise", "accel_noise", "initial_speed_std"):
            if not getattr(out, k) > 0.0:
                raise ConfigError(
                    f"obstacles.yaml: obstacles.tracking.{k} must be > 0, got {getattr(out, k)}"
                )
        return out


class ClusterTracker:
    """Constant-velocity Kalman tracks of the cluster centroids (odom frame)."""

    def __init__(self, params: TrackingParams) -> None:
        self.params = params
        self._stamp: float | None = None
        self._x: np.ndarray = np.zeros((0, 4))  # x, y, vx, vy (odom)
        self._P: np.ndarray = np.zeros((0, 4, 4))
        self._hits: np.ndarray = np.zeros(0, dtype=np.int64)
        self._ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self._next_id = 0

    def reset(self) -> None:
        """Forget all tracks (e.g. after a time jump)."""
        self.__init__(self.params)  # type: ignore[misc]

    def _predict(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        F = np.eye(4)
        F[0, 2] = F[1, 3] = dt
        q = p.accel_noise**2
        g = np.array([0.5 * dt * dt, dt])
        Q1 = q * np.outer(g, g)  # white acceleration per axis
        Q = np.zeros((4, 4))
        Q[np.ix_([0, 2], [0, 2])] = Q1
        Q[np.ix_([1, 3], [1, 3])] = Q1
        x = self._x @ F.T
        P = F @ self._P @ F.T + Q
        return x, P

    def update(self, obstacles: Obstacles, ego_pose: tuple[float, float, float]) -> None:
        """Fill ``obstacles.velocities``, ``velocity_std``, ``moving``, ``track_ids``, ``hits``.

        Args:
            obstacles: Clusters of the new sweep (ego frame at ``obstacles.stamp``).
            ego_pose: Ego (x, y, yaw) in the odom frame at that stamp.
        """
        p = self.params
        z = se2_apply(ego_pose, obstacles.centroids) if obstacles.n_clusters else np.zeros((0, 2))
        m = len(z)
        r2 = p.measurement_noise**2
        x_new = np.zeros((m, 4))
        x_new[:, :2] = z
        P_new = np.tile(np.diag([r2, r2, p.initial_speed_std**2, p.initial_speed_std**2]), (m, 1, 1))
        hits = np.zeros(m, dtype=np.int64)
        ids = np.full(m, -1, dtype=np.int64)
        dt = None if self._stamp is None else obstacles.stamp - self._stamp
        if dt is not None and 1e-3 < dt <= p.max_dt and m and len(self._x):
            xp, Pp = self._predict(dt)
            d2 = ((z[:, None, :] - xp[None, :, :2]) ** 2).sum(-1)
            nn_new = np.argmin(d2, axis=1)
            nn_old = np.argmin(d2, axis=0)
            ok = (nn_old[nn_new] == np.arange(m)) & (d2[np.arange(m), nn_new] <= p.gate**2)
            i, j = np.flatnonzero(ok), nn_new[ok]
            if len(i):
                P = Pp[j]
                S = P[:, :2, :2] + r2 * np.eye(2)
                K = P[:, :, :2] @ np.linalg.inv(S)  # [k, 4, 2]
                innov = z[i] - xp[j, :2]
                x_new[i] = xp[j] + (K @ innov[:, :, None])[:, :, 0]
                P_new[i] = P - K @ P[:, :2, :]
                hits[i] = self._hits[j] + 1
                ids[i] = self._ids[j]
        fresh = ids < 0
        ids[fresh] = self._next_id + np.arange(int(fresh.sum()))
        self._next_id += int(fresh.sum())
        self._stamp, self._x, self._P, self._hits, self._ids = obstacles.stamp, x_new, P_new, hits, ids
        c, s = np.cos(-ego_pose[2]), np.sin(-ego_pose[2])  # rotate world velocity into ego axes
        vel = x_new[:, 2:]
        v_ego = np.stack([c * vel[:, 0] - s * vel[:, 1], s * vel[:, 0] + c * vel[:, 1]], axis=1) if m else vel
        ext = obstacles.extents.reshape(-1, 4)
        size = np.maximum(ext[:, 2] - ext[:, 0], ext[:, 3] - ext[:, 1])
        fast = np.hypot(v_ego[:, 0], v_ego[:, 1]) > p.static_speed
        obstacles.velocities = v_ego
        obstacles.velocity_std = np.sqrt(np.maximum(0.5 * (P_new[:, 2, 2] + P_new[:, 3, 3]), 0.0))
        obstacles.moving = (hits >= p.min_hits) & fast & (size <= p.max_moving_extent)
        obstacles.track_ids = ids
        obstacles.hits = hits
