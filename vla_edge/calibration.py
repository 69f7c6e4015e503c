"""Sensor extrinsics and the cloud -> ``base_link`` transform.

Extrinsics come from ``config/calibration.yaml`` (xyz + roll/pitch/yaw per sensor, each
with the ``frame_id`` values its driver uses). On a vehicle, ``/tf_static`` overrides
them: tf2 cannot be installed from the wheels here, so instead of a tf2 buffer the node
feeds each static transform to :meth:`Calibration.set_from_tf` (or a whole
``tf2_msgs/TFMessage`` to :meth:`Calibration.apply_tf_message`). Chains such as
``base_link -> roof_mount -> lidar`` are resolved by walking parents up to the base frame.

A frame id that resolves to nothing raises :class:`FrameError`; it is never silently
treated as identity. The base frame itself is the identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import ConfigError, FrameError


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """3 x 3 rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (fixed-axis XYZ, as URDF and tf)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3 x 3 rotation of a quaternion ``(x, y, z, w)``; normalised first.

    Raises:
        FrameError: Zero or non-finite quaternion.
    """
    q = np.array([x, y, z, w], dtype=np.float64)
    n = float(np.linalg.norm(q))
    if not math.isfinite(n) or n < 1e-9:
        raise FrameError(f"rotation quaternion ({x}, {y}, {z}, {w}) is zero or not finite")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass(frozen=True)
class Extrinsic:
    """Transform from ``child`` to ``parent``: ``p_parent = rotation @ p_child + translation``.

    Attributes:
        parent: Parent frame id.
        child: Child (sensor) frame id.
        rotation: 3 x 3 rotation matrix.
        translation: 3-vector in metres.
        source: ``"config"`` or ``"tf"``.
    """

    parent: str
    child: str
    rotation: np.ndarray
    translation: np.ndarray
    source: str = "config"

    def matrix(self) -> np.ndarray:
        """4 x 4 homogeneous transform."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a camera image (pixel ``i`` spans ``[i, i + 1)``, so ``cx = width / 2``
    is the image centre and a resize by ``s`` scales ``fx, cx`` (``fy, cy``) by ``s``).

    Attributes:
        width: Image width the intrinsics belong to [px].
        height: Image height [px].
        fx: Focal length along u [px].
        fy: Focal length along v [px].
        cx: Principal point u [px].
        cy: Principal point v [px].
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        """3 x 3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The intrinsics of this image resized (whole, no crop) to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(int(width), int(height), self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)


class Calibration:
    """Extrinsics of every sensor relative to the base frame.

    Args:
        base_frame: Frame every cloud is transformed into (``base_link``).
        extrinsics: Transforms keyed by child frame id.
        sensors: Sensor name -> its main frame id (e.g. ``"lidar" -> "lidar"``).
    """

    def __init__(
        self,
        base_frame: str,
        extrinsics: dict[str, Extrinsic],
        sensors: dict[str, str],
        crop_boxes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        intrinsics: dict[str, Intrinsics] | None = None,
        intensity_scales: dict[str, float] | None = None,
    ) -> None:
        self.base_frame = base_frame
        #: Camera intrinsics keyed by sensor name (``"camera_front"``); tf does not change them.
        self.intrinsics: dict[str, Intrinsics] = dict(intrinsics or {})
        self._edges: dict[str, Extrinsic] = dict(extrinsics)
        self.sensors = dict(sensors)
        # Self-return crop boxes (sensor frame) keyed by frame id: the vehicle's own body.
        self.crop_boxes: dict[str, tuple[np.ndarray, np.ndarray]] = dict(crop_boxes or {})
        # LiDAR intensity multipliers keyed by frame id: each sensor's unit -> the student's scale
        self.intensity_scales: dict[str, float] = dict(intensity_scales or {})
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], preset: str | None = None) -> Calibration:
        """Build from the ``config/calibration.yaml`` mapping.

        Args:
            cfg: The ``calibration.yaml`` mapping.
            preset: Name under ``mounting_presets`` whose xyz/rpy/crop_box/intensity_scale replace
                those of ``sensors.lidar``; None = the file's ``lidar_preset`` ("" = none).

        Raises:
            ConfigError: Missing keys or an unknown preset.
            FrameError: A sensor has malformed xyz/rpy/crop_box.
        """
        base = str(require(cfg, "base_frame", where="calibration.yaml"))
        sensors_cfg = dict(require(cfg, "sensors", where="calibration.yaml"))
        name = str(cfg.get("lidar_preset", "") or "") if preset is None else preset
        if name:
            sensors_cfg["lidar"] = apply_preset(cfg, name)
        edges: dict[str, Extrinsic] = {}
        sensors: dict[str, str] = {}
        crops: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        intrinsics: dict[str, Intrinsics] = {}
        scales: dict[str, float] = {}
        for name, sec in sensors_cfg.items():
            where = f"calibration.yaml sensors.{name}"
            box = _crop_box(sec.get("crop_box"), where)
            if sec.get("intrinsics") is not None:
                intrinsics[str(name)] = _intrinsics(sec["intrinsics"], where)
            frame_ids = [str(f) for f in require(sec, "frame_ids", where=where)]
            xyz = np.asarray(require(sec, "xyz", where=where), dtype=np.float64)
            rpy = np.asarray(require(sec, "rpy", where=where), dtype=np.float64)
            if (
                xyz.shape != (3,)
                or rpy.shape != (3,)
                or not np.all(np.isfinite(np.r_[xyz, rpy]))
                or not frame_ids
            ):
                raise FrameError(
                    f"{where}: need frame_ids (non-empty) and finite xyz [m] and rpy [rad] of 3 values"
                )
            rot = rpy_to_matrix(*rpy)
            raw_scale = sec.get("intensity_scale", 1.0)
            try:
                scale = float(raw_scale)
            except (TypeError, ValueError):
                scale = float("nan")
            if not (np.isfinite(scale) and scale > 0):
                raise FrameError(f"{where}.intensity_scale: need a finite number > 0, got {raw_scale!r}")
            for fid in frame_ids:
                edges[fid] = Extrinsic(base, fid, rot, xyz)
                if box is not None:
                    crops[fid] = box
                if scale != 1.0:
                    scales[fid] = scale
            sensors[str(name)] = frame_ids[0]
        return cls(base, edges, sensors, crops, intrinsics, scales)

    # ------------------------------------------------------------------ overrides

    def set_from_tf(
        self,
        parent_frame: str,
        child_frame: str,
        translation: tuple[float, float, float] | np.ndarray,
        rotation_xyzw: tuple[float, float, float, float] | np.ndarray,
    ) -> None:
        """Override (or add) the transform of ``child_frame`` from a tf2 static transform.

        Semantics follow ``geometry_msgs/TransformStamped``: ``header.frame_id`` is the
        parent, ``child_frame_id`` the child, and the transform maps child coordinates
        into the parent. Chains are allowed; they must end at the base frame.

        Args:
            parent_frame: ``header.frame_id`` of the transform.
            child_frame: ``child_frame_id``.
            translation: Child origin in the parent frame [m].
            rotation_xyzw: Child orientation in the parent frame, quaternion ``(x, y, z, w)``.

        Raises:
            FrameError: Non-finite translation, bad quaternion, or child == base frame.
        """
        if child_frame == self.base_frame:
            raise FrameError(f"cannot set a transform for the base frame '{self.base_frame}' itself")
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(t)):
            raise FrameError(f"tf {parent_frame} -> {child_frame}: translation {t.tolist()} is not finite")
        rot = quaternion_to_matrix(*np.asarray(rotation_xyzw, dtype=np.float64).reshape(4))
        self._edges[child_frame] = Extrinsic(parent_frame, child_frame, rot, t, source="tf")
        self._cache.clear()

    def apply_tf_message(self, msg: Any) -> int:
        """Apply every transform of a ``tf2_msgs/TFMessage`` (rclpy or rosbags); returns the count."""
        n = 0
        for tf in msg.transforms:
            tr, q = tf.transform.translation, tf.transform.rotation
            self.set_from_tf(tf.header.frame_id, tf.child_frame_id, (tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
            n += 1
        return n

    # ------------------------------------------------------------------ queries

    def known_frames(self) -> list[str]:
        """Every frame id that resolves (the base frame included)."""
        return sorted({self.base_frame, *self._edges})

    def to_base(self, frame_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(R, t)`` mapping ``frame_id`` coordinates into the base frame.

        Raises:
            FrameError: Unknown frame id, a chain that does not reach the base frame, or a cycle.
        """
        hit = self._cache.get(frame_id)
        if hit is not None:
            return hit
        rot, trans = np.eye(3), np.zeros(3)
        seen = []
        fid = frame_id
        while fid != self.base_frame:
            edge = self._edges.get(fid)
            if edge is None:
                chain = " -> ".join([*seen, fid])
                via = f" (chain {chain})" if seen else ""
                known = ", ".join(self.known_frames())
                raise FrameError(
                    f"unknown frame_id '{fid}'{via}; no transform to '{self.base_frame}'. "
                    f"Known frames: {known}. "
                    "Add it to config/calibration.yaml (sensors.<name>.frame_ids) or publish it on /tf_static"
                )
            if fid in seen:
                raise FrameError(f"transform cycle through '{fid}' ({' -> '.join(seen)})")
            seen.append(fid)
            rot, trans = edge.rotation @ rot, edge.rotation @ trans + edge.translation
            fid = edge.parent
        self._cache[frame_id] = (rot, trans)
        return rot, trans

    def matrix(self, frame_id: str) -> np.ndarray:
        """4 x 4 transform from ``frame_id`` into the base frame."""
        rot, trans = self.to_base(frame_id)
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = rot, trans
        return m

    def sensor_frame(self, sensor: str) -> str:
        """Main frame id of a named sensor (``"lidar"``, ``"camera_front"``)."""
        try:
            return self.sensors[sensor]
        except KeyError:
            raise FrameError(
                f"unknown sensor '{sensor}'; configured: {', '.join(sorted(self.sensors))}"
            ) from None

    def camera_intrinsics(self, sensor: str) -> Intrinsics:
        """Intrinsics of camera ``sensor`` (``sensors.<sensor>.intrinsics`` of calibration.yaml).

        Raises:
            FrameError: The sensor has no intrinsics configured.
        """
        try:
            return self.intrinsics[sensor]
        except KeyError:
            raise FrameError(
                f"camera '{sensor}' has no intrinsics; add sensors.{sensor}.intrinsics "
                "(width, height, fx, fy, cx, cy) to config/calibration.yaml"
            ) from None

    def crop_self_returns(self, points: np.ndarray, frame_id: str) -> np.ndarray:
        """Drop the points of ``frame_id``'s cloud inside its self-return crop box (sensor frame).

        As Autoware's ``crop_box_filter`` (negative) for the vehicle body: roof, mirrors and
        the sensor housing would otherwise be obstacles right on the ego. Returns the input
        when the frame has no crop box.
        """
        box = self.crop_boxes.get(frame_id)
        if box is None:
            return points
        pts = _as_points(points)
        lo, hi = _exact_bounds(*box, pts.dtype)
        # x first: the box is small, so the full test runs on a few candidates only (at 210k
        # points the 6-comparison pass over every point was ~10 ms a sweep per process).
        x = pts[:, 0]
        cand = np.flatnonzero((x >= lo[0]) & (x <= hi[0]))
        if cand.size == 0:
            return pts
        sub = pts[cand, :3]
        drop = cand[np.all((sub >= lo) & (sub <= hi), axis=1)]
        if drop.size == 0:
            return pts
        keep = np.ones(len(pts), dtype=bool)
        keep[drop] = False
        return np.compress(keep, pts, axis=0)

    def cloud_to_base(self, points: np.ndarray, frame_id: str) -> np.ndarray:
        """A sensor-frame cloud as the planner sees it: self-returns cropped, then in the base
        frame with its intensity on the student's scale (:meth:`cropped_to_base`)."""
        return self.cropped_to_base(self.crop_self_returns(points, frame_id), frame_id)

    def cropped_to_base(self, cropped: np.ndarray, frame_id: str) -> np.ndarray:
        """An already cropped sensor cloud in the base frame, intensity (column 3) times the
        sensor's ``intensity_scale``.

        The student learnt intensities on the simulator's 0..255 scale, and its output follows
        their absolute size: fed KITTI-style 0..1 reflectance, the shipped student collided in 8
        of 10 simulated scenarios (docs/training.md). Each LiDAR's calibration says how its
        unit maps to that scale (``sensors.lidar.intensity_scale``, mounting presets).
        """
        pts = self.transform_points(cropped, frame_id)
        scale = self.intensity_scales.get(frame_id, 1.0)
        if scale != 1.0 and pts.shape[1] > 3:
            if pts is cropped:  # the base frame itself: never scale the caller's array
                pts = pts.copy()
            pts[:, 3] *= pts.dtype.type(scale) if pts.dtype.kind == "f" else scale
        return pts

    def transform_points(self, points: np.ndarray, frame_id: str) -> np.ndarray:
        """Map N x k points (x, y, z first; other columns kept) from ``frame_id`` into the base frame.

        Returns the input array itself when ``frame_id`` is the base frame, else a new array
        of the same dtype.

        Raises:
            FrameError: Unknown frame id (never a silent identity) or a bad array shape.
        """
        pts = _as_points(points)
        if frame_id == self.base_frame:
            return pts
        rot, trans = self.to_base(frame_id)
        dt = pts.dtype if pts.dtype.kind == "f" else np.float64
        out = np.empty(pts.shape, dtype=dt)
        # 3 x 3 @ 3 x N: one BLAS call over the transposed view, half the time of N x 3 @ 3 x 3
        xyz = rot.astype(dt) @ pts[:, :3].T.astype(dt, copy=False)
        xyz += trans.astype(dt)[:, None]
        out[:, :3] = xyz.T
        out[:, 3:] = pts[:, 3:]
        return out

    def from_base_points(self, points: np.ndarray, frame_id: str) -> np.ndarray:
        """Inverse of :meth:`transform_points` (base frame -> ``frame_id``), e.g. for simulators."""
        pts = _as_points(points)
        if frame_id == self.base_frame:
            return pts
        rot, trans = self.to_base(frame_id)
        dt = pts.dtype if pts.dtype.kind == "f" else np.float64
        out = pts.astype(dt, copy=True)
        out[:, :3] = (pts[:, :3] - trans.astype(dt)) @ rot.astype(dt)
        return out


def _exact_bounds(lo: np.ndarray, hi: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``lo``/``hi`` in ``dtype`` (float32 clouds compare without upcasting), rounded inwards so
    that ``x >= lo_t`` and ``x <= hi_t`` hold for exactly the ``x`` of that dtype that satisfy the
    float64 bounds; non-float clouds keep float64 bounds."""
    dt = np.dtype(dtype)
    lo64, hi64 = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if dt.kind != "f" or dt.itemsize >= 8:
        return lo64, hi64
    lo_t, hi_t = lo64.astype(dt), hi64.astype(dt)
    lo_t = np.where(lo_t < lo64, np.nextafter(lo_t, dt.type(np.inf)), lo_t).astype(dt)
    hi_t = np.where(hi_t > hi64, np.nextafter(hi_t, dt.type(-np.inf)), hi_t).astype(dt)
    return lo_t, hi_t


def _as_points(points: np.ndarray) -> np.ndarray:
    """``points`` as an N x k array with k >= 3 (x, y, z first).

    Raises:
        FrameError: Any other shape.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise FrameError(f"points must be N x k with k >= 3, got shape {pts.shape}")
    return pts


def mounting_presets(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``mounting_presets`` section of ``calibration.yaml`` (empty when absent)."""
    presets = cfg.get("mounting_presets") or {}
    if not isinstance(presets, dict):
        raise ConfigError(
            "calibration.yaml mounting_presets: must be a mapping of name -> {xyz, rpy, crop_box}"
        )
    return presets


def apply_preset(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """``sensors.lidar`` of ``cfg`` with xyz/rpy/crop_box/intensity_scale replaced by preset ``name``.

    Raises:
        ConfigError: Unknown preset name.
    """
    presets = mounting_presets(cfg)
    if name not in presets:
        raise ConfigError(
            f"calibration.yaml: unknown mounting preset '{name}' (key lidar_preset or preset=); "
            f"known: {', '.join(sorted(presets)) or 'none'}"
        )
    lidar = dict(require(cfg, "sensors", "lidar", where="calibration.yaml"))
    for key in ("xyz", "rpy", "crop_box"):
        if key in presets[name]:
            lidar[key] = presets[name][key]
    lidar["intensity_scale"] = presets[name].get("intensity_scale", 1.0)  # the preset's sensor's unit
    return lidar


def _intrinsics(raw: Any, where: str) -> Intrinsics:
    """``{width, height, fx, fy, cx, cy}`` -> :class:`Intrinsics`."""
    try:
        k = Intrinsics(
            int(raw["width"]), int(raw["height"]), float(raw["fx"]), float(raw["fy"]),
            float(raw["cx"]), float(raw["cy"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise FrameError(f"{where}.intrinsics: need width, height [px] and fx, fy, cx, cy [px]") from None
    vals = np.array([k.fx, k.fy, k.cx, k.cy])
    if k.width < 1 or k.height < 1 or not np.all(np.isfinite(vals)) or k.fx <= 0 or k.fy <= 0:
        raise FrameError(f"{where}.intrinsics: width/height must be >= 1 and fx, fy finite and > 0")
    return k


def _crop_box(raw: Any, where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``{min: [x, y, z], max: [x, y, z]}`` -> (lo, hi); None when absent or empty (min == max)."""
    if raw is None:
        return None
    try:
        lo = np.asarray(raw["min"], dtype=np.float64)
        hi = np.asarray(raw["max"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise FrameError(f"{where}.crop_box: need min: [x, y, z] and max: [x, y, z] in metres") from None
    if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(np.r_[lo, hi])) or np.any(lo > hi):
        raise FrameError(f"{where}.crop_box: min and max must be 3 finite values [m] with min <= max")
    if np.all(lo == hi):
        return None
    return lo, hi
