"""Extrinsics from calibration.yaml, tf overrides, cloud -> base_link."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_edge.calibration import Calibration, quaternion_to_matrix, rpy_to_matrix
from vla_edge.config import load_config
from vla_edge.errors import ConfigError, FrameError
from vla_edge.msgfactory import RosbagsFactory


@pytest.fixture
def calib():
    return Calibration.from_config(load_config("calibration"))


def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _quat_from_rpy(r, p, y):
    cr, sr, cp, sp, cy, sy = (f(a / 2) for a in (r, p, y) for f in (math.cos, math.sin))
    return (
        sr * cp * cy - cr * sp * sy,
        cr * sp * cy + sr * cp * sy,
        cr * cp * sy - sr * sp * cy,
        cr * cp * cy + sr * sp * sy,
    )


def test_lidar_extrinsic_from_yaml(calib):
    cfg = load_config("calibration")["sensors"]["lidar"]
    pts = np.array([[0.0, 0.0, 0.0, 5.0], [10.0, -2.0, 0.5, 7.0]], dtype=np.float32)
    out = calib.transform_points(pts, "lidar")
    rot = _rz(cfg["rpy"][2]) @ _ry(cfg["rpy"][1]) @ _rx(cfg["rpy"][0])
    want = pts[:, :3].astype(np.float64) @ rot.T + np.array(cfg["xyz"])
    np.testing.assert_allclose(out[:, :3], want, atol=1e-5)
    np.testing.assert_array_equal(out[:, 3], pts[:, 3])  # intensity untouched
    assert out.dtype == np.float32 and out is not pts
    assert pts[0, 0] == 0.0  # input not modified


def test_camera_optical_frame_axes(calib):
    # optical: z forward, x right, y down  ->  base: x forward, y left, z up
    out = calib.transform_points(
        np.array([[0.0, 0.0, 10.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "camera_front"
    )
    t = np.array(load_config("calibration")["sensors"]["camera_front"]["xyz"])
    np.testing.assert_allclose(out - t, [[10, 0, 0], [0, -1, 0], [0, 0, -1]], atol=1e-6)
    # the alias resolves to the same transform
    np.testing.assert_allclose(calib.matrix("camera_front_optical"), calib.matrix("camera_front"))
    assert calib.sensor_frame("camera_front") == "camera_front"


def test_base_link_is_identity_and_unknown_frame_is_error(calib):
    pts = np.ones((3, 4), np.float32)
    assert calib.transform_points(pts, "base_link") is pts
    np.testing.assert_array_equal(calib.matrix("base_link"), np.eye(4))
    with pytest.raises(
        FrameError, match=r"unknown frame_id 'velodyne'.*Known frames: base_link, camera_front"
    ):
        calib.transform_points(pts, "velodyne")
    with pytest.raises(FrameError, match=r"calibration\.yaml"):
        calib.transform_points(pts, "")
    with pytest.raises(FrameError, match="unknown sensor 'radar'"):
        calib.sensor_frame("radar")
    with pytest.raises(FrameError, match=r"N x k with k >= 3"):
        calib.transform_points(np.zeros((3, 2)), "lidar")


def test_set_from_tf_overrides_config(calib):
    before = calib.transform_points(np.zeros((1, 3)), "lidar")
    q = _quat_from_rpy(0.0, 0.0, math.pi / 2)
    calib.set_from_tf("base_link", "lidar", (0.5, 0.1, 2.0), q)
    out = calib.transform_points(np.array([[1.0, 0.0, 0.0]]), "lidar")
    np.testing.assert_allclose(out, [[0.5, 1.1, 2.0]], atol=1e-9)  # x axis -> y after 90 deg yaw
    assert not np.allclose(before, calib.transform_points(np.zeros((1, 3)), "lidar"))


def test_tf_chain_and_cycle():
    calib = Calibration.from_config(load_config("calibration"))
    calib.set_from_tf("base_link", "roof_mount", (1.0, 0.0, 2.0), (0, 0, 0, 1))
    calib.set_from_tf("roof_mount", "os_sensor", (0.0, 0.5, 0.1), _quat_from_rpy(0, 0, math.pi))
    out = calib.transform_points(np.array([[1.0, 0.0, 0.0]]), "os_sensor")
    np.testing.assert_allclose(out, [[0.0, 0.5, 2.1]], atol=1e-9)
    calib.set_from_tf("nowhere", "dangling", (0, 0, 0), (0, 0, 0, 1))
    with pytest.raises(FrameError, match=r"unknown frame_id 'nowhere' \(chain dangling -> nowhere\)"):
        calib.transform_points(np.zeros((1, 3)), "dangling")
    calib.set_from_tf("loop_b", "loop_a", (0, 0, 0), (0, 0, 0, 1))
    calib.set_from_tf("loop_a", "loop_b", (0, 0, 0), (0, 0, 0, 1))
    with pytest.raises(FrameError, match="transform cycle"):
        calib.to_base("loop_a")


def test_tf_bad_inputs(calib):
    with pytest.raises(FrameError, match="zero or not finite"):
        calib.set_from_tf("base_link", "lidar", (0, 0, 0), (0, 0, 0, 0))
    with pytest.raises(FrameError, match=r"translation .* is not finite"):
        calib.set_from_tf("base_link", "lidar", (0, float("nan"), 0), (0, 0, 0, 1))
    with pytest.raises(FrameError, match="base frame 'base_link' itself"):
        calib.set_from_tf("map", "base_link", (0, 0, 0), (0, 0, 0, 1))


def test_apply_tf_message_rosbags():
    f = RosbagsFactory()
    vec = f.make("geometry_msgs/msg/Vector3", x=0.2, y=0.0, z=1.8)
    rot = f.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0)
    tf = f.make(
        "geometry_msgs/msg/TransformStamped",
        header=f.header(0.0, "base_link"),
        child_frame_id="hesai_top",
        transform=f.make("geometry_msgs/msg/Transform", translation=vec, rotation=rot),
    )
    msg = f.make("tf2_msgs/msg/TFMessage", transforms=[tf])
    t = "tf2_msgs/msg/TFMessage"
    msg = f.typestore.deserialize_cdr(f.typestore.serialize_cdr(msg, t), t)
    calib = Calibration.from_config(load_config("calibration"))
    assert calib.apply_tf_message(msg) == 1
    np.testing.assert_allclose(calib.transform_points(np.zeros((1, 3)), "hesai_top"), [[0.2, 0.0, 1.8]])


def test_config_errors():
    with pytest.raises(ConfigError, match="missing key 'base_frame'"):
        Calibration.from_config({"sensors": {}})
    bad = {
        "base_frame": "base_link",
        "sensors": {"lidar": {"frame_ids": ["lidar"], "xyz": [1, 2], "rpy": [0, 0, 0]}},
    }
    with pytest.raises(FrameError, match=r"sensors\.lidar: need frame_ids"):
        Calibration.from_config(bad)
    with pytest.raises(ConfigError, match="missing key 'rpy'"):
        Calibration.from_config({"base_frame": "b", "sensors": {"l": {"frame_ids": ["l"], "xyz": [0, 0, 0]}}})


@settings(max_examples=40, deadline=None)
@given(rpy=st.tuples(*[st.floats(-math.pi, math.pi)] * 3), xyz=st.tuples(*[st.floats(-5, 5)] * 3))
def test_property_rpy_quaternion_inverse(rpy, xyz):
    rot = rpy_to_matrix(*rpy)
    np.testing.assert_allclose(rot, _rz(rpy[2]) @ _ry(rpy[1]) @ _rx(rpy[0]), atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(*_quat_from_rpy(*rpy)), rot, atol=1e-9)
    calib = Calibration("base_link", {}, {})
    calib.set_from_tf("base_link", "s", xyz, _quat_from_rpy(*rpy))
    pts = np.random.default_rng(0).normal(size=(20, 4)) * 30
    back = calib.from_base_points(calib.transform_points(pts, "s"), "s")
    np.testing.assert_allclose(back, pts, atol=1e-9)
