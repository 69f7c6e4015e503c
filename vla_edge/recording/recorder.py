"""ROS-free recorder core: bounded queue in, rosbag2 MCAP splits out, never in the way.

The control path (or the recorder node's callbacks) calls :meth:`Recorder.record` with
the CDR bytes of a message. That call takes one short lock, never waits for space and
never raises: a full queue drops the message and counts it, a recorder that has turned
itself off (disk full, unwritable folder) drops and counts too. Everything else —
JPEG-compressing raw camera images, parsing decisions for events, writing MCAP,
rotating splits, deleting old ones, copying event windows — happens on the writer
thread.

>>> rec = Recorder.from_config(out_dir="/tmp/log")      # config/recorder.yaml + topics.yaml
>>> rec.start()
>>> rec.record("/localization/odometry", "nav_msgs/msg/Odometry", cdr_bytes, stamp_ns)
>>> rec.flag_event("operator", "driver pressed the button")
>>> rec.status().level                                  # "OK" | "WARN" | "ERROR"
>>> rec.close()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.config import load_config, require, resolve_path
from vla_edge.errors import ConfigError, ConversionError, RecorderError
from vla_edge.recording.events import (
    EVENT_KINDS,
    EventBook,
    EventDetector,
    StampPairs,
    Trigger,
)
from vla_edge.recording.splits import MIB, RingBudget, SplitPolicy
from vla_edge.recording.writer import BoundedQueue, Item, SplitStore, WriterThread
from vla_edge.types import trajectory_from_json

LOG = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
STRING = "std_msgs/msg/String"
PATH = "nav_msgs/msg/Path"

OK, WARN, ERROR = "OK", "WARN", "ERROR"


@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic.

    Attributes:
        key: Key in ``config/topics.yaml`` (``lidar``, ``decision``...).
        topic: Topic name.
        msgtype: ROS type name.
        sensor: True for inputs (SensorDataQoS), False for outputs (reliable).
    """

    key: str
    topic: str
    msgtype: str
    sensor: bool


@dataclass(frozen=True)
class RecorderStatus:
    """Snapshot for diagnostics (all counters since start).

    Attributes:
        level: ``OK``, ``WARN`` (drops since the last snapshot, ring over budget, disabled
            by config) or ``ERROR`` (recorder turned itself off).
        message: One line for humans.
        enabled: False when disabled by config or after a failure.
        values: Counters as strings (DiagnosticStatus key/values).
    """

    level: str
    message: str
    enabled: bool
    values: dict[str, str]


def topic_specs(rec_cfg: dict[str, Any], topics_cfg: dict[str, Any]) -> list[TopicSpec]:
    """Resolve the recorded topics: keys from recorder.yaml, names from topics.yaml.

    Raises:
        ConfigError: If a key or its type is missing.
    """
    types = require(rec_cfg, "topic_types", where="recorder.yaml")
    out: list[TopicSpec] = []
    for group, sensor in (("inputs", True), ("outputs", False)):
        for key in require(rec_cfg, "topics", group, where="recorder.yaml"):
            topic = require(topics_cfg, group, key, where="topics.yaml")
            if key not in types:
                raise ConfigError(f"recorder.yaml: topic_types has no entry for '{key}' ({topic})")
            out.append(TopicSpec(key, str(topic), str(types[key]), sensor))
    return out


class Recorder:
    """Bounded-queue rosbag2 MCAP recorder (see module docstring).

    Args:
        cfg: ``config/recorder.yaml`` contents.
        topics_cfg: ``config/topics.yaml`` contents.
        out_dir: Output folder; ``cfg["output_dir"]`` when None.
    """

    def __init__(
        self, cfg: dict[str, Any], topics_cfg: dict[str, Any], out_dir: str | Path | None = None
    ) -> None:
        self.cfg = cfg
        self.enabled_by_config = bool(require(cfg, "enabled", where="recorder.yaml"))
        self.out_dir = resolve_path(
            out_dir if out_dir is not None else require(cfg, "output_dir", where="recorder.yaml")
        )
        self.topics = topic_specs(cfg, topics_cfg)
        self.policy = SplitPolicy.from_config(cfg)
        self.ring = RingBudget.from_config(cfg)
        self.detector = EventDetector.from_config(cfg)
        self.min_free_bytes = int(float(require(cfg, "ring", "min_free_mb", where="recorder.yaml")) * MIB)
        self.queue = BoundedQueue(
            int(require(cfg, "queue", "max_messages", where="recorder.yaml")),
            int(float(require(cfg, "queue", "max_mb", where="recorder.yaml")) * MIB),
        )
        self.idle_poll_s = float(require(cfg, "queue", "idle_poll_s", where="recorder.yaml"))
        self.jpeg_quality = int(require(cfg, "camera", "jpeg_quality", where="recorder.yaml"))
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"recorder.yaml: camera.jpeg_quality must be 1..100, got {self.jpeg_quality}")
        by_key = {t.key: t for t in self.topics}
        self.compress_map: dict[str, str] = {}  # raw Image topic -> CompressedImage topic
        for raw_key, comp_key in (require(cfg, "camera", "compress", where="recorder.yaml") or {}).items():
            raw = by_key.get(raw_key)
            comp = require(topics_cfg, "inputs", comp_key, where="topics.yaml")
            if raw is not None:
                self.compress_map[raw.topic] = str(comp)
        outputs = require(topics_cfg, "outputs", where="topics.yaml")
        self.decision_topic = str(require(outputs, "decision", where="topics.yaml outputs"))
        self.candidate_topic = str(require(outputs, "candidate_trajectory", where="topics.yaml outputs"))
        self._pairs = StampPairs()
        self.dedup_s = float(require(cfg, "camera", "raw_preferred_for_s", where="recorder.yaml"))

        self._lock = threading.Lock()
        self._control: deque[Trigger] = deque()
        self._thread: WriterThread | None = None
        self._store: SplitStore | None = None
        self._typestore: Any = None
        self._raw_seen: dict[str, float] = {}  # compressed topic -> monotonic time of last raw frame
        self.error: str | None = None
        self.dropped_disabled = 0
        self.dropped_on_failure = 0
        self.written = 0
        self.camera_encoded = 0
        self.camera_skipped = 0
        self.camera_errors = 0
        self.events_flagged = 0
        self.unknown_type_errors = 0
        self._last_dropped_seen = 0
        self._closed = False

    @classmethod
    def from_config(
        cls,
        recorder_cfg: dict[str, Any] | str = "recorder",
        topics_cfg: dict[str, Any] | str = "topics",
        out_dir: str | Path | None = None,
    ) -> Recorder:
        """Build from config names/paths (``config/<name>.yaml``) or loaded mappings."""
        rc = load_config(recorder_cfg, kind="recorder") if isinstance(recorder_cfg, str) else recorder_cfg
        tc = load_config(topics_cfg, kind="topics") if isinstance(topics_cfg, str) else topics_cfg
        return cls(rc, tc, out_dir)

    # ---------------------------------------------------------------- lifecycle
    @property
    def enabled(self) -> bool:
        """True while messages are being accepted for writing."""
        return self.enabled_by_config and self.error is None and self._thread is not None

    def start(self) -> bool:
        """Create the output folders and start the writer thread; never raises.

        Returns:
            True when recording; False when disabled by config or failed (see
            :attr:`error` and :meth:`status`).
        """
        if not self.enabled_by_config or self._thread is not None or self.error is not None:
            return self.enabled
        try:
            from rosbags.typesys import Stores, get_typestore

            self._typestore = get_typestore(Stores.ROS2_HUMBLE)
            now = time.time()
            session = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
            events = EventBook.from_config(self.cfg, self.out_dir / "events")
            self._store = SplitStore(
                self.out_dir, self.policy, self.ring, events, self._typestore, self.min_free_bytes, session
            )
            self._store.check_free_space()
        except (OSError, RecorderError) as exc:
            self._fail(exc)
            return False
        self._thread = WriterThread(
            self.queue, self._handle, self._tick, self._fail, self._finish, self.idle_poll_s
        )
        self._thread.start()
        LOG.info("recorder writing to %s", self.out_dir)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush the queue, close the open split and stop the thread; never raises."""
        thread, self._thread = self._thread, None
        self._closed = True
        if thread is not None and not thread.stop(timeout):
            LOG.error("recorder writer thread did not stop within %.1f s", timeout)

    # ---------------------------------------------------------------- control path
    def record(
        self, topic: str, msgtype: str, data: bytes | bytearray | memoryview, stamp_ns: int | None = None
    ) -> bool:
        """Queue one serialized message; never waits, never raises.

        Args:
            topic: Topic name.
            msgtype: ROS type name.
            data: CDR bytes as received (kept by reference; do not mutate afterwards).
            stamp_ns: Log time in ns (the node's clock); wall time when None.

        Returns:
            True when queued, False when dropped (counted).
        """
        if not self.enabled:
            with self._lock:
                self.dropped_disabled += 1
            return False
        stamp = time.time_ns() if stamp_ns is None else int(stamp_ns)
        return self.queue.put_nowait(Item(topic, msgtype, stamp, data), len(data))

    def flag_event(self, kind: str = "operator", reason: str = "", stamp_ns: int | None = None) -> bool:
        """Flag an event window around ``stamp_ns`` (now when None); never waits.

        Events bypass the data queue, so a full queue never loses an operator request.

        Returns:
            True when accepted, False when the recorder is off.
        """
        if kind not in EVENT_KINDS:
            raise RecorderError(f"unknown event kind {kind!r}; use one of {', '.join(EVENT_KINDS)}")
        if not self.enabled:
            return False
        self._control.append(
            Trigger(kind, time.time_ns() if stamp_ns is None else int(stamp_ns), reason or kind)
        )
        self.queue.wake()
        return True

    @property
    def received(self) -> int:
        """Messages offered to :meth:`record` since construction."""
        return self.queue.accepted + self.queue.rejected + self.dropped_disabled

    @property
    def dropped(self) -> int:
        """Messages dropped because the queue was full."""
        return self.queue.rejected

    def status(self) -> RecorderStatus:
        """Counters and a level for diagnostics (cheap; safe from any thread)."""
        store = self._store
        values = {
            "enabled": str(self.enabled).lower(),
            "output_dir": str(self.out_dir),
            "received": str(self.received),
            "written": str(self.written),
            "dropped_queue_full": str(self.dropped),
            "dropped_disabled": str(self.dropped_disabled),
            "dropped_on_failure": str(self.dropped_on_failure),
            "queue_depth": str(self.queue.depth),
            "queue_bytes": str(self.queue.nbytes),
            "bytes_written": str(store.bytes_written if store else 0),
            "splits_closed": str(len(store.closed) if store else 0),
            "splits_deleted": str(store.deleted if store else 0),
            "events": str(len(store.events.events) if store else 0),
            "camera_jpeg_encoded": str(self.camera_encoded),
            "camera_kept_raw": str(self.camera_errors),
            "camera_compressed_skipped": str(self.camera_skipped),
        }
        if self.error is not None:
            return RecorderStatus(ERROR, f"recorder off: {self.error}", False, values)
        if not self.enabled_by_config:
            return RecorderStatus(WARN, "recording disabled in recorder.yaml (enabled: false)", False, values)
        new_drops = self.dropped - self._last_dropped_seen
        self._last_dropped_seen = self.dropped
        if new_drops:
            return RecorderStatus(WARN, f"queue full: dropped {new_drops} messages", self.enabled, values)
        if store is not None and store.over_budget:
            return RecorderStatus(
                WARN, "splits over ring.max_total_mb (only protected splits left)", True, values
            )
        if self._closed:
            return RecorderStatus(OK, "stopped", False, values)
        return RecorderStatus(OK, "recording" if self.enabled else "not started", self.enabled, values)

    # ---------------------------------------------------------------- writer thread
    def _fail(self, exc: BaseException) -> None:
        """Turn the recorder off: remember why, drop the queue, abort the open split."""
        self.error = f"{type(exc).__name__}: {exc}"
        LOG.error("recorder turned off: %s", self.error)
        self.dropped_on_failure += self.queue.clear()  # accepted, then lost with the writer
        if self._store is not None:
            self._store.abort()

    def _drain_control(self) -> None:
        store = self._store
        assert store is not None
        while self._control:
            trig = self._control.popleft()
            store.flag(trig)
            self.events_flagged += 1

    def _tick(self) -> None:
        self._drain_control()
        assert self._store is not None
        self._store.tick()

    def _finish(self) -> None:
        self._drain_control()
        assert self._store is not None
        self._store.close()

    def _handle(self, item: Item) -> None:
        store = self._store
        assert store is not None
        self._drain_control()
        if item.topic == self.decision_topic and item.msgtype == STRING:
            self._detect_events(item)
        elif item.topic == self.candidate_topic and item.msgtype == PATH:
            self._candidate(item)
        if item.msgtype == IMAGE and item.topic in self.compress_map:
            try:
                item = self._compress(item)
            except ConversionError as exc:  # unknown encoding: keep the raw message instead
                self.camera_errors += 1
                LOG.warning("recorder: camera frame kept raw, cannot JPEG-encode it: %s", exc)
        elif (
            item.msgtype == COMPRESSED
            and item.topic in self._raw_seen
            and time.monotonic() - self._raw_seen[item.topic] < self.dedup_s
        ):
            self.camera_skipped += 1  # the raw stream of this camera is being encoded already
            return
        try:
            store.write(item)
        except RecorderError as exc:  # unknown type: skip this message, keep recording
            self.unknown_type_errors += 1
            LOG.warning("recorder: %s", exc)
            return
        self.written += 1

    def _flag(self, trig: Trigger | None) -> None:
        if trig is not None:
            assert self._store is not None
            self._store.flag(trig)
            self.events_flagged += 1

    def _detect_events(self, item: Item) -> None:
        """Decision JSON -> fallback / emergency triggers; its Frenet plan waits for a pair.

        Triggers use the receive stamp so events share the splits' clock (the frame stamp
        inside the decision may be bag/sim time).
        """
        try:
            msg = self._typestore.deserialize_cdr(bytes(item.data), STRING)
            decision = json.loads(msg.data)
        except Exception:  # noqa: BLE001 - a bad decision message is logged as is, not parsed
            return
        if not isinstance(decision, dict):
            return
        for trig in self.detector.detect(decision, item.stamp_ns):
            self._flag(trig)
        stamp = float(decision.get("stamp", 0.0) or 0.0)
        frenet = trajectory_from_json(decision.get("frenet"), stamp, "frenet")
        pair = self._pairs.add("frenet", frenet) if frenet is not None else None
        if pair is not None:
            self._flag(self.detector.disagreement(*pair, item.stamp_ns))

    def _candidate(self, item: Item) -> None:
        """Student candidate Path -> waits for the Frenet plan of the same frame."""
        from vla_edge.conversions import path_to_trajectory

        try:
            traj = path_to_trajectory(self._typestore.deserialize_cdr(bytes(item.data), PATH), "student")
        except Exception:  # noqa: BLE001 - an unusable candidate is logged as is, not compared
            return
        pair = self._pairs.add("student", traj)
        if pair is not None:
            self._flag(self.detector.disagreement(*pair, item.stamp_ns))

    def _compress(self, item: Item) -> Item:
        """Raw Image CDR -> JPEG CompressedImage CDR on the mapped topic."""
        out_topic = self.compress_map[item.topic]
        data = _image_cdr_to_jpeg_cdr(self._typestore, bytes(item.data), self.jpeg_quality)
        self._raw_seen[out_topic] = time.monotonic()
        self.camera_encoded += 1
        return Item(out_topic, COMPRESSED, item.stamp_ns, data)


def _image_cdr_to_jpeg_cdr(typestore: Any, data: bytes, quality: int) -> bytes:
    """Raw ``sensor_msgs/Image`` CDR -> ``sensor_msgs/CompressedImage`` (JPEG) CDR.

    Uses the shared image conversions (same code the frame assembler decodes with).
    """
    from vla_edge.conversions.image import image_to_rgb, rgb_to_compressed
    from vla_edge.msgfactory import RosbagsFactory, stamp_to_sec

    msg = typestore.deserialize_cdr(data, IMAGE)
    rgb = image_to_rgb(msg)
    stamp = stamp_to_sec(msg.header.stamp)
    out = rgb_to_compressed(rgb, RosbagsFactory(typestore), stamp, msg.header.frame_id, "jpeg", quality)
    return bytes(typestore.serialize_cdr(out, COMPRESSED))
