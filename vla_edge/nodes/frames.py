"""Frame input side shared by the inference and arbiter nodes.

:class:`FrameSource` owns the node's :class:`~vla_edge.frame_assembly.FrameAssembler`,
subscribes (SensorDataQoS, one callback group) to odometry, the reference path, the
camera when ``camera`` is ``raw``/``compressed`` and, optionally, the LiDAR; it also fills
the output messages (Path, MarkerArray) through ``vla_edge.conversions``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from vla_edge.config import load_config
from vla_edge.diagnostics import SweepGaps
from vla_edge.errors import ConfigError, VlaEdgeError
from vla_edge.frame_assembly import FRONT_CAMERA
from vla_edge.msgfactory import RclpyFactory, stamp_to_sec
from vla_edge.nodes import messages, qos
from vla_edge.types import Frame, Trajectory

CAMERA_NAME = FRONT_CAMERA  # calibration sensor name; key in Frame.images / ages


class FrameSource:
    """Buffers inputs and assembles frames for one node.

    Args:
        node: The owning ``rclpy`` node.
        cfg: Nested drive parameters.
        topics: Parsed ``topics.yaml``.
        group: Callback group of the sensor subscriptions.
        lidar: Subscribe to the LiDAR and call ``on_frame`` with each assembled frame.
        on_frame: ``on_frame(frame, conversion_ms, missed=0)``; required with ``lidar``
            (``missed``: sweeps that never reached this reader before this one).
        inputs: Subscribe to the inputs at all; False when frames come assembled from the
            inference node (shared mode), leaving the output-message helpers.
    """

    def __init__(
        self,
        node: Any,
        cfg: dict[str, Any],
        topics: dict[str, Any],
        group: Any,
        lidar: bool,
        on_frame: Any | None = None,
        inputs: bool = True,
    ) -> None:
        from vla_edge.frame_assembly import FrameAssembler

        self.node = node
        self.group = group
        self.factory = RclpyFactory()
        self.on_frame = on_frame
        self.errors = 0
        self.gaps = SweepGaps()  # sweeps lost before this reader (depth-1 queue, network)
        # The assembler's buffers are not thread-safe; today every caller runs in the sensor
        # group, the lock keeps it so if assembly moves to another thread.
        self._lock = threading.Lock()
        self.assembler = FrameAssembler(
            load_config(str(cfg["frame_config"]), kind="frame"),
            load_config(str(cfg["calibration_config"]), kind="calibration"),
        )
        self._diag_pub = None
        self.diag_topic = str(topics["outputs"]["diagnostics"])
        if not inputs:  # frames come from elsewhere (shared mode): output helpers only
            return
        from nav_msgs.msg import Odometry, Path

        names = topics["inputs"]
        node.create_subscription(
            Odometry, names["odometry"], self._on_odom, qos.sensor_qos(), callback_group=group
        )
        node.create_subscription(
            Path, names["reference_path"], self._on_path, qos.sensor_qos(), callback_group=group
        )
        camera = str(cfg["camera"])
        if camera == "raw":
            from sensor_msgs.msg import Image

            node.create_subscription(
                Image, names["camera_front"], self._on_image, qos.sensor_qos(), callback_group=group
            )
        elif camera == "compressed":
            from sensor_msgs.msg import CompressedImage

            node.create_subscription(
                CompressedImage,
                names["camera_front_compressed"],
                self._on_image,
                qos.sensor_qos(),
                callback_group=group,
            )
        elif camera != "none":
            raise ConfigError(f"drive.yaml: camera must be none | raw | compressed, got {camera!r}")
        if lidar:
            if on_frame is None:
                raise ValueError("FrameSource(lidar=True) needs on_frame")
            from sensor_msgs.msg import PointCloud2

            # Depth 1: when assembly is slower than the sweep rate, the newest sweep wins.
            node.create_subscription(
                PointCloud2, names["lidar"], self._on_lidar, qos.sensor_qos(depth=1), callback_group=group
            )
        self._subscribe_tf_static(node, group)

    def _subscribe_tf_static(self, node: Any, group: Any) -> None:
        """On a vehicle, ``/tf_static`` overrides the calibration file (no tf2_msgs wheel here)."""
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            return
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        latched = QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        node.create_subscription(TFMessage, "/tf_static", self._on_tf_static, latched, callback_group=group)

    def _on_tf_static(self, msg: Any) -> None:
        with self._lock:
            n = self.assembler.calibration.apply_tf_message(msg)
        self.node.get_logger().info(f"/tf_static: {n} transforms override the calibration file")

    # -- callbacks ------------------------------------------------------------------------
    def _on_odom(self, msg: Any) -> None:
        self._guard("odometry", self.assembler.add_odometry, msg)

    def _on_path(self, msg: Any) -> None:
        self._guard("reference_path", self.assembler.add_reference_path, msg)

    def _on_image(self, msg: Any) -> None:
        self._guard("camera", lambda m: self.assembler.add_image(CAMERA_NAME, m), msg)

    def _on_lidar(self, msg: Any) -> None:
        t0 = time.perf_counter()
        missed = self.gaps.missed(stamp_to_sec(msg.header.stamp))
        try:
            frame = self.assemble(msg)
        except VlaEdgeError as exc:
            self._report("frame_assembly", exc, msg)
            return
        self.on_frame(frame, 1000.0 * (time.perf_counter() - t0), missed=missed)

    def _guard(self, stage: str, fn: Any, msg: Any) -> None:
        try:
            with self._lock:
                fn(msg)
        except VlaEdgeError as exc:
            self._report(stage, exc, msg)

    def _report(self, stage: str, exc: BaseException, msg: Any) -> None:
        """Bad input never kills the node: log (throttled) and publish an ERROR status."""
        from vla_edge.diagnostics import error_status

        self.errors += 1
        stamp = stamp_to_sec(msg.header.stamp) if hasattr(msg, "header") else None
        self._publish(error_status(stage, exc, stamp, self._thresholds()), stamp)

    def _thresholds(self) -> Any:
        from vla_edge.diagnostics import Thresholds

        return getattr(self.node, "th", None) or Thresholds.from_config(self.node.cfg)

    def _publish(self, st: dict[str, Any], stamp: float | None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        st["values"]["node"] = self.node.get_name()
        if self._diag_pub is None:
            self._diag_pub = self.node.create_publisher(DiagnosticArray, self.diag_topic, qos.reliable_qos())
        self._diag_pub.publish(messages.array_msg([st], stamp or 0.0))
        self.node.get_logger().warning(st["message"], throttle_duration_sec=2.0)

    # -- assembly / output messages -------------------------------------------------------
    def assemble(self, cloud_msg: Any) -> Frame:
        """Frame for one PointCloud2 sweep (raises typed VlaEdgeErrors on bad input).

        The cloud is converted outside the lock so odometry keeps flowing meanwhile.
        """
        from vla_edge.conversions import pointcloud2_to_xyzi
        from vla_edge.frame_assembly import check_stamp_skew

        stamp = stamp_to_sec(cloud_msg.header.stamp)
        now = self.node.get_clock().now().nanoseconds * 1e-9
        check_stamp_skew(stamp, now, self.assembler.cfg.lidar.max_stamp_skew_s)
        pts = pointcloud2_to_xyzi(cloud_msg)
        with self._lock:
            frame = self.assembler.make_frame_from_points(stamp, pts, str(cloud_msg.header.frame_id))
            problem = self.assembler.points_problem
            image_errors = dict(self.assembler.image_errors)
        for name, err in image_errors.items():  # camera flagged stale; say why (throttled log)
            from vla_edge.diagnostics import error_status

            self._publish(
                error_status(f"camera {name}", f"ImageError: {err}", stamp, self._thresholds()), stamp
            )
        if problem:  # planned on as a controlled stop; say why on /diagnostics
            from vla_edge.diagnostics import points_status

            self._publish(points_status(problem, stamp, self._thresholds()), stamp)
        return frame

    def path_msg(self, traj: Trajectory) -> Any:
        """``nav_msgs/Path`` in ``base_link`` at the trajectory stamp, poses at stamp + k*dt."""
        from vla_edge.conversions import trajectory_to_path

        return trajectory_to_path(traj, self.factory, frame_id="base_link")

    def markers_msg(self, frame: Frame, cand: Any, decision: Any, max_obstacles: int = 40) -> Any:
        """MarkerArray: student candidate, Frenet plan, final trajectory, obstacles.

        Starts with a DELETEALL so obstacles of earlier cycles do not linger.
        """
        from vla_edge.conversions.trajectory import (
            box_markers,
            delete_all_marker,
            marker_array,
            trajectory_to_markers,
        )

        stamp = frame.stamp
        groups: list[Any] = [delete_all_marker(self.factory, stamp, "base_link")]
        plans = [
            ("student", None if cand is None else cand.trajectory),
            ("frenet", getattr(decision, "frenet", None)),
            ("final", decision.trajectory),
        ]
        for ns, traj in plans:
            if traj is not None and traj.is_finite():
                groups.append(trajectory_to_markers(traj, self.factory, stamp=stamp, ns=ns))
        boxes = obstacle_boxes(getattr(decision, "obstacles", None))
        if boxes is not None and len(boxes):
            boxes = boxes[np.argsort(np.hypot(boxes[:, 0], boxes[:, 1]))[:max_obstacles]]
            groups.append(box_markers(boxes, self.factory, stamp, "base_link"))
        return marker_array(self.factory, *groups)


def obstacle_boxes(obstacles: Any) -> Any:
    """N x 5 (x, y, yaw=0, length, width) boxes from the clusters' extents, or None."""
    extents = getattr(obstacles, "extents", None)
    if extents is None:
        return None
    ext = np.asarray(extents, dtype=np.float64).reshape(-1, 4)
    boxes = np.column_stack(
        [
            0.5 * (ext[:, 0] + ext[:, 2]),
            0.5 * (ext[:, 1] + ext[:, 3]),
            np.zeros(len(ext)),
            np.maximum(ext[:, 2] - ext[:, 0], 0.0),
            np.maximum(ext[:, 3] - ext[:, 1], 0.0),
        ]
    )
    return boxes[np.all(np.isfinite(boxes), axis=1)]


def default_lidar_frame(calibration_config: str = "calibration") -> str:
    """Main ``frame_id`` of the LiDAR in the calibration file (for feeders and benchmarks)."""
    from vla_edge.calibration import Calibration

    return Calibration.from_config(load_config(calibration_config, kind="calibration")).sensor_frame("lidar")
