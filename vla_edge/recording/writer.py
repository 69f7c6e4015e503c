"""The file side of the recorder: a bounded queue, one MCAP split at a time, its thread.

* :class:`BoundedQueue` is the only thing the control path touches: ``put_nowait``
  takes a short lock, never waits for space, and reports a full queue as ``False``.
* :class:`SplitFile` writes one split with ``rosbags`` into ``splits/_open/<name>/``
  and renames the finished folder to ``splits/<name>/`` on close, so every folder
  directly under ``splits/`` is a complete rosbag2 (``metadata.yaml`` + MCAP) and a
  crash leaves at most the open split behind in ``_open/``.
* :class:`SplitStore` rotates splits (:class:`SplitPolicy`), applies the disk budget
  (:class:`RingBudget`) and feeds closed splits to the :class:`EventBook`.
* :class:`WriterThread` pumps the queue into a handler on its own daemon thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.errors import RecorderError
from vla_edge.recording.events import EventBook, Trigger
from vla_edge.recording.splits import RingBudget, SplitInfo, SplitPolicy

LOG = logging.getLogger(__name__)

OPEN_DIR = "_open"
ROSBAG_VERSION = 8  # default metadata version (Iron); recorder.yaml split.rosbag_distro picks another
#: Keys of ``rosbag2_bagfile_information`` that rosbag2 <= version 5 (Humble) decodes; later
#: versions add custom_data, ros_distro and topic type_description_hash.
V5_KEYS = (
    "version", "storage_identifier", "relative_file_paths", "duration", "starting_time",
    "message_count", "topics_with_message_count", "compression_format", "compression_mode", "files",
)  # fmt: skip
V5_TOPIC_KEYS = ("name", "type", "serialization_format", "offered_qos_profiles")


def downgrade_metadata(bag_dir: Path, version: int) -> None:
    """Rewrite ``bag_dir/metadata.yaml`` (written as version 8) as ``version`` (5: Humble).

    rosbags writes versions 8 and 9 only. Version 8 already stores the QoS profiles as one
    YAML string, as version 5 does; only the fields a Humble reader does not know are
    dropped and the version number is set. The MCAP file's own embedded metadata record is
    left as written (Humble's MCAP plugin does not read it).
    """
    import yaml

    path = bag_dir / "metadata.yaml"
    doc = yaml.safe_load(path.read_text())
    info = doc["rosbag2_bagfile_information"]
    if int(info["version"]) != 8 or version > 8:
        raise RecorderError(
            f"{path}: can only downgrade metadata version 8 to <= 8, got {info['version']} -> {version}"
        )
    out = {k: info[k] for k in V5_KEYS if k in info}
    out["version"] = int(version)
    out["topics_with_message_count"] = [
        {
            "topic_metadata": {k: t["topic_metadata"][k] for k in V5_TOPIC_KEYS},
            "message_count": t["message_count"],
        }
        for t in info["topics_with_message_count"]
    ]
    path.write_text(yaml.safe_dump({"rosbag2_bagfile_information": out}, sort_keys=False))


@dataclass(frozen=True)
class Item:
    """One serialized message waiting to be written.

    Attributes:
        topic: Topic name.
        msgtype: ROS type name (``sensor_msgs/msg/PointCloud2``).
        stamp_ns: Log timestamp (receive time on the node's clock), ns.
        data: CDR bytes exactly as received.
    """

    topic: str
    msgtype: str
    stamp_ns: int
    data: bytes | bytearray | memoryview


class BoundedQueue:
    """FIFO bounded by item count and payload bytes; producers never wait for space.

    Args:
        max_items: Most queued items.
        max_bytes: Most queued payload bytes.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        if max_items < 1 or max_bytes < 1:
            raise RecorderError(f"queue limits must be >= 1 (max_items={max_items}, max_bytes={max_bytes})")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self.accepted = 0  # counted under the lock: producers may be several executor threads
        self.rejected = 0

    def put_nowait(self, item: Any, nbytes: int) -> bool:
        """Append ``item`` unless a limit would be exceeded; never blocks on space.

        Returns:
            True when queued, False when the queue is full (the caller counts a drop).
        """
        with self._cond:
            if len(self._items) >= self.max_items or self._bytes + nbytes > self.max_bytes:
                self.rejected += 1
                return False
            self._items.append((item, nbytes))
            self._bytes += nbytes
            self.accepted += 1
            self._cond.notify()
        return True

    def get(self, timeout: float) -> Any | None:
        """Pop the oldest item, waiting at most ``timeout`` seconds; None on timeout."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item, nbytes = self._items.popleft()
            self._bytes -= nbytes
            return item

    def clear(self) -> int:
        """Drop everything queued; returns how many items were dropped."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._bytes = 0
            return n

    def wake(self) -> None:
        """Wake a waiting :meth:`get` (used on shutdown)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def depth(self) -> int:
        """Items queued now."""
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Payload bytes queued now."""
        return self._bytes


def dir_size(path: Path) -> int:
    """Bytes of the regular files in a folder tree (0 if it vanished)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_size
    return total


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder (folder entries make renames durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SplitFile:
    """One split being written: ``staging/<name>/`` until :meth:`close` renames it.

    Args:
        staging: Folder for open splits (``splits/_open``).
        final_dir: Folder for closed splits (``splits``).
        name: Split name; also the MCAP file stem.
        typestore: rosbags typestore that knows every recorded message type.
        fsync: Flush the files and the folder rename to disk on close.
    """

    def __init__(
        self,
        staging: Path,
        final_dir: Path,
        name: str,
        typestore: Any,
        fsync: bool = True,
        metadata_version: int = ROSBAG_VERSION,
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.name = name
        self.metadata_version = int(metadata_version)
        self.fsync = fsync
        self.final_dir = final_dir
        self.typestore = typestore
        self.opened = time.monotonic()
        self.payload_bytes = 0
        self.messages = 0
        self.start_ns = 0
        self.end_ns = 0
        self._conns: dict[tuple[str, str], Any] = {}
        staging.mkdir(parents=True, exist_ok=True)
        version = 9 if self.metadata_version >= 9 else 8  # older ones: written as 8, then downgraded
        self._writer = Writer(staging / name, version=version, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()

    def write(self, item: Item) -> None:
        """Append one serialized message."""
        key = (item.topic, item.msgtype)
        conn = self._conns.get(key)
        if conn is None:
            if item.msgtype not in self.typestore.types:
                raise RecorderError(f"unknown message type {item.msgtype!r} on {item.topic}")
            conn = self._writer.add_connection(item.topic, item.msgtype, typestore=self.typestore)
            self._conns[key] = conn
        self._writer.write(conn, item.stamp_ns, item.data)
        if self.messages == 0:
            self.start_ns = self.end_ns = item.stamp_ns
        self.start_ns = min(self.start_ns, item.stamp_ns)
        self.end_ns = max(self.end_ns, item.stamp_ns)
        self.messages += 1
        self.payload_bytes += len(item.data)

    def stamp_span_ns(self) -> int:
        """Last minus first message timestamp so far."""
        return self.end_ns - self.start_ns if self.messages else 0

    def close(self) -> SplitInfo:
        """Finish the MCAP and metadata, then move the folder into place atomically."""
        self._writer.set_custom_data("vla_edge.split", self.name)
        self._writer.close()
        src = self._writer.path
        if self.metadata_version < 8:  # before fsync + rename: a closed split is always final
            downgrade_metadata(src, self.metadata_version)
        dst = self.final_dir / self.name
        if self.fsync:  # data before the rename, the rename before "closed": power-loss safe
            for f in src.iterdir():
                _fsync_path(f)
        os.replace(src, dst)
        if self.fsync:
            _fsync_path(self.final_dir)
        return SplitInfo(self.name, dst, dir_size(dst), self.start_ns, self.end_ns, self.messages)

    def abort(self) -> None:
        """Give up on the split (its staging folder stays for post-mortem)."""
        with contextlib.suppress(Exception):  # already failing; nothing more to report
            self._writer.abort()


class SplitStore:
    """Rotating splits under ``<root>/splits`` with a disk budget and event copies.

    Only the writer thread calls it. Any ``OSError`` escapes to the caller, which turns
    the recorder off (see :class:`WriterThread`).

    Args:
        root: Output folder; ``splits/`` and ``events/`` are created inside.
        policy: When to close a split.
        ring: Disk budget of ``splits/``.
        events: Event windows and the events folder.
        typestore: rosbags typestore for every recorded type.
        min_free_bytes: Free space under which the disk counts as full.
        session: Prefix of split names (UTC start time); names sort by time.
    """

    def __init__(
        self,
        root: Path,
        policy: SplitPolicy,
        ring: RingBudget,
        events: EventBook,
        typestore: Any,
        min_free_bytes: int,
        session: str,
    ) -> None:
        self.root = Path(root)
        self.splits_dir = self.root / "splits"
        self.staging = self.splits_dir / OPEN_DIR
        self.policy = policy
        self.ring = ring
        self.events = events
        self.typestore = typestore
        self.min_free_bytes = min_free_bytes
        self.session = session
        self.closed: list[SplitInfo] = []
        self.current: SplitFile | None = None
        self.index = 0
        self.bytes_written = 0
        self.deleted = 0
        self.over_budget = False
        self.splits_dir.mkdir(parents=True, exist_ok=True)
        self._adopt_existing()

    def _adopt_existing(self) -> None:
        """Count splits left by earlier runs (and crashed open ones) against the budget."""
        for p in sorted(self.splits_dir.iterdir()):
            if p.is_dir() and p.name != OPEN_DIR and (p / "metadata.yaml").is_file():
                self.closed.append(SplitInfo(p.name, p, dir_size(p)))
        if self.staging.is_dir():
            for p in sorted(self.staging.iterdir()):
                if p.is_dir():
                    self.closed.append(SplitInfo(p.name, p, dir_size(p), complete=False))

    def check_free_space(self) -> None:
        """Raise ``OSError(ENOSPC)`` when free space is under the configured floor."""
        free = shutil.disk_usage(self.splits_dir).free
        if free < self.min_free_bytes:
            raise OSError(
                errno.ENOSPC,
                f"disk full: {free / 1e6:.1f} MB free under {self.splits_dir}, "
                f"floor is {self.min_free_bytes / 1e6:.1f} MB (ring.min_free_mb)",
            )

    def write(self, item: Item) -> None:
        """Write one message, opening/rotating splits as needed."""
        if self.current is not None and self._due(item.stamp_ns):
            self.rotate()
        if self.current is None:
            self.check_free_space()
            self.current = SplitFile(
                self.staging,
                self.splits_dir,
                self._next_name(),
                self.typestore,
                self.policy.fsync,
                self.policy.metadata_version,
            )
        self.current.write(item)
        self.bytes_written += len(item.data)
        if self.policy.should_close(0.0, 0, self.current.payload_bytes):
            self.rotate()

    def _next_name(self) -> str:
        """Next free split name (a restart within the same millisecond cannot collide)."""
        while True:
            self.index += 1
            name = f"{self.session}_{self.index:06d}"
            if not (self.splits_dir / name).exists() and not (self.staging / name).exists():
                return name

    def _due(self, next_stamp_ns: int | None) -> bool:
        cur = self.current
        assert cur is not None
        span = cur.stamp_span_ns()
        if next_stamp_ns is not None and cur.messages:
            span = max(span, next_stamp_ns - cur.start_ns)
        return self.policy.should_close(time.monotonic() - cur.opened, span, cur.payload_bytes)

    def tick(self) -> None:
        """Idle wake-up: close the open split when its time is up even without traffic."""
        if self.current is not None and self._due(None):
            self.rotate()

    def rotate(self) -> None:
        """Close the open split (if any), hand it to events, apply the budget."""
        cur, self.current = self.current, None
        if cur is None:
            return
        if cur.messages == 0:
            cur.abort()
            shutil.rmtree(self.staging / cur.name, ignore_errors=True)
            return
        try:
            info = cur.close()
        except BaseException:
            cur.abort()
            raise
        self.closed.append(info)
        self.events.on_split_closed(info)
        self.apply_budget()

    def flag(self, trig: Trigger) -> None:
        """Flag an event window: copy overlapping closed splits now, later ones on close."""
        self.events.flag(trig, self.closed)

    def apply_budget(self) -> None:
        """Delete splits the ring budget picks."""
        open_bytes = self.current.payload_bytes if self.current is not None else 0
        victims = self.ring.to_delete(self.closed, open_bytes)
        for split in victims:
            shutil.rmtree(split.path, ignore_errors=True)
            self.closed.remove(split)
            self.deleted += 1
        total = open_bytes + sum(s.size_bytes for s in self.closed)
        self.over_budget = total > self.ring.max_total_bytes

    def close(self) -> None:
        """Close the open split and finish the events index."""
        try:
            self.rotate()
        finally:
            self.events.close_all()

    def abort(self) -> None:
        """Stop after a failure: drop the open split, never raise."""
        cur, self.current = self.current, None
        if cur is not None:
            cur.abort()
        with contextlib.suppress(Exception):  # the disk is already failing
            self.events.close_all()


class WriterThread(threading.Thread):
    """Daemon thread: queue → ``handle(item)``; idle wake-ups → ``tick()``.

    The first exception from ``handle``/``tick`` calls ``on_fatal(exc)`` and ends the
    thread; the recorder is then off and the producers keep dropping (counted).

    Args:
        queue: Source of items.
        handle: Processes one item.
        tick: Called on idle wake-ups (every ``idle_poll_s`` without items).
        on_fatal: Called once with the exception that stopped the thread.
        finish: Called on a clean stop (flush and close the open split).
        idle_poll_s: Longest wait for an item before calling ``tick``.
    """

    def __init__(
        self,
        queue: BoundedQueue,
        handle: Callable[[Any], None],
        tick: Callable[[], None],
        on_fatal: Callable[[BaseException], None],
        finish: Callable[[], None],
        idle_poll_s: float,
    ) -> None:
        super().__init__(name="vla_edge-recorder-writer", daemon=True)
        self.queue = queue
        self.handle = handle
        self.tick = tick
        self.on_fatal = on_fatal
        self.finish = finish
        self.idle_poll_s = idle_poll_s
        self._stop_req = threading.Event()
        self.busy_s = 0.0  # time spent writing (for benchmarks/diagnostics)

    def run(self) -> None:
        try:
            last_tick = time.monotonic()
            while True:
                item = self.queue.get(self.idle_poll_s)
                if item is None and self._stop_req.is_set():
                    break
                t0 = time.perf_counter()
                if item is not None:
                    self.handle(item)
                now = time.monotonic()
                if item is None or now - last_tick >= self.idle_poll_s:
                    self.tick()
                    last_tick = now
                self.busy_s += time.perf_counter() - t0
            self.finish()
        except BaseException as exc:  # noqa: BLE001 - any failure turns the recorder off
            self.on_fatal(exc)

    def stop(self, timeout: float) -> bool:
        """Ask the thread to drain, close the open split and exit; True if it did."""
        self._stop_req.set()
        self.queue.wake()
        self.join(timeout)
        return not self.is_alive()
