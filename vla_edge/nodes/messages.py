"""Small rclpy-message helpers shared by the drive nodes (message filling only, no logic).

Status dicts come from :mod:`vla_edge.diagnostics`; this module only copies them into
``diagnostic_msgs`` messages and back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vla_edge.msgfactory import split_stamp


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
