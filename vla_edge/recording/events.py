"""Event windows: what flags a stretch of the log, and the events folder that keeps it.

* :class:`EventDetector` turns an arbiter decision (``ArbiterDecision.to_dict()`` as
  published on the decision topic) into event triggers: fallback, emergency stop,
  student/Frenet disagreement above a threshold. Operator requests come in directly.
* :class:`EventBook` owns ``events/``: one folder per event holding copies (hard links
  when the filesystem allows) of every split that overlaps the event window, plus a
  small JSON index (``events/index.json``) rewritten atomically on every change.

Both are called from the recorder's writer thread only; nothing here runs on the
control path.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import ConfigError
from vla_edge.fsutil import atomic_write
from vla_edge.recording.splits import MIB, SplitInfo
from vla_edge.types import Trajectory

LOG = logging.getLogger(__name__)

INDEX_FORMAT = "vla_edge.events/1"
EVENT_KINDS = ("fallback", "emergency_stop", "disagreement", "operator")


def divergence(a: Trajectory, b: Trajectory) -> tuple[float, float]:
    """ADE/FDE-style distance between two trajectories, in metres.

    Both are resampled to the finer of the two steps over the shorter horizon, starting
    at the implicit origin, then compared position by position.

    Args:
        a: First trajectory (ego frame).
        b: Second trajectory (same ego frame).

    Returns:
        ``(ade, fde)``: mean and final Euclidean distance of the (x, y) positions.
    """
    dt = min(a.dt, b.dt)
    horizon = min(a.horizon, b.horizon)
    pa = a.resample(dt, horizon).poses[:, :2]
    pb = b.resample(dt, horizon).poses[:, :2]
    d = np.linalg.norm(pa - pb, axis=1)
    return float(d.mean()), float(d[-1])


@dataclass(frozen=True)
class Trigger:
    """One reason to flag the log around ``stamp_ns``."""

    kind: str
    stamp_ns: int
    reason: str


@dataclass(frozen=True)
class EventDetector:
    """Find event triggers in arbiter decisions.

    Attributes:
        fallback_choices: Decision choices that count as a fallback.
        emergency_choices: Decision choices that count as an emergency stop.
        disagreement_m: Student/Frenet ADE (m) above which a disagreement is flagged.
    """

    fallback_choices: tuple[str, ...]
    emergency_choices: tuple[str, ...]
    disagreement_m: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> EventDetector:
        """Build from the ``events`` section of ``config/recorder.yaml``."""
        ev = require(cfg, "events", where="recorder.yaml")
        return cls(
            tuple(require(ev, "fallback_choices", where="recorder.yaml events")),
            tuple(require(ev, "emergency_choices", where="recorder.yaml events")),
            float(require(ev, "disagreement_m", where="recorder.yaml events")),
        )

    def detect(self, decision: dict[str, Any], stamp_ns: int) -> list[Trigger]:
        """Choice-based triggers (fallback, emergency stop) in one decision.

        Args:
            decision: ``ArbiterDecision.to_dict()`` (unknown keys are ignored).
            stamp_ns: Log time of the decision (ns).

        Returns:
            Zero or one trigger.
        """
        choice = str(decision.get("choice", ""))
        reasons = ",".join(str(r) for r in decision.get("reasons", []) or [])
        if choice in self.emergency_choices:
            return [Trigger("emergency_stop", stamp_ns, f"choice={choice} reasons={reasons}")]
        if choice in self.fallback_choices:
            return [Trigger("fallback", stamp_ns, f"choice={choice} reasons={reasons}")]
        return []

    def disagreement(self, student: Trajectory, frenet: Trajectory, stamp_ns: int) -> Trigger | None:
        """Trigger when the student candidate and the Frenet plan of one frame diverge.

        Args:
            student: Candidate trajectory of the frame.
            frenet: Frenet plan of the same frame (``decision["frenet"]``).
            stamp_ns: Log time (ns).
        """
        ade, fde = divergence(student, frenet)
        if ade > self.disagreement_m:
            msg = f"student/frenet ADE {ade:.2f} m (FDE {fde:.2f} m) > {self.disagreement_m} m"
            return Trigger("disagreement", stamp_ns, msg)
        return None


class StampPairs:
    """Pairs the student candidate and the Frenet plan of the same frame (by stamp).

    The candidate (``nav_msgs/Path``) and the decision (with ``frenet``) arrive on
    different topics in either order; each side waits here for the other, a few frames.

    Args:
        keep: Unpaired entries kept per side.
    """

    def __init__(self, keep: int = 32) -> None:
        self.keep = keep
        self.student: dict[int, Trajectory] = {}
        self.frenet: dict[int, Trajectory] = {}

    @staticmethod
    def key(stamp: float) -> int:
        """Frame stamp in microseconds (stamps pass through float and ROS Time)."""
        return round(stamp * 1e6)

    def add(self, side: str, traj: Trajectory) -> tuple[Trajectory, Trajectory] | None:
        """Store one side; return ``(student, frenet)`` once both of a frame are in."""
        mine, other = (self.student, self.frenet) if side == "student" else (self.frenet, self.student)
        k = self.key(traj.stamp)
        match = other.pop(k, None)
        if match is None:
            mine[k] = traj
            while len(mine) > self.keep:
                del mine[next(iter(mine))]
            return None
        return (traj, match) if side == "student" else (match, traj)


@dataclass
class Event:
    """One flagged window and the splits copied for it."""

    id: str
    kind: str
    stamp_ns: int
    start_ns: int
    end_ns: int
    reasons: list[str] = field(default_factory=list)
    triggers: int = 1
    splits: list[str] = field(default_factory=list)
    bytes: int = 0
    status: str = "open"  # open -> complete | incomplete (recorder stopped early)

    def to_dict(self) -> dict[str, Any]:
        """Index entry (times in float seconds)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "stamp": self.stamp_ns * 1e-9,
            "window": [self.start_ns * 1e-9, self.end_ns * 1e-9],
            "reasons": self.reasons[:20],
            "triggers": self.triggers,
            "status": self.status,
            "splits": list(self.splits),
            "folder": self.id,
            "bytes": self.bytes,
        }


class EventBook:
    """Flagged windows, their split copies and ``events/index.json``.

    Args:
        root: The events folder (created lazily on the first event).
        pre_s: Seconds kept before a trigger.
        post_s: Seconds kept after a trigger.
        max_total_bytes: Budget of the events folder; splits past it are not copied and
            the event's reasons say ``"events folder over budget"``.
        hardlink: Try ``os.link`` before copying (no extra disk on the same filesystem).
    """

    def __init__(self, root: Path, pre_s: float, post_s: float, max_total_bytes: int, hardlink: bool) -> None:
        self.root = Path(root)
        self.pre_ns = int(pre_s * 1e9)
        self.post_ns = int(post_s * 1e9)
        self.max_total_bytes = max_total_bytes
        self.hardlink = hardlink
        self.events: list[Event] = []
        self._seq = 0
        self.total_bytes = 0

    @classmethod
    def from_config(cls, cfg: dict[str, Any], root: Path) -> EventBook:
        """Build from the ``events`` section of ``config/recorder.yaml``."""
        ev = require(cfg, "events", where="recorder.yaml")
        pre = float(require(ev, "pre_s", where="recorder.yaml events"))
        post = float(require(ev, "post_s", where="recorder.yaml events"))
        if pre < 0 or post < 0:
            raise ConfigError(f"recorder.yaml: events.pre_s ({pre}) and events.post_s ({post}) must be >= 0")
        budget = int(float(require(ev, "max_total_mb", where="recorder.yaml events")) * MIB)
        return cls(root, pre, post, budget, bool(require(ev, "hardlink", where="recorder.yaml events")))

    def open_events(self) -> list[Event]:
        """Events whose window may still grow or gain splits."""
        return [e for e in self.events if e.status == "open"]

    def flag(self, trig: Trigger, closed: list[SplitInfo]) -> Event:
        """Open (or extend) an event for ``trig`` and copy the closed splits it overlaps.

        A trigger of the same kind inside an open window extends that window instead of
        opening a new event, so a fallback that lasts 30 frames is one event.
        """
        for ev in self.open_events():
            if ev.kind == trig.kind and trig.stamp_ns - self.pre_ns <= ev.end_ns:
                ev.end_ns = max(ev.end_ns, trig.stamp_ns + self.post_ns)
                ev.triggers += 1
                if trig.reason not in ev.reasons:
                    ev.reasons.append(trig.reason)
                break
        else:
            self._seq += 1
            stamp_txt = time.strftime("%Y%m%dT%H%M%S", time.gmtime(trig.stamp_ns * 1e-9))
            ev = Event(
                id=f"{stamp_txt}_{trig.kind}_{self._seq:04d}",
                kind=trig.kind,
                stamp_ns=trig.stamp_ns,
                start_ns=trig.stamp_ns - self.pre_ns,
                end_ns=trig.stamp_ns + self.post_ns,
                reasons=[trig.reason],
            )
            self.events.append(ev)
        for split in closed:
            self._mark_and_copy(ev, split)
        self.write_index()
        return ev

    def on_split_closed(self, split: SplitInfo) -> None:
        """Copy a freshly closed split into every open event it overlaps; close due events."""
        opened = self.open_events()
        for ev in opened:
            self._mark_and_copy(ev, split)
            if split.end_ns >= ev.end_ns:
                ev.status = "complete"
        if opened:
            self.write_index()

    def close_all(self) -> None:
        """Recorder is stopping: open windows end here (marked ``incomplete``)."""
        for ev in self.open_events():
            ev.status = "incomplete"
        if self.events:
            self.write_index()

    def _mark_and_copy(self, ev: Event, split: SplitInfo) -> None:
        if not split.overlaps(ev.start_ns, ev.end_ns) or split.name in ev.splits:
            return
        split.flagged = True
        split.copied = True  # copied below, or refused by the events budget: nothing left to wait for
        split.events.add(ev.id)
        if self.total_bytes + split.size_bytes > self.max_total_bytes:
            if "events folder over budget" not in ev.reasons:
                ev.reasons.append("events folder over budget")
            LOG.warning("events folder budget reached; split %s not copied into %s", split.name, ev.id)
            return
        dst = self.root / ev.id / split.name
        _copy_tree(split.path, dst, self.hardlink)
        ev.splits.append(split.name)
        ev.bytes += split.size_bytes
        self.total_bytes += split.size_bytes
        (self.root / ev.id / "event.json").write_text(json.dumps(ev.to_dict(), indent=1), "utf-8")

    def write_index(self) -> None:
        """Rewrite ``index.json`` atomically (temp file + rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": INDEX_FORMAT,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "events": [e.to_dict() for e in self.events],
        }
        atomic_write(self.root / "index.json", json.dumps(doc, indent=1), mode=0o644)


def _copy_tree(src: Path, dst: Path, hardlink: bool) -> None:
    """Copy a split folder, hard-linking files where possible; the folder appears atomically."""
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        target = tmp / f.name
        if hardlink:
            try:
                os.link(f, target)
                continue
            except OSError:
                pass  # other filesystem or no link support: fall back to a copy
        shutil.copy2(f, target)
    os.replace(tmp, dst)
