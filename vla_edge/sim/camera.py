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
        corners: list[np.ndarray] = []
        colors: list[np.ndarray] = []
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
        for k in range(len(b)):
            cls = str(b.cls[k])
            ln, wd, ht = (float(v) for v in b.size[k])
            if cls == "aircraft_fuselage" and ln < _ENGINE_LENGTH:
                cls = "aircraft_engine"
            elif cls == "aircraft_wing" and ht > wd:
                cls = "aircraft_fin"
            parts = PARTS.get(cls, [(0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, "base")])
            c, s = np.cos(b.yaw[k]), np.sin(b.yaw[k])
            rot = np.array([[c, -s], [s, c]])
            base = b.color[k].astype(np.float64)
            for x0, x1, wf, z0, z1, sc0, sc1, col in parts:
                cx = (0.5 * (x0 + x1) - 0.5) * ln
                half = unit * np.array([(x1 - x0) * ln, wf * wd])
                lo = (np.array([cx, 0.0]) + half * sc0) @ rot.T + b.xy[k]
                hi = (np.array([cx, 0.0]) + half * sc1) @ rot.T + b.xy[k]
                za = float(b.z0[k]) + z0 * ht
                zb = float(b.z0[k]) + z1 * ht
                bottom = np.column_stack([lo, np.full(4, za)])
                corners.append(np.concatenate([bottom, np.column_stack([hi, np.full(4, zb)])]))
                colors.append(base if col == "base" else self.details[col])
        return np.array(corners), np.array(colors)

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
        fc = cam[:, _FACES]  # (K, 6, 4, 3)
        depth = fc[..., 2].mean(-1)
        order = np.argsort(-depth, axis=None)
        for flat in order:
            ki, fi = divmod(int(flat), 6)
            if not visible[ki, fi]:
                continue
            poly = _clip_near(fc[ki, fi])
            if poly is None:
                continue
            uv = poly @ self.K.T
            px = uv[:, :2] / uv[:, 2:3]
            if (
                np.all(px[:, 0] < 0)
                or np.all(px[:, 0] > self.w)
                or np.all(px[:, 1] < 0)
                or np.all(px[:, 1] > self.h)
            ):
                continue
            pts = np.round(np.clip(px, -4 * self.w, 4 * self.w) * 8).astype(np.int32)
            col = tuple(int(v) for v in np.clip(colors[ki] * shade[ki, fi], 0, 255))
            cv2.fillPoly(img, [pts], col, cv2.LINE_AA, shift=3)
            edge = tuple(int(v * 0.6) for v in col)
            cv2.polylines(img, [pts], True, edge, 1, cv2.LINE_AA, shift=3)


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
