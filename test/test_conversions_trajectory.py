"""Trajectory <-> nav_msgs/Path and MarkerArray builders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import HAVE_RCLPY

from vla_edge.conversions.trajectory import (
    CUBE,
    DELETEALL,
    LAYER_COLORS,
    LINE_STRIP,
    SPHERE_LIST,
    TEXT_VIEW_FACING,
    TrajectoryError,
    box_markers,
    delete_all_marker,
    marker_array,
    path_to_poses,
    path_to_trajectory,
    path_to_xy,
    poses_to_path,
    text_marker,
    trajectory_to_marker_array,
    trajectory_to_markers,
    trajectory_to_path,
)
from vla_edge.msgfactory import RclpyFactory, RosbagsFactory, stamp_to_sec
from vla_edge.types import Trajectory

FACTORIES = ["rosbags", *(["rclpy"] if HAVE_RCLPY else [])]


@pytest.fixture(params=FACTORIES)
def factory(request):
    return RosbagsFactory() if request.param == "rosbags" else RclpyFactory()


def _curve(t_count=8, dt=0.5, stamp=100.25):
    t = dt * np.arange(1, t_count + 1)
    poses = np.column_stack([8.0 * t, 0.3 * t**2, np.arctan2(0.6 * t, 8.0)])
    return Trajectory(poses, dt, stamp, source="student")


def _serialize_both(msg, msgtype, factory):
    """Serialize with the binding's own serializer and decode it with the other one."""
    if isinstance(factory, RosbagsFactory):
        data = bytes(factory.typestore.serialize_cdr(msg, msgtype))
        if HAVE_RCLPY:
            import importlib

            from rclpy.serialization import deserialize_message

            pkg, _, name = msgtype.split("/")
            return deserialize_message(data, getattr(importlib.import_module(f"{pkg}.msg"), name))
        return factory.typestore.deserialize_cdr(data, msgtype)
    from rclpy.serialization import serialize_message

    store = RosbagsFactory().typestore
    return store.deserialize_cdr(serialize_message(msg), msgtype)


def test_trajectory_to_path_contract(factory):
    traj = _curve()
    msg = trajectory_to_path(traj, factory, frame_id="base_link")
    assert msg.header.frame_id == "base_link"
    assert stamp_to_sec(msg.header.stamp) == pytest.approx(100.25)
    assert len(msg.poses) == 8
    for i, ps in enumerate(msg.poses):
        assert stamp_to_sec(ps.header.stamp) == pytest.approx(100.25 + (i + 1) * 0.5, abs=1e-9)
        assert ps.header.frame_id == "base_link"
        q = ps.pose.orientation
        assert q.x == 0.0 and q.y == 0.0 and q.z**2 + q.w**2 == pytest.approx(1.0)
    np.testing.assert_allclose(path_to_poses(msg), traj.poses, atol=1e-12)
    np.testing.assert_allclose(path_to_xy(msg), traj.poses[:, :2])


def test_path_roundtrip_through_cdr_across_bindings(factory):
    traj = _curve(stamp=7.0)
    msg = trajectory_to_path(traj, factory, stamp=7.5, frame_id="base_link")
    back = path_to_trajectory(_serialize_both(msg, "nav_msgs/msg/Path", factory), source="x")
    assert back.dt == pytest.approx(0.5) and back.stamp == pytest.approx(7.5) and back.source == "x"
    np.testing.assert_allclose(back.poses, traj.poses, atol=1e-9)


def test_poses_to_path_xy_heading_follows_polyline(factory):
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 3.0]])
    msg = poses_to_path(xy, factory, 2.0, "odom")
    yaw = path_to_poses(msg)[:, 2]
    np.testing.assert_allclose(yaw, [math.pi / 4, math.pi / 2, math.pi / 2])


def test_path_errors(factory):
    with pytest.raises(TrajectoryError, match="M x 2 or M x 3, got shape"):
        poses_to_path(np.zeros((3, 4)), factory, 0.0, "odom")
    with pytest.raises(TrajectoryError, match="NaN/Inf"):
        trajectory_to_path(Trajectory(np.full((2, 3), np.nan), 0.1, 0.0), factory)
    with pytest.raises(TrajectoryError, match="3 pose stamps for 2 poses"):
        poses_to_path(np.zeros((2, 3)), factory, 0.0, "odom", [0.0, 1.0, 2.0])
    empty = poses_to_path(np.zeros((0, 3)), factory, 0.0, "odom")
    with pytest.raises(TrajectoryError, match="no poses"):
        path_to_trajectory(empty)
    uneven = poses_to_path(np.zeros((3, 3)), factory, 0.0, "odom", [0.1, 0.2, 0.5])
    with pytest.raises(TrajectoryError, match=r"not at header stamp \+ k\*dt"):
        path_to_trajectory(uneven)
    same = poses_to_path(np.zeros((2, 3)), factory, 0.0, "odom")  # all stamps == header
    with pytest.raises(TrajectoryError, match="not at header stamp"):
        path_to_trajectory(same)


def test_trajectory_markers(factory):
    traj = _curve()
    arr = trajectory_to_markers(traj, factory, frame_id="base_link", ns="student")
    line, pts = arr.markers
    assert line.type == LINE_STRIP and pts.type == SPHERE_LIST
    assert line.ns == "student" and (line.id, pts.id) == (0, 1)
    assert len(line.points) == 9  # implicit origin + 8 poses
    assert (line.points[0].x, line.points[0].y) == (0.0, 0.0)
    assert line.points[-1].x == pytest.approx(traj.poses[-1, 0])
    assert (line.color.r, line.color.g, line.color.b) == pytest.approx(LAYER_COLORS["student"])
    assert stamp_to_sec(line.header.stamp) == pytest.approx(traj.stamp)
    assert trajectory_to_marker_array is trajectory_to_markers
    custom = trajectory_to_markers(
        traj, factory, ns="mine", color=(0.1, 0.2, 0.3), with_points=False, marker_id=7
    )
    assert len(custom.markers) == 1 and custom.markers[0].id == 7
    assert custom.markers[0].color.b == pytest.approx(0.3)


def test_boxes_text_delete_and_merge(factory):
    boxes = np.array([[10.0, -2.0, 0.5, 4.0, 2.0], [20.0, 3.0, 0.0, 1.0, 1.0]])
    cubes = box_markers(boxes, factory, 1.0, "base_link")
    assert [m.type for m in cubes] == [CUBE, CUBE] and [m.id for m in cubes] == [0, 1]
    assert (cubes[0].pose.position.x, cubes[0].scale.x, cubes[0].scale.y) == (10.0, 4.0, 2.0)
    q = cubes[0].pose.orientation
    assert 2 * math.atan2(q.z, q.w) == pytest.approx(0.5)
    txt = text_marker(factory, 1.0, "base_link", "student OK")
    assert txt.type == TEXT_VIEW_FACING and txt.text == "student OK"
    clear = delete_all_marker(factory, 1.0, "base_link")
    assert clear.action == DELETEALL
    traj_arr = trajectory_to_markers(_curve(), factory, ns="final")
    merged = marker_array(factory, clear, cubes, traj_arr, txt)
    assert len(merged.markers) == 1 + 2 + 2 + 1
    back = _serialize_both(merged, "visualization_msgs/msg/MarkerArray", factory)
    assert [m.type for m in back.markers] == [m.type for m in merged.markers]
    assert back.markers[-1].text == "student OK"
    assert box_markers(np.zeros((0, 5)), factory, 1.0, "base_link") == []


def test_marker_errors(factory):
    with pytest.raises(TrajectoryError, match="finite N x 5"):
        box_markers(np.array([[0, 0, 0, -1.0, 1.0]]), factory, 0.0, "base_link")
    with pytest.raises(TrajectoryError, match="layer 'student' has non-finite poses"):
        trajectory_to_markers(Trajectory(np.full((2, 3), np.inf), 0.1, 0.0), factory, ns="student")
