"""A silent LiDAR is reported: InputWatch decisions (injected clock) and `vla-edge drive` live."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, requires_rclpy, wait_until

from vla_edge.diagnostics import ERROR, OK
from vla_edge.errors import ConfigError
from vla_edge.input_watch import STATUS_NAME, InputWatch, InputWatchConfig

TOPICS = {"lidar": "/sensing/lidar/points", "odometry": "/localization/odometry"}


def test_silence_alarms_after_timeout_repeats_and_recovers_once() -> None:
    w = InputWatch(InputWatchConfig(3.0, 10.0), TOPICS, start=100.0, hardware_id="hw")
    assert w.poll(102.9, odometry_seen=False) is None
    st = w.poll(103.0, odometry_seen=False)
    assert st is not None and st["level"] == ERROR and st["name"] == STATUS_NAME
    assert "/sensing/lidar/points" in st["message"] and "since start" in st["message"]
    assert "no odometry on /localization/odometry" in st["message"]
    assert st["values"]["sweeps"] == "0"
    assert w.poll(112.9, odometry_seen=True) is None  # not before repeat_s
    again = w.poll(113.0, odometry_seen=True)
    assert again is not None and "odometry is arriving" in again["message"]
    w.lidar(113.1)
    ok = w.poll(113.2, odometry_seen=True)
    assert ok is not None and ok["level"] == OK
    assert w.poll(113.3, odometry_seen=True) is None  # recovery is said once
    late = w.poll(116.2, odometry_seen=True)
    assert late is not None and "since the last sweep" in late["message"] and w.alarms == 3


def test_sweeps_keep_it_quiet() -> None:
    w = InputWatch(InputWatchConfig(1.0, 1.0), TOPICS, start=0.0, hardware_id="hw")
    for k in range(100):
        w.lidar(0.1 * k)
        assert w.poll(0.1 * k + 0.05, odometry_seen=True) is None


def test_config_ranges_are_checked() -> None:
    assert (
        InputWatchConfig.from_config({"input_watch": {"lidar_timeout_s": 3, "repeat_s": 10}}).repeat_s == 10
    )
    with pytest.raises(ConfigError, match=r"input_watch.lidar_timeout_s must be in \[0.1, 600\]"):
        InputWatchConfig.from_config({"input_watch": {"lidar_timeout_s": 0.0, "repeat_s": 10}})
    with pytest.raises(ConfigError, match="missing key 'input_watch'"):
        InputWatchConfig.from_config({})


@requires_rclpy
@pytest.mark.ros
@pytest.mark.timeout(120)
def test_drive_without_lidar_warns_on_console_and_diagnostics(tmp_path: Path, rclpy_context: object) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from vla_edge.nodes import qos

    params = tmp_path / "drive.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    input_watch:\n      lidar_timeout_s: 1.0\n      repeat_s: 1.0\n"
    )
    seen: list[tuple[int, str]] = []
    node = Node("input_watch_listener", context=rclpy_context)
    node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: seen.extend(
            (s.level[0] if isinstance(s.level, bytes) else int(s.level), s.message)
            for s in m.status
            if s.name == STATUS_NAME
        ),
        qos.reliable_qos(),
    )
    ex = SingleThreadedExecutor(context=rclpy_context)
    ex.add_node(node)
    cmd = [
        sys.executable,
        "-m",
        "vla_edge",
        "drive",
        "--config",
        str(params),
        "--backend",
        "onnxruntime",
        "--duration",
        "8",
        "--processes",
        "1",  # the in-process layout also prints the end-of-run summary checked below
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        got = wait_until(
            lambda: bool(seen) or proc.poll() is not None,
            timeout=60.0,
            spin=lambda: ex.spin_once(timeout_sec=0.05),
        )
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        ex.shutdown()
        node.destroy_node()
    assert got and seen, f"no {STATUS_NAME} status on /diagnostics; output:\n{out[-3000:]}"
    level, message = seen[0]
    assert level == ERROR and "sensing/lidar/points" in message  # relative name (namespaced graph)
    assert "NO LIDAR" in out and "no LiDAR sweep arrived on sensing/lidar/points during the whole run" in out
    assert proc.returncode == 0
