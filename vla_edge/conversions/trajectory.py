"""Trajectory (numpy) <-> ``nav_msgs/Path`` and -> ``visualization_msgs/MarkerArray``.

Building goes through a :class:`~vla_edge.msgfactory.MessageFactory` (rclpy or rosbags);
reading duck-types. Marker helpers are small composable pieces the nodes and the replay
report reuse: one call per layer (student / frenet / final plan, obstacles), then
:func:`marker_array` to publish them together.

Path convention (``docs/architecture.md``): header stamp = the trajectory's frame stamp,
pose ``i`` stamped ``stamp + (i + 1) * dt`` (the origin at ``t = 0`` is implicit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_edge.conversions.odometry import quaternion_to_yaw, yaw_to_quaternion
from vla_edge.errors import ConversionError
from vla_edge.msgfactory import MessageFactory, split_stamp, stamp_to_sec
from vla_edge.types import Trajectory

# visualization_msgs/Marker type and action constants
ARROW, CUBE, SPHERE, CYLINDER, LINE_STRIP, LINE_LIST, CUBE_LIST, SPHERE_LIST, POINTS = range(9)
TEXT_VIEW_FACING = 9
ADD, DELETE, DELETEALL = 0, 2, 3

# Default colours (r, g, b) per layer, so every view shows the same colour for a layer.
LAYER_COLORS: dict[str, tuple[float, float, float]] = {
    "student": (0.2, 0.6, 1.0),
    "frenet": (1.0, 0.7, 0.1),
    "final": (0.1, 1.0, 0.3),
    "emergency_stop": (1.0, 0.1, 0.1),
    "expert": (0.8, 0.8, 0.8),
    "reference": (0.6, 0.3, 0.9),
    "obstacles": (1.0, 0.2, 0.2),
}


class TrajectoryError(ConversionError):
    """A Path cannot be read as a trajectory (no poses, uneven stamps, non-finite values)."""


def _pose(factory: MessageFactory, x: float, y: float, yaw: float, z: float = 0.0) -> Any:
    qx, qy, qz, qw = yaw_to_quaternion(yaw)
    return factory.make(
        "geometry_msgs/msg/Pose",
        position=factory.make("geometry_msgs/msg/Point", x=float(x), y=float(y), z=float(z)),
        orientation=factory.make("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw),
    )


def poses_to_path(
    poses: np.ndarray,
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    pose_stamps: Sequence[float] | None = None,
) -> Any:
    """``nav_msgs/Path`` from M x 2 (x, y) or M x 3 (x, y, yaw) poses.

    Without yaw, the heading follows the polyline. ``pose_stamps`` default to ``stamp``.

    Raises:
        TrajectoryError: Bad shape, non-finite values or stamp count mismatch.
    """
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise TrajectoryError(f"poses must be M x 2 or M x 3, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise TrajectoryError("poses contain NaN/Inf; refusing to publish a non-finite path")
    if arr.shape[1] == 2:
        arr = np.column_stack([arr, polyline_yaw(arr)])
    stamps = [stamp] * len(arr) if pose_stamps is None else list(pose_stamps)
    if len(stamps) != len(arr):
        raise TrajectoryError(f"{len(stamps)} pose stamps for {len(arr)} poses")
    msgs = [
        factory.make(
            "geometry_msgs/msg/PoseStamped", header=factory.header(t, frame_id), pose=_pose(factory, *p)
        )
        for p, t in zip(arr, stamps)
    ]
    return factory.make("nav_msgs/msg/Path", header=factory.header(stamp, frame_id), poses=msgs)


def polyline_yaw(xy: np.ndarray) -> np.ndarray:
    """Heading of each vertex of an M x 2 polyline (forward difference, last repeats)."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        return np.zeros(len(xy))
    d = np.diff(xy, axis=0)
    yaw = np.arctan2(d[:, 1], d[:, 0])
    return np.append(yaw, yaw[-1])


def trajectory_to_path(
    traj: Trajectory, factory: MessageFactory, stamp: float | None = None, frame_id: str = "base_link"
) -> Any:
    """``nav_msgs/Path`` of a :class:`Trajectory`: header at ``stamp``, pose i at ``stamp + (i+1)*dt``.

    Args:
        traj: The trajectory (ego frame at ``traj.stamp``).
        factory: Message factory.
        stamp: Header stamp; defaults to ``traj.stamp``.
        frame_id: Frame of the poses (``base_link``).

    Raises:
        TrajectoryError: Non-finite poses.
    """
    t0 = traj.stamp if stamp is None else stamp
    return poses_to_path(traj.poses, factory, t0, frame_id, [t0 + float(t) for t in traj.times])


def path_to_poses(msg: Any) -> np.ndarray:
    """M x 3 (x, y, yaw) float64 from a ``nav_msgs/Path`` (rclpy or rosbags)."""
    out = np.empty((len(msg.poses), 3), dtype=np.float64)
    for i, ps in enumerate(msg.poses):
        p, q = ps.pose.position, ps.pose.orientation
        out[i] = (p.x, p.y, quaternion_to_yaw(q.x, q.y, q.z, q.w))
    return out


def path_to_xy(msg: Any) -> np.ndarray:
    """M x 2 (x, y) float64 from a ``nav_msgs/Path``."""
    return path_to_poses(msg)[:, :2].copy()


def path_to_trajectory(msg: Any, source: str = "") -> Trajectory:
    """Inverse of :func:`trajectory_to_path`: recover dt from the pose stamps.

    Raises:
        TrajectoryError: No poses, non-finite values, or pose stamps not at ``stamp + k*dt``.
    """
    if not msg.poses:
        raise TrajectoryError("Path has no poses; cannot make a trajectory")
    stamp = stamp_to_sec(msg.header.stamp)
    rel = np.array([stamp_to_sec(p.header.stamp) for p in msg.poses]) - stamp
    dt = float(rel[0])
    expect = dt * np.arange(1, len(rel) + 1)
    if not dt > 0 or not np.allclose(rel, expect, atol=1e-6 + 1e-3 * dt):
        raise TrajectoryError(
            "Path pose stamps are not at header stamp + k*dt "
            f"(first offsets {np.round(rel[:3], 4).tolist()}); "
            "it is not a vla_edge trajectory"
        )
    poses = path_to_poses(msg)
    if not np.all(np.isfinite(poses)):
        raise TrajectoryError("Path has non-finite poses")
    return Trajectory(poses, dt, stamp, source=source)


# ---------------------------------------------------------------------------- markers


def _color(factory: MessageFactory, rgb: Sequence[float], alpha: float) -> Any:
    r, g, b = (float(c) for c in rgb)
    return factory.make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=float(alpha))


def _point(factory: MessageFactory, x: float, y: float, z: float = 0.0) -> Any:
    return factory.make("geometry_msgs/msg/Point", x=float(x), y=float(y), z=float(z))


def make_marker(
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    ns: str,
    marker_id: int,
    marker_type: int,
    *,
    points: Sequence[Sequence[float]] = (),
    pose: tuple[float, float, float] = (0.0, 0.0, 0.0),
    z: float = 0.0,
    scale: tuple[float, float, float] = (0.2, 0.2, 0.2),
    color: Sequence[float] = (1.0, 1.0, 1.0),
    alpha: float = 1.0,
    text: str = "",
    lifetime_s: float = 0.0,
    action: int = ADD,
) -> Any:
    """One ``visualization_msgs/Marker`` with every field set (rosbags needs all of them).

    Args:
        factory: Message factory.
        stamp: Header stamp [s].
        frame_id: Header frame id.
        ns: Namespace (layer name).
        marker_id: Id within the namespace.
        marker_type: One of the module's type constants (``LINE_STRIP``...).
        points: Vertices (x, y[, z]) for list/strip types.
        pose: Marker pose (x, y, yaw).
        z: Height of the pose [m].
        scale: Marker scale (x, y, z) [m].
        color: (r, g, b) in 0..1.
        alpha: Opacity 0..1.
        text: Text for TEXT_VIEW_FACING.
        lifetime_s: 0 = forever [s].
        action: ADD, DELETE or DELETEALL.
    """
    sec, nanosec = split_stamp(lifetime_s)
    return factory.make(
        "visualization_msgs/msg/Marker",
        header=factory.header(stamp, frame_id),
        ns=ns,
        id=int(marker_id),
        type=int(marker_type),
        action=int(action),
        pose=_pose(factory, pose[0], pose[1], pose[2], z),
        scale=factory.make(
            "geometry_msgs/msg/Vector3", x=float(scale[0]), y=float(scale[1]), z=float(scale[2])
        ),
        color=_color(factory, color, alpha),
        lifetime=factory.make("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec),
        frame_locked=False,
        points=[_point(factory, *p) for p in points],
        colors=[],
        texture_resource="",
        texture=factory.make(
            "sensor_msgs/msg/CompressedImage",
            header=factory.header(0.0, ""),
            format="",
            data=factory.bytes_field(b""),
        ),
        uv_coordinates=[],
        text=text,
        mesh_resource="",
        mesh_file=factory.make("visualization_msgs/msg/MeshFile", filename="", data=factory.bytes_field(b"")),
        mesh_use_embedded_materials=False,
    )


def marker_array(factory: MessageFactory, *groups: Sequence[Any] | Any) -> Any:
    """One ``MarkerArray`` from markers, lists of markers or other MarkerArrays."""
    out: list[Any] = []
    for g in groups:
        if hasattr(g, "markers"):
            out.extend(g.markers)
        elif isinstance(g, (list, tuple)):
            out.extend(g)
        else:
            out.append(g)
    return factory.make("visualization_msgs/msg/MarkerArray", markers=out)


def delete_all_marker(factory: MessageFactory, stamp: float, frame_id: str, ns: str = "") -> Any:
    """A DELETEALL marker (put first in an array to clear stale markers of earlier cycles)."""
    return make_marker(factory, stamp, frame_id, ns, 0, LINE_STRIP, action=DELETEALL)


def polyline_markers(
    poses: np.ndarray,
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    ns: str,
    color: Sequence[float] | None = None,
    *,
    marker_id: int = 0,
    width: float = 0.25,
    alpha: float = 1.0,
    z: float = 0.1,
    with_points: bool = True,
    include_origin: bool = False,
) -> list[Any]:
    """LINE_STRIP (plus a SPHERE_LIST of the vertices) for M x 2/3 poses.

    Args:
        poses: Vertices; only x, y are drawn.
        factory: Message factory.
        stamp: Header stamp [s].
        frame_id: Header frame id.
        ns: Namespace; also picks the default colour from :data:`LAYER_COLORS`.
        color: (r, g, b); default from the namespace.
        marker_id: Id of the line; the points marker gets ``marker_id + 1``.
        width: Line width [m].
        alpha: Opacity.
        z: Drawing height [m].
        with_points: Also emit the vertex spheres.
        include_origin: Start the line at (0, 0) (trajectories' implicit origin).

    Raises:
        TrajectoryError: Bad shape or non-finite poses.
    """
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise TrajectoryError(f"poses must be M x 2 or M x 3, got shape {arr.shape}")
    if not np.all(np.isfinite(arr[:, :2])):
        raise TrajectoryError(f"layer '{ns}' has non-finite poses; not drawing it")
    rgb = color if color is not None else LAYER_COLORS.get(ns, (1.0, 1.0, 1.0))
    xy = arr[:, :2]
    if include_origin:
        xy = np.vstack([np.zeros((1, 2)), xy])
    pts = [(x, y, z) for x, y in xy]
    out = [
        make_marker(
            factory,
            stamp,
            frame_id,
            ns,
            marker_id,
            LINE_STRIP,
            points=pts,
            scale=(width, 0, 0),
            color=rgb,
            alpha=alpha,
        )
    ]
    if with_points:
        s = 1.6 * width
        out.append(
            make_marker(
                factory,
                stamp,
                frame_id,
                ns,
                marker_id + 1,
                SPHERE_LIST,
                points=pts,
                scale=(s, s, s),
                color=rgb,
                alpha=alpha,
            )
        )
    return out


def trajectory_to_markers(
    traj: Trajectory,
    factory: MessageFactory,
    stamp: float | None = None,
    frame_id: str = "base_link",
    ns: str | None = None,
    color: Sequence[float] | None = None,
    **kwargs: Any,
) -> Any:
    """``MarkerArray`` drawing a trajectory from its implicit origin (layer = ``ns`` or its source).

    Extra keyword arguments go to :func:`polyline_markers` (``width``, ``alpha``, ``marker_id``...).
    """
    layer = ns or traj.source or "trajectory"
    kwargs.setdefault("include_origin", True)
    t0 = traj.stamp if stamp is None else stamp
    return marker_array(factory, polyline_markers(traj.poses, factory, t0, frame_id, layer, color, **kwargs))


# The name the issue uses.
trajectory_to_marker_array = trajectory_to_markers


def box_markers(
    boxes: np.ndarray,
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    ns: str = "obstacles",
    color: Sequence[float] | None = None,
    *,
    height: float = 1.5,
    alpha: float = 0.6,
    first_id: int = 0,
) -> list[Any]:
    """One CUBE per box; ``boxes`` is N x 5 (x, y, yaw, length, width) in ``frame_id``.

    Raises:
        TrajectoryError: Bad shape or non-finite/negative sizes.
    """
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 5) if np.size(boxes) else np.zeros((0, 5))
    if not np.all(np.isfinite(arr)) or np.any(arr[:, 3:] < 0):
        raise TrajectoryError("boxes must be finite N x 5 (x, y, yaw, length >= 0, width >= 0)")
    rgb = color if color is not None else LAYER_COLORS.get(ns, (1.0, 0.2, 0.2))
    return [
        make_marker(
            factory,
            stamp,
            frame_id,
            ns,
            first_id + i,
            CUBE,
            pose=(b[0], b[1], b[2]),
            z=0.5 * height,
            scale=(max(b[3], 0.05), max(b[4], 0.05), height),
            color=rgb,
            alpha=alpha,
        )
        for i, b in enumerate(arr)
    ]


def text_marker(
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    text: str,
    ns: str = "status",
    *,
    position: tuple[float, float, float] = (0.0, 0.0, 3.0),
    size: float = 0.8,
    color: Sequence[float] = (1.0, 1.0, 1.0),
    marker_id: int = 0,
) -> Any:
    """A TEXT_VIEW_FACING marker (e.g. the arbiter's choice and reasons above the ego)."""
    return make_marker(
        factory,
        stamp,
        frame_id,
        ns,
        marker_id,
        TEXT_VIEW_FACING,
        pose=(position[0], position[1], 0.0),
        z=position[2],
        scale=(0.0, 0.0, size),
        color=color,
        text=text,
    )


def yaw_from_quaternion_msg(q: Any) -> float:
    """Yaw of a ``geometry_msgs/Quaternion``-like object."""
    return quaternion_to_yaw(q.x, q.y, q.z, q.w)


def stamp_offsets(msg: Any) -> np.ndarray:
    """Pose stamps of a Path relative to its header stamp [s]."""
    t0 = stamp_to_sec(msg.header.stamp)
    return np.array([stamp_to_sec(p.header.stamp) - t0 for p in msg.poses])


__all__ = [
    "LAYER_COLORS",
    "TrajectoryError",
    "box_markers",
    "delete_all_marker",
    "make_marker",
    "marker_array",
    "path_to_poses",
    "path_to_trajectory",
    "path_to_xy",
    "polyline_markers",
    "polyline_yaw",
    "poses_to_path",
    "stamp_offsets",
    "text_marker",
    "trajectory_to_marker_array",
    "trajectory_to_markers",
    "trajectory_to_path",
    "yaw_from_quaternion_msg",
]
