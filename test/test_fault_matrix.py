"""Fault matrix (issue 14): hostile input against the live drive graph, one row per fault.

One graph (arbiter with its own LiDAR subscription, as under ``ros2 launch``; inference
node in the same process; real DDS on loopback, real ONNX student, real planner) serves
every row. Each graph row injects its fault, then sends good sweeps, and asserts:

1. no crash, no hang: the good sweeps after the fault are decided again;
2. no non-finite or unsafe plan: every trajectory published meanwhile is finite and sane,
   and no sweep with unusable points is planned on by the student or Frenet;
3. fallback or controlled stop within the stated time (``expect`` of the row);
4. a diagnostic naming the fault (``diag`` regex on ``/diagnostics`` or ``candidate_info``).

Offline rows (config, bags, disk) assert the load-time / read-time equivalent. Test
doubles are named as such (``RaisingBackend``, ``SlowBackend``, ``NaNBackend``). A row
marked ``xfail`` (``Row.xfail``, ``PROC_ROWS``) says why it is not yet reliable.
``FAULT_MATRIX_OUT=<file>`` writes the measured value of every row (for docs/safety.md).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

import rclpy
from rclpy.context import Context
from test_graph_live import LOAD_SLACK_S, Harness, RaisingBackend, SlowBackend

from vla_edge.config import load_config
from vla_edge.errors import ConfigError

# Wall-clock DDS timing on a shared 2-core runner (pytest -n 2): a row is retried up to twice;
# a real regression fails every attempt. Behaviour, not speed, is asserted (figures in bench/).
pytestmark = [pytest.mark.ros, pytest.mark.timeout(90), pytest.mark.flaky(reruns=2, reruns_delay=2)]

CYCLE_S = 0.1
MEASURED: dict[str, str] = {}


class NaNBackend:
    """Test double: runs the real ORT backend, then poisons its trajectories with NaN."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.name = "nan-test-double"

    def __getattr__(self, item: str) -> Any:
        return getattr(self.real, item)

    def infer(self, inputs: dict[str, np.ndarray]) -> Any:
        out = self.real.infer(inputs)
        out.trajectories = np.full_like(out.trajectories, np.nan)
        return out


class FaultHarness(Harness):
    """The live-graph harness with the compressed camera on and a switchable path feed."""

    def __init__(self, ctx: Context, scans: list[np.ndarray]) -> None:
        from vla_edge import params as params_mod

        # Harness reads vla_edge.params.resolve_overrides at call time: patch it there, or the
        # camera stays off and the image rows test nothing.
        real = params_mod.resolve_overrides
        params_mod.resolve_overrides = lambda f, cli=None, node_name=None: real(
            f, {**(cli or {}), "camera": "compressed"}, node_name
        )
        self.path_on = threading.Event()
        self.path_on.set()
        try:
            super().__init__(ctx, scans, share_frames=False)
        finally:
            params_mod.resolve_overrides = real
        assert self.cfg["camera"] == "compressed", "the fault graph runs without its camera"
        self.values = params_mod.resolve_overrides(None, {"backend": "onnxruntime", "camera": "compressed"})
        from diagnostic_msgs.msg import DiagnosticStatus
        from nav_msgs.msg import Path as PathMsg
        from sensor_msgs.msg import CompressedImage

        from vla_edge.nodes import qos

        out, inp = self.topics["outputs"], self.topics["inputs"]
        self.pub_image = self.feeder.create_publisher(
            CompressedImage, inp["camera_front_compressed"], qos.sensor_qos()
        )
        self.pub_cand = self.feeder.create_publisher(PathMsg, out["candidate_trajectory"], qos.reliable_qos())
        self.pub_info = self.feeder.create_publisher(
            DiagnosticStatus, out["candidate_info"], qos.reliable_qos()
        )

    def _inputs_loop(self) -> None:
        k = 0
        while not self._stop.is_set():
            now = self.feeder.clock_now()
            if self.odom_on.is_set():
                self.feeder.publish_odometry(now)
            if k % 4 == 0 and self.path_on.is_set():
                self.feeder.publish_reference_path(now)
            k += 1
            time.sleep(0.05)


@pytest.fixture(scope="module")
def fh(shared_data: Path) -> Iterator[FaultHarness]:
    from vla_edge.nodes.feeder import load_scan

    scans = [load_scan(str(p)) for p in sorted((shared_data / "lidar").iterdir())]
    ctx = Context()
    rclpy.init(context=ctx)
    h = None
    try:
        h = FaultHarness(ctx, scans)
        h.wait_matched()
        h.drive(5)  # warm-up: buffers, hysteresis, tracker
        yield h
    finally:
        if h is not None:
            h.close()
        if ctx.ok():
            rclpy.shutdown(context=ctx)
        out = os.environ.get("FAULT_MATRIX_OUT")
        if out:
            Path(out).write_text(json.dumps(MEASURED, indent=1) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ injection helpers
def _cloud(h: FaultHarness, points: np.ndarray) -> Any:
    from vla_edge.conversions import xyzi_to_pointcloud2
    from vla_edge.msgfactory import RclpyFactory

    return xyzi_to_pointcloud2(np.asarray(points, np.float32), RclpyFactory(), 0.0, h.feeder.lidar_frame)


def _send(
    h: FaultHarness, msg: Any = None, n: int = 3, stamp_fn: Callable[[float], float] | None = None
) -> list:
    """Publish ``n`` sweeps (``msg`` or the good scan) at 10 Hz; return [(stamp, wall)]."""
    sent = []
    for i in range(n):
        if msg is None:
            h.feeder.set_cloud(h.scans[i % len(h.scans)])
        now = round(h.feeder.clock_now(), 6)
        stamp = round(stamp_fn(now), 6) if stamp_fn else now
        sent.append((stamp, h.feeder.publish_cloud(stamp, msg=msg)))
        time.sleep(CYCLE_S)
    return sent


def _odom(h: FaultHarness, **fields: float) -> Any:
    from nav_msgs.msg import Odometry

    from vla_edge.nodes import messages

    msg = Odometry()
    msg.header = messages.header_msg(h.feeder.clock_now(), h.feeder.odom_frame)
    msg.child_frame_id = "base_link"
    msg.pose.pose.orientation.w = 1.0
    for k, v in fields.items():
        obj = msg
        *parents, leaf = k.split(".")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, leaf, v)
    return msg


def _bad_odom(**fields: float) -> Callable[[FaultHarness], list]:
    def inject(h: FaultHarness) -> list:
        for _ in range(3):
            h.feeder.pub_odom.publish(_odom(h, **fields))
            time.sleep(0.02)
        return _send(h, n=3)

    return inject


def _image(h: FaultHarness, data: bytes, fmt: str = "jpeg") -> Any:
    from sensor_msgs.msg import CompressedImage

    from vla_edge.nodes import messages

    msg = CompressedImage(format=fmt, data=list(data) if False else data)
    msg.header = messages.header_msg(h.feeder.clock_now(), "camera_front")
    return msg


def _good_jpeg() -> bytes:
    import cv2

    ok, enc = cv2.imencode(".jpg", np.full((90, 160, 3), 128, np.uint8))
    assert ok
    return enc.tobytes()


def _bad_image(make: Callable[[], bytes], fmt: str = "jpeg") -> Callable[[FaultHarness], list]:
    def inject(h: FaultHarness) -> list:
        sent = []
        for _ in range(3):
            h.pub_image.publish(_image(h, make(), fmt))
            sent += _send(h, n=1)
        h.pub_image.publish(_image(h, _good_jpeg()))  # clean camera buffer for the next rows
        return sent

    return inject


def _huge_jpeg() -> bytes:
    """A real JPEG whose SOF0 header is patched to declare 65500 x 65500 pixels."""
    b = bytearray(_good_jpeg())
    i = b.index(b"\xff\xc0")
    struct.pack_into(">HH", b, i + 5, 65500, 65500)
    return bytes(b)


def _swap_backend(make: Callable[[Any], Any], delay_after: float = 0.0) -> Callable[[FaultHarness], list]:
    def inject(h: FaultHarness) -> list:
        h.runner.backend = make(h.real_backend)
        try:
            return _send(h, n=4)
        finally:
            h.runner.backend = h.real_backend
            time.sleep(delay_after)

    return inject


def _swap_runner(make_path: Callable[[Path], Path]) -> Callable[[FaultHarness], list]:
    """Replace the student with what ``load_runner`` gives for a bad engine file."""

    def inject(h: FaultHarness) -> list:
        from vla_edge.inference import DisabledStudent
        from vla_edge.nodes.params import unflatten
        from vla_edge.pipeline import load_runner

        tmp = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"faults_engine_{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        path = make_path(tmp)
        runner = load_runner(unflatten({**h.values, "engine_path": str(path)}), allow_disabled=True)
        assert isinstance(runner, DisabledStudent), "a bad engine was loaded"
        pipe = h.graph.inference.pipeline
        pipe.runner = runner
        try:
            return _send(h, n=4)
        finally:
            pipe.runner = h.runner
            shutil.rmtree(tmp, ignore_errors=True)

    return inject


def _tampered(tmp: Path) -> Path:
    from vla_edge.config import engines_dir

    for f in ("student.onnx", "student.json"):
        shutil.copy(engines_dir() / f, tmp / f)
    data = bytearray((tmp / "student.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp / "student.onnx").write_bytes(bytes(data))
    return tmp / "student.onnx"


def _path_msg(h: FaultHarness, frame: str, xs: list[float]) -> Any:
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path as PathMsg

    from vla_edge.nodes import messages

    now = h.feeder.clock_now()
    msg = PathMsg(header=messages.header_msg(now, frame))
    for x in xs:
        ps = PoseStamped(header=messages.header_msg(now, frame))
        ps.pose.position.x = float(x)
        ps.pose.orientation.w = 1.0
        msg.poses.append(ps)
    return msg


def _bad_path(frame: str, xs: list[float]) -> Callable[[FaultHarness], list]:
    def inject(h: FaultHarness) -> list:
        h.path_on.clear()
        try:
            time.sleep(0.25)
            h.feeder.pub_path.publish(_path_msg(h, frame, xs))
            time.sleep(0.05)
            return _send(h, n=3)
        finally:
            h.path_on.set()
            time.sleep(0.25)

    return inject


def _cand(h: FaultHarness, stamp: float, poses: np.ndarray) -> Any:
    from vla_edge.conversions import trajectory_to_path
    from vla_edge.msgfactory import RclpyFactory
    from vla_edge.types import Trajectory

    traj = Trajectory(poses=poses, dt=0.5, stamp=stamp)
    return trajectory_to_path(traj, RclpyFactory(), frame_id="base_link")


def _hostile_candidate(h: FaultHarness) -> list:
    """A peer's candidate with a NaN pose, on candidate_trajectory (RViz/recorder only, the
    arbiter does not read it) and encoded on candidate_info (what the arbiter decodes)."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    from vla_edge import candidate

    stamp = h.feeder.clock_now()
    msg = _cand(h, stamp, np.zeros((8, 3)))
    msg.poses[3].pose.position.x = float("nan")
    h.pub_cand.publish(msg)
    poses = [[0.5 * (k + 1), 0.0, 0.0] for k in range(8)]
    poses[3][0] = float("nan")  # json.dumps writes the NaN token, json.loads reads it back
    text = json.dumps(
        {"v": candidate.VERSION, "stamp": stamp, "trajectory": {"stamp": stamp, "dt": 0.5, "poses": poses}}
    )
    h.pub_info.publish(
        DiagnosticStatus(name="vla_edge/candidate", values=[KeyValue(key=candidate.KEY, value=text)])
    )
    return _send(h, n=3)


def _future_candidate(h: FaultHarness) -> list:
    """A well-formed candidate stamped +1 h, on candidate_trajectory and on candidate_info
    (the one the arbiter reads); kept, it would outrank every real candidate."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    from vla_edge import candidate
    from vla_edge.types import Trajectory

    poses = np.column_stack([np.arange(1, 9) * 2.0, np.zeros(8), np.zeros(8)])
    stamp = h.feeder.clock_now() + 3600.0
    h.pub_cand.publish(_cand(h, stamp, poses))
    c = candidate.Candidate(stamp, Trajectory(poses=poses, dt=0.5, stamp=stamp, source="student"))
    h.pub_info.publish(
        DiagnosticStatus(
            name="vla_edge/candidate", values=[KeyValue(key=candidate.KEY, value=candidate.encode(c))]
        )
    )
    time.sleep(0.1)
    return _send(h, n=8)


def _bad_info(h: FaultHarness) -> list:
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    st = DiagnosticStatus(name="vla_edge/candidate", message="hostile")
    st.values = [
        KeyValue(key="stamp", value=f"{h.feeder.clock_now():.6f}"),
        KeyValue(key="scores", value="{not json"),
    ]
    h.pub_info.publish(st)
    return _send(h, n=3)


def _flood(h: FaultHarness) -> list:
    h.feeder.set_cloud(h.scans[0])
    sent = []
    for _ in range(100):  # 100 Hz for 1 s
        stamp = round(h.feeder.clock_now(), 6)
        sent.append((stamp, h.feeder.publish_cloud(stamp)))
        time.sleep(0.01)
    return []  # no per-sweep expectation: drops must be reported, the graph must live


# ------------------------------------------------------------------ offline rows
def _cfg_nan_cycle(_: Any) -> str:
    from vla_edge.nodes.params import resolve_overrides

    with pytest.raises(
        ConfigError,
        match=r"^command line: arbiter\.cycle_period_ms = NaN: .*finite.*"
        r"\(allowed: number, 0 < value\)",
    ):
        resolve_overrides(None, {"arbiter.cycle_period_ms": float("nan")})
    return "refused at load: command line arbiter.cycle_period_ms = NaN, allowed 0 < value"


def _cfg_negative_span(_: Any) -> str:
    from vla_edge.frame_assembly import FrameAssemblyConfig

    cfg = load_config("frame")
    cfg["odometry"]["buffer_span_s"] = -1.0
    with pytest.raises(
        ConfigError, match=r"^frame\.yaml: odometry\.buffer_span_s = -1\.0: .*\(allowed: number, 0 < value\)"
    ):
        FrameAssemblyConfig.from_config(cfg)
    return "refused at load: frame.yaml odometry.buffer_span_s = -1.0, allowed 0 < value"


def _cfg_arbiter_nan(tmp: Path) -> str:
    from vla_edge.planning.arbiter import ArbiterParams

    # An override file: refused at load, naming the file.
    (tmp / "arbiter.yaml").write_text("arbiter:\n  timing:\n    frame_deadline: .nan\n", encoding="utf-8")
    allowed = r"\(allowed: number, 0 < value\)"
    key = r"arbiter\.timing\.frame_deadline = NaN: .*"
    with pytest.raises(ConfigError, match=r"arbiter\.yaml: " + key + allowed):
        load_config(str(tmp / "arbiter.yaml"), kind="arbiter")
    # An in-memory mapping (no file to name): refused by the same schema.
    cfg = {**load_config("arbiter"), **load_config("vehicle")}
    cfg["arbiter"] = json.loads(json.dumps(cfg["arbiter"]))
    cfg["arbiter"]["timing"]["frame_deadline"] = float("nan")
    with pytest.raises(ConfigError, match=key + allowed):
        ArbiterParams.from_config(cfg)
    return "refused at load: arbiter.yaml arbiter.timing.frame_deadline = NaN, allowed 0 < value"


def _bag(tmp: Path) -> Path:
    from vla_edge.bagio import BagWriter
    from vla_edge.conversions import xyzi_to_pointcloud2
    from vla_edge.msgfactory import RosbagsFactory

    f = RosbagsFactory()
    rng = np.random.default_rng(0)
    with BagWriter(tmp / "bag") as w:
        for i in range(24):
            pts = rng.uniform(-20, 20, (8000, 4)).astype(np.float32)
            w.write(
                "/l", "sensor_msgs/msg/PointCloud2", xyzi_to_pointcloud2(pts, f, i, "lidar"), float(i + 1)
            )
    return next((tmp / "bag").glob("*.mcap"))


def _bag_cut_short(tmp: Path) -> str:
    from vla_edge.bagio import open_bag

    mcap = _bag(tmp)
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size * 2 // 3])
    with open_bag(tmp / "bag") as bag:
        n = sum(1 for _ in bag.messages())
        assert bag.problems and re.search(r"\.mcap at byte \d+: .*cut short", bag.problems[0]), bag.problems
    assert n >= 8
    return f"{n}/24 messages read; problem names file and byte offset"


def _bag_garbage(tmp: Path) -> str:
    from vla_edge.bagio import open_bag
    from vla_edge.errors import BagError

    mcap = _bag(tmp)
    mcap.write_bytes(b"\x89MCAP0\r\n" + bytes(100))
    with pytest.raises(BagError, match=r"no readable message in .*at byte 8"):
        open_bag(tmp / "bag").__enter__()
    return "BagError naming file and offset (no traceback)"


def _disk_unwritable(tmp: Path) -> str:
    from vla_edge.recording import Recorder

    cfg = load_config("recorder")
    cfg["ring"]["min_free_mb"] = 1
    (tmp / "file").write_text("x")
    rec = Recorder.from_config(cfg, "topics", tmp / "file" / "log")
    assert not rec.start()
    assert not rec.record("/sensing/lidar/points", "sensor_msgs/msg/PointCloud2", b"\x00\x01\x00\x00")
    st = rec.status()
    assert st.level == "ERROR", st
    return f"recorder off, ERROR: {st.message[:60]}"


# ------------------------------------------------------------------ the matrix
@dataclass(frozen=True)
class Row:
    """One fault: how to inject it, what must happen, which diagnostic names it."""

    name: str
    inject: Callable[[Any], Any]
    expect: str  # stop | fallback | refused | ignored | alive | offline
    diag: str = ""  # regex over /diagnostics + candidate_info messages and values
    xfail: str = ""


def _pts(n: int, fill: float | None = None, scale: float = 1.0) -> Callable[[FaultHarness], list]:
    def inject(h: FaultHarness) -> list:
        pts = h.scans[0][:n].copy() if n >= 0 else h.scans[0].copy()
        if fill is not None:
            pts[:, :3] = fill
        pts[:, :3] *= scale
        return _send(h, _cloud(h, pts if n != 0 else np.zeros((0, 4), np.float32)))

    return inject


def _big_endian(h: FaultHarness) -> list:
    msg = _cloud(h, h.scans[0])
    msg.is_bigendian = True  # little-endian data flagged big-endian
    return _send(h, msg)


def _no_xyz(h: FaultHarness) -> list:
    from sensor_msgs.msg import PointCloud2, PointField

    bad = PointCloud2(height=1, width=100, point_step=16, row_step=1600, is_dense=True)
    bad.fields = [PointField(name="intensity", offset=0, datatype=PointField.FLOAT32, count=1)]
    bad.data = bytes(1600)
    bad.header.frame_id = h.feeder.lidar_frame
    return _send(h, bad)


def _short_data(h: FaultHarness) -> list:
    msg = _cloud(h, h.scans[0])
    msg.data = bytes(msg.data)[: len(msg.data) // 2]
    return _send(h, msg)


def _unknown_frame(h: FaultHarness) -> list:
    msg = _cloud(h, h.scans[0])
    msg.header.frame_id = "no_such_lidar"
    return _send(h, msg)


def _stamp(fn: Callable[[float], float]) -> Callable[[FaultHarness], list]:
    def inject(h: FaultHarness) -> list:
        msg = _cloud(h, h.scans[0])
        return _send(h, msg, stamp_fn=fn)

    return inject


def _clock_jump(h: FaultHarness) -> list:
    """Sweeps stamped 1.5 s back, right after a decided sweep: a clock reset for the DriveLoop
    (more than arbiter.time_jump_ms = 1 s before the last decided stamp) yet within
    lidar.max_stamp_skew_s = 2 s of the node clock. Waiting for that decision keeps the
    margin on both sides whatever the load (a step back under 1 s is refused as out of order)."""
    for _ in range(3):  # a best-effort sweep may be lost under load: try again
        (last,) = _send(h, n=1)
        if h.wait_decided([last[0]], timeout=3.0):
            break
    else:
        raise AssertionError("no sweep before the jump was decided")
    msg = _cloud(h, h.scans[0])
    return _send(h, msg, stamp_fn=lambda now: now - 1.5)


def _odom_stopped(h: FaultHarness) -> list:
    h.odom_on.clear()
    try:
        time.sleep(0.6)
        return _send(h, n=4)
    finally:
        h.odom_on.set()
        time.sleep(0.3)


ROWS = [
    # clouds
    Row("cloud_empty", _pts(0), "stop", r"points_invalid: 0 plausible"),
    Row("cloud_all_nan", _pts(-1, fill=float("nan")), "stop", r"points_invalid"),
    Row("cloud_endianness_flag_wrong", _big_endian, "stop", r"points_invalid"),
    Row("cloud_10_points", _pts(10), "stop", r"points_invalid: \d+ plausible returns of 10 "),
    Row("cloud_coords_1e30", _pts(-1, scale=1e30), "stop", r"points_invalid"),
    Row("cloud_missing_xyz_fields", _no_xyz, "refused", r"PointCloudError"),
    Row("cloud_data_truncated", _short_data, "refused", r"PointCloudError"),
    Row("cloud_unknown_frame_id", _unknown_frame, "refused", r"no_such_lidar"),
    # stamps and clock
    Row("stamp_zero", _stamp(lambda now: 0.0), "refused", r"max_stamp_skew_s"),
    Row("stamp_2038", _stamp(lambda now: 2.0**31 - 1.0), "refused", r"max_stamp_skew_s"),
    Row("stamp_one_hour_ahead", _stamp(lambda now: now + 3600.0), "refused", r"max_stamp_skew_s"),
    Row("clock_jump_back_1_5s", _clock_jump, "fallback", r"time_jump_reset"),
    Row("lidar_flood_100hz", _flood, "alive", r"dropping \d+% of sweeps"),
    # odometry
    Row("odom_nan_position", _bad_odom(**{"pose.pose.position.x": float("nan")}), "ignored", r"non-finite"),
    Row("odom_quaternion_1e200", _bad_odom(**{"pose.pose.orientation.w": 1e200}), "ignored", r"norm 1e\+200"),
    Row("odom_quaternion_zero", _bad_odom(**{"pose.pose.orientation.w": 0.0}), "ignored", r"all zeros"),
    Row("odom_yaw_rate_1e30", _bad_odom(**{"twist.twist.angular.z": 1e30}), "ignored", r"max_yaw_rate"),
    Row("odom_stopped", _odom_stopped, "fallback", r"stale: .*odometry"),
    # reference path
    Row(
        "path_wrong_frame",
        _bad_path("map", list(range(-10, 100))),
        "refused",
        r"reference path is in frame 'map'",
    ),
    Row("path_empty", _bad_path("odom", []), "fallback", r"reference_path"),
    # camera (compressed)
    Row("jpeg_header_65500x65500", _bad_image(_huge_jpeg), "ignored", r"65500x65500.*max_decoded_pixels"),
    Row("jpeg_garbage", _bad_image(lambda: b"\xff\xd8" + bytes(range(256)) * 4), "ignored", r"ImageError"),
    Row("png_truncated", _bad_image(lambda: _png()[:60], "png"), "ignored", r"ImageError"),
    Row("image_format_tiff", _bad_image(lambda: b"II*\x00" + bytes(64), "tiff"), "ignored", r"unsupported"),
    # engine
    Row("model_raises", _swap_backend(RaisingBackend), "fallback", r"RaisingBackend"),
    Row(
        "model_past_deadline",
        _swap_backend(lambda r: SlowBackend(r, 0.25), 0.3),
        "fallback",
        r"deadline",
    ),
    Row("model_nan_output", _swap_backend(NaNBackend), "fallback", r"non-finite outputs"),
    Row("engine_missing", _swap_runner(lambda t: t / "missing.onnx"), "fallback", r"student disabled"),
    Row("engine_tampered", _swap_runner(_tampered), "fallback", r"student disabled.*(sha256|Manifest)"),
    # hostile peers
    Row("peer_candidate_nan_pose", _hostile_candidate, "ignored", r"non-finite"),
    # config, bags, disk (load/read time)
    Row("config_cycle_period_nan", _cfg_nan_cycle, "offline"),
    Row("config_negative_buffer_span", _cfg_negative_span, "offline"),
    Row("config_arbiter_nan", _cfg_arbiter_nan, "offline"),
    Row("bag_cut_short", _bag_cut_short, "offline"),
    Row("bag_garbage_records", _bag_garbage, "offline"),
    Row("disk_output_unwritable", _disk_unwritable, "offline"),
    Row("peer_info_scores_not_json", _bad_info, "ignored", r"MalformedCandidate"),
    Row("peer_candidate_one_hour_ahead", _future_candidate, "ignored", r"s after the newest frame"),
]


def _png() -> bytes:
    import cv2

    ok, enc = cv2.imencode(".png", np.full((90, 160, 3), 77, np.uint8))
    assert ok
    return enc.tobytes()


def _params() -> list[Any]:
    out = []
    for r in ROWS:
        marks = [pytest.mark.xfail(reason=r.xfail, strict=False)] if r.xfail else []
        out.append(pytest.param(r, id=r.name, marks=marks))
    return out


def _sane(poses: np.ndarray) -> None:
    assert poses.size and np.all(np.isfinite(poses)), "non-finite trajectory published"
    steps = np.linalg.norm(np.diff(np.vstack([np.zeros((1, 2)), poses[:, :2]]), axis=0), axis=1)
    assert np.all(steps < 3.0), "step longer than 30 m/s x 0.1 s"
    assert poses[-1, 0] >= -0.5, "plan ends behind the ego"


def _first_decisions(decs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first decision of each frame: the fallback. Later ``cycle`` decisions re-decide
    the same frame while no newer one arrives (sweeps dropped under load)."""
    first: dict[float, dict[str, Any]] = {}
    for d in decs:
        k = round(d["frame_stamp"], 6)
        if k not in first or d["now"] < first[k]["now"]:
            first[k] = d
    return list(first.values())


@pytest.mark.parametrize("row", _params())
def test_fault(row: Row, fh: FaultHarness, tmp_path: Path) -> None:
    if row.expect == "offline":
        MEASURED[row.name] = row.inject(tmp_path)
        return
    h, mon = fh, fh.monitor
    assert h.graph._thread is None or h.graph._thread.is_alive(), "graph thread died in an earlier row"
    with mon.lock:
        marks = (len(mon.trajectories), len(mon.decisions), len(mon.diagnostics), len(mon.infos))
    t_start = time.time()
    sent = row.inject(h)
    fault = {s for s, _ in sent}
    t_end = time.time()
    # 1. no crash / no hang: good sweeps are decided again
    good = _send(h, n=4)
    # All decided, or most of them and 1 s of grace (a loaded machine drops some, counted).
    done = h.wait_decided([s for s, _ in good], timeout=1.0)
    if len(done) < 2:
        done = h.wait_decided([s for s, _ in good], timeout=8.0)
    assert done, f"{row.name}: graph stopped deciding after the fault"
    time.sleep(0.2)
    with mon.lock:
        trajs = mon.trajectories[marks[0] :]
        decs = mon.decisions[marks[1] :]
        diags = mon.diagnostics[marks[2] :] + mon.infos[marks[3] :]
    # 2. nothing non-finite or unsafe
    for t in trajs:
        _sane(t["poses"])
    by_stamp: dict[float, list[dict[str, Any]]] = {}
    for d in decs:
        by_stamp.setdefault(round(d["frame_stamp"], 6), []).append(d)
    fault_decs = [d for s in fault for d in by_stamp.get(s, [])]
    limit = h.cfg["arbiter"]["deadline_ms"] / 1000.0 + CYCLE_S + LOAD_SLACK_S
    # 3. fallback / controlled stop within the stated time
    if row.expect == "stop":
        assert fault_decs, f"{row.name}: no decision for the faulty sweeps"
        for d in fault_decs:
            assert d["choice"] in ("emergency_stop", "hold_previous"), f"planned on unusable points: {d}"
            assert "points_invalid" in d["reasons"], d["reasons"]
        first = min(d["now"] - d["frame_rx"] for d in fault_decs)  # arbiter clock, as test_graph_live
        assert first < limit, f"stop {first:.3f} s after the sweep"
        estop = any(d["choice"] == "emergency_stop" for d in fault_decs)
        MEASURED[row.name] = (
            f"{'e-stop' if estop else 'hold'} after {1000 * first:.0f} ms, reason points_invalid"
        )
    elif row.expect == "fallback":
        assert fault_decs, f"{row.name}: no decision for the faulty sweeps"
        assert all(d["choice"] != "student" for d in fault_decs), [d["choice"] for d in fault_decs]
        first = _first_decisions(fault_decs)
        waits = [d["now"] - d["frame_rx"] for d in first]
        slow = [(round(d["now"] - d["frame_rx"], 3), d.get("trigger")) for d in first]
        assert max(waits) < limit, f"fallback {max(waits):.3f} s after the sweep (wait, trigger): {slow}"
        choices = sorted({d["choice"] for d in fault_decs})
        MEASURED[row.name] = f"{'/'.join(choices)} within {1000 * max(waits):.0f} ms"
    elif row.expect == "refused":
        assert not fault_decs, f"{row.name}: a refused sweep was planned on: {fault_decs[0]}"
        rx = sorted(t["rx"] for t in trajs if t_start <= t["rx"] <= t_end)
        gap = max(np.diff([t_start, *rx, t_end])) if rx else t_end - t_start
        assert gap < CYCLE_S + 0.5, f"no trajectory for {gap:.3f} s while sweeps were refused"
        MEASURED[row.name] = f"sweep refused; plans every cycle (max gap {1000 * gap:.0f} ms)"
    elif row.expect == "ignored":
        ok = [
            d for d in fault_decs if d["choice"] in ("student", "frenet", "hold_previous", "emergency_stop")
        ]
        assert ok or not fault, f"{row.name}: faulty input stopped the graph"
        MEASURED[row.name] = "message refused, graph drives on: " + ", ".join(
            sorted({d["choice"] for d in fault_decs}) or ["decided"]
        )
    else:  # alive (flood)
        MEASURED[row.name] = f"alive; {len(decs)} decisions during/after the flood"
    # 4. a diagnostic naming the fault
    if row.diag:
        pat = re.compile(row.diag)
        hits = [
            st
            for st in diags
            if pat.search(st["message"]) or any(pat.search(str(v)) for v in st["values"].values())
        ]
        seen = sorted({s["message"][:70] for s in diags})[:12]
        assert hits, f"{row.name}: no diagnostic matching {row.diag!r}; saw {seen}"
        MEASURED[row.name] += f"; diag: {hits[0]['message'][:90]}"
    if row.name == "peer_candidate_one_hour_ahead":  # not held: it would outrank every real one
        cand = h.graph.arbiter.loop.candidate
        assert cand is None or cand.stamp < time.time() + 5.0, f"candidate slot holds {cand.stamp}"
    if row.name == "stamp_one_hour_ahead":  # the student is not locked out afterwards
        cand = h.graph.arbiter.loop.candidate
        assert cand is None or cand.stamp < time.time() + 5.0, f"candidate slot holds {cand.stamp}"
        good_stamps = {f"{s:.9f}"[:-3] for s, _ in good}
        seen = {st["values"].get("stamp", "")[:-3] for st in diags}
        assert good_stamps & seen, "the student produced nothing for the sweeps after the bad stamp"


def test_matrix_size() -> None:
    assert len(ROWS) >= 30 and len({r.name for r in ROWS}) == len(ROWS)
    assert math.isfinite(LOAD_SLACK_S)


# ------------------------------------------------------------------ two-process layout
LAYOUT_NS = "/fault_layout"


class LaunchLayout:
    """Inference and arbiter nodes as separate processes (as ``ros2 launch`` runs them);
    the feeder and the monitor in this process. Signals go to the node processes.

    Everything runs under :data:`LAYOUT_NS`: the in-process graph of ``fh`` (module scope)
    is still alive on the same domain and would otherwise answer this feeder's sweeps.
    """

    def __init__(self, ctx: Context, scans: list[np.ndarray], log_dir: Path) -> None:
        from rclpy.executors import SingleThreadedExecutor

        from vla_edge.nodes.feeder import SensorFeeder
        from vla_edge.nodes.frames import default_lidar_frame
        from vla_edge.nodes.monitor import GraphMonitor

        self.log_dir = log_dir
        self.procs: dict[str, Any] = {}
        for name in ("inference_node", "arbiter_node"):
            self.spawn(name)
        from vla_edge.nodes.params import node_topics

        topics = node_topics(load_config("topics"))  # relative: resolved under LAYOUT_NS
        self.scans = scans
        self.feeder = SensorFeeder(topics, default_lidar_frame(), context=ctx, namespace=LAYOUT_NS)
        self.monitor = GraphMonitor(topics, context=ctx, namespace=LAYOUT_NS)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.feeder)
        self.executor.add_node(self.monitor)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._spin, self._inputs)]
        for t in self._threads:
            t.start()

    def spawn(self, name: str) -> None:
        """(Re)start one node process (a row may have killed it)."""
        import subprocess
        import sys

        repo = Path(__file__).resolve().parents[1]
        cmd = [sys.executable, "-m", f"vla_edge.nodes.{name}", "--ros-args", "-p", "backend:=onnxruntime"]
        cmd += ["-r", f"__ns:={LAYOUT_NS}"]
        with (self.log_dir / f"{name}.log").open("a") as out:
            self.procs[name] = subprocess.Popen(
                cmd, cwd=repo, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT
            )

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _inputs(self) -> None:
        k = 0
        while not self._stop.is_set():
            now = self.feeder.clock_now()
            self.feeder.publish_odometry(now)
            if k % 4 == 0:
                self.feeder.publish_reference_path(now)
            k += 1
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            alive = all(p.poll() is None for p in self.procs.values())
            if alive and self.feeder.readers()["lidar"] >= 2 and self.monitor.matched():
                _send_to(self, 5)
                with self.monitor.lock:
                    if self.monitor.decisions:
                        return
            time.sleep(0.2)
        raise AssertionError(f"launch layout not ready in {timeout} s")

    def close(self) -> None:
        import signal

        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except Exception:  # noqa: BLE001 - a hung child is killed, the row already failed
                p.kill()
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.executor.shutdown(timeout_sec=2.0)
        self.feeder.destroy_node()
        self.monitor.destroy_node()


def _send_to(lay: Any, n: int) -> list[tuple[float, float]]:
    sent = []
    for i in range(n):
        lay.feeder.set_cloud(lay.scans[i % len(lay.scans)])
        stamp = round(lay.feeder.clock_now(), 6)
        sent.append((stamp, lay.feeder.publish_cloud(stamp)))
        time.sleep(CYCLE_S)
    return sent


@pytest.fixture(scope="module")
def layout(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchLayout]:
    from vla_edge.nodes.feeder import load_scan

    scans = [load_scan(str(p)) for p in sorted((shared_data / "lidar").iterdir())]
    ctx = Context()
    rclpy.init(context=ctx)
    lay = None
    try:
        lay = LaunchLayout(ctx, scans, tmp_path_factory.mktemp("launch"))
        lay.wait_ready()
        yield lay
    finally:
        if lay is not None:
            lay.close()
        if ctx.ok():
            rclpy.shutdown(context=ctx)


PROC_ROWS = [
    # Was xfail (2 of 10 loaded runs: no trajectory for 2 s while the peer was stopped). Cause:
    # with Fast DDS's default transports a stopped subscriber stalled the cloud's delivery to the
    # other readers; with config/fastdds_shm.xml (what users run; conftest sets it) it passes.
    pytest.param("inference_node", "SIGSTOP", id="inference_sigstop"),
    pytest.param("inference_node", "SIGKILL", id="inference_sigkill"),
    pytest.param("arbiter_node", "SIGSTOP", id="arbiter_sigstop"),
    pytest.param("arbiter_node", "SIGKILL", id="arbiter_sigkill"),
]  # fmt: skip


@pytest.mark.parametrize(("proc", "sig"), PROC_ROWS)
def test_process_fault(proc: str, sig: str, layout: LaunchLayout) -> None:
    import signal

    lay, mon = layout, layout.monitor
    dead = [n for n, q in lay.procs.items() if q.poll() is not None]
    for n in dead:  # killed by an earlier row: the launch layout restarts it
        lay.spawn(n)
    if dead:
        lay.wait_ready()
    p = lay.procs[proc]
    cfg = load_config("drive")["/**"]["ros__parameters"]
    limit = float(cfg["arbiter"]["deadline_ms"]) / 1000.0 + CYCLE_S + LOAD_SLACK_S
    with mon.lock:
        marks = (len(mon.trajectories), len(mon.decisions), len(mon.infos))
    p.send_signal(getattr(signal, sig))
    t_fault = time.time()
    sent = _send_to(lay, 10)  # 1 s of sweeps while the process is stopped / dead
    if sig == "SIGSTOP":
        p.send_signal(signal.SIGCONT)
    t_resume = time.time()
    after = _send_to(lay, 5)
    time.sleep(0.5)
    with mon.lock:
        trajs = mon.trajectories[marks[0] :]
        decs = mon.decisions[marks[1] :]
        infos = mon.infos[marks[2] :]
    for t in trajs:
        _sane(t["poses"])
    stamps = {s for s, _ in sent}
    if proc == "inference_node":
        assert lay.procs["arbiter_node"].poll() is None, "the arbiter died with its peer"
        during = [d for d in decs if round(d["frame_stamp"], 6) in stamps]
        assert len(during) >= len(sent) // 2, (
            f"only {len(during)}/{len(sent)} sweeps decided without the model"
        )
        first = _first_decisions(during)  # not the cycle re-decisions
        waits = [d["now"] - d["frame_rx"] for d in first]
        slow = [(round(w, 3), d.get("trigger")) for w, d in zip(waits, first, strict=True)]
        assert max(waits) < limit, f"fallback {max(waits):.3f} s after the sweep (peer {sig}): {slow}"
        rx = sorted(t["rx"] for t in trajs if t_fault <= t["rx"] <= t_resume)
        gap = max(np.diff([t_fault, *rx, t_resume]))
        assert gap < limit, f"no trajectory for {gap:.3f} s while {proc} got {sig}"
        assert all(d["choice"] != "student" for d in during if d["candidate_stamp"] != d["frame_stamp"])
        assert any("student_missing" in d["reasons"] or "student_age" in d["reasons"] for d in during)
        MEASURED[f"{proc}_{sig}"] = f"fallback within {1000 * max(waits):.0f} ms, max gap {1000 * gap:.0f} ms"
    elif sig == "SIGSTOP":  # arbiter frozen, then resumed
        resumed = [d for d in decs if d["rx"] > t_resume]
        assert resumed, "the arbiter did not resume after SIGCONT"
        fs = [d["frame_stamp"] for d in resumed]
        assert fs == sorted(fs), "decisions out of frame order after resume"
        old = [d for d in resumed if d["rx"] - d["frame_stamp"] > 1.0]
        assert all(d["choice"] != "student" for d in old), "a student plan on a frame >1 s old"
        assert p.poll() is None and lay.procs["inference_node"].poll() is None
        MEASURED[f"{proc}_{sig}"] = f"resumed; {len(old)} late frames not planned by the student"
    else:  # arbiter killed: nothing stale may appear; the inference node lives on
        late = [t for t in trajs if t["rx"] > t_fault + 0.2]
        assert not late, f"{len(late)} trajectories published after the arbiter died"
        new_infos = [
            i for i in infos if i["values"].get("stamp", "")[:-3] in {f"{s:.9f}"[:-3] for s, _ in after}
        ]
        assert new_infos and lay.procs["inference_node"].poll() is None, "inference died with the arbiter"
        MEASURED[f"{proc}_{sig}"] = "no trajectory after death (vehicle MRM takes over); inference alive"
