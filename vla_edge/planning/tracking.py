"""Cluster velocities between sweeps (nearest-centroid association with gating).

Centroids are moved into the odom frame with the ego pose of each sweep, so the ego's own
motion does not show up as obstacle motion. A new cluster is associated with the previous
sweep's cluster when each is the other's nearest centroid and the displacement is within the
gate; its velocity is the displacement over the sweep interval, smoothed by an exponential
moving average. A cluster is *moving* (predicted at constant velocity for TTC and collision
checks) once it has been associated ``min_hits`` times, is faster than ``static_speed`` and
not larger than ``max_moving_extent``; everything else stays in the static occupancy grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.planning.kinematics import se2_apply
from vla_edge.planning.obstacles import Obstacles


@dataclass(frozen=True)
class TrackingParams:
    """Parameters from ``obstacles.yaml`` ``obstacles.tracking`` (see the YAML for units)."""

    gate: float
    max_dt: float
    smoothing: float
    static_speed: float
    min_hits: int
    max_moving_extent: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> TrackingParams:
        """Build from the merged config (``{"obstacles": {"tracking": {...}}}``)."""
        t = require(cfg, "obstacles", "tracking", where="obstacles.yaml")
        return cls(
            gate=float(require(t, "gate")),
            max_dt=float(require(t, "max_dt")),
            smoothing=float(require(t, "smoothing")),
            static_speed=float(require(t, "static_speed")),
            min_hits=int(require(t, "min_hits")),
            max_moving_extent=float(require(t, "max_moving_extent")),
        )


class ClusterTracker:
    """Keeps the previous sweep's clusters and assigns velocities to the new ones."""

    def __init__(self, params: TrackingParams) -> None:
        self.params = params
        self._stamp: float | None = None
        self._world: np.ndarray = np.zeros((0, 2))
        self._vel_world: np.ndarray = np.zeros((0, 2))
        self._hits: np.ndarray = np.zeros(0, dtype=np.int64)
        self._ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self._next_id = 0

    def reset(self) -> None:
        """Forget all tracks (e.g. after a time jump)."""
        self.__init__(self.params)  # type: ignore[misc]

    def update(self, obstacles: Obstacles, ego_pose: tuple[float, float, float]) -> None:
        """Fill ``obstacles.velocities``, ``moving`` and ``track_ids`` in place.

        Args:
            obstacles: Clusters of the new sweep (ego frame at ``obstacles.stamp``).
            ego_pose: Ego (x, y, yaw) in the odom frame at that stamp.
        """
        p = self.params
        world = se2_apply(ego_pose, obstacles.centroids) if obstacles.n_clusters else np.zeros((0, 2))
        m = len(world)
        vel = np.zeros((m, 2))
        hits = np.zeros(m, dtype=np.int64)
        ids = np.arange(self._next_id, self._next_id + m)
        dt = None if self._stamp is None else obstacles.stamp - self._stamp
        if dt is not None and 1e-3 < dt <= p.max_dt and m and len(self._world):
            d2 = ((world[:, None, :] - self._world[None, :, :]) ** 2).sum(-1)
            nn_new = np.argmin(d2, axis=1)
            nn_old = np.argmin(d2, axis=0)
            mutual = nn_old[nn_new] == np.arange(m)
            close = d2[np.arange(m), nn_new] <= p.gate**2
            ok = mutual & close
            j = nn_new[ok]
            meas = (world[ok] - self._world[j]) / dt
            prev_v = self._vel_world[j]
            first = (self._hits[j] == 0)[:, None]
            vel[ok] = np.where(first, meas, p.smoothing * meas + (1 - p.smoothing) * prev_v)
            hits[ok] = self._hits[j] + 1
            ids[ok] = self._ids[j]
        n_new = int(np.count_nonzero(hits == 0))
        ids[hits == 0] = self._next_id + np.arange(n_new)
        self._next_id += n_new
        self._stamp, self._world, self._vel_world = obstacles.stamp, world, vel
        self._hits, self._ids = hits, ids
        c, s = np.cos(-ego_pose[2]), np.sin(-ego_pose[2])  # rotate world velocity into ego axes
        v_ego = np.stack([c * vel[:, 0] - s * vel[:, 1], s * vel[:, 0] + c * vel[:, 1]], axis=1) if m else vel
        ext = obstacles.extents.reshape(-1, 4)
        size = np.maximum(ext[:, 2] - ext[:, 0], ext[:, 3] - ext[:, 1])
        fast = np.hypot(v_ego[:, 0], v_ego[:, 1]) > p.static_speed
        moving = (hits >= p.min_hits) & fast & (size <= p.max_moving_extent)
        obstacles.velocities = v_ego
        obstacles.moving = moving
        obstacles.track_ids = ids
