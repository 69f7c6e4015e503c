"""Obstacles from one LiDAR sweep: ground removal, occupancy grid, clusters, inflation.

Pipeline (all vectorised numpy, no scipy):

1. crop to the region of interest (``obstacles.roi``);
2. ground removal by a coarse grid-min-z estimate: a point is an obstacle when it is more
   than ``height_threshold`` above its cell's lowest point; the local ground is never assumed
   higher than ``nominal_z + nominal_tolerance`` (so the top of a box whose cell holds no
   ground return still counts), and points above ``max_height`` (wings, canopies) are ignored;
3. occupancy grid of obstacle points (``grid.resolution``, ``grid.min_points``);
4. 8-connected components of the occupied cells (union-find with pointer jumping on the
   grid-hash edge list);
5. inflation (after tracking has marked moving clusters): static cells are dilated by the
   footprint circle radius plus ``inflation.margin``, so a plan collides when one of its
   footprint circle centres lands in an inflated cell.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import PlanningError


@dataclass(frozen=True)
class Footprint:
    """Vehicle footprint as circles along the base_link x axis.

    Attributes:
        offsets: ``[K]`` x positions (m) of the circle centres in base_link.
        radius: Circle radius (m) that covers the body rectangle.
    """

    offsets: np.ndarray
    radius: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Footprint:
        """Build from ``vehicle.yaml`` and ``obstacles.inflation.n_circles``."""
        veh = require(cfg, "vehicle", where="vehicle.yaml")
        k = int(require(cfg, "obstacles", "inflation", "n_circles", where="obstacles.yaml"))
        length = float(require(veh, "length"))
        width = float(require(veh, "width"))
        rear = float(require(veh, "base_link_to_rear"))
        half = length / (2 * k)
        offsets = -rear + half * (2 * np.arange(k) + 1)
        return cls(offsets=offsets, radius=float(np.hypot(width / 2, half)))

    def centres(self, x: np.ndarray, y: np.ndarray, yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Circle centres for poses of any shape S: returns two ``[*S, K]`` arrays."""
        # float32 is plenty for a 0.2 m grid lookup and makes cos/sin ~10x faster.
        yaw32 = np.asarray(yaw, dtype=np.float32)
        off = self.offsets.astype(np.float32)
        c, s = np.cos(yaw32)[..., None], np.sin(yaw32)[..., None]
        x32 = np.asarray(x, dtype=np.float32)[..., None]
        y32 = np.asarray(y, dtype=np.float32)[..., None]
        return x32 + c * off, y32 + s * off


@dataclass(frozen=True)
class ObstacleParams:
    """Parameters from ``obstacles.yaml`` (see the YAML for units)."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    self_box: tuple[float, float, float, float]
    ground_cell: float
    nominal_z: float
    nominal_tolerance: float
    height_threshold: float
    max_height: float
    resolution: float
    min_points: int
    min_cells: int
    cluster_min_points: int
    margin: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ObstacleParams:
        """Build from the merged config (``{"obstacles": {...}}``)."""
        o = require(cfg, "obstacles", where="obstacles.yaml")
        return cls(
            x_min=float(require(o, "roi", "x_min")),
            x_max=float(require(o, "roi", "x_max")),
            y_min=float(require(o, "roi", "y_min")),
            y_max=float(require(o, "roi", "y_max")),
            self_box=tuple(float(require(o, "self_box", k)) for k in ("x_min", "y_min", "x_max", "y_max")),
            ground_cell=float(require(o, "ground", "cell_size")),
            nominal_z=float(require(o, "ground", "nominal_z")),
            nominal_tolerance=float(require(o, "ground", "nominal_tolerance")),
            height_threshold=float(require(o, "ground", "height_threshold")),
            max_height=float(require(o, "ground", "max_height")),
            resolution=float(require(o, "grid", "resolution")),
            min_points=int(require(o, "grid", "min_points")),
            min_cells=int(require(o, "clusters", "min_cells")),
            cluster_min_points=int(require(o, "clusters", "min_points")),
            margin=float(require(o, "inflation", "margin")),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Occupancy grid shape (rows along y, cols along x)."""
        return (
            int(np.ceil((self.y_max - self.y_min) / self.resolution)),
            int(np.ceil((self.x_max - self.x_min) / self.resolution)),
        )


@dataclass
class Obstacles:
    """Obstacles of one sweep in the ego frame at ``stamp``.

    Attributes:
        stamp: Sweep stamp in seconds.
        origin: ``(x_min, y_min)`` of the grid in metres.
        resolution: Cell size in metres.
        occupied: ``[H, W]`` raw occupancy.
        cell_label: ``[H, W]`` cluster index per cell, -1 when free.
        centroids: ``[M, 2]`` cluster centroids (m).
        radii: ``[M]`` radius (m) around the centroid covering every cell of the cluster.
        extents: ``[M, 4]`` (x_min, y_min, x_max, y_max) in metres.
        n_points: ``[M]`` obstacle points per cluster.
        velocities: ``[M, 2]`` absolute velocity in ego axes (m/s), from tracking.
        moving: ``[M]`` True when the cluster is predicted at constant velocity.
        track_ids: ``[M]`` track ids from tracking (-1 when untracked).
        velocity_std: ``[M]`` velocity standard deviation per axis (m/s) from the Kalman tracks.
        hits: ``[M]`` associations of the cluster's track so far.
        heights: ``[M]`` highest obstacle point above the local ground (m).
        bottoms: ``[M]`` lowest obstacle point above the local ground (m; wings, fuselages float).
        classes: ``[M]`` ``person`` / ``aircraft`` / ``object`` (``rules.classify``).
        growth: ``[M]`` rate (m/s) the predicted occupancy grows by (``prediction.annotate``).
        sweep: ``[M]`` True: crossing hypothesis (may stop anywhere along its way).
        predicted: ``[M]`` True: in the predicted occupancy, not the static grid.
        pred_velocities: ``[M, 2]`` velocities the prediction extrapolates (lane following).
        inflated: ``[H, W]`` static cells dilated by ``inflation_radius`` (after ``inflate``).
        inflation_radius: Dilation radius in metres.
        counts: Point counts by stage (``input``, ``roi``, ``obstacle``).
    """

    stamp: float
    origin: tuple[float, float]
    resolution: float
    occupied: np.ndarray
    cell_label: np.ndarray
    centroids: np.ndarray
    radii: np.ndarray
    extents: np.ndarray
    n_points: np.ndarray
    velocities: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    moving: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    velocity_std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    heights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bottoms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    growth: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sweep: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    predicted: np.ndarray | None = None
    pred_velocities: np.ndarray | None = None
    clearance: dict[str, float] = field(default_factory=dict)
    inflated: np.ndarray | None = None
    inflation_radius: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.centroids)
        if len(self.velocities) != m:
            self.velocities = np.zeros((m, 2))
        if len(self.moving) != m:
            self.moving = np.zeros(m, dtype=bool)
        if len(self.track_ids) != m:
            self.track_ids = -np.ones(m, dtype=np.int64)
        if len(self.velocity_std) != m:
            self.velocity_std = np.zeros(m)
        if len(self.hits) != m:
            self.hits = np.zeros(m, dtype=np.int64)
        if len(self.heights) != m:
            self.heights = np.full(m, np.inf)
        if len(self.bottoms) != m:
            self.bottoms = np.zeros(m)
        if len(self.classes) != m:
            self.classes = np.full(m, "object", dtype=object)
        if len(self.growth) != m:
            self.growth = np.zeros(m)
        if len(self.sweep) != m:
            self.sweep = np.zeros(m, dtype=bool)
        self._static: np.ndarray | None = None
        self._grids: dict[float, np.ndarray] = {}
        self._codes: dict[tuple[float, ...], np.ndarray] = {}

    @property
    def n_clusters(self) -> int:
        """Number of clusters."""
        return len(self.centroids)

    def inflate(self, radius: float) -> None:
        """Build :attr:`inflated` from the cells of the non-moving clusters."""
        self.inflation_radius = float(radius)
        pred = self.moving if self.predicted is None else self.predicted
        static = self.occupied.copy()
        if np.any(pred):
            static &= ~np.isin(self.cell_label, np.flatnonzero(pred))
        self._static = static
        self._grids = {}
        self._codes = {}
        self.inflated = dilate(static, radius / self.resolution)
        # Per-class minimum clearance (rules.yaml-style, arbiter.yaml rules.clearance): the
        # cells of e.g. aircraft or standing crew are dilated further.
        for cls, extra in self.clearance.items():
            sel = np.flatnonzero((self.classes == cls) & ~pred)
            if extra > 0.0 and len(sel):
                cells = static & np.isin(self.cell_label, sel)
                self.inflated |= dilate(cells, (radius + extra) / self.resolution)

    def grid(self, extra: float = 0.0) -> np.ndarray:
        """Static grid inflated by ``inflation_radius + extra`` metres (cached per ``extra``)."""
        if self.inflated is None:
            raise PlanningError("Obstacles.inflate() must run before collision lookups")
        if extra <= 0.0:
            return self.inflated
        key = round(float(extra), 3)
        if key not in self._grids:  # grow the inflated grid by the extra only: a small disc
            self._grids[key] = dilate(self.inflated, key / self.resolution)
        return self._grids[key]

    def occupied_at(self, x: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
        """Lookup of ``grid`` (default: inflated static grid) at points; outside the grid is free."""
        g = self.inflated if grid is None else grid
        if g is None:
            raise PlanningError("Obstacles.inflate() must run before collision lookups")
        return self._lookup(np.pad(g, 1), x, y).astype(bool)

    def codes_at(self, x: np.ndarray, y: np.ndarray, extras: tuple[float, ...]) -> np.ndarray:
        """Bit ``i`` of the result is set where the static grid inflated by ``extras[i]`` is occupied.

        One lookup answers several clearances at once (collision and TTC buffer).
        """
        key = tuple(round(float(e), 3) for e in extras)
        code = self._codes.get(key)
        if code is None:
            code = np.zeros_like(self.occupied, dtype=np.uint8)
            for i, e in enumerate(key):
                code |= self.grid(e).astype(np.uint8) << i
            code = np.pad(code, 1)  # free border: out-of-grid lookups land here
            self._codes[key] = code
        return self._lookup(code, x, y)

    def _lookup(self, padded: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        h, w = padded.shape
        inv = np.float32(1.0 / self.resolution)
        x0, y0 = np.float32(self.origin[0]), np.float32(self.origin[1])
        # fmin/fmax map NaN and everything outside the grid onto the free border cells.
        ix = np.fmax(np.fmin((x - x0) * inv + 1, w - 1), 0).astype(np.int32)
        iy = np.fmax(np.fmin((y - y0) * inv + 1, h - 1), 0).astype(np.int32)
        iy *= np.int32(w)
        iy += ix
        return padded.ravel()[iy]

    def moving_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centroids, velocities and radii of the moving clusters only."""
        m = self.moving
        return self.centroids[m], self.velocities[m], self.radii[m]

    def predicted_mask(self) -> np.ndarray:
        """Clusters in the predicted occupancy (moving, or uncertain per ``prediction.annotate``)."""
        return self.moving if self.predicted is None else self.predicted

    def moving_capsules(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Moving clusters as capsules containing their cells: centre, half axis, radius, velocity.

        The capsule of an axis-aligned box with half extents ``a >= b`` has its axis along the
        long side, half length ``a`` and radius ``b``: it contains the whole box (a corner is
        ``b`` from the axis end) and is exactly as wide as the box, so a vehicle passing in the
        next lane is not widened sideways (the ends overshoot by ``b`` instead); unlike the
        disc round the centroid it does not spread a long vehicle's length sideways.

        Returns:
            ``(centre [M, 2], half_axis [M, 2], radius [M], velocity [M, 2])``.
        """
        m = self.predicted_mask()
        v_all = self.velocities if self.pred_velocities is None else self.pred_velocities
        ext, vel = self.extents[m], v_all[m]
        centre = 0.5 * (ext[:, :2] + ext[:, 2:])
        half = 0.5 * (ext[:, 2:] - ext[:, :2])  # [M, 2] half extents along x, y
        along_x = half[:, 0] >= half[:, 1]
        a, b = half.max(axis=1), half.min(axis=1)
        axis = np.zeros_like(half)
        axis[along_x, 0] = a[along_x]
        axis[~along_x, 1] = a[~along_x]
        return centre, axis, b, vel

    def summary(self, max_clusters: int = 200) -> dict[str, Any]:
        """JSON-safe description for markers, metrics and the decision record."""
        k = min(self.n_clusters, max_clusters)
        return {
            "stamp": float(self.stamp),
            "n_clusters": int(self.n_clusters),
            "n_moving": int(np.count_nonzero(self.moving)),
            "occupied_cells": int(np.count_nonzero(self.occupied)),
            "counts": {key: int(v) for key, v in self.counts.items()},
            "inflation_radius": float(self.inflation_radius),
            "clusters": [
                {
                    "centroid": [round(float(v), 3) for v in self.centroids[i]],
                    "radius": round(float(self.radii[i]), 3),
                    "velocity": [round(float(v), 3) for v in self.velocities[i]],
                    "moving": bool(self.moving[i]),
                    "track_id": int(self.track_ids[i]),
                    "n_points": int(self.n_points[i]),
                }
                for i in range(k)
            ],
        }


def dilate(grid: np.ndarray, radius_cells: float) -> np.ndarray:
    """Binary dilation of ``grid`` by a disc of ``radius_cells`` (cells within the radius).

    Sparse grids stamp the disc around each boundary cell; denser ones (real scans) use the
    disc's row decomposition: one 1-D dilation per distinct row half-width (a cumulative-sum
    window, O(cells)) OR-ed in at each row offset, about 4x faster on a street scan than
    stamping. Both give exactly the disc ``dx^2 + dy^2 <= radius_cells^2`` (tested).
    """
    r = int(np.ceil(radius_cells))
    out = grid.copy()
    if r <= 0 or not grid.any():
        return out
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    keep = dx**2 + dy**2 <= radius_cells**2
    dy, dx = dy[keep], dx[keep]
    h, w = grid.shape
    if np.count_nonzero(grid) * len(dy) > (h * w) // 8:
        return _dilate_rows(grid, out, radius_cells, r)
    # Only boundary cells need their disc stamped: the disc of a cell whose 4 neighbours are
    # occupied is covered by theirs (for radii >= 1 cell).
    inner = grid.copy()
    inner[1:, :] &= grid[:-1, :]
    inner[:-1, :] &= grid[1:, :]
    inner[:, 1:] &= grid[:, :-1]
    inner[:, :-1] &= grid[:, 1:]
    inner[0, :] = inner[-1, :] = False
    inner[:, 0] = inner[:, -1] = False
    iy, ix = np.nonzero(grid & ~inner if radius_cells >= 1.0 else grid)
    yy = (iy[:, None] + dy[None, :]).ravel()
    xx = (ix[:, None] + dx[None, :]).ravel()
    ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    out[yy[ok], xx[ok]] = True
    return out


def _dilate_rows(grid: np.ndarray, out: np.ndarray, radius_cells: float, r: int) -> np.ndarray:
    """Disc dilation as row spans: OR of 1-D dilations (half-width k(dy)) shifted by dy."""
    h, w = grid.shape
    r2 = radius_cells**2
    cs = np.zeros((h, w + 2 * r + 1), dtype=np.int32)  # cs[:, j] = cells before j (padded by r)
    np.cumsum(grid, axis=1, out=cs[:, r + 1 : r + 1 + w])
    cs[:, r + 1 + w :] = cs[:, r + w : r + w + 1]
    rows: dict[int, np.ndarray] = {}
    for dy in range(-r, r + 1):
        if dy * dy > r2:
            continue
        k = int(np.floor(np.sqrt(r2 - dy * dy)))  # largest k with k^2 + dy^2 <= r^2
        while (k + 1) ** 2 + dy * dy <= r2:
            k += 1
        while k > 0 and k * k + dy * dy > r2:
            k -= 1
        if k not in rows:  # any cell within [x - k, x + k] of the row
            rows[k] = (cs[:, r + k + 1 : r + k + 1 + w] - cs[:, r - k : r - k + w]) > 0
        row = rows[k]
        if dy >= 0:
            out[dy:] |= row[: h - dy]
        else:
            out[:dy] |= row[-dy:]
    return out


def connected_components(occupied: np.ndarray) -> np.ndarray:
    """8-connected component labels of ``occupied`` (-1 where free), labels 0..M-1."""
    h, w = occupied.shape
    flat = occupied.ravel()
    idx = np.flatnonzero(flat)
    labels_grid = -np.ones(h * w, dtype=np.int64)
    if len(idx) == 0:
        return labels_grid.reshape(h, w)
    node = np.full(h * w, -1, dtype=np.int64)
    node[idx] = np.arange(len(idx))
    node2 = node.reshape(h, w)
    ea, eb = [], []
    for oy, ox in ((0, 1), (1, -1), (1, 0), (1, 1)):  # half neighbourhood: each edge once
        y0, y1 = 0, h - oy
        x0, x1 = max(0, -ox), w - max(0, ox)
        a = node2[y0:y1, x0:x1]
        b = node2[y0 + oy : y1 + oy, x0 + ox : x1 + ox]
        both = (a >= 0) & (b >= 0)
        ea.append(a[both])
        eb.append(b[both])
    a, b = np.concatenate(ea), np.concatenate(eb)
    lab = np.arange(len(idx))
    while len(a):
        la, lb = lab[a], lab[b]
        diff = la != lb
        if not diff.any():
            break
        a, b, la, lb = a[diff], b[diff], la[diff], lb[diff]
        np.minimum.at(lab, np.maximum(la, lb), np.minimum(la, lb))  # hook larger root onto smaller
        while True:  # pointer jumping to full compression
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    _, compact = np.unique(lab, return_inverse=True)
    labels_grid[idx] = compact
    return labels_grid.reshape(h, w)


@functools.lru_cache(maxsize=8)
def _cell_tables(p: ObstacleParams) -> tuple[np.ndarray, int, np.ndarray]:
    """Ground cell of every fine cell, number of ground cells, fine cells of the self box."""
    h, w = p.shape
    iy, ix = np.divmod(np.arange(h * w), w)
    cx = p.x_min + (ix + 0.5) * p.resolution
    cy = p.y_min + (iy + 0.5) * p.resolution
    gw = int(np.ceil((p.x_max - p.x_min) / p.ground_cell))
    gh = int(np.ceil((p.y_max - p.y_min) / p.ground_cell))
    gx = np.minimum(((cx - p.x_min) / p.ground_cell).astype(np.int32), gw - 1)
    gy = np.minimum(((cy - p.y_min) / p.ground_cell).astype(np.int32), gh - 1)
    sx0, sy0, sx1, sy1 = p.self_box
    body = np.flatnonzero((cx > sx0) & (cx < sx1) & (cy > sy0) & (cy < sy1))
    return (gy * gw + gx).astype(np.int32), gh * gw, body


def extract_obstacles(points: np.ndarray, stamp: float, params: ObstacleParams) -> Obstacles:
    """Ground removal, occupancy grid and clusters of one sweep (see module docstring).

    Args:
        points: ``[N, >=3]`` points in base_link (x, y, z, ...); non-finite rows are ignored.
        stamp: Sweep stamp in seconds.
        params: Obstacle parameters.

    Returns:
        :class:`Obstacles` (not yet inflated; call :meth:`Obstacles.inflate`).

    Raises:
        PlanningError: When ``points`` is not an N x 3+ array.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise PlanningError(f"LiDAR points must be N x 3+ (x, y, z, ...), got shape {pts.shape}")
    p = params
    h, w = p.shape
    inv = np.float32(1.0 / p.resolution)
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    # Fine-grid cell of every point; one unsigned compare per axis does both ROI bounds, and
    # NaN/Inf coordinates land far outside (the int conversion of NaN is negative).
    with np.errstate(invalid="ignore"):
        ix = ((x - np.float32(p.x_min)) * inv).astype(np.int32)
        iy = ((y - np.float32(p.y_min)) * inv).astype(np.int32)
    roi = (ix.view(np.uint32) < w) & (iy.view(np.uint32) < h) & (z < np.float32(p.nominal_z + p.max_height))
    iy *= np.int32(w)
    iy += ix  # flat fine-cell index
    cell, z = iy[roi], z[roi].astype(np.float32, copy=False)
    ground_of_cell, n_ground, body_cells = _cell_tables(p)
    gid = ground_of_cell[cell]  # table lookup instead of two integer divisions per point
    gmin = np.full(n_ground, np.inf, dtype=np.float32)
    np.minimum.at(gmin, gid, z)
    ground = np.minimum(gmin, np.float32(p.nominal_z + p.nominal_tolerance))
    obst = z - ground[gid] > p.height_threshold
    counts = np.bincount(cell[obst], minlength=h * w)
    cell_h = np.zeros(h * w, dtype=np.float32)  # highest obstacle point per cell (classification)
    np.maximum.at(cell_h, cell[obst], z[obst] - ground[gid[obst]])
    cell_b = np.full(h * w, np.inf, dtype=np.float32)  # lowest obstacle point per cell
    np.minimum.at(cell_b, cell[obst], z[obst] - ground[gid[obst]])
    counts[body_cells] = 0  # the ego's own body (above ground, so it never lowers gmin)
    occupied = (counts >= p.min_points).reshape(h, w)
    labels = connected_components(occupied)
    lab_flat = labels.ravel()
    cells = np.flatnonzero(lab_flat >= 0)
    m = int(lab_flat.max()) + 1 if len(cells) else 0
    if m:
        cl = lab_flat[cells]
        ccx = p.x_min + (cells % w + 0.5) * p.resolution
        ccy = p.y_min + (cells // w + 0.5) * p.resolution
        wts = counts[cells].astype(np.float64)
        npts = np.bincount(cl, weights=wts, minlength=m)
        ncell = np.bincount(cl, minlength=m)
        cen = np.stack([np.bincount(cl, ccx * wts, m), np.bincount(cl, ccy * wts, m)], axis=1) / npts[:, None]
        ext = np.full((m, 4), np.inf)
        ext[:, 2:] = -np.inf
        np.minimum.at(ext[:, 0], cl, ccx - 0.5 * p.resolution)
        np.minimum.at(ext[:, 1], cl, ccy - 0.5 * p.resolution)
        np.maximum.at(ext[:, 2], cl, ccx + 0.5 * p.resolution)
        np.maximum.at(ext[:, 3], cl, ccy + 0.5 * p.resolution)
        hgt = np.zeros(m)
        np.maximum.at(hgt, cl, cell_h[cells])
        bot = np.full(m, np.inf)
        np.minimum.at(bot, cl, cell_b[cells])
        rad = np.zeros(m)
        dist = np.hypot(ccx - cen[cl, 0], ccy - cen[cl, 1]) + p.resolution * 0.7072
        np.maximum.at(rad, cl, dist)
        keep = (ncell >= p.min_cells) & (npts >= p.cluster_min_points)  # drops rain echoes
        if not keep.all():
            remap = -np.ones(m, dtype=np.int64)
            remap[keep] = np.arange(int(keep.sum()))
            lab_flat = np.where(lab_flat >= 0, remap[np.maximum(lab_flat, 0)], -1)
            occupied = (lab_flat >= 0).reshape(h, w)
            labels = lab_flat.reshape(h, w)
            cen, rad, ext, npts, hgt, bot = cen[keep], rad[keep], ext[keep], npts[keep], hgt[keep], bot[keep]
    else:
        cen, rad, ext, npts = np.zeros((0, 2)), np.zeros(0), np.zeros((0, 4)), np.zeros(0)
        hgt, bot = np.zeros(0), np.zeros(0)
    return Obstacles(
        stamp=float(stamp),
        origin=(p.x_min, p.y_min),
        resolution=p.resolution,
        occupied=occupied,
        cell_label=labels,
        centroids=cen,
        radii=rad,
        extents=ext,
        n_points=npts.astype(np.int64),
        heights=hgt,
        bottoms=bot,
        counts={"input": len(pts), "roi": len(z), "obstacle": int(np.count_nonzero(obst))},
    )
