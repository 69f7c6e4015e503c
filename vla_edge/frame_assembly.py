"""Build one :class:`~vla_edge.types.Frame` per LiDAR sweep from buffered inputs.

:class:`FrameAssembler` is fed odometry, the reference path and camera images as they
arrive, and turns each PointCloud2 into a Frame:

1. the cloud -> N x 4 float32 (NaN/Inf dropped), transformed into ``base_link`` with the
   calibration (an unknown ``frame_id`` raises :class:`FrameError`);
2. the ego state interpolated (or briefly extrapolated) to the sweep stamp;
3. the reference path (odom frame) expressed in the ego frame at that stamp and clipped
   by arc length from ``behind_m`` behind the ego to ``lookahead_m`` ahead of it;
4. the camera image nearest the sweep stamp per camera, decoded to RGB;
5. ``ages`` (sweep stamp - input stamp, seconds; negative = input newer than the sweep)
   and ``stale`` (inputs whose ``|age|`` exceeds ``max_age_s``, odometry that could not
   be moved to the stamp, a missing or empty path, an image that failed to decode).

Stale inputs are *flagged*, not dropped: the planner and the arbiter decide what to do.
Only two things raise: no odometry at all yet, and inputs whose frames cannot be related
(unknown cloud frame id, a path not in the odometry frame).

Messages are duck-typed, so rclpy messages and rosbags-deserialized messages (replay,
dataset building) give identical frames. Parameters: ``config/frame.yaml`` and
``config/calibration.yaml``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.calibration import Calibration
from vla_edge.config import load_config, require
from vla_edge.conversions.image import SUPPORTED_ENCODINGS, to_rgb
from vla_edge.conversions.odometry import EgoStateBuffer, OdometryBufferConfig
from vla_edge.conversions.pointcloud import pointcloud2_to_xyzi
from vla_edge.conversions.trajectory import path_to_poses
from vla_edge.errors import ConfigError, FrameError, ImageError, StampError
from vla_edge.msgfactory import stamp_to_sec
from vla_edge.types import EgoState, Frame, PastSweep

# Key of the front camera in Frame.images / Frame.ages: its calibration sensor name. Every
# frame builder (nodes, replay, explain, training, sim harness) must use this one name.
FRONT_CAMERA = "camera_front"


@dataclass(frozen=True)
class LidarChecks:
    """``lidar`` section of ``frame.yaml``: which sweeps are refused or flagged unusable."""

    max_stamp_skew_s: float
    min_valid_points: int
    min_range_m: float
    max_range_m: float
    min_plausible_ratio: float
    history_s: float = 0.0
    history_max_sweeps: int = 0
    history_max_speed_mps: float = 60.0


@dataclass(frozen=True)
class FrameAssemblyConfig:
    """Parsed ``config/frame.yaml`` (units in the YAML comments)."""

    odometry: OdometryBufferConfig
    behind_m: float
    lookahead_m: float
    image_buffer_size: int
    decode_images: bool
    max_age_s: dict[str, float]
    lidar: LidarChecks
    max_decoded_pixels: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> FrameAssemblyConfig:
        """Read the whole ``frame.yaml`` mapping.

        Raises:
            ConfigError: A key is missing or a value is out of its range (names file, key, range).
        """
        from vla_edge.config_schema import validate_config

        where = "frame.yaml"
        validate_config("frame", cfg, where)  # unknown keys, types, ranges: file, key and range named

        def num(*keys: str) -> float:
            return float(require(cfg, *keys, where=where))

        ages = require(cfg, "max_age_s", where=where)
        for key in ("odometry", "reference_path", "camera"):
            require(ages, key, where="frame.yaml max_age_s")
        if not isinstance(ages, dict):
            raise ConfigError(f"{where}: max_age_s must be a mapping of input name -> seconds")
        min_range = num("lidar", "min_range_m")
        lidar = LidarChecks(
            max_stamp_skew_s=num("lidar", "max_stamp_skew_s"),
            min_valid_points=int(num("lidar", "min_valid_points")),
            min_range_m=min_range,
            max_range_m=num("lidar", "max_range_m"),
            min_plausible_ratio=num("lidar", "min_plausible_ratio"),
            history_s=num("lidar", "history_s"),
            history_max_sweeps=int(num("lidar", "history_max_sweeps")),
            history_max_speed_mps=num("lidar", "history_max_speed_mps"),
        )
        return cls(
            odometry=OdometryBufferConfig.from_config(cfg),
            behind_m=num("reference_path", "behind_m"),
            lookahead_m=num("reference_path", "lookahead_m"),
            image_buffer_size=int(num("images", "buffer_size")),
            decode_images=bool(require(cfg, "images", "decode", where=where)),
            max_age_s={str(k): float(v) for k, v in ages.items()},
            lidar=lidar,
            max_decoded_pixels=int(num("images", "max_decoded_pixels")),
        )

    def limit(self, name: str) -> float:
        """Staleness limit of an input; cameras without their own key use ``camera``."""
        return self.max_age_s.get(name, self.max_age_s["camera"])


def path_to_ego_frame(poses_odom: np.ndarray, ego: EgoState) -> np.ndarray:
    """M x 2 (x, y) odom-frame points -> ego frame at ``ego`` (x forward, y left)."""
    xy = np.asarray(poses_odom, dtype=np.float64)[:, :2]
    c, s = math.cos(ego.yaw), math.sin(ego.yaw)
    dx, dy = xy[:, 0] - ego.x, xy[:, 1] - ego.y
    return np.column_stack([c * dx + s * dy, -s * dx + c * dy])


def clip_path(xy: np.ndarray, behind_m: float, lookahead_m: float) -> np.ndarray:
    """Clip an ego-frame polyline by arc length around the point nearest the ego.

    The nearest point is the projection of the origin on the polyline (not just the
    nearest vertex), and the ends are interpolated, so sparse waypoints keep their
    geometry. Returns at most the whole polyline; a single point is returned as is.
    """
    if len(xy) < 2:
        return xy.copy()
    seg = np.diff(xy, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    s = np.concatenate([[0.0], np.cumsum(seg_len)])
    denom = np.maximum(seg_len**2, 1e-12)
    t = np.clip(-(xy[:-1] * seg).sum(axis=1) / denom, 0.0, 1.0)
    proj = xy[:-1] + t[:, None] * seg
    k = int(np.argmin(np.hypot(proj[:, 0], proj[:, 1])))
    s_near = s[k] + t[k] * seg_len[k]
    s_lo, s_hi = max(s_near - behind_m, 0.0), min(s_near + lookahead_m, s[-1])
    inner = (s > s_lo) & (s < s_hi)
    ends = np.column_stack([np.interp([s_lo, s_hi], s, xy[:, 0]), np.interp([s_lo, s_hi], s, xy[:, 1])])
    return np.vstack([ends[:1], xy[inner], ends[1:]])


@dataclass
class _PathEntry:
    stamp: float
    frame_id: str
    poses: np.ndarray  # M x 3 odom frame


def check_stamp_skew(stamp: float, now: float, max_skew_s: float) -> None:
    """Refuse a sweep stamped far from the receiving node's clock.

    One absurd stamp (0, 2038, an hour ahead) would otherwise poison every count and
    order derived from stamps (gap counts, newest-candidate logic) until time caught up.
    ``now <= 0`` means the clock is not running yet (use_sim_time before ``/clock``): no check.

    Raises:
        StampError: ``|stamp - now| > max_skew_s``.
    """
    if now <= 0.0:
        return
    skew = stamp - now
    if not math.isfinite(skew) or abs(skew) > max_skew_s:
        raise StampError(
            f"LiDAR sweep stamped {stamp:.3f} is {skew:+.3f} s from the node clock {now:.3f}; "
            f"allowed +-{max_skew_s} s (frame.yaml lidar.max_stamp_skew_s); sweep refused "
            "(clock not synchronised, or a bad stamp)"
        )


def points_plausibility(points: np.ndarray, checks: LidarChecks) -> tuple[int, float]:
    """``(plausible count, plausible / finite ratio)`` of a sensor-frame N x 3+ cloud.

    Plausible: finite and ``min_range_m <= range <= max_range_m`` from the sensor. Catches
    empty and all-NaN clouds and data decoded with the wrong byte order (denormal or huge
    coordinates). NaN/Inf rows count in neither.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) == 0:
        return 0, 0.0
    xyz = pts[:, :3].astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        r2 = np.einsum("ij,ij->i", xyz, xyz)
    finite = np.isfinite(r2)
    n_finite = int(finite.sum())
    ok = finite & (r2 >= checks.min_range_m**2) & (r2 <= checks.max_range_m**2)
    n_ok = int(ok.sum())
    return n_ok, (n_ok / n_finite if n_finite else 0.0)


class FrameAssembler:
    """Buffers odometry, reference path and images; :meth:`make_frame` per LiDAR sweep.

    Args:
        cfg: The ``frame.yaml`` mapping (or a parsed :class:`FrameAssemblyConfig`).
        calibration: A :class:`Calibration`, the ``calibration.yaml`` mapping, or None to
            load ``config/calibration.yaml``.
    """

    def __init__(
        self,
        cfg: dict[str, Any] | FrameAssemblyConfig,
        calibration: Calibration | dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg if isinstance(cfg, FrameAssemblyConfig) else FrameAssemblyConfig.from_config(cfg)
        if calibration is None:
            calibration = load_config("calibration")
        self.calibration = (
            calibration if isinstance(calibration, Calibration) else Calibration.from_config(calibration)
        )
        self.odometry = EgoStateBuffer(self.cfg.odometry)
        self.odom_frame: str | None = None
        self._path: _PathEntry | None = None
        self._images: dict[str, list[tuple[float, Any]]] = {}
        self.image_errors: dict[str, str] = {}  # last decode error per camera, for diagnostics
        self.points_problem = ""  # why the last sweep's points are unusable ("" when usable)
        self.frames = 0
        self._history: list[PastSweep] = []  # earlier usable sweeps, newest first (multi-sweep models)

    @classmethod
    def from_config(
        cls, frame_cfg: dict[str, Any] | None = None, calibration_cfg: dict[str, Any] | None = None
    ) -> FrameAssembler:
        """Build from YAML mappings, loading ``config/frame.yaml`` / ``calibration.yaml`` for None."""
        return cls(frame_cfg if frame_cfg is not None else load_config("frame"), calibration_cfg)

    # ------------------------------------------------------------------ inputs

    def add_odometry(self, msg: Any) -> EgoState:
        """Buffer one ``nav_msgs/Odometry``; returns the converted state.

        Raises:
            OdometryError: Non-finite values or zero quaternion (the message is ignored).
        """
        state = self.odometry.add_odometry(msg)
        self.odom_frame = str(msg.header.frame_id)
        return state

    def add_ego_state(self, state: EgoState, frame_id: str | None = None) -> None:
        """Buffer an already converted ego state (simulator, tests)."""
        self.odometry.add(state)
        if frame_id is not None:
            self.odom_frame = frame_id

    def add_reference_path(self, msg: Any) -> None:
        """Keep the latest ``nav_msgs/Path`` (odometry frame); converted at :meth:`make_frame`."""
        poses = path_to_poses(msg)
        self._path = _PathEntry(stamp_to_sec(msg.header.stamp), str(msg.header.frame_id), poses)

    def set_reference_path(self, poses_odom: np.ndarray, stamp: float, frame_id: str) -> None:
        """Numpy variant of :meth:`add_reference_path`: M x 2 or M x 3 poses in ``frame_id``."""
        arr = np.asarray(poses_odom, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise FrameError(f"reference path must be M x 2 or M x 3, got shape {arr.shape}")
        self._path = _PathEntry(float(stamp), frame_id, arr)

    def add_image(self, name: str, msg: Any) -> None:
        """Buffer a ``sensor_msgs/Image`` or ``CompressedImage`` of camera ``name``.

        Decoding waits until a sweep needs the image (cameras outpace the LiDAR).

        Raises:
            ImageError: The raw encoding is not supported (checked now, cheaply).
        """
        enc = getattr(msg, "encoding", None)
        if enc is not None and str(enc).lower() not in SUPPORTED_ENCODINGS:
            raise ImageError(
                f"camera '{name}': unsupported Image encoding '{enc}'; "
                f"supported: {', '.join(SUPPORTED_ENCODINGS)}"
            )
        buf = self._images.setdefault(name, [])
        t = stamp_to_sec(msg.header.stamp)
        i = bisect.bisect_right([s for s, _ in buf], t)
        buf.insert(i, (t, msg))
        del buf[: max(0, len(buf) - self.cfg.image_buffer_size)]

    # ------------------------------------------------------------------ assembly

    def make_frame(self, cloud_msg: Any) -> Frame:
        """Assemble the Frame of one ``sensor_msgs/PointCloud2`` sweep.

        Raises:
            PointCloudError: Malformed cloud.
            FrameError: Unknown cloud frame id, no odometry yet, or a reference path whose
                frame is not the odometry frame.
        """
        stamp = stamp_to_sec(cloud_msg.header.stamp)
        pts = pointcloud2_to_xyzi(cloud_msg)
        return self.make_frame_from_points(stamp, pts, str(cloud_msg.header.frame_id))

    assemble = make_frame  # name used by the drive nodes

    def make_frame_from_points(self, stamp: float, points: np.ndarray, frame_id: str) -> Frame:
        """Like :meth:`make_frame` for an already converted N x 4 cloud in ``frame_id``."""
        # Self-returns are cropped in the sensor frame, before the transform (as Autoware);
        # plausibility is judged on what is left, in the sensor frame (ranges from the sensor).
        cropped = self.calibration.crop_self_returns(points, frame_id)
        n_ok, ratio = points_plausibility(cropped, self.cfg.lidar)
        pts = self.calibration.cropped_to_base(cropped, frame_id)
        ages: dict[str, float] = {}
        stale: set[str] = set()
        self.points_problem = ""
        if n_ok < self.cfg.lidar.min_valid_points or ratio < self.cfg.lidar.min_plausible_ratio:
            # Unusable sweep: flagged, never planned on as if the road were clear
            # (PlanningCycle turns "lidar" in Frame.stale into points_invalid -> stop).
            stale.add("lidar")
            lc = self.cfg.lidar
            self.points_problem = (
                f"points_invalid: {n_ok} plausible returns of {len(points)} ({100 * ratio:.0f}%); need "
                f">= {lc.min_valid_points} and >= {100 * lc.min_plausible_ratio:.0f}% "
                f"within [{lc.min_range_m}, {lc.max_range_m}] m (frame.yaml lidar)"
            )

        sample = self.odometry.sample(stamp)
        if sample.state is None:
            raise FrameError(
                f"no odometry received before the LiDAR sweep at {stamp:.3f}; check the odometry topic"
            )
        ego = sample.state
        ages["odometry"] = sample.age
        if sample.refused or sample.age > self.cfg.limit("odometry"):
            stale.add("odometry")

        ref = np.zeros((0, 2), dtype=np.float64)
        if self._path is None:
            ages["reference_path"] = math.inf
            stale.add("reference_path")
        else:
            p = self._path
            if self.odom_frame is not None and p.frame_id != self.odom_frame:
                raise FrameError(
                    f"reference path is in frame '{p.frame_id}' but odometry is in '{self.odom_frame}'; "
                    "publish the path in the odometry frame"
                )
            ages["reference_path"] = stamp - p.stamp
            if len(p.poses):
                ref = clip_path(path_to_ego_frame(p.poses, ego), self.cfg.behind_m, self.cfg.lookahead_m)
            if len(ref) == 0 or abs(ages["reference_path"]) > self.cfg.limit("reference_path"):
                stale.add("reference_path")

        images: dict[str, np.ndarray] = {}
        for name, buf in self._images.items():
            if not buf:
                continue
            t_img, msg = min(buf, key=lambda e: abs(e[0] - stamp))
            ages[name] = stamp - t_img
            if abs(ages[name]) > self.cfg.limit(name):
                stale.add(name)
            if self.cfg.decode_images:
                try:
                    images[name] = to_rgb(msg, self.cfg.max_decoded_pixels)
                    self.image_errors.pop(name, None)
                except ImageError as exc:
                    self.image_errors[name] = str(exc)
                    stale.add(name)

        self.frames += 1
        return Frame(
            stamp=stamp,
            points=pts,
            ego=ego,
            reference_path=ref,
            images=images,
            ages=ages,
            stale=stale,
            frame_id=self.calibration.base_frame,
            history=self._remember(stamp, ego, pts, usable=not ({"lidar", "odometry"} & stale)),
        )

    def _remember(self, stamp: float, ego: EgoState, pts: np.ndarray, usable: bool) -> tuple[PastSweep, ...]:
        """The earlier sweeps for this one (newest first); then keep this one if usable.

        Only sweeps with plausible points and fresh odometry are kept (a wrong pose would smear
        the composed cloud). A stamp at or before a kept one (clock jump back, replay loop), or
        a pose that moved faster than ``lidar.history_max_speed_mps`` since the newest kept one
        (relocalisation, a bad or hostile odometry message), clears the history: earlier sweeps
        placed with such a pose would show obstacles where there are none.
        """
        lc = self.cfg.lidar
        if lc.history_max_sweeps <= 0 or lc.history_s <= 0:
            return ()
        if self._history:
            last = self._history[0]
            dt = stamp - last.stamp
            jump = float(np.hypot(ego.x - last.ego.x, ego.y - last.ego.y))
            if dt <= 0 or not np.isfinite(jump) or jump > lc.history_max_speed_mps * dt:
                self._history = []
        past = tuple(h for h in self._history if stamp - h.stamp <= lc.history_s)
        if usable:
            self._history = [PastSweep(stamp, ego, pts), *past][: lc.history_max_sweeps]
        else:
            self._history = list(past)
        return past
