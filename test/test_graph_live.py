"""The drive graph in one process over real DDS (loopback), with the real ONNX student.

Inputs are real messages: the real scans of ``../shared/data/lidar`` as PointCloud2,
odometry and a reference path. Faults are injected around the real ONNX Runtime backend
with test doubles named as such (:class:`RaisingBackend`, :class:`SlowBackend`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from conftest import real_scan_paths
from doubles import RaisingBackend, SlowBackend

pytest.importorskip("rclpy")

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from vla_edge.config import load_config

# Wall-clock DDS timing on a shared 2-core runner (pytest -n 2): a row is retried up to twice;
# a real regression fails every attempt. Behaviour, not speed, is asserted (figures in bench/).
pytestmark = [pytest.mark.ros, pytest.mark.timeout(120), pytest.mark.flaky(reruns=2, reruns_delay=2)]

CHOICES = {"student", "frenet", "emergency_stop", "hold_previous"}
CYCLE_S = 0.1
# Executor delays on a loaded 2-core machine shared by several test runs (s).
LOAD_SLACK_S = 0.25


class Harness:
    """Graph + feeder + monitor on one rclpy context."""

    def __init__(self, ctx: Context, scans: list[np.ndarray], share_frames: bool) -> None:
        from vla_edge.nodes.feeder import SensorFeeder
        from vla_edge.nodes.frames import default_lidar_frame
        from vla_edge.nodes.graph import DriveGraph
        from vla_edge.nodes.monitor import GraphMonitor
        from vla_edge.params import resolve_overrides, unflatten
        from vla_edge.pipeline import load_runner

        self.topics = load_config("topics")
        values = resolve_overrides(None, {"backend": "onnxruntime"})
        self.runner = load_runner(unflatten(values))
        self.real_backend = self.runner.backend
        self.share_frames = share_frames
        self.graph = DriveGraph(values, context=ctx, runner=self.runner, share_frames=share_frames).start()
        self.cfg = self.graph.arbiter.cfg
        self.feeder = SensorFeeder(self.topics, default_lidar_frame(), context=ctx)
        self.monitor = GraphMonitor(self.topics, context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.feeder)
        self.executor.add_node(self.monitor)
        self._stop = threading.Event()
        self.odom_on = threading.Event()
        self.odom_on.set()
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._spin.start()
        self._inputs = threading.Thread(target=self._inputs_loop, daemon=True)
        self._inputs.start()
        self.scans = scans

    def _spin_loop(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _inputs_loop(self) -> None:
        k = 0
        while not self._stop.is_set():
            now = self.feeder.clock_now()
            if self.odom_on.is_set():
                self.feeder.publish_odometry(now)
            if k % 4 == 0:
                self.feeder.publish_reference_path(now)
            k += 1
            time.sleep(0.05)  # 20 Hz odometry: enough for interpolation, light on the shared GIL

    def wait_matched(self, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.feeder.readers()
            readers = 1 if self.share_frames else 2  # shared: only the inference node listens
            if (
                r["lidar"] >= readers
                and r["odometry"] >= readers
                and r["reference_path"] >= readers
                and self.monitor.matched()
            ):
                time.sleep(0.3)  # let odometry/path reach the buffers
                return
            time.sleep(0.05)
        raise AssertionError(f"graph did not match in {timeout} s: {self.feeder.readers()}")

    def send(self, scan: np.ndarray) -> tuple[float, float]:
        """Publish one sweep stamped now; return (stamp, wall publish time)."""
        self.feeder.set_cloud(scan)
        stamp = round(self.feeder.clock_now(), 6)
        return stamp, self.feeder.publish_cloud(stamp)

    def drive(self, n: int) -> dict[float, float]:
        """Publish ``n`` sweeps at 10 Hz cycling through the real scans."""
        sent = {}
        for i in range(n):
            stamp, wall = self.send(self.scans[i % len(self.scans)])
            sent[stamp] = wall
            time.sleep(CYCLE_S)
        return sent

    def wait_decided(self, stamps: list[float], timeout: float = 10.0) -> set[float]:
        """Sweeps (of ``stamps``) that got a final trajectory and a decision, waiting for all."""
        end = time.monotonic() + timeout
        while True:
            with self.monitor.lock:
                got = {round(d["frame_stamp"], 6) for d in self.monitor.decisions}
                done = {s for s in stamps if s in got and s in self.monitor.first_rx}
            if len(done) == len(stamps) or time.monotonic() > end:
                return done
            time.sleep(0.05)

    def decision_for(self, stamp: float) -> dict[str, Any]:
        with self.monitor.lock:
            return next(d for d in self.monitor.decisions if round(d["frame_stamp"], 6) == stamp)

    def close(self) -> None:
        self._stop.set()
        self._spin.join(timeout=5)
        self._inputs.join(timeout=5)
        self.graph.stop()
        self.executor.shutdown(timeout_sec=2.0)
        self.feeder.destroy_node()
        self.monitor.destroy_node()


@pytest.fixture(scope="module", params=["own_frames", "shared_frames"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """own_frames: the arbiter assembles from DDS (as under ros2 launch); shared_frames: in-process
    frame and candidate hand-off (as in `vla-edge drive`)."""
    from vla_edge.nodes.feeder import load_scan

    scans = [load_scan(str(p)) for p in real_scan_paths()]  # committed Hesai (+ KITTI/nuScenes if fetched)
    ctx = Context()
    rclpy.init(context=ctx)
    h = None
    try:
        h = Harness(ctx, scans, share_frames=request.param == "shared_frames")
        h.wait_matched()
        yield h
    finally:
        if h is not None:
            h.close()
        if ctx.ok():
            rclpy.shutdown(context=ctx)


def _assert_sensible(choice: str, poses: np.ndarray) -> None:
    """Final plan at 0.1 s steps: never moves backwards; an emergency stop only slows down."""
    steps = np.linalg.norm(np.diff(np.vstack([np.zeros((1, 2)), poses[:, :2]]), axis=0), axis=1)
    assert np.all(steps < 3.0), f"{choice}: step longer than 30 m/s x 0.1 s"
    assert poses[-1, 0] >= -0.5, f"{choice}: plan ends behind the ego"
    if choice == "emergency_stop":
        assert np.all(np.diff(steps) <= 1e-3), f"emergency stop speeds up: {steps}"


def _trajectory_for(h: Harness, stamp: float) -> dict[str, Any]:
    with h.monitor.lock:
        return next(t for t in h.monitor.trajectories if t["stamp"] == stamp)


def _enough(done: set[float], stamps: list[float]) -> None:
    """Most sweeps are decided; a loaded machine may drop some (counted in frame_drop_ratio)."""
    assert len(done) >= max(1, (len(stamps) + 1) // 2), f"only {len(done)}/{len(stamps)} sweeps decided"


def _waited_s(d: dict[str, Any]) -> float:
    """Arbiter clock time from the sweep's arrival to its decision."""
    return float(d["now"]) - float(d["frame_rx"])


def test_real_scans_give_finite_final_trajectories(harness: Harness) -> None:
    sent = harness.drive(9)  # each real scan three times
    stamps = sorted(sent)[2:]  # the first sweeps may precede odometry in the buffers
    done = harness.wait_decided(stamps)
    _enough(done, stamps)
    for s in done:
        traj = _trajectory_for(harness, s)
        assert traj["frame_id"] == "base_link"
        assert len(traj["poses"]) > 0 and np.all(np.isfinite(traj["poses"]))
        d = harness.decision_for(s)
        assert d["choice"] in CHOICES
        if d["choice"] != "student":
            assert d["reasons"], f"fallback without a reason: {d}"
        _assert_sensible(d["choice"], traj["poses"])
    infos = [i for i in harness.monitor.infos if i["name"] == "vla_edge/candidate"]
    assert infos, "inference node published no candidate_info"
    assert {"pillarize_ms", "inference_ms", "conversion_ms", "scores"} <= set(infos[-1]["values"])
    names = {d["name"] for d in harness.monitor.diagnostics}
    assert {"vla_edge/decision", "vla_edge/timing", "vla_edge/inputs"} <= names
    timing = harness.monitor.statuses_by_name["vla_edge/timing"][-1]["values"]
    assert {"conversion_ms", "pillarization_ms", "inference_ms", "arbiter_ms", "model_exec_ms"} <= set(timing)
    assert harness.graph.inference.stats["sweeps"] >= len(sent) - 1


def test_model_raises_falls_back_within_one_cycle(harness: Harness) -> None:
    # Both layouts, strictly: the own-frames row was xfail (decided only at the next sweep,
    # 0.7-1.2 s) while the in-process graph shared one MultiThreadedExecutor, whose dispatch
    # loop starved the arbiter's thread; one executor thread per node fixed it (issue 14).
    harness.runner.backend = RaisingBackend(harness.real_backend)
    try:
        sent = harness.drive(4)
        stamps = sorted(sent)[1:]  # the first may still meet the real model
        done = harness.wait_decided(stamps, timeout=5.0)
    finally:
        harness.runner.backend = harness.real_backend
    _enough(done, stamps)
    limit = harness.cfg["arbiter"]["deadline_ms"] / 1000.0 + CYCLE_S + LOAD_SLACK_S
    for s in done:
        d = harness.decision_for(s)
        assert d["candidate_stamp"] != s, "a candidate for a sweep whose model raised"
        assert _waited_s(d) < limit, f"fallback {_waited_s(d):.3f} s after the sweep: {d['trigger']}"
    errors = [
        st
        for st in harness.monitor.statuses_by_name["vla_edge/input_error"]
        if "RaisingBackend" in st["message"]
    ]
    assert errors and errors[-1]["level"] == 2


def test_model_past_deadline_falls_back_within_one_cycle(harness: Harness) -> None:
    delay = 2.5 * harness.cfg["inference"]["deadline_ms"] / 1000.0
    harness.runner.backend = SlowBackend(harness.real_backend, delay)
    try:
        sent = harness.drive(4)
        stamps = sorted(sent)
        done = harness.wait_decided(stamps, timeout=5.0)
    finally:
        harness.runner.backend = harness.real_backend
    _enough(done, stamps)
    limit = harness.cfg["arbiter"]["deadline_ms"] / 1000.0 + CYCLE_S + LOAD_SLACK_S
    for s in done:
        d = harness.decision_for(s)
        assert d["candidate_stamp"] != s, "a late candidate was used for its own sweep"
        assert d["choice"] in CHOICES
        assert d["trigger"] in ("watchdog", "superseded", "no_candidate"), d["trigger"]
        assert _waited_s(d) < limit, f"watchdog fallback {_waited_s(d):.3f} s after the sweep"
    assert harness.graph.inference.stats["deadline_missed"] >= 1
    time.sleep(delay)  # let the last slow run finish before the next test


def test_malformed_cloud_is_skipped_and_node_stays_alive(harness: Harness) -> None:
    from sensor_msgs.msg import PointCloud2, PointField

    n_err = len(harness.monitor.statuses_by_name["vla_edge/input_error"])
    bad = PointCloud2(height=1, width=100, point_step=16, row_step=1600, is_dense=True)
    bad.fields = [PointField(name="intensity", offset=0, datatype=PointField.FLOAT32, count=1)]  # no x/y/z
    bad.data = bytes(1600)
    bad.header.frame_id = harness.feeder.lidar_frame
    stamp = round(harness.feeder.clock_now(), 6)
    harness.feeder.publish_cloud(stamp, msg=bad)
    end = time.monotonic() + 5.0
    while time.monotonic() < end and len(harness.monitor.statuses_by_name["vla_edge/input_error"]) <= n_err:
        time.sleep(0.05)
    errs = harness.monitor.statuses_by_name["vla_edge/input_error"][n_err:]
    assert errs and any(e["values"].get("error_type") == "PointCloudError" for e in errs), errs
    assert not harness.wait_decided([stamp], timeout=0.5), "a malformed sweep was planned on"
    from nav_msgs.msg import Odometry

    n_err = len(harness.monitor.statuses_by_name["vla_edge/input_error"])
    nan_odom = Odometry()
    nan_odom.header.stamp.sec = int(stamp)
    nan_odom.header.frame_id = "odom"
    nan_odom.pose.pose.position.x = float("nan")
    nan_odom.pose.pose.orientation.w = 1.0
    harness.feeder.pub_odom.publish(nan_odom)
    end = time.monotonic() + 5.0
    while time.monotonic() < end and len(harness.monitor.statuses_by_name["vla_edge/input_error"]) <= n_err:
        time.sleep(0.05)
    errs = harness.monitor.statuses_by_name["vla_edge/input_error"][n_err:]
    assert any(e["values"].get("stage") == "odometry" for e in errs), errs
    sent = harness.drive(3)  # still alive: good sweeps get planned again
    _enough(harness.wait_decided(sorted(sent)), sorted(sent))


def test_odometry_stops_input_flagged_stale_and_arbiter_degrades(harness: Harness) -> None:
    harness.odom_on.clear()
    try:
        time.sleep(0.6)  # past the odometry staleness limit
        sent = harness.drive(4)
        stamps = sorted(sent)
        done = harness.wait_decided(stamps, timeout=5.0)
    finally:
        harness.odom_on.set()
    _enough(done, stamps)
    with harness.monitor.lock:
        inputs = list(harness.monitor.statuses_by_name["vla_edge/inputs"])
    stale = [st for st in inputs if "odometry" in st["values"].get("stale", "")]
    assert stale and all(st["level"] == 2 for st in stale), "stale odometry not flagged as ERROR"
    for s in done:
        d = harness.decision_for(s)
        assert d["choice"] != "student", f"student plan used on stale odometry: {d}"
        assert d["reasons"]


def test_hostile_candidate_info_is_counted_and_the_graph_goes_on(harness: Harness) -> None:
    """Any node on the domain may publish anything on candidate_info (issue 14): malformed
    candidates become a counted ERROR diagnostic, never an exception, and planning goes on."""
    if harness.share_frames:
        pytest.skip("in process the arbiter takes candidates directly, not from candidate_info")
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    from vla_edge.nodes import qos

    pub = harness.feeder.create_publisher(
        DiagnosticStatus, harness.topics["outputs"]["candidate_info"], qos.reliable_qos()
    )
    end = time.monotonic() + 10.0
    while pub.get_subscription_count() < 2 and time.monotonic() < end:  # arbiter + monitor
        time.sleep(0.05)
    hostile = [
        [KeyValue(key="scores", value="not json"), KeyValue(key="stamp", value="1.0")],  # the old format
        [KeyValue(key="candidate", value='{"v": 1, "stamp": 1.0, "trajectory": {"poses": "x"}}')],
        [KeyValue(key="candidate", value="[" * 100000)],
        [KeyValue(key="candidate", value='{"v": 2, "stamp": 1.0}')],
    ]
    before = harness.graph.arbiter.loop.stats["malformed_candidates"]
    for values in hostile:
        pub.publish(DiagnosticStatus(name="vla_edge/candidate", values=values))
    end = time.monotonic() + 5.0
    while harness.graph.arbiter.loop.stats["malformed_candidates"] < before + len(hostile):
        assert time.monotonic() < end, harness.graph.arbiter.loop.stats
        time.sleep(0.05)
    errs = [
        st
        for st in harness.monitor.statuses_by_name["vla_edge/input_error"]
        if st["values"].get("stage") == "candidate"
    ]
    assert errs and "MalformedCandidate" in errs[-1]["message"] and errs[-1]["level"] == 2
    sent = harness.drive(3)
    _enough(harness.wait_decided(sorted(sent)), sorted(sent))
    harness.feeder.destroy_publisher(pub)
