"""Jerk-limited emergency stop along the last safe path (Autoware MRM style).

Speed profile: braking builds up from ``min(a0, 0)`` (limited to what can still be eased
off before standstill) towards ``-decel`` with jerk
``-jerk`` (MRM defaults 2.5 m/s^2 and 1.5 m/s^3); just before standstill it is released to 0
with ``release_jerk`` so that the published plan never contains an unbounded jerk at the
stop. Positive ego acceleration is cut at t=0 (throttle off), which is a jump of the
*commanded* acceleration only; the published positions stay continuous.

Geometry: the path of the last safe published plan, re-expressed in the current ego frame.
The ego's offset from it is blended out over ``blend_distance`` so the stop starts exactly at
the ego with its heading. If the ego is too far from that path (``max_path_offset``,
``max_path_heading``), or there is none, the stop goes straight ahead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import at, build
from vla_edge.types import Trajectory


@dataclass(frozen=True)
class EmergencyParams:
    """Parameters from ``arbiter.yaml`` ``arbiter.emergency`` (see the YAML for units)."""

    dt: float = at("arbiter.dt")
    decel: float = at("arbiter.emergency.decel")
    jerk: float = at("arbiter.emergency.jerk")
    release_jerk: float = at("arbiter.emergency.release_jerk")
    horizon: float = at("arbiter.emergency.horizon")
    integration_dt: float = at("arbiter.emergency.integration_dt")
    max_path_offset: float = at("arbiter.emergency.max_path_offset")
    max_path_heading: float = at("arbiter.emergency.max_path_heading")
    blend_distance: float = at("arbiter.emergency.blend_distance")

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> EmergencyParams:
        """Build from the merged config (validated: decel, jerk... are > 0 by the schema)."""
        return build(cls, cfg, "arbiter.yaml")


def stop_profile(v0: float, a0: float, params: EmergencyParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance, speed and acceleration at ``t = dt, 2dt, ..., horizon``.

    Args:
        v0: Ego speed (m/s); negative values are treated as 0.
        a0: Ego acceleration (m/s^2); only its braking part is kept.
        params: Emergency parameters.

    Returns:
        ``(s, v, a)`` arrays of ``round(horizon / dt)`` samples.
    """
    h = params.integration_dt
    n_fine = round(params.horizon / h)
    every = max(1, round(params.dt / h))
    v = max(float(v0), 0.0)
    # Start from the ego's braking, but never harder than can still be eased off to a=0 at
    # standstill within release_jerk (else the stop itself would be a jerk spike).
    a_easable = np.sqrt(2.0 * params.release_jerk * v)
    a = float(max(min(float(a0), 0.0), -params.decel, -a_easable))
    s = 0.0
    out_s, out_v, out_a = [], [], []
    for k in range(1, n_fine + 1):
        if v <= 0.0:
            a = 0.0
        elif a < 0.0 and v <= a * a / (2.0 * params.release_jerk) + 1e-9:
            a = min(a + params.release_jerk * h, 0.0)  # ease off to stop without a jerk spike
        else:
            a = max(a - params.jerk * h, -params.decel)
        v_new = max(v + a * h, 0.0)
        s += 0.5 * (v + v_new) * h
        v = v_new
        if k % every == 0:
            out_s.append(s)
            out_v.append(v)
            out_a.append(a)
    return np.asarray(out_s), np.asarray(out_v), np.asarray(out_a)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def path_from_ego(path_xy: np.ndarray | None, params: EmergencyParams) -> np.ndarray | None:
    """The part of ``path_xy`` (ego frame) ahead of the ego, blended to start at the origin.

    Returns:
        ``[Q, 2]`` polyline starting at (0, 0), or None when the ego is not on the path.
    """
    if path_xy is None:
        return None
    pts = np.asarray(path_xy, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < 2:
        return None
    seg = np.diff(pts, axis=0)
    len2 = np.maximum(np.einsum("ij,ij->i", seg, seg), 1e-12)
    t = np.clip(np.einsum("ij,ij->i", -pts[:-1], seg) / len2, 0.0, 1.0)
    foot = pts[:-1] + t[:, None] * seg
    heading = np.arctan2(seg[:, 1], seg[:, 0])
    dist = np.hypot(foot[:, 0], foot[:, 1])
    dist = np.where(np.cos(heading) > 0.0, dist, np.inf)  # ignore segments pointing backwards
    k = int(np.argmin(dist))
    off_path = dist[k] > params.max_path_offset or abs(heading[k]) > params.max_path_heading
    if not np.isfinite(dist[k]) or off_path:
        return None
    rest = np.vstack([foot[k : k + 1], pts[k + 1 :]])
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(rest, axis=0).T))])
    w = 1.0 - _smoothstep(arc / max(params.blend_distance, 1e-6))
    return rest - w[:, None] * foot[k]


def emergency_stop(
    path_xy: np.ndarray | None, v0: float, a0: float, stamp: float, params: EmergencyParams
) -> Trajectory:
    """Jerk-limited stop along ``path_xy`` (or straight ahead), ``source="emergency_stop"``.

    Args:
        path_xy: Last safe path in the current ego frame, or None.
        v0: Ego speed (m/s).
        a0: Ego acceleration (m/s^2).
        stamp: Stamp of the ego frame.
        params: Emergency parameters.

    Returns:
        A finite trajectory at ``params.dt`` covering ``params.horizon``.
    """
    s, v, _ = stop_profile(v0, a0, params)
    path = path_from_ego(path_xy, params)
    if path is None:
        return straight_stop(s, v, stamp, params)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))])
    keep = np.concatenate([[True], np.diff(arc) > 1e-6])
    path, arc = path[keep], arc[keep]
    if len(path) < 2:
        return straight_stop(s, v, stamp, params)
    head = np.unwrap(np.arctan2(*np.diff(path, axis=0).T[::-1]))
    sc = np.minimum(s, arc[-1])
    x = np.interp(sc, arc, path[:, 0]) + (s - sc) * np.cos(head[-1])
    y = np.interp(sc, arc, path[:, 1]) + (s - sc) * np.sin(head[-1])
    seg_mid = 0.5 * (arc[:-1] + arc[1:])
    yaw = np.interp(sc, seg_mid, head)
    # Blend the heading from the ego's (0) into the path's over the blend distance.
    yaw = yaw * _smoothstep(s / max(params.blend_distance, 1e-6))
    poses = np.stack([x, y, yaw], axis=1)
    return Trajectory(poses, params.dt, stamp, v.copy(), "emergency_stop")


def straight_stop(s: np.ndarray, v: np.ndarray, stamp: float, params: EmergencyParams) -> Trajectory:
    """Stop straight ahead along the ego's heading (always kinematically admissible)."""
    poses = np.stack([s, np.zeros_like(s), np.zeros_like(s)], axis=1)
    return Trajectory(poses, params.dt, stamp, v.copy(), "emergency_stop")
