"""``vla-edge drive`` as a separate process, driven over DDS with the real scans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import real_scan_paths
from doubles import spin_feeding_odometry

pytest.importorskip("rclpy")

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from vla_edge.config import load_config

# Wall-clock DDS timing on a shared 2-core runner (pytest -n 2): a row is retried up to twice;
# a real regression fails every attempt. Behaviour, not speed, is asserted (figures in bench/).
pytestmark = [pytest.mark.ros, pytest.mark.timeout(150), pytest.mark.flaky(reruns=2, reruns_delay=2)]

REPO = Path(__file__).resolve().parents[1]
CHOICES = {"student", "frenet", "emergency_stop", "hold_previous"}
# Executor delays on a loaded 2-core machine shared by several test runs (s), as in test_graph_live.
LOAD_SLACK_S = 0.25


def test_drive_subprocess_plans_on_real_scans(tmp_path: Path) -> None:
    from vla_edge.nodes.feeder import SensorFeeder, load_scan
    from vla_edge.nodes.frames import default_lidar_frame
    from vla_edge.nodes.monitor import GraphMonitor

    scans = [load_scan(str(p)) for p in real_scan_paths()]  # committed Hesai (+ KITTI/nuScenes if fetched)
    log = tmp_path / "drive.log"
    env = os.environ.copy()  # carries ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE from conftest
    rec_dir = tmp_path / "rec"
    cmd = [sys.executable, "-m", "vla_edge", "drive", "--backend", "onnxruntime", "--duration", "90"]
    cmd += ["--record", "--record-dir", str(rec_dir)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    ctx = Context()
    rclpy.init(context=ctx)
    stop = threading.Event()
    executor = SingleThreadedExecutor(context=ctx)
    spinner: threading.Thread | None = None
    try:
        topics = load_config("topics")
        feeder = SensorFeeder(topics, default_lidar_frame(), context=ctx)
        monitor = GraphMonitor(topics, context=ctx)
        executor.add_node(feeder)
        executor.add_node(monitor)

        spinner = spin_feeding_odometry(executor, feeder, stop)
        end = time.monotonic() + 90.0  # interpreter + ONNX Runtime start on a loaded machine
        while time.monotonic() < end:
            r = feeder.readers()
            if r["lidar"] >= 1 and r["odometry"] >= 1 and monitor.matched():
                break
            assert proc.poll() is None, f"vla-edge drive exited early:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        else:
            pytest.fail(f"graph did not match in 90 s: {feeder.readers()}\n{log.read_text()[-3000:]}")
        time.sleep(0.5)  # odometry and path reach the buffers

        def waiting_reported() -> bool:
            with monitor.lock:
                return any(
                    st["message"].startswith("no LiDAR frame yet") and st["level"] == 2
                    for st in monitor.statuses_by_name["vla_edge/inputs"]
                )

        end = time.monotonic() + 5.0
        while not waiting_reported() and time.monotonic() < end:
            time.sleep(0.1)
        assert waiting_reported(), "no ERROR diagnostic while no LiDAR frame has arrived"
        sent = {}
        for i in range(9):
            feeder.set_cloud(scans[i % len(scans)])
            stamp = round(feeder.clock_now(), 6)
            sent[stamp] = feeder.publish_cloud(stamp)
            time.sleep(0.25)  # not a throughput test: leave a loaded machine time for each sweep
        stamps = sorted(sent)[2:]
        end = time.monotonic() + 15.0
        while time.monotonic() < end:
            with monitor.lock:
                decided = {round(d["frame_stamp"], 6) for d in monitor.decisions} & set(stamps)
            if decided == set(stamps):
                break
            time.sleep(0.1)
        assert len(decided) >= (len(stamps) + 1) // 2, f"only {len(decided)}/{len(stamps)} sweeps decided"
        with monitor.lock:
            for traj in monitor.trajectories:
                assert traj["frame_id"] == "base_link" and np.all(np.isfinite(traj["poses"]))
            for d in monitor.decisions:
                assert d["choice"] in CHOICES and (d["choice"] == "student" or d["reasons"])
            assert any(i["name"] == "vla_edge/candidate" for i in monitor.infos)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        text = log.read_text()
        assert rc == 0, f"vla-edge drive exited {rc}:\n{text[-3000:]}"
        assert "drive graph stopped" in text
        # The composed recorder wrote where --record-dir said, as readable rosbag2 splits.
        from vla_edge.bagio import open_bag

        splits = sorted(p for p in (rec_dir / "splits").iterdir() if not p.name.startswith("_"))
        assert splits, f"recorder wrote no split under {rec_dir}"
        with open_bag(splits[0]) as bag:
            seen = {m.topic for m in bag.messages(None, raw=True)}
        assert seen & {topics["inputs"]["lidar"], topics["outputs"]["trajectory"]}, seen
    finally:
        stop.set()
        if spinner is not None:
            spinner.join(timeout=5)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        executor.shutdown(timeout_sec=2.0)
        if ctx.ok():
            rclpy.shutdown(context=ctx)


@pytest.mark.parametrize(
    ("module", "name", "ready"),
    [
        ("vla_edge.nodes.arbiter_node", "arbiter_node", "arbiter ready: deadline=55 ms"),
        ("vla_edge.nodes.inference_node", "inference_node", "inference node ready"),
    ],
)
def test_node_executables_take_what_ros2_launch_passes(
    tmp_path: Path, module: str, name: str, ready: str
) -> None:
    """Run an executable with the arguments launch_ros generates for it (no `launch` wheel here)."""
    params = tmp_path / "drive.yaml"
    shipped = (REPO / "config" / "drive.yaml").read_text()
    assert "      deadline_ms: 70.0 " in shipped
    params.write_text(shipped.replace("      deadline_ms: 70.0 ", "      deadline_ms: 55.0 "))
    cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}", "-r", "__ns:=/vla"]
    cmd += ["--params-file", str(params), "-p", "use_sim_time:=true", "-p", "backend:=onnxruntime"]
    log = tmp_path / "node.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 60
        while ready not in log.read_text() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.1)
        text = log.read_text()
        assert ready in text, text[-3000:]
        assert f"[vla.{name}]" in text  # node name and namespace from the launch remaps
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize(
    "peer",
    [
        "absent",
        # "sigstop" was xfail (issue 14.5: the arbiter decided 1-4 of 10 sweeps in loaded runs).
        # A third-process probe missed the same sweeps: with Fast DDS's default transports the
        # feeder's cloud stopped reaching every reader for 1.2-1.6 s once one reader froze. With
        # config/fastdds_shm.xml, the profile users run (conftest sets it), 6 of 6 loaded runs pass.
        "sigstop",
    ],
)
def test_arbiter_process_falls_back_whatever_the_inference_process_does(
    peer: str, committed_scan_path: Path, tmp_path: Path
) -> None:
    """Separate processes, DDS only (as under ``ros2 launch``): with no inference node at all,
    or with one frozen by SIGSTOP after it ran, every sweep still gets a fallback plan from the
    arbiter's own frames and its deadline timer, within the deadline plus one cycle."""
    from vla_edge.nodes.feeder import SensorFeeder, load_scan
    from vla_edge.nodes.frames import default_lidar_frame
    from vla_edge.nodes.monitor import GraphMonitor
    from vla_edge.params import load_params_file

    scan = load_scan(str(committed_scan_path))
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ("arbiter_node", "inference_node")}
    for name in ["arbiter_node"] + (["inference_node"] if peer == "sigstop" else []):
        cmd = [sys.executable, "-m", f"vla_edge.nodes.{name}", "--ros-args", "-p", "backend:=onnxruntime"]
        with logs[name].open("w") as out:
            procs[name] = subprocess.Popen(
                cmd, cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT
            )
    ctx = Context()
    rclpy.init(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)

    def tail() -> str:
        return "\n".join(p.read_text()[-1500:] for p in logs.values() if p.exists())

    def feed(feeder: SensorFeeder, n: int, sent: list[float]) -> None:
        for k in range(n):  # odometry at 20 Hz, a sweep every 0.2 s
            now = feeder.clock_now()
            feeder.publish_odometry(now)
            if k % 10 == 0:
                feeder.publish_reference_path(now)
            if k % 4 == 3:
                stamp = round(now, 6)
                feeder.publish_cloud(stamp)
                sent.append(stamp)
            t_end = time.monotonic() + 0.05
            while time.monotonic() < t_end:
                executor.spin_once(timeout_sec=0.01)

    try:
        topics = load_config("topics")
        feeder = SensorFeeder(topics, default_lidar_frame(), context=ctx)
        monitor = GraphMonitor(topics, context=ctx)
        executor.add_node(feeder)
        executor.add_node(monitor)
        end = time.monotonic() + 60
        readers = len(procs)
        while not (feeder.readers()["lidar"] >= readers and monitor.sub_traj.get_publisher_count() >= 1):
            assert all(p.poll() is None for p in procs.values()) and time.monotonic() < end, tail()
            executor.spin_once(timeout_sec=0.05)
        feeder.set_cloud(scan)
        if peer == "sigstop":
            warm: list[float] = []
            while not monitor.infos:  # the model ran: the peer is matched and alive
                assert time.monotonic() < end, tail()
                feed(feeder, 4, warm)
            procs["inference_node"].send_signal(signal.SIGSTOP)
        sent: list[float] = []
        feed(feeder, 40, sent)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
            with monitor.lock:
                if {round(d["frame_stamp"], 6) for d in monitor.decisions} >= set(sent[2:]):
                    break
        with monitor.lock:
            decided = [d for d in monitor.decisions if round(d["frame_stamp"], 6) in set(sent)]
    finally:
        executor.shutdown(timeout_sec=2.0)
        if ctx.ok():
            rclpy.shutdown(context=ctx)
        for proc in procs.values():
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    assert len({round(d["frame_stamp"], 6) for d in decided}) >= len(sent) // 2, tail()
    arb = load_params_file(REPO / "config" / "drive.yaml")
    limit = (arb["arbiter.deadline_ms"] + arb["arbiter.cycle_period_ms"]) / 1000.0 + LOAD_SLACK_S
    first: dict[float, dict] = {}
    for d in decided:
        first.setdefault(round(d["frame_stamp"], 6), d)
        assert d["trigger"] in ("watchdog", "superseded", "cycle") and d["choice"] != "student"
        # Absent peer: never a candidate; frozen peer: at most one from before the freeze.
        assert d["candidate_stamp"] is None if peer == "absent" else d["candidate_stamp"] not in set(sent)
    waits = sorted(float(d["now"]) - float(d["frame_rx"]) for d in first.values())
    assert waits[-1] < limit, f"fallback {waits[-1]:.3f} s after the sweep (limit {limit:.3f} s): {waits}"
