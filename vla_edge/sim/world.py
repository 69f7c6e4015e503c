"""Scenario state: polylines, object boxes, zones, the ground raster and the :class:`World`.

Everything is 2.5-D: objects are oriented boxes standing on a flat ground plane (z = 0),
poses are in the odom frame of the scenario (x east-ish, y north-ish, z up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vla_edge.errors import VlaEdgeError

if TYPE_CHECKING:
    from vla_edge.sim.agents import Agent
    from vla_edge.sim.ego import EgoVehicle


class SimError(VlaEdgeError):
    """The simulator got an invalid scenario, configuration or planner output."""


def wrap_angle(a: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to ``[-pi, pi)``."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


class Polyline:
    """A 2-D polyline with arc length, headings, interpolation and Frenet projection.

    Args:
        xy: ``(N, 2)`` vertices, N >= 2, consecutive vertices distinct.
    """

    def __init__(self, xy: np.ndarray) -> None:
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 2:
            raise SimError(f"a polyline needs N >= 2 points of (x, y), got shape {xy.shape}")
        seg = np.diff(xy, axis=0)
        seglen = np.hypot(seg[:, 0], seg[:, 1])
        keep = np.concatenate([[True], seglen > 1e-9])
        if not keep.all():
            xy = xy[keep]
            seg = np.diff(xy, axis=0)
            seglen = np.hypot(seg[:, 0], seg[:, 1])
        if len(xy) < 2:
            raise SimError("a polyline needs at least two distinct points")
        self.xy = xy
        self.seg = seg
        self.seglen = seglen
        self.s = np.concatenate([[0.0], np.cumsum(seglen)])
        self.seg_yaw = np.arctan2(seg[:, 1], seg[:, 0])
        yaw = np.concatenate([self.seg_yaw, self.seg_yaw[-1:]])
        self.yaw = np.unwrap(yaw)

    @property
    def length(self) -> float:
        """Total arc length in metres."""
        return float(self.s[-1])

    def interp(self, s: np.ndarray | float) -> np.ndarray:
        """Poses ``(..., 3)`` (x, y, yaw) at arc lengths ``s`` (clamped to the ends)."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        x = np.interp(s, self.s, self.xy[:, 0])
        y = np.interp(s, self.s, self.xy[:, 1])
        idx = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.seg_yaw) - 1)
        return np.stack([x, y, self.seg_yaw[idx]], axis=-1)

    def project(
        self, pts: np.ndarray, s_lo: float | None = None, s_hi: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frenet coordinates of points: arc length ``s`` and signed lateral offset ``d`` (left +).

        Args:
            pts: ``(P, 2)`` points.
            s_lo: Only segments ending after this arc length are searched.
            s_hi: Only segments starting before this arc length are searched.

        Returns:
            ``(s, d)`` arrays of length P. Beyond the ends ``s`` extrapolates along the end segment.
        """
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        i0, i1 = 0, len(self.seg)
        if s_lo is not None:
            i0 = int(np.clip(np.searchsorted(self.s, s_lo, side="right") - 1, 0, len(self.seg) - 1))
        if s_hi is not None:
            i1 = int(np.clip(np.searchsorted(self.s, s_hi, side="left") + 1, i0 + 1, len(self.seg)))
        a = self.xy[i0:i1]
        v = self.seg[i0:i1]
        ll = self.seglen[i0:i1]
        rel = pts[:, None, :] - a[None, :, :]
        u = (rel[..., 0] * v[None, :, 0] + rel[..., 1] * v[None, :, 1]) / (ll * ll)[None, :]
        uc = np.clip(u, 0.0, 1.0)
        if i0 == 0:  # extrapolate before the start ...
            uc[:, 0] = np.minimum(u[:, 0], 1.0)
        if i1 == len(self.seg):  # ... and beyond the end
            uc[:, -1] = np.maximum(u[:, -1], 0.0 if len(v) > 1 else uc[:, -1])
        dx = rel[..., 0] - uc * v[None, :, 0]
        dy = rel[..., 1] - uc * v[None, :, 1]
        dist2 = dx * dx + dy * dy
        k = np.argmin(dist2, axis=1)
        rows = np.arange(len(pts))
        uk = uc[rows, k]
        s = self.s[i0 + k] + uk * ll[k]
        cross = v[k, 0] * rel[rows, k, 1] - v[k, 1] * rel[rows, k, 0]
        d = cross / ll[k]
        return s, d

    def offset(self, d: np.ndarray | float) -> Polyline:
        """A polyline shifted laterally by ``d`` (scalar or per vertex, left +)."""
        d = np.broadcast_to(np.asarray(d, dtype=np.float64), (len(self.xy),))
        normal = np.stack([-np.sin(self.yaw), np.cos(self.yaw)], axis=1)
        # Vertex normals from the averaged neighbouring headings keep offsets smooth in turns.
        ang = np.empty(len(self.xy))
        ang[0] = self.seg_yaw[0]
        ang[-1] = self.seg_yaw[-1]
        if len(self.seg_yaw) > 1:
            y = np.unwrap(self.seg_yaw)
            ang[1:-1] = 0.5 * (y[:-1] + y[1:])
        normal = np.stack([-np.sin(ang), np.cos(ang)], axis=1)
        return Polyline(self.xy + normal * d[:, None])

    def reversed(self) -> Polyline:
        """The same polyline traversed backwards."""
        return Polyline(self.xy[::-1].copy())

    def resample(self, step: float, s0: float = 0.0, s1: float | None = None) -> np.ndarray:
        """Points ``(M, 2)`` every ``step`` metres between ``s0`` and ``s1``."""
        s1 = self.length if s1 is None else s1
        s = np.arange(max(s0, 0.0), min(s1, self.length) + 1e-9, step)
        if len(s) < 2:
            s = np.array([max(0.0, min(s0, self.length)), min(self.length, max(s1, 0.0))])
        return self.interp(s)[:, :2]


@dataclass
class Boxes:
    """A set of oriented boxes standing on (or floating above) the ground.

    Attributes:
        xy: ``(K, 2)`` footprint centres (odom frame).
        yaw: ``(K,)`` headings.
        size: ``(K, 3)`` length, width, height.
        z0: ``(K,)`` height of the box bottom above ground.
        cls: ``(K,)`` class names.
        ids: ``(K,)`` stable integer ids (unique per scenario).
        reflectivity: ``(K,)`` LiDAR reflectivity 0..1.
        color: ``(K, 3)`` RGB uint8 for the camera.
        moving: ``(K,)`` True for bodies of agents.
        speed: ``(K, 2)`` velocity (vx, vy) in m/s.
    """

    xy: np.ndarray
    yaw: np.ndarray
    size: np.ndarray
    z0: np.ndarray
    cls: np.ndarray
    ids: np.ndarray
    reflectivity: np.ndarray
    color: np.ndarray
    moving: np.ndarray
    speed: np.ndarray

    @staticmethod
    def empty() -> Boxes:
        """No boxes."""
        return Boxes(
            np.zeros((0, 2)),
            np.zeros(0),
            np.zeros((0, 3)),
            np.zeros(0),
            np.zeros(0, dtype=object),
            np.zeros(0, dtype=np.int64),
            np.zeros(0),
            np.zeros((0, 3), dtype=np.uint8),
            np.zeros(0, dtype=bool),
            np.zeros((0, 2)),
        )

    def __len__(self) -> int:
        return len(self.yaw)

    @staticmethod
    def concat(parts: list[Boxes]) -> Boxes:
        """Concatenate box sets."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Boxes.empty()
        return Boxes(*[np.concatenate([getattr(p, f) for p in parts]) for f in Boxes.__dataclass_fields__])

    def subset(self, mask: np.ndarray) -> Boxes:
        """Boxes selected by a boolean mask or index array."""
        return Boxes(*[getattr(self, f)[mask] for f in Boxes.__dataclass_fields__])

    def corners(self, inflate: float = 0.0) -> np.ndarray:
        """Footprint corners ``(K, 4, 2)`` counter-clockwise, optionally inflated."""
        return box_corners(self.xy, self.yaw, self.size[:, 0] + 2 * inflate, self.size[:, 1] + 2 * inflate)


def box_corners(xy: np.ndarray, yaw: np.ndarray, length: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Corners ``(K, 4, 2)`` of oriented rectangles (counter-clockwise from rear-right)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
    hl = 0.5 * np.asarray(length, dtype=np.float64).reshape(-1)
    hw = 0.5 * np.asarray(width, dtype=np.float64).reshape(-1)
    local = np.stack(
        [np.stack([-hl, -hw], -1), np.stack([hl, -hw], -1), np.stack([hl, hw], -1), np.stack([-hl, hw], -1)],
        axis=1,
    )
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = local[..., 0] * c - local[..., 1] * s + xy[:, None, 0]
    y = local[..., 0] * s + local[..., 1] * c + xy[:, None, 1]
    return np.stack([x, y], axis=-1)


def rect_overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Separating-axis test of rectangles: ``a`` (4, 2) or (K, 4, 2) against ``b`` (K, 4, 2).

    Returns:
        ``(K,)`` bool, True where the rectangles overlap.
    """
    b = np.asarray(b, dtype=np.float64)
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), b.shape)
    if len(b) == 0:
        return np.zeros(0, dtype=bool)
    sep = np.zeros(len(b), dtype=bool)
    for poly in (a, b):
        for e in (0, 1):
            edge = poly[:, e + 1] - poly[:, e]
            axis = np.stack([-edge[:, 1], edge[:, 0]], axis=-1)
            pa = np.einsum("kij,kj->ki", a, axis)
            pb = np.einsum("kij,kj->ki", b, axis)
            sep |= (pa.max(1) < pb.min(1)) | (pb.max(1) < pa.min(1))
    return ~sep


@dataclass
class GroundMap:
    """Top-down raster of the ground: camera colours, LiDAR reflectivity and drivable mask.

    Attributes:
        origin: World (x, y) of pixel (0, 0)'s corner; rows grow with y, columns with x.
        res: Metres per pixel.
        rgb: ``(H, W, 3)`` uint8 ground colours.
        reflectivity: ``(H, W)`` float32 LiDAR reflectivity.
        drivable: ``(H, W)`` bool, True on road surface outside no-go zones.
        nogo: ``(H, W)`` bool, True inside jet-blast / no-go zones.
    """

    origin: np.ndarray
    res: float
    rgb: np.ndarray
    reflectivity: np.ndarray
    drivable: np.ndarray
    nogo: np.ndarray

    def pixel(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices (clipped) of world points."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        col = np.clip(((xy[:, 0] - self.origin[0]) / self.res).astype(np.int64), 0, self.rgb.shape[1] - 1)
        row = np.clip(((xy[:, 1] - self.origin[1]) / self.res).astype(np.int64), 0, self.rgb.shape[0] - 1)
        return row, col

    def inside(self, xy: np.ndarray) -> np.ndarray:
        """True for points inside the raster."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        h, w = self.drivable.shape
        return (
            (xy[:, 0] >= self.origin[0])
            & (xy[:, 0] < self.origin[0] + w * self.res)
            & (xy[:, 1] >= self.origin[1])
            & (xy[:, 1] < self.origin[1] + h * self.res)
        )

    def is_drivable(self, xy: np.ndarray) -> np.ndarray:
        """True where points lie on drivable ground (off-raster is not drivable)."""
        r, c = self.pixel(xy)
        return self.drivable[r, c] & self.inside(xy)

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """Float pixel coordinates (col, row) scaled by 8 for cv2 shift=3 drawing."""
        return np.round((np.asarray(xy) - self.origin) / self.res * 8).astype(np.int32)


@dataclass
class Marking:
    """Camera-only ground paint: not written into the LiDAR reflectivity raster.

    Attributes:
        xy: A polyline ``(N, 2)`` (stroked ``width`` wide) or, with ``width <= 0``, a polygon
            that is filled.
        width: Stroke width in m (``<= 0``: fill ``xy`` as a polygon).
        color: Key of ``camera.ground_colors``.
        wear: Fraction 0..1 of the paint worn off (blotches of the surface show through).
        off_road: Paint only outside the service road (stand markings on the apron).
    """

    xy: np.ndarray
    width: float
    color: str
    wear: float = 0.0
    off_road: bool = False


@dataclass
class StopLine:
    """A painted stop line across the ego lane (``stop_line`` family) and its rule state.

    The ego must come to a stop (speed below ``stop_speed``) with its front bumper within
    ``zone`` metres before the line and hold there for ``dwell`` seconds; then the line is
    cleared and the ego may pass. Crossing it before it is cleared is a violation.

    Attributes:
        s: Arc length of the line along the ego lane.
        dwell: Seconds the ego must hold at the line.
        zone: Metres before the line where a stop counts.
        stop_speed: m/s below which the ego counts as stopped.
        held: Seconds held so far (reset when the ego moves).
        cleared: True once the ego has held for ``dwell``.
        passed: True once the ego front crossed the line.
        violated: True when it crossed before the line was cleared.
        t_cross: Scenario time of the crossing (NaN before).
    """

    s: float
    dwell: float
    zone: float
    stop_speed: float
    held: float = 0.0
    cleared: bool = False
    passed: bool = False
    violated: bool = False
    t_cross: float = float("nan")

    def update(self, front_s: float, v: float, dt: float, t: float) -> None:
        """Advance the rule state by one step with the ego front arc length and speed."""
        if self.passed:
            return
        if front_s > self.s:
            self.passed = True
            self.violated = not self.cleared
            self.t_cross = t
        elif front_s > self.s - self.zone and v < self.stop_speed:
            self.held += dt
            self.cleared = self.cleared or self.held >= self.dwell - 1e-9
        else:
            self.held = 0.0


@dataclass
class World:
    """A scenario's full state.

    Attributes:
        cfg: The ``sim`` configuration mapping.
        family: Scenario family name.
        seed: Scenario seed.
        difficulty: Difficulty knob 0..1.
        route: Service-road centre line (two lanes, ego in the right one).
        lane: Centre line of the ego lane (the reference path).
        road_half_width: Half width of the service road in m.
        crossings: Centre lines of crossing service lanes.
        zones: Polygons ``(N, 2)`` of jet-blast / no-go zones.
        static: Static boxes (aircraft, cones, FOD, parked vehicles).
        agents: Moving agents.
        ego: The ego vehicle.
        ground: Ground raster.
        t: Scenario time in seconds since start.
        stamp0: Absolute time (s) of ``t = 0`` (header stamps are ``stamp0 + t``).
        event_s: Arc length of the family's event along ``lane`` (for reasoning / tests).
        info: Free-form facts about the scenario (for docs and tests).
        stop_lines: Painted stop lines across the ego lane with their rule state.
        markings: Camera-only ground paint (stop lines, stand markings).
    """

    cfg: dict[str, Any]
    family: str
    seed: int
    difficulty: float
    route: Polyline
    lane: Polyline
    road_half_width: float
    crossings: list[Polyline]
    zones: list[np.ndarray]
    static: Boxes
    agents: list[Agent]
    ego: EgoVehicle
    ground: GroundMap
    t: float = 0.0
    stamp0: float = 0.0
    event_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    stop_lines: list[StopLine] = field(default_factory=list)
    markings: list[Marking] = field(default_factory=list)
    _ego_s_key: tuple[float, float] | None = None
    _static_corners: np.ndarray | None = None
    _static_radius: np.ndarray | None = None

    @property
    def stamp(self) -> float:
        """Absolute time of the current state."""
        return self.stamp0 + self.t

    def agent_boxes(self) -> Boxes:
        """Boxes of every active agent body."""
        return Boxes.concat([a.boxes() for a in self.agents if a.active])

    def boxes(self) -> Boxes:
        """Every object box (static + agents) at the current time."""
        return Boxes.concat([self.static, self.agent_boxes()])

    def step(self, dt: float, accel_cmd: float, steer_cmd: float) -> None:
        """Advance agents and ego by ``dt`` with the ego commands (accel m/s^2, steer rad)."""
        ego_box = self.ego.footprint()
        ego_vel = self.ego.velocity()
        for agent in self.agents:
            others = [b for b in self.agents if b is not agent and b.active]
            agent.step(dt, self.t, ego_box, ego_vel, others, self.lane, self.ego_s())
        self.ego.step(dt, accel_cmd, steer_cmd)
        self.t += dt
        if self.stop_lines:
            front = self.ego_s() + self.ego.front_offset
            for line in self.stop_lines:
                line.update(front, self.ego.v, dt, self.t)

    def stop_line_violations(self) -> int:
        """Stop lines the ego crossed before they were cleared."""
        return sum(1 for line in self.stop_lines if line.violated)

    def ego_s(self) -> float:
        """Arc length of the ego rear axle along the ego lane."""
        key = (self.ego.x, self.ego.y)
        if self._ego_s_key == key:
            return self.ego.s_hint
        s, _ = self.lane.project(self.ego.xy()[None, :], self.ego.s_hint - 10.0, self.ego.s_hint + 10.0)
        self.ego.s_hint = float(s[0])
        self._ego_s_key = key
        return float(s[0])

    def collisions(self) -> list[tuple[int, str]]:
        """``(id, class)`` of every box overlapping the ego footprint now."""
        ego = self.ego.footprint()
        centre = ego.mean(0)
        out: list[tuple[int, str]] = []
        if self._static_corners is None:
            self._static_corners = self.static.corners()
            self._static_radius = 0.5 * np.hypot(self.static.size[:, 0], self.static.size[:, 1]) + 4.0
        if len(self.static):
            near = np.hypot(*(self.static.xy - centre).T) < self._static_radius
            if near.any():
                hit = rect_overlaps(ego, self._static_corners[near])
                idx = np.flatnonzero(near)[hit]
                out += [(int(self.static.ids[i]), str(self.static.cls[i])) for i in idx]
        for a in self.agents:
            if not a.active:
                continue
            b = a.boxes()
            near = np.hypot(*(b.xy - centre).T) < 0.5 * np.hypot(b.size[:, 0], b.size[:, 1]) + 4.0
            if near.any():
                sub = b.subset(near)
                hit = rect_overlaps(ego, sub.corners())
                out += [(int(i), str(c)) for i, c in zip(sub.ids[hit], sub.cls[hit])]
        return out

    def drivable_ok(self) -> bool:
        """True when the ego footprint (corners and edge midpoints) is on drivable ground."""
        c = self.ego.footprint()
        pts = np.concatenate([c, 0.5 * (c + np.roll(c, 1, axis=0))])
        return bool(self.ground.is_drivable(pts).all())


def build_ground(
    cfg: dict[str, Any],
    route: Polyline,
    road_half_width: float,
    crossings: list[Polyline],
    zones: list[np.ndarray],
    markings: list[Marking] | None = None,
    seed: int = 0,
) -> GroundMap:
    """Rasterise road, paint and zones around the route.

    ``markings`` (stop lines, stand lead-in lines) are painted into the camera colours only:
    the LiDAR reflectivity and the drivable mask do not change, so the LiDAR cannot see them.
    ``seed`` draws their paint wear.
    """
    rc = cfg["route"]
    res = float(rc["map_resolution"])
    margin = float(rc["map_margin"])
    pts = [route.xy] + [c.xy for c in crossings] + list(zones)
    allp = np.concatenate(pts)
    lo = allp.min(0) - margin
    hi = allp.max(0) + margin
    # Long routes: coarsen the raster so memory stays bounded (~7 bytes per pixel).
    area = float((hi[0] - lo[0]) * (hi[1] - lo[1]))
    res = max(res, float(np.sqrt(area / float(rc["map_max_pixels"]))))
    w = int(np.ceil((hi[0] - lo[0]) / res))
    h = int(np.ceil((hi[1] - lo[1]) / res))
    gm = GroundMap(
        lo,
        res,
        np.empty((h, w, 3), np.uint8),
        np.empty((h, w), np.float32),
        np.zeros((h, w), bool),
        np.zeros((h, w), bool),
    )
    colors = cfg["camera"]["ground_colors"]
    refl = cfg["ground"]
    rgb = gm.rgb
    rgb[:] = np.array(colors["concrete"], np.uint8)
    mask = np.zeros((h, w), np.uint8)
    paint = np.zeros((h, w), np.uint8)
    zone_m = np.zeros((h, w), np.uint8)

    def band(line: Polyline, half: float) -> list[np.ndarray]:
        left = line.offset(half).xy
        right = line.offset(-half).xy
        polys = []
        for i in range(len(line.xy) - 1):  # quads per segment avoid self-intersections in turns
            polys.append(gm.to_pixels(np.array([left[i], left[i + 1], right[i + 1], right[i]])))
        return polys

    cross_half = 0.5 * float(rc["crossing_width"])
    for poly in band(route, road_half_width):
        cv2.fillConvexPoly(mask, poly, 1, lineType=cv2.LINE_8, shift=3)
    for c in crossings:
        for poly in band(c, cross_half):
            cv2.fillConvexPoly(mask, poly, 1, lineType=cv2.LINE_8, shift=3)
    rgb[mask > 0] = np.array(colors["asphalt"], np.uint8)
    px_w = max(1, round(0.15 / res))
    edge_col = tuple(int(v) for v in colors["edge_paint"])
    centre_col = tuple(int(v) for v in colors["centre_paint"])
    for side in (-1.0, 1.0):
        line = gm.to_pixels(route.offset(side * (road_half_width - 0.2)).xy)
        cv2.polylines(rgb, [line], False, edge_col, px_w, cv2.LINE_8, shift=3)
        cv2.polylines(paint, [line], False, 1, px_w, cv2.LINE_8, shift=3)
    # Dashed yellow centre line: 3 m paint, 3 m gap.
    s_all = np.arange(0.0, route.length, 0.5)
    dash = (s_all % 6.0) < 3.0
    cl = route.interp(s_all)[:, :2]
    for i in range(len(s_all) - 1):
        if dash[i] and dash[i + 1]:
            seg = gm.to_pixels(cl[i : i + 2])
            cv2.line(rgb, tuple(seg[0]), tuple(seg[1]), centre_col, px_w, cv2.LINE_8, shift=3)
            cv2.line(paint, tuple(seg[0]), tuple(seg[1]), 1, px_w, cv2.LINE_8, shift=3)
    for z in zones:
        zp = gm.to_pixels(z)
        cv2.fillPoly(zone_m, [zp], 1, cv2.LINE_8, shift=3)
    zone_col = np.array(colors["zone"], np.uint8)
    # Hatch: diagonal stripes inside zones, solid border.
    zr, zc = np.nonzero(zone_m)
    on = ((zr + zc) // max(1, int(1.0 / res))) % 2 == 0
    zsel = np.zeros((h, w), bool)
    zsel[zr[on], zc[on]] = True
    rgb[zsel] = zone_col
    for z in zones:
        cv2.polylines(
            rgb, [gm.to_pixels(z)], True, tuple(int(v) for v in zone_col), px_w * 2, cv2.LINE_8, shift=3
        )
    gm.reflectivity[:] = np.where(mask > 0, refl["asphalt"], refl["concrete"])
    gm.reflectivity[paint > 0] = refl["paint"]
    gm.reflectivity[zsel] = refl["zone_paint"]
    gm.nogo[:] = zone_m > 0
    gm.drivable[:] = (mask > 0) & ~gm.nogo
    if markings:
        _paint_markings(gm, markings, colors, mask > 0, seed)
    return gm


def _paint_markings(
    gm: GroundMap, markings: list[Marking], colors: dict[str, Any], road: np.ndarray, seed: int
) -> None:
    """Paint camera-only markings into ``gm.rgb`` (worn paint lets the surface show through)."""
    rng = np.random.default_rng([seed, 53])
    h, w = road.shape
    for m in markings:
        sel = np.zeros((h, w), np.uint8)
        pts = gm.to_pixels(np.asarray(m.xy, dtype=np.float64))
        if m.width > 0:
            px = max(1, round(m.width / gm.res))
            cv2.polylines(sel, [pts], False, 1, px, cv2.LINE_8, shift=3)
        else:
            cv2.fillPoly(sel, [pts], 1, cv2.LINE_8, shift=3)
        on = sel > 0
        if m.off_road:
            on &= ~road
        rr, cc = np.nonzero(on)
        if not len(rr):
            continue
        if m.wear > 0.0:
            # Blotchy wear: smoothed noise over the marking's bounding box, thresholded so
            # that a ``wear`` fraction of the paint is gone.
            r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
            noise = rng.random((r1 - r0, c1 - c0)).astype(np.float32)
            noise = cv2.GaussianBlur(noise, (0, 0), 1.5)
            vals = noise[rr - r0, cc - c0]
            keep = vals >= np.quantile(vals, min(1.0, m.wear))
            rr, cc = rr[keep], cc[keep]
        col = np.asarray(colors[m.color], np.float64)
        if m.wear > 0.0:  # faded: the remaining paint shifts towards the surface colour
            col = (1.0 - 0.3 * m.wear) * col + 0.3 * m.wear * gm.rgb[rr, cc].astype(np.float64)
        gm.rgb[rr, cc] = np.clip(np.round(col), 0, 255).astype(np.uint8)
