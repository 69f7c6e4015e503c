"""Core (ROS-free) fixes of issue 14, each a regression test that fails on the old code."""

from __future__ import annotations

import json
import math
import struct
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from vla_edge.config import load_config
from vla_edge.conversions.odometry import OdometryError
from vla_edge.errors import ConfigError, ImageError, StampError


def test_sweep_gaps_bounded_after_absurd_stamps() -> None:
    from vla_edge.diagnostics import SweepGaps

    g = SweepGaps()
    for i in range(10):
        g.missed(1.8e9 + 0.1 * i)
    t0 = time.perf_counter()
    assert g.missed(0.0) == 0  # stamp 0: behind, not a gap
    assert g.missed(1.8e9 + 1.1) == 0  # back from 0: a 1.8e9 s "gap" is a jump, not 1.8e10 sweeps
    assert g.missed(2.2e9) == 0  # 2038: the same
    assert g.jumps == 2 and time.perf_counter() - t0 < 0.01
    assert g.missed(2.2e9 + 0.5) == 4  # real gaps after the jump still count (learned 0.1 s period)


def test_sweep_gaps_flood_reports_true_loss() -> None:
    from vla_edge.diagnostics import SweepGaps

    rng = np.random.default_rng(0)
    g, got, missed = SweepGaps(), 0, 0
    for i in range(1000):  # 100 Hz, ~70 % lost before the reader (depth-1 queue)
        if rng.random() < 0.3:
            got += 1
            missed += g.missed(100.0 + 0.01 * i)
    reported = missed / (missed + got)
    assert abs(reported - (1000 - got) / 1000) < 0.03, reported


def test_stamp_skew() -> None:
    from vla_edge.frame_assembly import check_stamp_skew

    check_stamp_skew(100.5, 100.0, 2.0)
    check_stamp_skew(0.0, 0.0, 2.0)  # sim time before /clock: no check
    for bad in (0.0, 100.0 + 3600.0, 2.0**31):
        with pytest.raises(StampError, match=r"lidar\.max_stamp_skew_s"):
            check_stamp_skew(bad, 1.8e9 if bad == 0.0 else 100.0, 2.0)


def _assembler():
    from vla_edge.frame_assembly import FrameAssembler
    from vla_edge.types import EgoState

    fa = FrameAssembler.from_config()
    for k in range(20):
        fa.add_ego_state(EgoState(10.0 + 0.05 * k, 0.05 * k, 0.0, 0.0, 1.0, 0.0, 0.0), "odom")
    fa.set_reference_path(np.column_stack([np.arange(-5, 80.0), np.zeros(85)]), 10.5, "odom")
    return fa


@pytest.mark.parametrize(
    ("name", "points", "problem"),
    [
        ("empty", np.zeros((0, 4), np.float32), "0 plausible returns of 0"),
        ("few", np.ones((10, 4), np.float32) * 5, "10 plausible returns of 10"),
        ("byte_swapped", None, "plausible returns"),
        ("huge", np.full((5000, 4), 1e30, np.float32), "0 plausible returns of 5000"),
    ],
)
def test_unusable_points_flag_lidar_and_stop(name: str, points, problem: str) -> None:
    from vla_edge.planning.cycle import PlanningCycle

    rng = np.random.default_rng(1)
    good = np.column_stack([rng.uniform(-30, 30, (5000, 3)), np.ones(5000)]).astype(np.float32)
    if points is None:  # little-endian data read as big-endian: denormal / huge garbage
        points = good.byteswap()
    fa = _assembler()
    cal = fa.calibration.sensor_frame("lidar")
    frame = fa.make_frame_from_points(10.9, points, cal)
    assert "lidar" in frame.stale and problem in fa.points_problem, fa.points_problem
    ok = fa.make_frame_from_points(10.9, good, cal)
    assert "lidar" not in ok.stale and fa.points_problem == ""
    cycle = PlanningCycle.from_config()
    decision = cycle.decide(cycle.prepare(frame, 10.95), None, None, 10.95)
    assert decision.choice in ("emergency_stop", "hold_previous") and "points_invalid" in decision.reasons


def _jpeg(w: int = 64, h: int = 48) -> bytes:
    ok, enc = cv2.imencode(".jpg", np.zeros((h, w, 3), np.uint8))
    assert ok
    return enc.tobytes()


def test_jpeg_header_bomb_is_refused_before_decoding() -> None:
    from vla_edge.conversions.image import compressed_dimensions, compressed_to_rgb

    b = bytearray(_jpeg())
    assert compressed_dimensions(bytes(b)) == (64, 48)
    i = b.index(b"\xff\xc0")
    struct.pack_into(">HH", b, i + 5, 65500, 65500)
    msg = SimpleNamespace(format="jpeg", data=bytes(b))
    with pytest.raises(ImageError, match=r"65500x65500 .*max_decoded_pixels"):
        compressed_to_rgb(msg, max_pixels=16_777_216)
    # Without a bound, OpenCV's own limit raises cv2.error: now the typed error.
    with pytest.raises(ImageError):
        compressed_to_rgb(msg)


def _odom(**kw: float):
    q = SimpleNamespace(x=0.0, y=0.0, z=0.0, w=kw.get("w", 1.0))
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=10, nanosec=0), frame_id="odom"),
        pose=SimpleNamespace(pose=SimpleNamespace(position=SimpleNamespace(x=0.0, y=0.0), orientation=q)),
        twist=SimpleNamespace(
            twist=SimpleNamespace(linear=SimpleNamespace(x=1.0), angular=SimpleNamespace(z=kw.get("wz", 0.0)))
        ),
    )


def test_odometry_plausibility() -> None:
    from vla_edge.conversions.odometry import EgoStateBuffer, OdometryBufferConfig, quaternion_to_yaw

    assert quaternion_to_yaw(0.0, 0.0, 1e200, 1e200) == pytest.approx(math.pi / 2)  # no NaN
    buf = EgoStateBuffer(OdometryBufferConfig.from_config(load_config("frame")))
    with pytest.raises(OdometryError, match=r"quaternion norm 1e\+200 .*quaternion_norm_tolerance"):
        buf.add_odometry(_odom(w=1e200))
    with pytest.raises(OdometryError, match=r"yaw rate 1e\+30 rad/s exceeds .*max_yaw_rate"):
        buf.add_odometry(_odom(wz=1e30))
    assert buf.add_odometry(_odom()).yaw == 0.0


@pytest.mark.parametrize(
    ("file", "key", "value", "match"),
    [
        (
            "frame",
            ("odometry", "buffer_span_s"),
            -1.0,
            r"frame\.yaml: odometry\.buffer_span_s = -1\.0: .*allowed: number, 0 < value",
        ),
        ("frame", ("max_age_s", "odometry"), float("nan"), r"max_age_s\.odometry = NaN: .*finite"),
        ("frame", ("lidar", "max_stamp_skew_s"), 0.0, r"lidar\.max_stamp_skew_s = 0\.0: .*0 < value <= 3600"),
        (
            "frame",
            ("images", "max_decoded_pixels"),
            0,
            r"images\.max_decoded_pixels = 0: .*1 <= value <= 1000000000",
        ),
    ],
)
def test_frame_yaml_ranges(file: str, key: tuple[str, ...], value: float, match: str) -> None:
    from vla_edge.frame_assembly import FrameAssemblyConfig

    cfg = json.loads(json.dumps(load_config(file)))
    node = cfg
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = value
    with pytest.raises(ConfigError, match=match):
        FrameAssemblyConfig.from_config(cfg)


def test_drive_and_arbiter_ranges() -> None:
    from vla_edge.nodes.params import resolve_overrides
    from vla_edge.planning.arbiter import ArbiterParams

    with pytest.raises(ConfigError, match=r"arbiter\.cycle_period_ms = NaN: .*finite"):
        resolve_overrides(None, {"arbiter.cycle_period_ms": float("nan")})
    with pytest.raises(ConfigError, match=r"diagnostics\.drop_error_ratio = 3\.0: .*0 <= value <= 1"):
        resolve_overrides(None, {"diagnostics.drop_error_ratio": 3.0})
    cfg = {**load_config("arbiter"), **load_config("vehicle")}
    cfg["arbiter"] = json.loads(json.dumps(cfg["arbiter"]))
    cfg["arbiter"]["emergency"]["decel"] = -2.5
    with pytest.raises(ConfigError, match=r"arbiter\.emergency\.decel = -2\.5: .*0 < value"):
        ArbiterParams.from_config(cfg)


def test_bad_engine_disables_only_the_student(tmp_path) -> None:
    from vla_edge.config import engines_dir
    from vla_edge.errors import ModelError
    from vla_edge.inference import DisabledStudent, StudentDisabledError
    from vla_edge.nodes.params import resolve_overrides, unflatten
    from vla_edge.pipeline import DrivePipeline, load_runner

    values = unflatten(resolve_overrides(None, {"backend": "onnxruntime"}))
    missing = {**values, "engine_path": str(tmp_path / "missing.onnx")}
    with pytest.raises(ModelError):  # offline tools keep the error
        load_runner(missing)
    onnx = tmp_path / "student.onnx"
    data = bytearray((engines_dir() / "student.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    (tmp_path / "student.json").write_bytes((engines_dir() / "student.json").read_bytes())
    for cfg in (missing, {**values, "engine_path": str(onnx)}):
        runner = load_runner(cfg, allow_disabled=True)
        assert isinstance(runner, DisabledStudent)
        pipe = DrivePipeline.from_config(cfg, allow_disabled=True)
        result = pipe.infer(
            _assembler().make_frame_from_points(10.9, np.ones((500, 4), np.float32) * 5, "base_link")
        )
        assert result.trajectory is None and "student disabled, Frenet fallback only" in str(result.error)
    assert "sha256" in runner.reason or "Manifest" in runner.reason, runner.reason
    with pytest.raises(StudentDisabledError):
        runner.run(None)  # type: ignore[arg-type]


def test_replay_exits_nonzero_when_every_sweep_is_rejected(tmp_path, capsys) -> None:
    from vla_edge.bagio import BagWriter
    from vla_edge.cli import main
    from vla_edge.conversions import xyzi_to_pointcloud2
    from vla_edge.msgfactory import RosbagsFactory
    from vla_edge.nodes.frames import default_lidar_frame
    from vla_edge.sim.bag_writer import _Messages

    f = RosbagsFactory()
    topics = load_config("topics")
    mk = _Messages(load_config("sim"), topics, f)
    pts = np.random.default_rng(0).uniform(-20, 20, (3000, 4)).astype(np.float32)
    assert default_lidar_frame() != "no_such_lidar"
    with BagWriter(tmp_path / "bag") as w:  # every sweep in an unknown frame: all rejected
        for i in range(20):
            t = 1.0 + 0.05 * i
            w.write(topics["inputs"]["odometry"], "nav_msgs/msg/Odometry", mk.odometry(t, np.zeros(6)), t)
            if i % 4 == 2:
                msg = xyzi_to_pointcloud2(pts, f, t, "no_such_lidar")
                w.write(topics["inputs"]["lidar"], "sensor_msgs/msg/PointCloud2", msg, t)
    args = ["replay", str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--backend", "onnxruntime"]
    assert main([*args, "--no-report", "--no-progress"]) == 1
    assert "no frame was decided (5 LiDAR sweeps" in capsys.readouterr().err
