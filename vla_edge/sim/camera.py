"""Pinhole front camera: ground by homography, objects as shaded parts (OpenCV).

The ground is flat, so the ground raster (asphalt, concrete, lane paint, zone hatching and
the camera-only markings: stop lines, stand lead-in lines and stop bars) maps into the image
by one homography (``cv2.warpPerspective``); pixels whose rays do not reach the ground ahead
are sky. Objects are drawn face by face with ``cv2.fillPoly``, far to near (painter's
algorithm), back faces culled, faces clipped at the near plane and shaded by their normal
against a fixed light. Mounting and frame id come from ``config/calibration.yaml``
(``camera_front``, optical frame: z forward, x right, y down).

The camera shows what the LiDAR cannot: every class has its colour
(``camera.class_colors``) and a shape of its own, made of parts inside the class's box
(:data:`PARTS`, detail colours in ``camera.detail_colors``): ground crew in a hi-vis vest
with a reflective band over dark trousers and a helmet, cones tapering with a reflective
collar, tugs and fuel trucks with a cab and windows on a dark chassis, carts on a chassis,
aircraft with a cheat line and window band (engines dark, the fin in livery) and barriers in
red and white stripes. The parts only change the image: the LiDAR still sees the class's box.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from vla_edge.calibration import Calibration
from vla_edge.sim.world import Boxes, GroundMap

# Box faces as corner indices (corners 0-3 bottom, 4-7 top, counter-clockwise seen from outside).
_FACES = np.array([[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]])
_NEAR = 0.2

#: Camera-only parts per class, inside the class's box: ``(x0, x1, width, z0, z1, scale0,
#: scale1, colour)`` with x from the rear (0) to the front (1) and z from the bottom (0) to the
#: top (1) as fractions of the box, the width as a fraction of the box width, the footprint
#: scale at the part's bottom and top (a taper: cones) and the colour ``"base"`` (the box's
#: class colour) or a ``camera.detail_colors`` key. A class not listed is drawn as one box.
PARTS: dict[str, list[tuple[float, float, float, float, float, float, float, str]]] = {
    "crew": [
        (0.1, 0.9, 0.8, 0.0, 0.47, 1.0, 1.0, "crew_legs"),
        (0.0, 1.0, 1.0, 0.47, 0.62, 1.0, 1.0, "base"),  # hi-vis vest
        (0.0, 1.0, 1.0, 0.62, 0.69, 1.0, 1.0, "reflective"),  # reflective band
        (0.0, 1.0, 1.0, 0.69, 0.83, 1.0, 1.0, "base"),
        (0.2, 0.8, 0.5, 0.83, 1.0, 1.0, 1.0, "crew_head"),
    ],
    "cone": [
        (0.0, 1.0, 1.0, 0.0, 0.06, 1.0, 1.0, "base"),  # square foot
        (0.1, 0.9, 0.8, 0.06, 0.45, 1.0, 0.6, "base"),
        (0.1, 0.9, 0.8, 0.45, 0.65, 0.6, 0.44, "reflective"),
        (0.1, 0.9, 0.8, 0.65, 1.0, 0.44, 0.15, "base"),
    ],
    "tug": [
        (0.0, 1.0, 1.0, 0.0, 0.25, 1.0, 1.0, "chassis"),
        (0.0, 1.0, 1.0, 0.25, 0.55, 1.0, 1.0, "base"),
        (0.0, 0.45, 0.95, 0.55, 0.75, 1.0, 1.0, "base"),  # cab at the rear
        (0.0, 0.45, 0.95, 0.75, 0.92, 1.0, 1.0, "glass"),
        (0.0, 0.45, 0.95, 0.92, 1.0, 1.0, 1.0, "base"),
    ],
    "baggage_cart": [
        (0.0, 1.0, 1.0, 0.0, 0.25, 1.0, 1.0, "chassis"),
        (0.03, 0.97, 0.96, 0.25, 1.0, 1.0, 1.0, "base"),
    ],
    "fuel_truck": [
        (0.0, 1.0, 1.0, 0.0, 0.2, 1.0, 1.0, "chassis"),
        (0.0, 0.76, 0.95, 0.2, 0.95, 1.0, 1.0, "base"),  # tank
        (0.78, 1.0, 1.0, 0.2, 0.55, 1.0, 1.0, "base"),  # cab at the front
        (0.78, 1.0, 1.0, 0.55, 0.78, 1.0, 1.0, "glass"),
        (0.78, 1.0, 1.0, 0.78, 0.86, 1.0, 1.0, "base"),
    ],
    "aircraft_fuselage": [
        (0.0, 1.0, 1.0, 0.0, 0.45, 1.0, 1.0, "base"),
        (0.0, 1.0, 1.0, 0.45, 0.53, 1.0, 1.0, "livery"),  # cheat line
        (0.04, 0.96, 1.0, 0.58, 0.66, 1.0, 1.0, "glass"),  # window band
        (0.0, 0.04, 1.0, 0.53, 1.0, 1.0, 1.0, "base"),
        (0.96, 1.0, 1.0, 0.53, 1.0, 1.0, 1.0, "base"),
        (0.04, 0.96, 1.0, 0.53, 0.58, 1.0, 1.0, "base"),
        (0.04, 0.96, 1.0, 0.66, 1.0, 1.0, 1.0, "base"),
    ],
    "aircraft_engine": [(0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, "chassis")],
    "aircraft_fin": [(0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, "livery")],
    "barrier": [
        (k / 5, (k + 1) / 5, 1.0, 0.0, 1.0, 1.0, 1.0, "reflective" if k % 2 else "base") for k in range(5)
    ],
}
_ONE_BOX = [(0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, "base")]
#: Fuselage boxes shorter than this (m) are engine nacelles (the builder reuses the class).
_ENGINE_LENGTH = 8.0


class Camera:
    """The front camera.

    Args:
        cfg: The ``camera`` config section.
        calib: Extrinsics; the camera is ``calib.sensor_frame("camera_" + cfg["name"])``.
    """

    def __init__(self, cfg: dict[str, Any], calib: Calibration) -> None:
        self.cfg = cfg
        self.name = str(cfg["name"])
        self.frame_id = calib.sensor_frame(f"camera_{self.name}")
        self.rot, self.trans = calib.to_base(self.frame_id)  # optical -> base_link
        self.w = int(cfg["width"])
        self.h = int(cfg["height"])
        f = 0.5 * self.w / np.tan(0.5 * np.radians(float(cfg["hfov_deg"])))
        self.K = np.array([[f, 0.0, 0.5 * self.w], [0.0, f, 0.5 * self.h], [0.0, 0.0, 1.0]])
        self.max_depth = float(cfg["max_depth"])
        self.sky = np.array(cfg["sky_color"], np.uint8)
        light = np.asarray(cfg["light_dir"], dtype=np.float64)
        self.light = light / np.linalg.norm(light)
        self.border = tuple(int(v) for v in cfg["ground_colors"]["concrete"])
        self.details = {k: np.asarray(v, np.float64) for k, v in cfg["detail_colors"].items()}
        # Sky mask: pixel rays (in base_link, level ego) that do not point down enough to
        # meet the ground within max_depth.
        u, v = np.meshgrid(np.arange(self.w) + 0.5, np.arange(self.h) + 0.5)
        rays = np.stack([(u - self.K[0, 2]) / f, (v - self.K[1, 2]) / f, np.ones_like(u)], axis=-1)
        rb = rays @ self.rot.T
        horiz = np.hypot(rb[..., 0], rb[..., 1])
        height = self.trans[2]
        self.sky_mask = ~(
            (rb[..., 2] < 0) & (height * horiz / np.maximum(-rb[..., 2], 1e-9) < self.max_depth)
        )

    def world_to_cam(self, ego_pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(R, t)`` with ``p_cam = R @ p_world + t`` for an ego pose (x, y, yaw)."""
        x, y, yaw = (float(v) for v in ego_pose[:3])
        c, s = np.cos(yaw), np.sin(yaw)
        r_wb = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        r_wc = r_wb @ self.rot
        o_wc = np.array([x, y, 0.0]) + r_wb @ self.trans
        r = r_wc.T
        return r, -r @ o_wc

    def render(self, ego_pose: np.ndarray, boxes: Boxes, ground: GroundMap) -> np.ndarray:
        """RGB ``(H, W, 3)`` uint8 image seen from the ego pose."""
        r, t = self.world_to_cam(ego_pose)
        # Ground homography: map pixel (u, v) -> world (ox + res u, oy + res v, 0) -> image.
        a = np.array(
            [[ground.res, 0.0, ground.origin[0]], [0.0, ground.res, ground.origin[1]], [0.0, 0.0, 1.0]]
        )
        hmat = self.K @ np.column_stack([r[:, 0], r[:, 1], t]) @ a
        img = cv2.warpPerspective(
            ground.rgb,
            hmat,
            (self.w, self.h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=self.border,
        )
        img[self.sky_mask] = self.sky
        if len(boxes):
            self._draw_boxes(img, boxes, r, t, ego_pose)
        return img

    def _parts(self, b: Boxes) -> tuple[np.ndarray, np.ndarray]:
        """Corners ``(P, 8, 3)`` (bottom 0-3, top 4-7) and RGB ``(P, 3)`` of every box's parts."""
        kinds = b.cls.astype(str)
        kinds = np.where(
            (kinds == "aircraft_fuselage") & (b.size[:, 0] < _ENGINE_LENGTH), "aircraft_engine", kinds
        )
        kinds = np.where((kinds == "aircraft_wing") & (b.size[:, 2] > b.size[:, 1]), "aircraft_fin", kinds)
        corners: list[np.ndarray] = []
        colors: list[np.ndarray] = []
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
        for kind in np.unique(kinds):
            idx = np.flatnonzero(kinds == kind)
            parts = np.array([p[:7] for p in PARTS.get(str(kind), _ONE_BOX)])  # (Q, 7)
            ln, wd, ht = (b.size[idx, i][:, None] for i in range(3))  # (n, 1)
            x0, x1, wf, z0, z1, sc0, sc1 = (parts[None, :, i] for i in range(7))  # (1, Q)
            cx = (0.5 * (x0 + x1) - 0.5) * ln  # (n, Q)
            hx = ((x1 - x0) * ln)[..., None] * unit[:, 0]  # (n, Q, 4)
            hy = (wf * wd)[..., None] * unit[:, 1]
            c, s = np.cos(b.yaw[idx])[:, None, None], np.sin(b.yaw[idx])[:, None, None]
            rows = []
            for sc, zf in ((sc0, z0), (sc1, z1)):
                lx = cx[..., None] + hx * sc[..., None]
                ly = hy * sc[..., None]
                wx = b.xy[idx, 0][:, None, None] + c * lx - s * ly
                wy = b.xy[idx, 1][:, None, None] + s * lx + c * ly
                wz = np.broadcast_to((b.z0[idx][:, None] + zf * ht)[..., None], wx.shape)
                rows.append(np.stack([wx, wy, wz], -1))  # (n, Q, 4, 3)
            corners.append(np.concatenate(rows, axis=2).reshape(-1, 8, 3))
            base = b.color[idx].astype(np.float64)[:, None, :]  # (n, 1, 3)
            det = np.array([self.details.get(p[7], np.zeros(3)) for p in PARTS.get(str(kind), _ONE_BOX)])
            is_base = np.array([p[7] == "base" for p in PARTS.get(str(kind), _ONE_BOX)])[None, :, None]
            colors.append(np.where(is_base, base, det[None]).reshape(-1, 3))
        return np.concatenate(corners), np.concatenate(colors)

    def _draw_boxes(
        self, img: np.ndarray, boxes: Boxes, r: np.ndarray, t: np.ndarray, ego_pose: np.ndarray
    ) -> None:
        rel = boxes.xy - np.asarray(ego_pose[:2])
        dist = np.hypot(rel[:, 0], rel[:, 1]) - 0.5 * np.hypot(boxes.size[:, 0], boxes.size[:, 1])
        keep = dist < self.max_depth
        if not keep.any():
            return
        corners, colors = self._parts(boxes.subset(keep))
        cam = corners @ r.T + t  # (K, 8, 3)
        if not (cam[..., 2] > _NEAR).any():
            return
        cam_origin = -r.T @ t
        faces_w = corners[:, _FACES]  # (K, 6, 4, 3)
        centre = faces_w.mean(2)
        e1 = faces_w[:, :, 1] - faces_w[:, :, 0]
        e2 = faces_w[:, :, 3] - faces_w[:, :, 0]
        normal = np.cross(e1, e2)
        normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-9)
        visible = np.einsum("kfi,kfi->kf", normal, cam_origin - centre) > 0
        shade = 0.45 + 0.55 * np.clip(normal @ self.light, 0.0, 1.0)
        fc = cam[:, _FACES].reshape(-1, 4, 3)  # (K * 6, 4, 3)
        depth = fc[..., 2].mean(-1)
        order = np.argsort(-depth)
        order = order[visible.reshape(-1)[order] & (fc[order, :, 2] >= _NEAR).any(-1)]
        # Faces wholly in front of the near plane are projected in one batch; the rest are clipped.
        front = (fc[order, :, 2] >= _NEAR).all(-1)
        uv = fc[order] @ self.K.T
        px_all = uv[..., :2] / np.where(front[:, None, None], uv[..., 2:3], 1.0)
        cols = np.clip(colors[order // 6] * shade.reshape(-1)[order, None], 0, 255).astype(np.int64)
        lim = np.array([self.w, self.h], np.float64)
        off = ((px_all < 0).all(1) | (px_all > lim).all(1)).any(-1) & front
        pts_all = np.round(np.clip(px_all, -4 * self.w, 4 * self.w) * 8).astype(np.int32)
        for j in np.flatnonzero(~off):
            if front[j]:
                pts = pts_all[j]
            else:
                poly = _clip_near(fc[order[j]])
                if poly is None:
                    continue
                q = poly @ self.K.T
                px = q[:, :2] / q[:, 2:3]
                if ((px < 0).all(0) | (px > lim).all(0)).any():
                    continue
                pts = np.round(np.clip(px, -4 * self.w, 4 * self.w) * 8).astype(np.int32)
            c = cols[j]
            col = (int(c[0]), int(c[1]), int(c[2]))
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA, shift=3)
            cv2.polylines(img, [pts], True, (int(c[0] * 0.6), int(c[1] * 0.6), int(c[2] * 0.6)), 1,
                          cv2.LINE_AA, shift=3)  # fmt: skip


def _clip_near(poly: np.ndarray) -> np.ndarray | None:
    """Sutherland-Hodgman clip of a camera-frame polygon against z >= near."""
    z = poly[:, 2]
    if (z >= _NEAR).all():
        return poly
    if (z < _NEAR).all():
        return None
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ina, inb = a[2] >= _NEAR, b[2] >= _NEAR
        if ina:
            out.append(a)
        if ina != inb:
            s = (_NEAR - a[2]) / (b[2] - a[2])
            out.append(a + s * (b - a))
    return np.array(out) if len(out) >= 3 else None
