"""Predicted occupancy of tracked agents over the plan horizon (no rclpy, numpy only).

Each predicted cluster is a capsule (``Obstacles.moving_capsules``) moved over time under
two hypotheses, united:

* **constant velocity** from its Kalman track (along the path direction for agents moving
  along the lanes: lane following), with a radius that grows with the velocity
  uncertainty: ``r(t) = r0 + min(k_sigma * sigma_v, max_growth[class]) * t``;
* **crossing** for agents near the lane that move across it (velocity more than
  ``crossing_angle`` off the path direction): the agent may
  stop anywhere on its way (crew pause in the lane, a train waits for a gap), so the capsule
  is swept from where it is now to its constant-velocity position at ``t``.

Which clusters are predicted (rather than static occupancy): the tracker's moving ones, plus
person-sized clusters near the lane whose track is still uncertain (``sigma_v`` above
``uncertain_speed_std``: just appeared, e.g. stepping out from behind a parked cart).

Collision and TTC checks of the Frenet candidates and of the student / held plan all use
this occupancy (``checks.collision_levels``), so no published plan enters a predicted
footprint within the horizon (``test_planning_prediction.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import ConfigError
from vla_edge.planning.obstacles import Obstacles
from vla_edge.planning.reference_path import ReferencePath


@dataclass(frozen=True)
class PredictionParams:
    """``planner.yaml`` ``planner.prediction`` (see the YAML for units and sources)."""

    k_sigma: float
    max_growth_person: float
    max_growth_other: float
    near_lane: float
    crossing_angle: float
    uncertain_speed_std: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> PredictionParams:
        """Build from the merged config."""
        p = require(cfg, "planner", "prediction", where="planner.yaml")
        out = cls(
            k_sigma=float(require(p, "k_sigma")),
            max_growth_person=float(require(p, "max_growth_person")),
            max_growth_other=float(require(p, "max_growth_other")),
            near_lane=float(require(p, "near_lane")),
            crossing_angle=float(np.radians(float(require(p, "crossing_angle_deg")))),
            uncertain_speed_std=float(require(p, "uncertain_speed_std")),
        )
        for k in ("k_sigma", "max_growth_person", "max_growth_other", "near_lane"):
            if getattr(out, k) < 0.0:
                raise ConfigError(f"planner.yaml: planner.prediction.{k} must be >= 0, got {getattr(out, k)}")
        if not 0.0 < out.crossing_angle < np.pi / 2:
            raise ConfigError("planner.yaml: planner.prediction.crossing_angle_deg must be within (0, 90)")
        return out


def lane_frame(obstacles: Obstacles, ref: ReferencePath | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc length, lateral offset and path heading at every cluster centroid (ego frame)."""
    m = obstacles.n_clusters
    if ref is None or m == 0:
        return np.zeros(m), np.full(m, np.inf), np.zeros(m)
    s, d = ref.to_frenet(obstacles.centroids)
    _, _, th, _ = ref.interpolate(s)
    return s, d, th


def annotate(
    obstacles: Obstacles, ref: ReferencePath | None, params: PredictionParams, lane_half: float
) -> None:
    """Set ``predicted``, ``growth`` and ``sweep`` of ``obstacles`` (call before ``inflate``).

    Args:
        obstacles: Tracked clusters with ``classes`` set (``rules.classify``).
        ref: Reference path (None: constant velocity only, no lane context).
        params: Prediction parameters.
        lane_half: Half width of the ego's lane (m); "near the lane" is within
            ``lane_half + near_lane`` of the path.
    """
    m = obstacles.n_clusters
    if m == 0:
        obstacles.predicted = np.zeros(0, dtype=bool)
        return
    _, d, th = lane_frame(obstacles, ref)
    person = obstacles.classes == "person"
    near = np.abs(d) < lane_half + params.near_lane
    sigma = obstacles.velocity_std
    uncertain = person & near & (sigma > params.uncertain_speed_std)
    ext = obstacles.extents
    small = np.maximum(ext[:, 2] - ext[:, 0], ext[:, 3] - ext[:, 1]) <= 8.0
    pred = obstacles.moving | (uncertain & small)
    cap = np.where(person, params.max_growth_person, params.max_growth_other)
    growth = np.minimum(params.k_sigma * sigma, cap)
    v = obstacles.velocities
    speed = np.hypot(v[:, 0], v[:, 1])
    heading = np.arctan2(v[:, 1], v[:, 0])
    off = np.abs(np.arctan2(np.sin(heading - th), np.cos(heading - th)))
    across = (off > params.crossing_angle) & (off < np.pi - params.crossing_angle) & (speed > 0.2)
    obstacles.predicted = pred
    obstacles.growth = np.where(pred, growth, 0.0)
    obstacles.sweep = pred & near & across
    if ref is not None:
        # Lane following: an agent moving along the lanes keeps to them; only its velocity
        # along the path direction is extrapolated (a tracked centroid drifts sideways as a
        # vehicle's visible outline changes, and that drift would put oncoming traffic into
        # the ego lane within the horizon).
        tx, ty = np.cos(th), np.sin(th)
        along = v[:, 0] * tx + v[:, 1] * ty
        pv = v.copy()
        keep = ~across & np.isfinite(d)
        pv[keep] = np.stack([along * tx, along * ty], axis=1)[keep]
        obstacles.pred_velocities = pv


def segments(obstacles: Obstacles, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted occupancy of every predicted cluster at times ``t`` as capsules.

    Returns:
        ``(a [M, T, 2], b [M, T, 2], r [M, T])``: the occupancy at ``t[j]`` is every point
        within ``r`` of the segment ``a -> b`` (before the footprint inflation).
    """
    cen, axis, rad, vel = obstacles.moving_capsules()
    mask = obstacles.predicted_mask()
    growth = obstacles.growth[mask] if len(obstacles.growth) == len(mask) else np.zeros(len(cen))
    sweep = obstacles.sweep[mask] if len(obstacles.sweep) == len(mask) else np.zeros(len(cen), dtype=bool)
    t = np.asarray(t, dtype=np.float64)
    pos = cen[:, None, :] + vel[:, None, :] * t[None, :, None]  # [M, T, 2]
    half = np.hypot(axis[:, 0], axis[:, 1])
    a = pos - axis[:, None, :]
    b = pos + axis[:, None, :]
    r = np.broadcast_to((rad + 0.0)[:, None], (len(cen), len(t))).copy()
    if sweep.any():  # may stop anywhere between now and its CV position: the swept capsule
        a[sweep] = np.broadcast_to(cen[sweep, None, :], a[sweep].shape)
        b[sweep] = pos[sweep]
        r[sweep] += half[sweep, None]
    r += growth[:, None] * t[None, :]
    return a, b, r
