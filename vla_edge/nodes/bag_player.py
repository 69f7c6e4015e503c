"""Play a rosbag2 over DDS, paced in real time (or faster), with ``/clock`` for use_sim_time.

Messages go out as the raw CDR stored in the bag (``Publisher.publish(bytes)``), so playing
never deserialises a 262k-point cloud in Python; the message class is only needed to
create the publisher. ``/clock`` (rosgraph_msgs/Clock) carries the bag time: before every
message and at ``clock_hz`` in between, so timers of nodes with ``use_sim_time`` tick.

Reusable by replay: build a :class:`BagPlayer` on any node context with an iterable of
:class:`RawMessage` (``vla_edge.bagio`` reads MCAP/sqlite3 bags with topic remapping) and call
:meth:`BagPlayer.play`.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rclpy.node import Node

from vla_edge.errors import BagError
from vla_edge.nodes import qos


@dataclass(frozen=True)
class RawMessage:
    """One bag record: topic, ROS type (``pkg/msg/Name``), bag time (ns), CDR bytes."""

    topic: str
    msgtype: str
    timestamp_ns: int
    data: bytes


@dataclass
class PlayStats:
    """What :meth:`BagPlayer.play` sent.

    Attributes:
        published: Messages per topic.
        wall_s: Wall time of the playback (s).
        bag_span_s: Bag time covered (s).
        late_ms_max: Worst lateness of a publish against its schedule (ms).
        publish_wall: Wall time (``time.time()``) of each publish per topic, for latency stats.
    """

    published: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    bag_span_s: float = 0.0
    late_ms_max: float = 0.0
    publish_wall: dict[str, list[float]] = field(default_factory=dict)


def message_class(msgtype: str) -> type:
    """Python class of a ROS type name ``pkg/msg/Name``.

    Raises:
        BagError: The message package is not installed.
    """
    try:
        pkg, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        raise BagError(
            f"message type {msgtype!r} is not available in this ROS install; install its package"
        ) from None


class BagPlayer(Node):
    """Publishes bag records on their topics (reliable QoS; serves best-effort readers too).

    Args:
        types: Topic -> ROS type for every topic to play (others are skipped).
        rate: Playback speed factor (1.0 real time; 0 or less = as fast as possible).
        clock: Publish ``/clock``.
        clock_hz: ``/clock`` rate between messages (Hz).
        **node_kwargs: Passed to ``rclpy.node.Node``.
    """

    def __init__(
        self,
        types: Mapping[str, str],
        rate: float = 1.0,
        clock: bool = True,
        clock_hz: float = 100.0,
        node_name: str = "vla_edge_bag_player",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        self.rate = float(rate)
        self.clock_period = 1.0 / float(clock_hz)
        self.pubs = {
            t: self.create_publisher(message_class(mt), t, qos.reliable_qos()) for t, mt in types.items()
        }
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self.clock_pub = self.create_publisher(Clock, "/clock", qos.clock_qos())

    def wait_for_subscribers(self, topics: Iterable[str], timeout: float) -> bool:
        """Wait (bounded) until every topic in ``topics`` has at least one matched reader."""
        end = time.monotonic() + timeout
        wanted = [t for t in topics if t in self.pubs]
        while time.monotonic() < end:
            if all(self.pubs[t].get_subscription_count() > 0 for t in wanted):
                return True
            time.sleep(0.05)
        return all(self.pubs[t].get_subscription_count() > 0 for t in wanted)

    def publish_clock(self, t_ns: int) -> None:
        """Publish ``/clock`` = ``t_ns`` (no-op without a clock publisher)."""
        if self.clock_pub is not None:
            from builtin_interfaces.msg import Time

            msg = self._clock_cls(
                clock=Time(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))
            )
            self.clock_pub.publish(msg)

    def play(
        self,
        messages: Iterable[RawMessage],
        stop: threading.Event | None = None,
        on_publish: Callable[[RawMessage, float], None] | None = None,
    ) -> PlayStats:
        """Publish ``messages`` (in bag-time order) with their original spacing / ``rate``.

        Args:
            messages: Records sorted by ``timestamp_ns``.
            stop: Set it to end playback early.
            on_publish: Called with each record and its wall publish time.

        Returns:
            :class:`PlayStats`.
        """
        stats = PlayStats()
        wall0 = time.monotonic()
        bag0: int | None = None
        last_ns = 0
        for rec in messages:
            if stop is not None and stop.is_set():
                break
            pub = self.pubs.get(rec.topic)
            if pub is None:
                continue
            if bag0 is None:
                bag0 = rec.timestamp_ns
                self.publish_clock(bag0)
            due = wall0 + (rec.timestamp_ns - bag0) * 1e-9 / self.rate if self.rate > 0 else time.monotonic()
            self._wait_until(due, rec.timestamp_ns, bag0, wall0, stop)
            self.publish_clock(rec.timestamp_ns)
            pub.publish(bytes(rec.data))
            now_wall = time.time()
            stats.late_ms_max = max(stats.late_ms_max, 1000.0 * (time.monotonic() - due))
            stats.published[rec.topic] = stats.published.get(rec.topic, 0) + 1
            stats.publish_wall.setdefault(rec.topic, []).append(now_wall)
            if on_publish is not None:
                on_publish(rec, now_wall)
            last_ns = rec.timestamp_ns
        stats.wall_s = time.monotonic() - wall0
        stats.bag_span_s = 0.0 if bag0 is None else (last_ns - bag0) * 1e-9
        return stats

    def _wait_until(
        self, due: float, due_ns: int, bag0: int, wall0: float, stop: threading.Event | None
    ) -> None:
        """Sleep until ``due``, publishing ``/clock`` at ``clock_hz`` meanwhile (never past ``due_ns``)."""
        while True:
            remaining = due - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return
            time.sleep(min(remaining, self.clock_period))
            if self.clock_pub is not None and self.rate > 0:
                bag_now = bag0 + int((time.monotonic() - wall0) * self.rate * 1e9)
                self.publish_clock(min(bag_now, due_ns))
