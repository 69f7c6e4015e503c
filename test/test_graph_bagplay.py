"""Bag player over DDS (with /clock) and the `vla-edge demo` end to end on a short sim bag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from vla_edge.config import load_config

pytestmark = [pytest.mark.ros, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla_edge.sim.bag import write_scenario_bag

    path = tmp_path_factory.mktemp("bags") / "airside_seed3_3s"
    write_scenario_bag(path, seed=3, seconds=3.0, camera_mode="none")
    return path


def test_header_stamp_from_cdr(sim_bag: Path) -> None:
    from vla_edge.bagio import open_bag, read_raw
    from vla_edge.cli.demo import header_stamp

    lidar = load_config("topics")["inputs"]["lidar"]
    raw = next(r for r in read_raw(sim_bag, topics=[lidar]))
    with open_bag(sim_bag) as bag:
        msg = next(bag.messages([lidar])).msg
    assert header_stamp(raw[3]) == pytest.approx(
        msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, abs=1e-6
    )


def test_bag_player_publishes_raw_cdr_with_clock(sim_bag: Path) -> None:
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2

    from vla_edge.bagio import read_raw
    from vla_edge.errors import BagError
    from vla_edge.nodes.bag_player import BagPlayer, RawMessage, message_class
    from vla_edge.nodes.qos import sensor_qos

    topics = load_config("topics")["inputs"]
    wanted = [topics["lidar"], topics["odometry"]]
    records = [RawMessage(t, mt, ns, bytes(d)) for t, mt, ns, d in read_raw(sim_bag, topics=wanted)]
    records.sort(key=lambda r: r.timestamp_ns)
    types = {r.topic: r.msgtype for r in records}
    n_lidar = sum(r.topic == topics["lidar"] for r in records)
    assert n_lidar >= 20

    with pytest.raises(BagError, match="not available"):
        message_class("no_such_pkg/msg/Nothing")

    ctx = Context()
    rclpy.init(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    stop = threading.Event()
    spinner = None
    try:
        player = BagPlayer(types, rate=4.0, context=ctx)
        sink = rclpy.create_node("bagplay_sink", context=ctx)
        got: dict[str, list[float]] = {"lidar": [], "odom": [], "clock": []}
        sink.create_subscription(
            PointCloud2,
            topics["lidar"],
            lambda m: got["lidar"].append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9),
            sensor_qos(50),
        )
        sink.create_subscription(
            Odometry, topics["odometry"], lambda m: got["odom"].append(1.0), sensor_qos(100)
        )
        sink.create_subscription(
            Clock,
            "/clock",
            lambda m: got["clock"].append(m.clock.sec + m.clock.nanosec * 1e-9),
            sensor_qos(100),
        )
        executor.add_node(sink)
        spinner = threading.Thread(
            target=lambda: [executor.spin_once(timeout_sec=0.02) for _ in iter(stop.is_set, True)],
            daemon=True,
        )
        spinner.start()
        assert player.wait_for_subscribers(types, timeout=20.0)
        end = time.monotonic() + 10
        while player.clock_pub.get_subscription_count() < 1 and time.monotonic() < end:
            time.sleep(0.05)
        stats = player.play(records)
        end = time.monotonic() + 10
        while len(got["lidar"]) < n_lidar and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        if spinner is not None:
            spinner.join(timeout=5)
        executor.shutdown(timeout_sec=2.0)
        rclpy.shutdown(context=ctx)
    assert stats.published[topics["lidar"]] == n_lidar
    assert stats.wall_s < stats.bag_span_s  # 4x faster than real time
    assert len(got["lidar"]) >= n_lidar - 1  # best-effort reader on loopback
    assert got["lidar"] == sorted(got["lidar"])
    assert got["clock"] and got["clock"] == sorted(got["clock"]), "/clock went backwards"
    last_ns = max(r.timestamp_ns for r in records)
    assert got["clock"][-1] == pytest.approx(last_ns * 1e-9, abs=1e-3)


def test_demo_command_end_to_end(tmp_path: Path) -> None:
    """`vla-edge demo` on a 3 s bag: generates, plays into the live graph, summarises, exits 0."""
    env = os.environ.copy()
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, "-m", "vla_edge", "demo", "--seconds", "3", "--seed", "1"]
    cmd += ["--out", str(out), "--cache", str(cache)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=140)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] >= 25 and summary["trajectories"] > 0
    assert sum(summary["decisions"].values()) > 0
    assert set(summary["decisions"]) <= {"student", "frenet", "emergency_stop", "hold_previous"}
    assert (out / "summary.txt").read_text().strip()
    assert "[4/4] summary" in proc.stdout and "latency e2e" in proc.stdout
    # Second run reuses the cached bag.
    proc2 = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=140)
    assert proc2.returncode == 0 and "reusing cached" in proc2.stdout
