"""Small rclpy-message helpers shared by the drive nodes (message filling only, no logic).

Status dicts come from :mod:`vla_edge.diagnostics`; this module only copies them into
``diagnostic_msgs`` messages and back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vla_edge.msgfactory import split_stamp, stamp_to_sec
from vla_edge.types import Trajectory


def time_msg(stamp: float) -> Any:
    """``builtin_interfaces/Time`` from float seconds."""
    from builtin_interfaces.msg import Time

    sec, nanosec = split_stamp(stamp)
    return Time(sec=sec, nanosec=nanosec)


def header_msg(stamp: float, frame_id: str) -> Any:
    """``std_msgs/Header``."""
    from std_msgs.msg import Header

    return Header(stamp=time_msg(stamp), frame_id=frame_id)


def status_msg(status: Mapping[str, Any]) -> Any:
    """``diagnostic_msgs/DiagnosticStatus`` from a :mod:`vla_edge.diagnostics` dict."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    return DiagnosticStatus(
        level=bytes([int(status["level"])]),
        name=str(status["name"]),
        message=str(status["message"]),
        hardware_id=str(status.get("hardware_id", "")),
        values=[KeyValue(key=str(k), value=str(v)) for k, v in status.get("values", {}).items()],
    )


def array_msg(statuses: Iterable[Mapping[str, Any]], stamp: float) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` stamped ``stamp``."""
    from diagnostic_msgs.msg import DiagnosticArray

    return DiagnosticArray(header=header_msg(stamp, ""), status=[status_msg(s) for s in statuses])


def status_dict(msg: Any) -> dict[str, Any]:
    """Inverse of :func:`status_msg` (level as int, values as a str -> str dict)."""
    level = msg.level
    level = level[0] if isinstance(level, (bytes, bytearray)) else int(level)
    return {
        "name": msg.name,
        "level": int(level),
        "message": msg.message,
        "hardware_id": msg.hardware_id,
        "values": {kv.key: kv.value for kv in msg.values},
    }


def _yaw(q: Any) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def path_to_trajectory(msg: Any, source: str = "student") -> Trajectory:
    """``nav_msgs/Path`` (poses at stamp + dt, 2dt, ...) -> :class:`Trajectory`.

    The step is recovered from the pose stamps; the path header stamp is the frame stamp.

    Raises:
        ValueError: Fewer than one pose, or pose stamps not evenly increasing.
    """
    stamp = stamp_to_sec(msg.header.stamp)
    if not msg.poses:
        raise ValueError("candidate Path has no poses")
    times = np.array([stamp_to_sec(p.header.stamp) for p in msg.poses]) - stamp
    poses = np.array([[p.pose.position.x, p.pose.position.y, _yaw(p.pose.orientation)] for p in msg.poses])
    dt = float(times[0])
    if not dt > 0 or not np.allclose(np.diff(times), dt, atol=1e-3):
        raise ValueError(f"candidate Path pose stamps are not at stamp + k*dt (offsets {times[:3]}...)")
    return Trajectory(poses, dt, stamp, source=source)
