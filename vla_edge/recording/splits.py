"""When to close a split, and which closed splits the disk budget deletes.

Pure bookkeeping, no I/O: the writer thread asks :class:`SplitPolicy` after every
message (and on idle wake-ups) whether the open split must close, and asks
:class:`RingBudget` after every close which closed splits to delete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_edge.config import require
from vla_edge.errors import ConfigError

MIB = 1024 * 1024


@dataclass
class SplitInfo:
    """One closed split in the ring.

    Attributes:
        name: Folder name under ``splits/`` (sorts by creation time).
        path: Folder of the rosbag2 (``metadata.yaml`` + ``<name>.mcap``).
        size_bytes: Bytes on disk of the folder.
        start_ns: First message timestamp (ns), or 0 if empty.
        end_ns: Last message timestamp (ns), or 0 if empty.
        messages: Messages in the split.
        flagged: True while an event window overlaps it (protects it from deletion).
        copied: True once it has been copied into the events that overlap it.
        complete: False for a split left open by a crash (found at start-up).
    """

    name: str
    path: Path
    size_bytes: int
    start_ns: int = 0
    end_ns: int = 0
    messages: int = 0
    flagged: bool = False
    copied: bool = False
    complete: bool = True
    events: set[str] = field(default_factory=set)

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        """True when the split's message time range intersects ``[start_ns, end_ns]``."""
        if self.messages == 0:
            return False
        return self.start_ns <= end_ns and self.end_ns >= start_ns


@dataclass(frozen=True)
class SplitPolicy:
    """Close the open split after a time span or a payload size.

    Attributes:
        max_duration_s: Close after this many seconds of wall time since opening *or*
            of message-stamp span, whichever comes first (bounds what a crash loses).
        max_bytes: Close once the payload written into the split reaches this size.
        fsync: Flush each closed split (files and rename) to disk before it counts as closed.
    """

    max_duration_s: float
    max_bytes: int
    fsync: bool = True
    metadata_version: int = 8  # rosbag2 metadata.yaml version (see metadata_version_for)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> SplitPolicy:
        """Build from the ``split`` section of ``config/recorder.yaml``."""
        duration = float(require(cfg, "split", "max_duration_s", where="recorder.yaml"))
        size_mb = float(require(cfg, "split", "max_size_mb", where="recorder.yaml"))
        if not duration > 0 or not size_mb > 0:
            raise ConfigError(
                f"recorder.yaml: split.max_duration_s ({duration}) and split.max_size_mb "
                f"({size_mb}) must be > 0"
            )
        fsync = bool(require(cfg, "split", "fsync", where="recorder.yaml"))
        distro = str(cfg["split"].get("rosbag_distro", "auto"))
        return cls(duration, int(size_mb * MIB), fsync, metadata_version_for(distro)[1])

    def should_close(self, wall_age_s: float, stamp_span_ns: int, payload_bytes: int) -> bool:
        """Decide whether the open split is due.

        Args:
            wall_age_s: Monotonic seconds since the split was opened.
            stamp_span_ns: Last minus first message timestamp in the split (ns).
            payload_bytes: Serialized bytes written into the split so far.

        Returns:
            True when any limit is reached.
        """
        return (
            wall_age_s >= self.max_duration_s
            or stamp_span_ns >= int(self.max_duration_s * 1e9)
            or payload_bytes >= self.max_bytes
        )


@dataclass(frozen=True)
class RingBudget:
    """Keep the splits folder under a total size by deleting old splits.

    Deletion order: incomplete (crashed) splits, then the oldest unflagged splits, then
    the oldest flagged splits that have already been copied into the events folder.
    Flagged splits still waiting for their copy are never deleted.

    Attributes:
        max_total_bytes: Budget for all splits (closed + the open one).
    """

    max_total_bytes: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RingBudget:
        """Build from the ``ring`` section of ``config/recorder.yaml``."""
        total_mb = float(require(cfg, "ring", "max_total_mb", where="recorder.yaml"))
        if not total_mb > 0:
            raise ConfigError(f"recorder.yaml: ring.max_total_mb must be > 0, got {total_mb}")
        return cls(int(total_mb * MIB))

    def to_delete(self, closed: list[SplitInfo], open_bytes: int = 0) -> list[SplitInfo]:
        """Pick the splits to delete so the ring fits the budget.

        Args:
            closed: Closed splits (any order).
            open_bytes: Bytes of the open split, counted against the budget.

        Returns:
            Splits to delete, in deletion order (may be empty). When only protected
            splits remain the ring may stay over budget; the caller reports it.
        """
        total = open_bytes + sum(s.size_bytes for s in closed)
        if total <= self.max_total_bytes:
            return []
        by_age = sorted(closed, key=lambda s: s.name)
        order = (
            [s for s in by_age if not s.complete]
            + [s for s in by_age if s.complete and not s.flagged]
            + [s for s in by_age if s.complete and s.flagged and s.copied]
        )
        victims: list[SplitInfo] = []
        for split in order:
            if total <= self.max_total_bytes:
                break
            victims.append(split)
            total -= split.size_bytes
        return victims


#: rosbag2 ``metadata.yaml`` version that each distro's ``ros2 bag record`` writes. Bags move
#: forward between distros, not back: Humble's reader knows versions up to 5 (QoS profiles as
#: one YAML string), so a vehicle on Humble needs 5; Jazzy and later write 9 (QoS as a list).
DISTRO_METADATA_VERSION = {"humble": 5, "iron": 8, "jazzy": 9, "kilted": 9, "rolling": 9}
#: Used when ``auto`` finds no known ``$ROS_DISTRO``: Iron's 8, read by Iron and later.
FALLBACK_METADATA_VERSION = 8


def metadata_version_for(distro: str, environ: dict[str, str] | None = None) -> tuple[str, int]:
    """``(distro, metadata version)`` for ``split.rosbag_distro`` of ``recorder.yaml``.

    ``auto`` follows the running ROS (``$ROS_DISTRO``, set by ``source /opt/ros/<distro>/setup.bash``).

    Raises:
        ConfigError: A distro name that is neither ``auto`` nor known.
    """
    name = distro.strip().lower()
    if name == "auto":
        env = os.environ if environ is None else environ
        found = env.get("ROS_DISTRO", "").strip().lower()
        if found in DISTRO_METADATA_VERSION:
            return found, DISTRO_METADATA_VERSION[found]
        return "unknown", FALLBACK_METADATA_VERSION
    if name not in DISTRO_METADATA_VERSION:
        raise ConfigError(
            f"recorder.yaml: split.rosbag_distro must be auto or one of {sorted(DISTRO_METADATA_VERSION)}, "
            f"got {distro!r}"
        )
    return name, DISTRO_METADATA_VERSION[name]
