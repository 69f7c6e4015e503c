"""Vectorised spinning-LiDAR raycaster (numpy only).

Rays form a ``beams x columns`` grid (Ouster-like: ring 0 is the top beam, columns sweep
the full circle). Each frame casts every ray against the ground plane (z = 0) and the
oriented object boxes (slab test in each box's frame). Boxes are culled per column range
from their azimuth extent, so cost grows with what is visible, not with rays x boxes.
Returns get Gaussian range noise, random dropouts and an intensity from the material's
reflectivity, the incidence angle and a range fall-off. Points are expressed in the LiDAR
sensor frame given by ``config/calibration.yaml`` (mounting and frame id), exactly as a
driver would publish them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.calibration import Calibration
from vla_edge.sim.world import Boxes, GroundMap, SimError


@dataclass
class LidarScan:
    """One sweep.

    Attributes:
        points: ``(N, 4)`` float32 x, y, z, intensity in the sensor frame (returns only,
            or all rays with NaN for no return when organised).
        ring: ``(N,)`` uint16 beam index (0 = top beam).
        hit_id: ``(N,)`` int64 object id of each return (0 = ground, -1 = none), for tests.
        organized: True when ``points`` holds every ray (``beams * columns`` rows).
    """

    points: np.ndarray
    ring: np.ndarray
    hit_id: np.ndarray
    organized: bool


class Lidar:
    """A spinning LiDAR mounted on the ego.

    Args:
        cfg: The ``lidar`` config section.
        calib: Sensor extrinsics; the LiDAR is ``calib.sensor_frame("lidar")``.
        preset: A key of ``cfg["presets"]`` (``"32x1024"``, ``"128x2048"``); None = ``cfg["preset"]``.
    """

    def __init__(self, cfg: dict[str, Any], calib: Calibration, preset: str | None = None) -> None:
        name = preset or str(cfg["preset"])
        if name not in cfg["presets"]:
            raise SimError(f"unknown LiDAR preset '{name}'; choose one of {', '.join(cfg['presets'])}")
        p = cfg["presets"][name]
        self.preset = name
        self.beams = int(p["beams"])
        self.columns = int(p["columns"])
        self.cfg = cfg
        self.frame_id = calib.sensor_frame("lidar")
        self.rot, self.trans = calib.to_base(self.frame_id)
        # Publish in the configured sensor's intensity unit: the calibration's intensity_scale
        # maps it back to the 0..255 scale the student learnt (a 0..1 sensor: scale 255).
        self.intensity_unit = float(cfg["intensity_scale"]) / calib.intensity_scales.get(self.frame_id, 1.0)
        lo, hi = np.radians(np.asarray(cfg["vfov_deg"], dtype=np.float64))
        self.elev = np.linspace(hi, lo, self.beams)  # ring 0 = top beam
        self.azim = -np.pi + 2 * np.pi * (np.arange(self.columns) + 0.5) / self.columns
        ce, se = np.cos(self.elev)[:, None], np.sin(self.elev)[:, None]
        ca, sa = np.cos(self.azim)[None, :], np.sin(self.azim)[None, :]
        self.dirs = np.stack(np.broadcast_arrays(ce * ca, ce * sa, se), axis=-1).reshape(-1, 3)
        self.ring = np.repeat(np.arange(self.beams, dtype=np.uint16), self.columns)
        az_deg = np.degrees(np.tile(self.azim, self.beams))
        self.blocked = np.zeros(len(self.dirs), dtype=bool)
        for lo_deg, hi_deg in cfg["blocked_sectors"]:  # degraded sensor: dirt, a mount bracket
            self.blocked |= ((az_deg - float(lo_deg)) % 360.0) <= ((float(hi_deg) - float(lo_deg)) % 360.0)
        self.min_range = float(cfg["min_range"])
        self.max_range = float(cfg["max_range"])
        # Tilted mounts shift a box's azimuth a little per beam: widen the column cull.
        tilt = np.degrees(np.arccos(np.clip(self.rot[2, 2], -1.0, 1.0)))
        self.cull_margin = 2 + int(np.ceil(tilt / 360.0 * self.columns * 2))

    def sensor_pose(self, ego_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World rotation and origin of the sensor for an ego pose (x, y, yaw)."""
        x, y, yaw = (float(v) for v in ego_pose[:3])
        c, s = np.cos(yaw), np.sin(yaw)
        rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return rz @ self.rot, np.array([x, y, 0.0]) + rz @ self.trans

    def scan(
        self,
        ego_pose: np.ndarray,
        boxes: Boxes,
        ground: GroundMap,
        rng: np.random.Generator,
        organized: bool | None = None,
        degradation: dict[str, Any] | None = None,
    ) -> LidarScan:
        """Cast one sweep from ``ego_pose`` (x, y, yaw) against ``boxes`` and the ground.

        ``degradation`` (a scenario's ``World.info["lidar"]``) overrides ``range_noise``,
        ``dropout`` and ``blocked_sectors`` and adds rain echoes: a ``rain_clutter`` fraction
        of the beams returns from a drop at a range uniform in ``rain_range``.
        """
        cfg = self.cfg
        if degradation:
            cfg = {**cfg, **{k: v for k, v in degradation.items() if k in ("range_noise", "dropout")}}
        rw, origin = self.sensor_pose(ego_pose)
        dw = self.dirs @ rw.T
        n = len(dw)
        rng_t = np.full(n, np.inf)
        hit = np.full(n, -1, dtype=np.int64)
        refl = np.zeros(n)
        cosi = np.ones(n)
        # Ground plane.
        down = dw[:, 2] < -1e-6
        tg = np.where(down, -origin[2] / np.where(down, dw[:, 2], -1.0), np.inf)
        gsel = tg <= self.max_range
        rng_t[gsel] = tg[gsel]
        hit[gsel] = 0
        gxy = origin[:2] + dw[gsel, :2] * tg[gsel, None]
        r, c = ground.pixel(gxy)
        refl[gsel] = ground.reflectivity[r, c]
        cosi[gsel] = -dw[gsel, 2]
        # Boxes, culled by range and azimuth.
        if len(boxes):
            self._boxes(boxes, origin, rw, dw, rng_t, hit, refl, cosi)
        valid = (rng_t >= self.min_range) & (rng_t <= self.max_range)
        valid &= rng.random(n) >= float(cfg["dropout"])
        blocked = self.blocked
        if degradation:
            rain = rng.random(n) < float(degradation.get("rain_clutter", 0.0))
            if rain.any():
                lo, hi = degradation.get("rain_range", [2.0, 15.0])
                r_rain = rng.uniform(float(lo), float(hi), n)
                drop = rain & (r_rain < rng_t)
                rng_t = np.where(drop, r_rain, rng_t)
                refl = np.where(drop, 0.05, refl)
                valid |= drop & (r_rain >= self.min_range)
            if degradation.get("blocked_sectors"):
                az = np.degrees(np.tile(self.azim, self.beams))
                blocked = blocked.copy()
                for lo_deg, hi_deg in degradation["blocked_sectors"]:
                    blocked |= ((az - float(lo_deg)) % 360.0) <= ((float(hi_deg) - float(lo_deg)) % 360.0)
        valid &= ~blocked
        vi = np.flatnonzero(valid)
        r_v = rng_t[vi]
        noisy = r_v + rng.normal(0.0, float(cfg["range_noise"]), len(vi))
        falloff = 1.0 / (1.0 + (r_v / float(cfg["intensity_falloff"])) ** 2)
        inten = refl[vi] * (0.3 + 0.7 * np.clip(cosi[vi], 0.0, 1.0)) * falloff
        inten = np.clip(inten + rng.normal(0.0, float(cfg["intensity_noise"]), len(vi)), 0.0, 1.0)
        inten *= self.intensity_unit
        org = bool(cfg["organized"]) if organized is None else organized
        if org:
            pts = np.full((n, 4), np.nan, dtype=np.float32)
            pts[vi, :3] = self.dirs[vi] * noisy[:, None]
            pts[vi, 3] = inten
            return LidarScan(pts, self.ring.copy(), np.where(valid, hit, -1), True)
        pts = np.empty((len(vi), 4), dtype=np.float32)
        pts[:, :3] = self.dirs[vi] * noisy[:, None]
        pts[:, 3] = inten
        return LidarScan(pts, self.ring[valid], hit[valid], False)

    def _boxes(
        self,
        boxes: Boxes,
        origin: np.ndarray,
        rw: np.ndarray,
        dw: np.ndarray,
        rng_t: np.ndarray,
        hit: np.ndarray,
        refl: np.ndarray,
        cosi: np.ndarray,
    ) -> None:
        """Slab-test every (box, candidate ray) pair at once; keep the nearest hit per ray."""
        rel = boxes.xy - origin[:2]
        dist = np.hypot(rel[:, 0], rel[:, 1])
        radius = 0.5 * np.hypot(boxes.size[:, 0], boxes.size[:, 1])
        near = np.flatnonzero(dist - radius < self.max_range)
        if not len(near):
            return
        corners = boxes.corners()
        yaw_s = np.arctan2(rw[1, 0], rw[0, 0])  # sensor heading in the world
        C = self.columns
        col_w = 2 * np.pi / C
        beam_w = abs(self.elev[0] - self.elev[-1]) / max(self.beams - 1, 1)
        tilt = np.arccos(np.clip(rw[2, 2], -1.0, 1.0))
        rays_l: list[np.ndarray] = []
        box_l: list[np.ndarray] = []
        for k in near:
            inside = dist[k] <= radius[k] + 0.5
            if inside:
                cols = np.arange(C)
                e_lo, e_hi = -np.pi / 2, np.pi / 2
            else:
                cr = corners[k] - origin[:2]
                centre = np.arctan2(rel[k, 1], rel[k, 0]) - yaw_s
                dev = (np.arctan2(cr[:, 1], cr[:, 0]) - yaw_s - centre + np.pi) % (2 * np.pi) - np.pi
                i_lo = int(np.floor((centre + dev.min() + np.pi) / col_w)) - self.cull_margin
                i_hi = int(np.ceil((centre + dev.max() + np.pi) / col_w)) + self.cull_margin
                cols = np.arange(i_lo, i_hi + 1) % C
                z_lo = boxes.z0[k] - origin[2]
                z_hi = z_lo + boxes.size[k, 2]
                d_min = max(dist[k] - radius[k], 0.1)
                d_max = dist[k] + radius[k]
                e_lo = min(np.arctan2(z_lo, d_min), np.arctan2(z_lo, d_max)) - tilt - beam_w
                e_hi = max(np.arctan2(z_hi, d_min), np.arctan2(z_hi, d_max)) + tilt + beam_w
            beams = np.flatnonzero((self.elev >= e_lo) & (self.elev <= e_hi))
            if not len(beams) or not len(cols):
                continue
            idx = (beams[:, None] * C + cols[None, :]).reshape(-1)
            rays_l.append(idx)
            box_l.append(np.full(len(idx), k))
        if not rays_l:
            return
        ray = np.concatenate(rays_l)
        bk = np.concatenate(box_l)
        d = dw[ray]
        cb, sb = np.cos(boxes.yaw[bk]), np.sin(boxes.yaw[bk])
        ox = origin[0] - boxes.xy[bk, 0]
        oy = origin[1] - boxes.xy[bk, 1]
        oz = origin[2] - (boxes.z0[bk] + 0.5 * boxes.size[bk, 2])
        ob = np.stack([cb * ox + sb * oy, -sb * ox + cb * oy, oz], axis=1)
        db = np.stack([cb * d[:, 0] + sb * d[:, 1], -sb * d[:, 0] + cb * d[:, 1], d[:, 2]], axis=1)
        half = 0.5 * boxes.size[bk]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / db
            t1 = (-half - ob) * inv
            t2 = (half - ob) * inv
        tn = np.fmin(t1, t2)  # fmin/fmax skip the NaN of 0 * inf (ray parallel to a slab face)
        tf = np.fmax(t1, t2)
        t_in = tn.max(1)
        t_out = tf.min(1)
        ok = (t_out >= t_in) & (t_in > 0.0) & (t_in < rng_t[ray])
        if not ok.any():
            return
        ray, bk, t_in, tn, db = ray[ok], bk[ok], t_in[ok], tn[ok], db[ok]
        order = np.lexsort((t_in, ray))  # nearest first within each ray
        ray, bk, t_in, tn, db = ray[order], bk[order], t_in[order], tn[order], db[order]
        first = np.concatenate([[True], ray[1:] != ray[:-1]])
        ray, bk, t_in, tn, db = ray[first], bk[first], t_in[first], tn[first], db[first]
        rng_t[ray] = t_in
        hit[ray] = boxes.ids[bk]
        refl[ray] = boxes.reflectivity[bk]
        axis = np.argmax(tn, axis=1)
        cosi[ray] = np.abs(db[np.arange(len(ray)), axis])
