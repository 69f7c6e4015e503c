"""Publish live-like inputs for the drive graph: LiDAR clouds, odometry, a reference path.

Used by the end-to-end benchmark and the graph tests (with the real scans from
``../shared/data/lidar``). The ego drives straight along +x of the odom frame at a
constant speed; the reference path is the straight line ahead of it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from rclpy.node import Node

from vla_edge.msgfactory import RclpyFactory
from vla_edge.nodes import messages, qos
from vla_edge.scans import load_scan  # noqa: F401 - re-exported (graph tests, benchmarks)


class SensorFeeder(Node):
    """Publishes the graph's inputs on the topics of ``topics.yaml``.

    Args:
        topics: Parsed ``topics.yaml``.
        lidar_frame: ``frame_id`` of the clouds (must be known to the calibration).
        odom_frame: ``frame_id`` of odometry and the reference path.
        speed: Ego speed along +x (m/s).
        **node_kwargs: Passed to ``rclpy.node.Node``.
    """

    def __init__(
        self,
        topics: dict[str, Any],
        lidar_frame: str,
        odom_frame: str = "odom",
        speed: float = 5.0,
        node_name: str = "vla_edge_feeder",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        from nav_msgs.msg import Odometry, Path
        from sensor_msgs.msg import PointCloud2

        inputs = topics["inputs"]
        self.factory = RclpyFactory()
        self.lidar_frame, self.odom_frame, self.speed = lidar_frame, odom_frame, float(speed)
        self.pub_cloud = self.create_publisher(PointCloud2, inputs["lidar"], qos.sensor_qos())
        self.pub_odom = self.create_publisher(Odometry, inputs["odometry"], qos.reliable_qos())
        self.pub_path = self.create_publisher(Path, inputs["reference_path"], qos.reliable_qos())
        self.t0: float | None = None
        self._cloud_template: Any = None

    def clock_now(self) -> float:
        """Node clock in seconds (wall unless use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

    def x_at(self, stamp: float) -> float:
        """Ego x in the odom frame at ``stamp`` (s)."""
        if self.t0 is None:
            self.t0 = stamp
        return self.speed * (stamp - self.t0)

    def readers(self) -> dict[str, int]:
        """Matched subscriptions per input."""
        return {
            "lidar": self.pub_cloud.get_subscription_count(),
            "odometry": self.pub_odom.get_subscription_count(),
            "reference_path": self.pub_path.get_subscription_count(),
        }

    def publish_odometry(self, stamp: float) -> None:
        """Odometry at ``stamp`` for the straight constant-speed drive."""
        from nav_msgs.msg import Odometry

        msg = Odometry()
        msg.header = messages.header_msg(stamp, self.odom_frame)
        msg.child_frame_id = "base_link"
        msg.pose.pose.position.x = self.x_at(stamp)
        msg.pose.pose.orientation.w = 1.0
        msg.twist.twist.linear.x = self.speed
        self.pub_odom.publish(msg)

    def publish_reference_path(self, stamp: float, length: float = 120.0, spacing: float = 1.0) -> None:
        """Straight reference path from 10 m behind the ego to ``length`` m ahead (odom frame)."""
        from geometry_msgs.msg import PoseStamped
        from nav_msgs.msg import Path

        x0 = self.x_at(stamp)
        msg = Path(header=messages.header_msg(stamp, self.odom_frame))
        for x in np.arange(x0 - 10.0, x0 + length, spacing):
            ps = PoseStamped(header=messages.header_msg(stamp, self.odom_frame))
            ps.pose.position.x = float(x)
            ps.pose.orientation.w = 1.0
            msg.poses.append(ps)
        self.pub_path.publish(msg)

    def set_cloud(self, points: np.ndarray, layout: str = "xyzi") -> None:
        """Serialise ``points`` (N x 4, LiDAR frame) once; :meth:`publish_cloud` restamps it."""
        from vla_edge.conversions import xyzi_to_pointcloud2

        self._cloud_template = xyzi_to_pointcloud2(points, self.factory, 0.0, self.lidar_frame, layout)

    def publish_cloud(self, stamp: float, msg: Any | None = None) -> float:
        """Publish the template cloud (or ``msg``) stamped ``stamp``; return the wall publish time."""
        cloud = self._cloud_template if msg is None else msg
        if cloud is None:
            raise ValueError("call set_cloud() first or pass msg")
        sec = math.floor(stamp)
        cloud.header.stamp.sec = sec
        cloud.header.stamp.nanosec = round((stamp - sec) * 1e9) % 1_000_000_000
        cloud.header.frame_id = cloud.header.frame_id or self.lidar_frame
        wall = time.time()
        self.pub_cloud.publish(cloud)
        return wall
