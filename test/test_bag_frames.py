"""The shared rosbag2 -> Frames loop (vla_edge/bag_frames.py) on real MCAP bags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _write(path: Path, odom_delay_s: float, corrupt_odom_at: int | None = None) -> int:
    """2 s of 20 Hz odometry logged ``odom_delay_s`` after its stamp, 10 Hz LiDAR on time.

    Returns the number of LiDAR sweeps written.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from training_bags import _odom

    from vla_edge.config import load_config
    from vla_edge.conversions.pointcloud import xyzi_to_pointcloud2
    from vla_edge.msgfactory import RosbagsFactory

    ts = get_typestore(Stores.ROS2_HUMBLE)
    f = RosbagsFactory(ts)
    topics = load_config("topics")["inputs"]
    pts = np.random.default_rng(0).uniform([3, -5, -1, 0], [30, 5, 1, 100], (500, 4)).astype(np.float32)
    rows = []
    sweeps = 0
    for i in range(41):
        stamp = 100.0 + i * 0.05
        odo = ts.serialize_cdr(_odom(f, stamp, 5.0 * i * 0.05, 0.0, 0.0, 5.0), "nav_msgs/msg/Odometry")
        if corrupt_odom_at == i:
            odo = b"\x00\x01\x00\x00garbage"
        rows.append((stamp + odom_delay_s, "odo", odo))
        if i % 2 == 0:
            sweeps += 1
            cloud = xyzi_to_pointcloud2(pts, f, stamp, "lidar")
            rows.append((stamp, "lid", ts.serialize_cdr(cloud, "sensor_msgs/msg/PointCloud2")))
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {
            "odo": w.add_connection(topics["odometry"], "nav_msgs/msg/Odometry", typestore=ts),
            "lid": w.add_connection(topics["lidar"], "sensor_msgs/msg/PointCloud2", typestore=ts),
        }
        for t, kind, data in sorted(rows, key=lambda r: r[0]):
            w.write(conns[kind], round(t * 1e9), data)
    return sweeps


def _source(bag: Path, **kw):
    from vla_edge.bag_frames import BagFrames, frame_roles
    from vla_edge.config import load_config

    return BagFrames([bag], frame_roles(load_config("topics")), **kw)


def test_stamp_order_absorbs_late_logged_odometry_log_order_does_not(tmp_path: Path) -> None:
    n = _write(tmp_path / "late", odom_delay_s=0.03)
    log_order = _source(tmp_path / "late")
    frames_log = [i.frame for i in log_order if i.frame is not None]
    # log order: the first sweep is logged before any odometry -> refused, as on the vehicle
    assert log_order.lidar == n and log_order.skipped == 1 and len(frames_log) == n - 1
    stamp_order = _source(tmp_path / "late", reorder_window_s=0.1)
    items = list(stamp_order)
    assert stamp_order.lidar == n and stamp_order.skipped == 0 and stamp_order.frames == n
    stamps = [i.stamp for i in items]
    assert stamps == sorted(stamps)  # fed in header-stamp order
    odo_stamps = [i.ego.stamp for i in items if i.ego is not None]
    assert len(odo_stamps) == 41


def test_frame_stride_counts_every_sweep_but_assembles_every_nth(tmp_path: Path) -> None:
    n = _write(tmp_path / "b", odom_delay_s=0.0)
    src = _source(tmp_path / "b", frame_stride=3)
    frames = [i.frame for i in src if i.frame is not None]
    assert src.lidar == n and len(frames) == src.frames == len(range(0, n, 3))


def test_undecodable_message_raises_or_is_skipped(tmp_path: Path) -> None:
    from vla_edge.errors import BagError

    _write(tmp_path / "bad", odom_delay_s=0.0, corrupt_odom_at=5)
    with pytest.raises(BagError, match="cannot deserialize"):
        list(_source(tmp_path / "bad"))
    seen = []
    src = _source(tmp_path / "bad", skip_undecodable=True, on_error=lambda k, t, e: seen.append((k, t)))
    odo = [i for i in src if i.ego is not None]
    assert len(odo) == 40 and seen == [("odometry", pytest.approx(100.25))]


def test_bad_camera_mode_is_a_config_error() -> None:
    from vla_edge.bag_frames import frame_roles
    from vla_edge.config import load_config
    from vla_edge.errors import ConfigError

    topics = load_config("topics")
    with pytest.raises(ConfigError, match="camera must be one of"):
        frame_roles(topics, camera="fisheye")
    roles = set(frame_roles(topics, camera="both").values())
    assert roles == {"lidar", "odometry", "reference_path", "camera"}
