"""Build ROS messages without depending on which ROS binding is present.

Core code (conversions, the simulator's bag writer, the recorder) must not import rclpy,
yet it has to *produce* messages for two consumers: rclpy publishers on a vehicle and
``rosbags`` writers offline. Both accept the same keyword constructor when every field
is given, so core code builds messages through a :class:`MessageFactory`:

>>> factory = RosbagsFactory()              # or RclpyFactory() inside a node
>>> hdr = factory.header(12.5, "base_link")
>>> msg = factory.make("std_msgs/msg/String", data="hello")

Reading needs no factory: conversions duck-type on field names, which are identical in
rclpy messages and rosbags-deserialized messages.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np


def split_stamp(stamp: float) -> tuple[int, int]:
    """Split float seconds into ``(sec, nanosec)`` without rounding nanosec to 1e9."""
    ns = int(round(stamp * 1e9))  # noqa: RUF046 - numpy scalars may round to float
    return ns // 1_000_000_000, ns % 1_000_000_000


def stamp_to_sec(stamp: Any) -> float:
    """Convert a ``builtin_interfaces/Time``-like object to float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


@runtime_checkable
class MessageFactory(Protocol):
    """Creates messages by ROS type name (``"pkg/msg/Name"``)."""

    def make(self, msgtype: str, **fields: Any) -> Any:
        """Construct ``msgtype`` from keyword fields (give every field)."""
        ...

    def bytes_field(self, data: np.ndarray | bytes) -> Any:
        """Convert a uint8 buffer to what this binding stores in ``uint8[]`` fields."""
        ...

    def header(self, stamp: float, frame_id: str) -> Any:
        """Build a ``std_msgs/Header``."""
        ...


class _FactoryBase:
    def header(self, stamp: float, frame_id: str) -> Any:
        sec, nanosec = split_stamp(stamp)
        time = self.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)  # type: ignore[attr-defined]
        return self.make("std_msgs/msg/Header", stamp=time, frame_id=frame_id)  # type: ignore[attr-defined]


class RosbagsFactory(_FactoryBase):
    """Messages as ``rosbags`` dataclasses, ready for ``Typestore.serialize_cdr``."""

    def __init__(self, typestore: Any | None = None) -> None:
        if typestore is None:
            from rosbags.typesys import Stores, get_typestore

            typestore = get_typestore(Stores.ROS2_HUMBLE)
        self.typestore = typestore

    def make(self, msgtype: str, **fields: Any) -> Any:
        return self.typestore.types[msgtype](**fields)

    def bytes_field(self, data: np.ndarray | bytes) -> Any:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return np.frombuffer(bytes(data), dtype=np.uint8)
        return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)


class RclpyFactory(_FactoryBase):
    """Messages as the generated Python classes of a ROS install (or the ROS wheels).

    Only message packages are imported, never rclpy itself.
    """

    def __init__(self) -> None:
        self._cache: dict[str, type] = {}

    def _cls(self, msgtype: str) -> type:
        cls = self._cache.get(msgtype)
        if cls is None:
            pkg, kind, name = msgtype.split("/")
            cls = getattr(importlib.import_module(f"{pkg}.{kind}"), name)
            self._cache[msgtype] = cls
        return cls

    def make(self, msgtype: str, **fields: Any) -> Any:
        return self._cls(msgtype)(**fields)

    def bytes_field(self, data: np.ndarray | bytes) -> Any:
        # rclpy stores uint8[] as array.array('B'); assigning bytes is the fast path.
        if isinstance(data, np.ndarray):
            return np.ascontiguousarray(data, dtype=np.uint8).tobytes()
        return bytes(data)
