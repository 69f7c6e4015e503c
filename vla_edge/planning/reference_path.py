"""Reference path: smoothed arc-length parameterisation with curvature, Cartesian <-> Frenet.

The route polyline (``Frame.reference_path``, M x 2 in the ego frame) is cleaned, resampled
at a fixed arc-length step, smoothed with a moving average whose ends are padded by point
reflection (straight lines and end points stay put), and extended by straight segments at
both ends so that projections and conversions beyond the ends extrapolate linearly instead
of snapping to the last point.

Projection onto the path uses a *local* nearest-segment search: each query point carries an
arc-length hint (for a trajectory: the ego's arc length plus the distance driven so far) and
only segments within ``projection_window`` of that hint are candidates. This keeps points on
the right leg of hairpins and sharp turns, where a global nearest search would jump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import PlanningError


@dataclass(frozen=True)
class ReferencePathParams:
    """Parameters from ``planner.yaml`` ``planner.reference_path`` (see the YAML for units)."""

    ds: float
    smoothing_window: int
    smoothing_passes: int
    max_curvature: float
    extend_front: float
    extend_back: float
    projection_window: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ReferencePathParams:
        """Build from the merged config (``{"planner": {...}}``)."""
        rp = require(cfg, "planner", "reference_path", where="planner.yaml")
        return cls(
            ds=float(require(rp, "ds")),
            smoothing_window=int(require(rp, "smoothing_window")),
            smoothing_passes=int(require(rp, "smoothing_passes")),
            max_curvature=float(require(rp, "max_curvature")),
            extend_front=float(require(rp, "extend_front")),
            extend_back=float(require(rp, "extend_back")),
            projection_window=float(require(rp, "projection_window")),
        )


def _resample(xy: np.ndarray, ds: float) -> np.ndarray:
    seg = np.hypot(*np.diff(xy, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(np.ceil(s[-1] / ds)) + 1)
    s_new = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(s_new, s, xy[:, 0]), np.interp(s_new, s, xy[:, 1])], axis=1)


def _moving_average(xy: np.ndarray, window: int) -> np.ndarray:
    """Moving average with point-reflected padding: ends fixed, straight lines unchanged."""
    k = window // 2
    if k < 1 or len(xy) < 3:
        return xy
    k = min(k, len(xy) - 1)
    head = 2 * xy[0] - xy[k:0:-1]
    tail = 2 * xy[-1] - xy[-2 : -k - 2 : -1]
    padded = np.vstack([head, xy, tail])
    c = np.cumsum(np.vstack([np.zeros((1, 2)), padded]), axis=0)
    w = 2 * k + 1
    return (c[w:] - c[:-w]) / w


class ReferencePath:
    """A smoothed, arc-length parameterised path with heading and curvature.

    Attributes:
        s: ``[K]`` arc length in metres (0 at the first route point; negative on the
            back extension).
        xy: ``[K, 2]`` points in the ego frame.
        theta: ``[K]`` unwrapped heading in radians.
        kappa: ``[K]`` signed curvature in 1/m (clipped to ``max_curvature``).
        length: Length of the route part (without extensions) in metres.
    """

    def __init__(
        self,
        s: np.ndarray,
        xy: np.ndarray,
        theta: np.ndarray,
        kappa: np.ndarray,
        length: float,
        projection_window: float,
    ) -> None:
        self.s = s
        self.xy = xy
        self.theta = theta
        self.kappa = kappa
        self.length = length
        self.projection_window = projection_window
        seg = np.diff(xy, axis=0)
        self._seg = seg
        self._seg_len2 = np.maximum(np.einsum("ij,ij->i", seg, seg), 1e-12)
        self._seg_theta = np.arctan2(seg[:, 1], seg[:, 0])
        self.ds = float((s[-1] - s[0]) / (len(s) - 1))
        self._dxy = seg
        self._dth = np.diff(theta)
        self._dkp = np.diff(kappa)

    @classmethod
    def from_polyline(cls, points: np.ndarray, params: ReferencePathParams) -> ReferencePath:
        """Build from an M x 2 route polyline.

        Raises:
            PlanningError: With fewer than two distinct finite points.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] < 2:
            raise PlanningError(f"reference path must be M x 2, got shape {pts.shape}; check the route topic")
        pts = pts[:, :2]
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if len(pts) >= 2:
            step = np.hypot(*np.diff(pts, axis=0).T)
            pts = pts[np.concatenate([[True], step > 1e-3])]
        if len(pts) < 2:
            raise PlanningError(
                "reference path needs at least 2 distinct finite points; "
                "is /planning/reference_path published?"
            )
        xy = _resample(pts, params.ds)
        for _ in range(max(0, params.smoothing_passes)):
            xy = _moving_average(xy, params.smoothing_window)
        xy = _resample(xy, params.ds)
        length = float(np.sum(np.hypot(*np.diff(xy, axis=0).T)))
        ds = length / (len(xy) - 1)
        th0 = np.arctan2(*(xy[1] - xy[0])[::-1])
        th1 = np.arctan2(*(xy[-1] - xy[-2])[::-1])
        nb = int(np.ceil(params.extend_back / ds))
        nf = int(np.ceil(params.extend_front / ds))
        back = xy[0] - ds * np.arange(nb, 0, -1)[:, None] * np.array([np.cos(th0), np.sin(th0)])
        front = xy[-1] + ds * np.arange(1, nf + 1)[:, None] * np.array([np.cos(th1), np.sin(th1)])
        full = np.vstack([back, xy, front])
        s = ds * (np.arange(len(full)) - nb)
        grad = np.gradient(full, axis=0)
        theta = np.unwrap(np.arctan2(grad[:, 1], grad[:, 0]))
        kappa = np.gradient(theta, s)
        kappa = _moving_average(np.stack([kappa, kappa], axis=1), 3)[:, 0]
        kappa = np.clip(kappa, -params.max_curvature, params.max_curvature)
        return cls(s, full, theta, kappa, length, params.projection_window)

    # ------------------------------------------------------------------ Frenet -> Cartesian
    def interpolate(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Point, heading and curvature at arc length ``s`` (any shape); linear beyond the ends.

        Returns:
            ``(x, y, theta, kappa)`` each shaped like ``s``.
        """
        s = np.asarray(s, dtype=np.float64)
        sc = np.clip(s, self.s[0], self.s[-1])
        # Uniform arc-length grid: direct indexing is much faster than np.interp's search.
        u = (sc - self.s[0]) * (1.0 / self.ds)
        i = np.minimum(u.astype(np.intp), len(self.s) - 2)
        f = u - i
        x = self.xy[i, 0] + f * self._dxy[i, 0]
        y = self.xy[i, 1] + f * self._dxy[i, 1]
        th = self.theta[i] + f * self._dth[i]
        kp = self.kappa[i] + f * self._dkp[i]
        over = s - sc  # non-zero only outside the extended path: extrapolate straight
        if np.any(over != 0.0):
            x = x + over * np.cos(th)
            y = y + over * np.sin(th)
            kp = np.where(over != 0.0, 0.0, kp)
        return x, y, th, kp

    def to_cartesian(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frenet ``(s, d)`` (same shape) to ego-frame ``(x, y)``; ``d`` positive to the left."""
        x, y, th, _ = self.interpolate(s)
        return x - d * np.sin(th), y + d * np.cos(th)

    # ------------------------------------------------------------------ Cartesian -> Frenet
    def to_frenet(
        self, xy: np.ndarray, s_hint: np.ndarray | None = None, heading: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Project points onto the path.

        Args:
            xy: ``[N, 2]`` ego-frame points.
            s_hint: ``[N]`` arc-length hints; only segments within ``projection_window`` of
                the hint are searched (local window). ``None`` searches all segments.
            heading: Optional heading of the query points (rad); segments pointing more than
                90 degrees away are ignored (keeps the ego on its own leg of a hairpin).

        Returns:
            ``(s, d)`` arrays of length N.
        """
        q = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        p0 = self.xy[:-1]
        rel = q[:, None, :] - p0[None, :, :]
        t = np.clip(np.einsum("nki,ki->nk", rel, self._seg) / self._seg_len2, 0.0, 1.0)
        foot = rel - t[..., None] * self._seg[None]
        dist2 = np.einsum("nki,nki->nk", foot, foot)
        if s_hint is not None:
            hint = np.asarray(s_hint, dtype=np.float64).reshape(-1, 1)
            seg_s0, seg_s1 = self.s[:-1][None, :], self.s[1:][None, :]
            outside = (seg_s1 < hint - self.projection_window) | (seg_s0 > hint + self.projection_window)
            dist2 = np.where(outside, np.inf, dist2)
        if heading is not None:
            misaligned = np.cos(self._seg_theta - heading) < 0.0
            dist2 = np.where(misaligned[None, :], np.inf, dist2)
        bad = ~np.isfinite(dist2).any(axis=1)
        if np.any(bad):  # window excluded everything: fall back to a global search
            dist2[bad] = np.einsum("nki,nki->nk", foot[bad], foot[bad])
        k = np.argmin(dist2, axis=1)
        n = np.arange(len(q))
        seg = self._seg[k]
        seg_len = np.sqrt(self._seg_len2[k])
        r = rel[n, k]
        along = np.einsum("ni,ni->n", r, seg) / seg_len
        first, last = k == 0, k == len(self._seg) - 1
        # Past either end: keep the unclipped along-track distance (linear extrapolation).
        along = np.where(first, np.minimum(along, seg_len), along)
        along = np.where(last, np.maximum(along, 0.0), along)
        along = np.where(first | last, along, np.clip(along, 0.0, seg_len))
        s = self.s[k] + along
        d = (seg[:, 0] * r[:, 1] - seg[:, 1] * r[:, 0]) / seg_len
        return s, d

    def ego_frenet(self) -> tuple[float, float]:
        """Frenet coordinates of the ego (origin, heading 0)."""
        s, d = self.to_frenet(np.zeros((1, 2)), heading=0.0)
        return float(s[0]), float(d[0])

    def project_trajectory(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project a trajectory ``[T, 2]`` that starts at the ego, using driven distance as hint."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        s0, _ = self.ego_frenet()
        full = np.vstack([np.zeros((1, 2)), xy])
        driven = np.cumsum(np.hypot(*np.diff(full, axis=0).T))
        return self.to_frenet(xy, s_hint=s0 + driven)
