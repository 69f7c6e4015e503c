"""A PointCloud2 published by one rclpy node is converted on receipt by another (DDS, SensorDataQoS)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import requires_rclpy, wait_until

pytestmark = [pytest.mark.ros, requires_rclpy, pytest.mark.timeout(60)]


@pytest.mark.parametrize("layout", ["ouster", "velodyne"])
def test_pointcloud_over_dds(rclpy_context, committed_scan, layout):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2

    from vla_edge.conversions import pointcloud2_to_structured, pointcloud2_to_xyzi, xyzi_to_pointcloud2
    from vla_edge.msgfactory import RclpyFactory, stamp_to_sec

    pts = committed_scan.copy()
    pts[:, 3] = np.linspace(0.0, 1.0, len(pts), dtype=np.float32)  # the PCD has no intensity
    ring = (np.arange(len(pts)) % 64).astype(np.uint16)
    extra = {"ring": ring}
    topic = f"/test/conversions/points_{layout}"
    received: list[tuple[float, str, np.ndarray, np.ndarray]] = []

    talker = Node("pc_talker", context=rclpy_context)
    listener = Node("pc_listener", context=rclpy_context)

    def on_cloud(msg: PointCloud2) -> None:
        # Convert inside the callback, as the inference node does.
        xyzi = pointcloud2_to_xyzi(msg)
        rings = pointcloud2_to_structured(msg, ["ring"])["ring"]
        received.append((stamp_to_sec(msg.header.stamp), msg.header.frame_id, xyzi, rings))

    ex = SingleThreadedExecutor(context=rclpy_context)
    try:
        pub = talker.create_publisher(PointCloud2, topic, qos_profile_sensor_data)
        sub = listener.create_subscription(PointCloud2, topic, on_cloud, qos_profile_sensor_data)
        ex.add_node(talker)
        ex.add_node(listener)
        spin = lambda: ex.spin_once(timeout_sec=0.05)  # noqa: E731
        assert wait_until(
            lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0,
            timeout=15.0,
            spin=spin,
        ), "publisher and subscription never matched (check ROS_DOMAIN_ID / LOCALHOST discovery)"
        msg = xyzi_to_pointcloud2(pts, RclpyFactory(), 1234.5, "lidar", layout=layout, extra=extra)
        # Best effort may drop a sample: resend until one arrives (bounded).
        deadline = time.monotonic() + 15.0
        while not received and time.monotonic() < deadline:
            pub.publish(msg)
            wait_until(lambda: bool(received), timeout=0.5, spin=spin)
        assert received, "no PointCloud2 arrived over DDS within 15 s"
    finally:
        ex.shutdown()
        talker.destroy_node()
        listener.destroy_node()
    stamp, frame_id, xyzi, rings = received[0]
    assert stamp == pytest.approx(1234.5) and frame_id == "lidar"
    np.testing.assert_array_equal(xyzi, pts)
    np.testing.assert_array_equal(rings, ring)
