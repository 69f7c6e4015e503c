"""Test helper (not a test module): small rosbag2 MCAP bags with controlled odometry.

The bags carry the vehicle topics of ``config/topics.yaml`` (LiDAR PointCloud2 in frame
``lidar``, Odometry, reference Path) built with the project's own message factory and
conversions, written with ``rosbags``. The ego drives along +x; segments can be stationary,
teleport or have an odometry gap, so the dataset filter counts are known in advance.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _odom(factory, t: float, x: float, y: float, yaw: float, v: float):
    q = factory.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))
    pos = factory.make("geometry_msgs/msg/Point", x=x, y=y, z=0.0)
    pose = factory.make("geometry_msgs/msg/Pose", position=pos, orientation=q)
    cov = np.zeros(36, dtype=np.float64)
    pwc = factory.make("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=cov)
    vec = factory.make("geometry_msgs/msg/Vector3", x=v, y=0.0, z=0.0)
    zero = factory.make("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=0.0)
    tw = factory.make("geometry_msgs/msg/Twist", linear=vec, angular=zero)
    twc = factory.make("geometry_msgs/msg/TwistWithCovariance", twist=tw, covariance=cov)
    return factory.make(
        "nav_msgs/msg/Odometry",
        header=factory.header(t, "odom"),
        child_frame_id="base_link",
        pose=pwc,
        twist=twc,
    )


def write_bag(
    path: Path,
    seconds: float = 12.0,
    speed: float = 5.0,
    stationary: tuple[float, float] | None = None,
    teleport_at: float | None = None,
    gap: tuple[float, float] | None = None,
    seed: int = 0,
    t0: float = 1000.0,
) -> dict[str, float]:
    """Write one bag; returns the parameters (for expected counts).

    Odometry at 20 Hz, LiDAR at 10 Hz (a ring of ground points plus two boxes), the reference
    path once per second along +x in the odom frame.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from vla_edge.config import load_config
    from vla_edge.conversions.pointcloud import xyzi_to_pointcloud2
    from vla_edge.conversions.trajectory import poses_to_path
    from vla_edge.msgfactory import RosbagsFactory

    ts = get_typestore(Stores.ROS2_HUMBLE)
    f = RosbagsFactory(ts)
    topics = load_config("topics")["inputs"]
    rng = np.random.default_rng(seed)
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        c_odo = w.add_connection(topics["odometry"], "nav_msgs/msg/Odometry", typestore=ts)
        c_lid = w.add_connection(topics["lidar"], "sensor_msgs/msg/PointCloud2", typestore=ts)
        c_path = w.add_connection(topics["reference_path"], "nav_msgs/msg/Path", typestore=ts)
        x = 0.0
        n = round(seconds / 0.05)
        for i in range(n + 1):
            t = i * 0.05
            v = speed
            if stationary and stationary[0] <= t < stationary[1]:
                v = 0.0
            if i:
                x += v * 0.05
            if teleport_at is not None and abs(t - teleport_at) < 1e-6:
                x += 40.0
            stamp = t0 + t
            in_gap = gap is not None and gap[0] < t < gap[1]
            if not in_gap:
                w.write(
                    c_odo,
                    int(stamp * 1e9),
                    ts.serialize_cdr(_odom(f, stamp, x, 0.0, 0.0, v), "nav_msgs/msg/Odometry"),
                )
            if i % 20 == 0:
                s = np.arange(-5.0, 120.0, 1.0) + x
                msg = poses_to_path(np.column_stack([s, np.zeros_like(s)]), f, stamp, "odom")
                w.write(c_path, int(stamp * 1e9), ts.serialize_cdr(msg, "nav_msgs/msg/Path"))
            if i % 2 == 0:
                ang = rng.uniform(-np.pi, np.pi, 3000)
                rad = rng.uniform(3.0, 35.0, 3000)
                ground = np.column_stack(
                    [rad * np.cos(ang), rad * np.sin(ang), np.full(3000, -1.9), rng.uniform(0, 60, 3000)]
                )
                box = rng.uniform([8, -2, -1.9, 100], [10, 2, -0.5, 120], (400, 4))
                pts = np.vstack([ground, box]).astype(np.float32)
                msg = xyzi_to_pointcloud2(pts, f, stamp, "lidar")
                w.write(c_lid, int(stamp * 1e9), ts.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"))
    return {"seconds": seconds, "speed": speed}
