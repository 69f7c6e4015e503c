"""Live recording over DDS loopback, then SIGKILL: every closed split reads back whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT, requires_rclpy, wait_until

from vla_edge.config import load_config

pytestmark = [pytest.mark.ros, requires_rclpy, pytest.mark.timeout(90)]


def _write_cfg(tmp_path: Path, **split: float) -> Path:
    cfg = load_config("recorder")
    cfg["split"].update(split)
    cfg["ring"]["min_free_mb"] = 1
    path = tmp_path / "recorder_test.yaml"
    path.write_text(yaml.safe_dump(cfg), "utf-8")
    return path


def _closed_splits(out: Path) -> list[Path]:
    splits = out / "splits"
    return sorted(p for p in splits.iterdir() if p.is_dir() and p.name != "_open") if splits.is_dir() else []


def test_sigkill_loses_only_the_open_split(
    tmp_path: Path, rclpy_context: object, committed_scan: np.ndarray
) -> None:
    from nav_msgs.msg import Odometry
    from rclpy.node import Node
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import String

    from vla_edge.conversions.image import rgb_to_image
    from vla_edge.conversions.pointcloud import xyzi_to_pointcloud2
    from vla_edge.msgfactory import RclpyFactory
    from vla_edge.nodes.qos import reliable_qos, sensor_qos

    topics = load_config("topics")
    out = tmp_path / "log"
    cfg = _write_cfg(tmp_path, max_duration_s=0.4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla_edge.nodes.recorder_node", "--ros-args",
         "-p", f"output_dir:={out}", "-p", f"recorder_config:={cfg}"],
        cwd=REPO_ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    node = Node("recorder_live_test", context=rclpy_context)
    try:
        pub_dec = node.create_publisher(String, topics["outputs"]["decision"], reliable_qos())
        pub_lidar = node.create_publisher(PointCloud2, topics["inputs"]["lidar"], sensor_qos())
        pub_odom = node.create_publisher(Odometry, topics["inputs"]["odometry"], sensor_qos())
        pub_cam = node.create_publisher(Image, topics["inputs"]["camera_front"], sensor_qos())
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor(context=rclpy_context)
        ex.add_node(node)
        matched = wait_until(
            lambda: all(p.get_subscription_count() > 0 for p in (pub_dec, pub_lidar, pub_odom, pub_cam)),
            timeout=30.0,
            spin=lambda: ex.spin_once(timeout_sec=0.05),
        )
        assert matched, f"recorder never subscribed: {proc.poll()=}"
        points = committed_scan[::4]
        factory = RclpyFactory()
        rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        sent = 0
        t_end = time.monotonic() + 2.2
        while time.monotonic() < t_end:
            stamp = time.time()
            pub_dec.publish(String(data=json.dumps({"seq": sent, "choice": "student", "reasons": []})))
            pub_lidar.publish(xyzi_to_pointcloud2(points, factory, stamp, "base_link"))
            odom = Odometry()
            odom.header.frame_id = "odom"
            odom.twist.twist.linear.x = float(sent)
            pub_odom.publish(odom)
            pub_cam.publish(rgb_to_image(rgb, factory, stamp, "camera_front"))
            sent += 1
            ex.spin_once(timeout_sec=0.0)
            time.sleep(0.05)
        assert wait_until(lambda: len(_closed_splits(out)) >= 3, timeout=10.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        node.destroy_node()
    assert proc.returncode == -signal.SIGKILL

    closed = _closed_splits(out)
    assert len(closed) >= 3
    seqs: list[int] = []
    n_lidar = n_jpeg = 0
    for split in closed:
        meta = yaml.safe_load((split / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        with AnyReader([split]) as reader:  # each split on its own is a readable rosbag2
            msgs = list(reader.messages())
            assert len(msgs) == meta["message_count"] == reader.message_count > 0
            for conn, _ts, raw in msgs:
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic == topics["outputs"]["decision"]:
                    seqs.append(json.loads(msg.data)["seq"])
                elif conn.topic == topics["inputs"]["lidar"]:
                    assert msg.width == len(points)
                    n_lidar += 1
                elif conn.topic == topics["inputs"]["camera_front_compressed"]:
                    assert "jpeg" in msg.format  # raw camera frames were JPEG-encoded by the recorder
                    n_jpeg += 1
                assert conn.topic != topics["inputs"]["camera_front"], "raw camera frames must not be stored"
    # Reliable decisions: the closed splits hold a gap-free prefix of what was sent; only the
    # open split (left in splits/_open by the kill) may be missing.
    assert seqs == list(range(len(seqs))), "closed splits are missing or reordering messages"
    assert 0 < len(seqs) <= sent
    assert n_lidar > 0 and n_jpeg > 0
    leftovers = list((out / "splits" / "_open").iterdir())
    assert len(leftovers) <= 1, leftovers
