"""Small rosbag2 I/O helper shared by the simulator, replay, explain, training and recorder.

Reading (any rosbag2 directory, MCAP or sqlite3, via ``rosbags``' ``AnyReader``)::

    from vla_edge.bagio import open_bag
    with open_bag("runs/sim_0", remap={"/points_raw": "/sensing/lidar/points"}) as bag:
        print(bag.topics)                       # {topic: msgtype} after remapping
        for m in bag.messages(["/sensing/lidar/points", "/localization/odometry"]):
            m.topic, m.msgtype, m.stamp, m.msg  # ordered by log time; msg is deserialized

``stamp`` is the bag's log (receive) time in float seconds; the message header stamp is
``m.msg.header`` as usual (the simulator logs every message at its header stamp, so both
agree there). Bags without embedded message definitions (older sqlite3 bags) are
deserialized with the ROS 2 Humble type store.

Writing (MCAP, deterministic for the same messages)::

    from vla_edge.bagio import BagWriter
    with BagWriter("out/bag_dir") as w:
        w.write("/sim/reasoning", "std_msgs/msg/String", msg, stamp)

Errors are :class:`vla_edge.errors.BagError` with what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from vla_edge.errors import BagError

log = logging.getLogger(__name__)

__all__ = [
    "BagMessage",
    "BagReader",
    "BagWriter",
    "default_typestore",
    "open_bag",
    "read_messages",
    "read_raw",
]


class BagMessage(NamedTuple):
    """One message of a bag.

    Attributes:
        topic: Topic name after remapping.
        msgtype: ROS type name, e.g. ``sensor_msgs/msg/PointCloud2``.
        stamp: Log time in float seconds.
        msg: The deserialized message (rosbags dataclass; fields as in rclpy).
        log_time_ns: Log time in integer nanoseconds (exact).
    """

    topic: str
    msgtype: str
    stamp: float
    msg: Any
    log_time_ns: int


def default_typestore() -> Any:
    """The type store used for writing and for bags without message definitions."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


class BagReader:
    """An open rosbag2 with topic remapping. Use :func:`open_bag`.

    Args:
        path: rosbag2 directory (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file.
        remap: ``{name in bag: name to expose}``.
    """

    def __init__(self, path: str | os.PathLike[str], remap: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.remap = dict(remap or {})
        self._reader: Any = None
        self.problems: list[str] = []  # damaged places skipped ("<file> at byte <offset>: ...")

    def __enter__(self) -> BagReader:
        from rosbags.highlevel import AnyReader

        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}; pass a rosbag2 directory or its .mcap/.db3 file")
        try:
            reader = AnyReader([self.path], default_typestore=default_typestore())
            reader.open()
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - rosbags raises several unrelated types
            reader = self._salvage(exc)
        self._reader = reader
        targets = [self.remap.get(c.topic, c.topic) for c in reader.connections]
        dup = {
            t
            for t in targets
            if targets.count(t) > 1
            and len({c.msgtype for c in reader.connections if self.remap.get(c.topic, c.topic) == t}) > 1
        }
        if dup:
            self.close()
            raise BagError(f"remapping makes topics {sorted(dup)} carry two message types; fix the remap")
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _salvage(self, exc: BaseException) -> Any:
        """A damaged MCAP (corrupt record, cut short): read its intact part record by record.

        Raises:
            BagError: Not an MCAP, or nothing readable in it (names file and offset).
        """
        from vla_edge.mcap_scan import mcap_files

        files = mcap_files(self.path)
        if not files or any(f.suffix != ".mcap" for f in files):
            raise BagError(
                f"cannot read {self.path} as a rosbag2 (MCAP or sqlite3): {exc}; "
                "check it is a complete bag directory with metadata.yaml"
            ) from None
        reader = SalvageReader(files)
        if not reader.count_all:
            where = "; ".join(str(p) for p in reader.problems) or str(exc)
            raise BagError(f"no readable message in {self.path}: {where}") from None
        for p in reader.problems:
            self.problems.append(str(p))
            log.error("damaged bag, reading the intact part only: %s", p)
        return reader

    def close(self) -> None:
        """Close the underlying reader."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _r(self) -> Any:
        if self._reader is None:
            raise BagError("bag is not open; use 'with open_bag(path) as bag:'")
        return self._reader

    @property
    def topics(self) -> dict[str, str]:
        """``{topic: msgtype}`` after remapping."""
        return {self.remap.get(c.topic, c.topic): c.msgtype for c in self._r().connections}

    def count(self, topic: str) -> int:
        """Number of messages on a (remapped) topic."""
        return sum(c.msgcount for c in self._r().connections if self.remap.get(c.topic, c.topic) == topic)

    @property
    def start(self) -> float:
        """First log time in seconds."""
        return self._r().start_time * 1e-9

    @property
    def end(self) -> float:
        """Last log time in seconds."""
        return self._r().end_time * 1e-9

    def deserialize(self, data: bytes, msgtype: str, topic: str = "?", log_time_ns: int = 0) -> Any:
        """CDR bytes of a ``raw=True`` message -> message, with the bag's own type definitions.

        Raises:
            BagError: The bytes are not a valid ``msgtype``.
        """
        try:
            return self._r().deserialize(data, msgtype)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several unrelated types
            raise BagError(f"cannot deserialize a {msgtype} on {topic} at {log_time_ns} ns: {exc}") from None

    def messages(
        self,
        topics: Iterable[str] | None = None,
        start: float | None = None,
        stop: float | None = None,
        *,
        raw: bool = False,
    ) -> Iterator[BagMessage]:
        """Messages ordered by log time.

        Args:
            topics: Remapped topic names to read (None: all). Unknown names raise.
            start: Only messages logged at or after this time (s).
            stop: Only messages logged before this time (s).
            raw: Yield the serialized CDR bytes instead of deserializing (fast scans).

        Raises:
            BagError: A requested topic is not in the bag, or a message cannot be deserialized.
        """
        reader = self._r()
        conns = list(reader.connections)
        if topics is not None:
            want = set(topics)
            have = {self.remap.get(c.topic, c.topic) for c in conns}
            missing = sorted(want - have)
            if missing:
                raise BagError(
                    f"topics {missing} not in {self.path}; it has {sorted(have)} (remap with remap={{...}})"
                )
            conns = [c for c in conns if self.remap.get(c.topic, c.topic) in want]
        if not conns:
            return
        kw: dict[str, int] = {}
        if start is not None:
            kw["start"] = round(start * 1e9)
        if stop is not None:
            kw["stop"] = round(stop * 1e9)
        last_ns = -1
        it = reader.messages(connections=conns, **kw)
        while True:
            try:
                conn, t_ns, data = next(it)
            except StopIteration:
                return
            except Exception as exc:
                if isinstance(reader, SalvageReader):
                    raise
                yield from self._salvage_rest(exc, {c.topic for c in conns}, last_ns, kw, raw)
                return
            last_ns = t_ns
            topic = self.remap.get(conn.topic, conn.topic)
            msg: Any = bytes(data) if raw else self.deserialize(data, conn.msgtype, conn.topic, t_ns)
            yield BagMessage(topic, conn.msgtype, t_ns * 1e-9, msg, int(t_ns))

    def _salvage_rest(
        self, exc: BaseException, topics: set[str], after_ns: int, kw: dict[str, int], raw: bool
    ) -> Iterator[BagMessage]:
        """Continue a read that hit a corrupt record with the salvage scan (later messages)."""
        from vla_edge.mcap_scan import mcap_files

        files = mcap_files(self.path)
        if not files or any(f.suffix != ".mcap" for f in files):
            raise BagError(f"{self.path}: reading failed after {after_ns} ns: {exc}") from None
        salvage = SalvageReader(files)
        for p in salvage.problems:
            self.problems.append(str(p))
            log.error("damaged bag, reading the intact part only: %s", p)
        conns = [c for c in salvage.connections if c.topic in topics]
        for conn, t_ns, data in salvage.messages(connections=conns, **kw):
            if t_ns <= after_ns:
                continue
            topic = self.remap.get(conn.topic, conn.topic)
            msg: Any = bytes(data) if raw else self.deserialize(data, conn.msgtype, conn.topic, t_ns)
            yield BagMessage(topic, conn.msgtype, t_ns * 1e-9, msg, int(t_ns))


class _SalvageConnection(NamedTuple):
    topic: str
    msgtype: str
    msgcount: int


class SalvageReader:
    """Minimal AnyReader stand-in over :class:`~vla_edge.mcap_scan.McapScan` (damaged MCAP).

    Messages come in file order (a recording's chunks are already in time order) and are
    deserialized with the default typestore (the recorded types are standard ROS types).
    """

    def __init__(self, files: list[Path]) -> None:
        from vla_edge.mcap_scan import McapScan

        self.files = files
        self.problems: list[Any] = []
        counts: dict[tuple[str, str], int] = {}
        times: list[int] = []
        for f in files:  # one metadata pass: topics, counts, time range, damage
            scan = McapScan(f)
            for m in scan.messages():
                counts[(m.topic, m.msgtype)] = counts.get((m.topic, m.msgtype), 0) + 1
                times.append(m.log_time_ns)
            self.problems.extend(scan.problems)
        self.connections = [_SalvageConnection(t, mt, n) for (t, mt), n in counts.items()]
        self.count_all = sum(counts.values())
        self.start_time = min(times, default=0)
        self.end_time = max(times, default=0)
        self._typestore = default_typestore()

    def messages(self, connections: Any = None, start: int | None = None, stop: int | None = None) -> Any:
        """``(connection, log_time_ns, data)`` like rosbags' ``AnyReader.messages``."""
        from vla_edge.mcap_scan import McapScan

        want = {c.topic: c for c in (connections or self.connections)}
        for f in self.files:
            for m in McapScan(f).messages():
                conn = want.get(m.topic)
                if conn is None or (start is not None and m.log_time_ns < start):
                    continue
                if stop is not None and m.log_time_ns >= stop:
                    continue
                yield conn, m.log_time_ns, m.data

    def deserialize(self, data: bytes, msgtype: str) -> Any:
        """CDR -> message with the default typestore."""
        return self._typestore.deserialize_cdr(data, msgtype)

    def close(self) -> None:
        """Nothing held open between reads."""


def open_bag(path: str | os.PathLike[str], remap: Mapping[str, str] | None = None) -> BagReader:
    """Open a rosbag2 for reading (a context manager). See :class:`BagReader`."""
    return BagReader(path, remap)


def read_raw(
    path: str | os.PathLike[str], topics: Iterable[str] | None = None, remap: Mapping[str, str] | None = None
) -> Iterator[tuple[str, str, int, bytes]]:
    """Iterate ``(topic, msgtype, log_time_ns, cdr_bytes)`` without deserializing (fast)."""
    with open_bag(path, remap) as bag:
        for m in bag.messages(topics, raw=True):
            yield m.topic, m.msgtype, m.log_time_ns, m.msg


def read_messages(
    path: str | os.PathLike[str], topics: Iterable[str] | None = None, remap: Mapping[str, str] | None = None
) -> Iterator[BagMessage]:
    """Iterate the messages of a bag (opens and closes it)."""
    with open_bag(path, remap) as bag:
        yield from bag.messages(topics)


class BagWriter:
    """Write a rosbag2 MCAP directory; connections are created on first use of a topic.

    Args:
        path: Output directory; must not exist yet.
        typestore: rosbags type store (default: ROS 2 Humble, as :class:`RosbagsFactory`).

    Raises:
        BagError: The path exists or cannot be created.
    """

    def __init__(self, path: str | os.PathLike[str], typestore: Any | None = None) -> None:
        self.path = Path(path)
        self.typestore = typestore if typestore is not None else default_typestore()
        self._writer: Any = None
        self._conns: dict[str, Any] = {}
        self.count = 0

    def __enter__(self) -> BagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if self.path.exists():
            raise BagError(f"bag output {self.path} already exists; choose a new directory or delete it")
        if not self.path.parent.exists():
            try:
                self.path.parent.mkdir(parents=True)
            except OSError as exc:
                raise BagError(f"cannot create {self.path.parent}: {exc}") from None
        try:
            self._writer = Writer(self.path, version=8, storage_plugin=StoragePlugin.MCAP)
            self._writer.open()
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"cannot open {self.path} for writing: {exc}") from None
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write(self, topic: str, msgtype: str, msg: Any, stamp: float | int) -> None:
        """Serialize and append ``msg`` logged at ``stamp`` (float s, or int ns).

        Raises:
            BagError: Writer not open, or the topic was first written with another type.
        """
        if self._writer is None:
            raise BagError("bag writer is not open; use 'with BagWriter(path) as w:'")
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._conns[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already carries {conn.msgtype}, cannot write {msgtype}")
        t_ns = stamp if isinstance(stamp, int) else round(float(stamp) * 1e9)
        self._writer.write(conn, t_ns, self.typestore.serialize_cdr(msg, msgtype))
        self.count += 1
