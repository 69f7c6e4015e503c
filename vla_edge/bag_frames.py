"""rosbag2 -> Frames: the one loop that drives a FrameAssembler over logged messages.

Used by ``vla-edge explain`` (:mod:`vla_edge.explain.rebuild`), replay
(:mod:`vla_edge.replay.lockstep`, also for realtime's second pass) and the training dataset
(:mod:`training.dataset`), so every offline tool rebuilds frames exactly as the vehicle saw
them: the same conversions and sync code (``add_odometry`` / ``add_reference_path`` /
``add_image`` / ``make_frame`` per sweep), the same typed-error skip with a log line.

Order of feeding:

* ``reorder_window_s=None``: log order, as the messages reached the recorder (explain,
  training).
* ``reorder_window_s=w``: header-stamp order; at equal stamps everything else goes before the
  LiDAR sweep. A reorder buffer holds a message until the log time has passed its stamp by
  ``w`` seconds, which absorbs recorder bags whose log times are receive times (replay's
  deterministic lockstep).

Topics whose role is not a frame input (``/sim/objects``, ``/sim/expert_trajectory``,
``/sim/reasoning``, logged outputs, ...) are not touched; they come back to the caller as
:class:`BagItem` in the same stream, in order with the frames.

No rclpy, no torch.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.errors import ConfigError, VlaEdgeError
from vla_edge.frame_assembly import FRONT_CAMERA
from vla_edge.msgfactory import stamp_to_sec
from vla_edge.types import EgoState, Frame

LOG = logging.getLogger(__name__)

#: Roles the assembler consumes; any other role is handed to the caller untouched.
FRAME_ROLES = ("lidar", "odometry", "reference_path", "camera")
CAMERA_MODES = ("none", "raw", "compressed", "both")

ErrorHandler = Callable[[str, float, Exception], None]


def frame_roles(topics: Mapping[str, Any], camera: str = "none") -> dict[str, str]:
    """``{topic: role}`` of the frame inputs in ``config/topics.yaml``.

    Args:
        topics: The ``topics.yaml`` mapping.
        camera: Which front camera topic to read: ``none``, ``raw``, ``compressed`` or ``both``.

    Raises:
        ConfigError: Unknown camera mode.
    """
    if camera not in CAMERA_MODES:
        raise ConfigError(f"camera must be one of {', '.join(CAMERA_MODES)}, got {camera!r}")
    inp = topics["inputs"]
    roles = {inp["lidar"]: "lidar", inp["odometry"]: "odometry", inp["reference_path"]: "reference_path"}
    if camera in ("raw", "both"):
        roles[inp["camera_front"]] = "camera"
    if camera in ("compressed", "both"):
        roles[inp["camera_front_compressed"]] = "camera"
    return roles


def bag_topics(bags: Sequence[str | Path], remap: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{topic: msgtype}`` over all ``bags`` (after remapping); a split may lack a topic."""
    from vla_edge.bagio import open_bag

    have: dict[str, str] = {}
    for path in bags:
        with open_bag(path, remap) as bag:
            have.update(bag.topics)
    return have


def count_messages(bags: Sequence[str | Path], topic: str, remap: Mapping[str, str] | None = None) -> int:
    """Messages on ``topic`` over all ``bags`` (progress bars, snapshot picks)."""
    from vla_edge.bagio import open_bag

    total = 0
    for path in bags:
        with open_bag(path, remap) as bag:
            total += bag.count(topic)
    return total


def message_stamp(msg: Any, fallback: float) -> float:
    """Header stamp in seconds (first marker's for a MarkerArray), else ``fallback``."""
    header = getattr(msg, "header", None)
    if header is not None:
        return stamp_to_sec(header.stamp)
    markers = getattr(msg, "markers", None)
    if markers:
        return stamp_to_sec(markers[0].header.stamp)
    return fallback


@dataclass
class BagItem:
    """One fed message.

    Attributes:
        kind: Its role (``lidar``, ``odometry``, ... or a caller's extra role).
        stamp: Header stamp (log time for messages without one), seconds.
        log_time: Log time, seconds.
        msg: The deserialized message.
        bag: Name of the bag it came from.
        frame: The assembled frame (``lidar`` only).
        ego: The converted state (``odometry`` only).
    """

    kind: str
    stamp: float
    log_time: float
    msg: Any
    bag: str
    frame: Frame | None = None
    ego: EgoState | None = None


class BagFrames:
    """Iterate the messages of consecutive bags through one FrameAssembler.

    Yields a :class:`BagItem` per extra-role message, per odometry/path/camera message that
    was accepted, and per assembled sweep. A message the assembler refuses (typed error) is
    passed to ``on_error`` (default: a warning like the vehicle's node logs) and skipped.

    Args:
        bags: Bag paths read one after the other (consecutive splits of one run).
        roles: ``{topic: role}``; see :func:`frame_roles`, plus caller extras.
        frame_cfg: ``frame.yaml`` mapping (None: load it).
        calibration_cfg: ``calibration.yaml`` mapping (None: load it).
        remap: ``{name in bag: topics.yaml name}``.
        reorder_window_s: None for log order; seconds of reorder buffer for stamp order.
        frame_stride: Assemble only every n-th sweep (the others are counted, not converted).
        name: Run name for log lines.
        on_error: ``(kind, stamp, exc)`` for skipped messages.
        skip_undecodable: A message that cannot be deserialized goes to ``on_error``
            instead of raising :class:`~vla_edge.errors.BagError`.

    Attributes:
        lidar: Sweeps seen. frames: Frames assembled. skipped: Sweeps refused.
    """

    def __init__(
        self,
        bags: Sequence[str | Path],
        roles: Mapping[str, str],
        frame_cfg: Mapping[str, Any] | None = None,
        calibration_cfg: Mapping[str, Any] | None = None,
        *,
        remap: Mapping[str, str] | None = None,
        reorder_window_s: float | None = None,
        frame_stride: int = 1,
        name: str = "",
        on_error: ErrorHandler | None = None,
        skip_undecodable: bool = False,
    ) -> None:
        from vla_edge.frame_assembly import FrameAssembler

        self.bags = [Path(b) for b in bags]
        self.roles = dict(roles)
        self.remap = dict(remap or {})
        self.window = None if reorder_window_s is None else float(reorder_window_s)
        self.stride = max(1, int(frame_stride))
        self.name = name
        self.on_error = on_error or self._log_error
        self.skip_undecodable = skip_undecodable
        needs_asm = any(r in FRAME_ROLES for r in self.roles.values())
        self.assembler = (
            FrameAssembler.from_config(
                None if frame_cfg is None else dict(frame_cfg),
                None if calibration_cfg is None else dict(calibration_cfg),
            )
            if needs_asm
            else None
        )
        self.lidar = 0
        self.frames = 0
        self.skipped = 0

    def _log_error(self, kind: str, stamp: float, exc: Exception) -> None:
        LOG.warning("%s: %s message at %.3f skipped: %s", self.name, kind, stamp, exc)

    def _feed(self, item: BagItem) -> BagItem | None:
        """Give one message to the assembler; the item to yield, or None."""
        order_stamp = item.log_time if self.window is None else item.stamp
        asm = self.assembler
        kind = item.kind
        if kind not in FRAME_ROLES:
            return item
        assert asm is not None
        try:
            if kind == "odometry":
                item.ego = asm.add_odometry(item.msg)
            elif kind == "reference_path":
                asm.add_reference_path(item.msg)
            elif kind == "camera":
                asm.add_image(FRONT_CAMERA, item.msg)
            else:
                self.lidar += 1
                if (self.lidar - 1) % self.stride:
                    return None
                item.frame = asm.make_frame(item.msg)
                self.frames += 1
        except VlaEdgeError as exc:
            if kind == "lidar":
                self.skipped += 1
            self.on_error(kind, order_stamp, exc)
            return None
        return item

    def _read(self) -> Iterator[BagItem]:
        """Deserialized messages of the wanted topics, in log order across the bags."""
        from vla_edge.bagio import open_bag
        from vla_edge.errors import BagError

        for path in self.bags:
            with open_bag(path, self.remap) as bag:
                wanted = [t for t in bag.topics if t in self.roles]
                if not wanted:
                    continue
                for m in bag.messages(wanted, raw=True):
                    kind = self.roles[m.topic]
                    try:
                        msg = bag.deserialize(m.msg, m.msgtype, m.topic, m.log_time_ns)
                    except BagError as exc:
                        if not self.skip_undecodable:
                            raise
                        self.on_error(kind, m.stamp, exc)
                        continue
                    yield BagItem(kind, message_stamp(msg, m.stamp), m.stamp, msg, path.name)

    def __iter__(self) -> Iterator[BagItem]:
        if self.window is None:
            for item in self._read():
                out = self._feed(item)
                if out is not None:
                    yield out
            return
        heap: list[tuple[float, int, int, BagItem]] = []
        for seq, item in enumerate(self._read()):
            heapq.heappush(heap, (item.stamp, int(item.kind == "lidar"), seq, item))
            while heap and heap[0][0] <= item.log_time - self.window:
                out = self._feed(heapq.heappop(heap)[3])
                if out is not None:
                    yield out
        while heap:
            out = self._feed(heapq.heappop(heap)[3])
            if out is not None:
                yield out
