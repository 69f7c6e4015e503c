"""DriveLoop: every timing decision of the arbiter, without ROS and with an injected clock.

The arbiter node, lockstep replay and ``vla-edge sim evaluate --planner stack`` all drive
one :class:`DriveLoop`: they offer frames and candidates with the time they arrived and call
:meth:`DriveLoop.tick` with the current time; the loop returns what to publish.

Policy (``docs/architecture.md``, "Drive loop"):

* The newest frame is decided as soon as its candidate arrives (``candidate``) or the
  inference side says it has none (``no_candidate``), else once ``deadline_s`` have passed
  since the frame arrived (``watchdog``: it then plans with the latest older candidate,
  which the cycle judges by age, or none). Nothing else is waited for: no lock held by a
  peer, no message from another process.
* A frame replaced by a newer one before it was decided is decided at once
  (``superseded``): every sweep gets a plan within about one sweep period even when ticks
  run late. Only the newest undecided frame waits: when a third arrives, the second is
  dropped and counted, so latency never builds up behind a queue.
* With no new frame, the latest one is decided again every ``cycle_period_s`` (``cycle``).
* After deciding, the frame-only half of the cycle (obstacles, tracking, Frenet) of the
  newest undecided frame runs (``prepare_ahead``), so its candidate only waits for the
  student checks.
* Decisions are monotonic in frame stamp by construction: a frame older than the last
  decided one is refused (counted), unless the stamps jumped back by more than
  ``time_jump_s`` (a replay loop or clock reset), which starts over.

Thread safety: offers take a short lock and never wait for planning; ticks are serialised.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vla_edge.candidate import Candidate
from vla_edge.diagnostics import DropCounter
from vla_edge.types import Frame

if TYPE_CHECKING:
    from vla_edge.pipeline import DrivePipeline

_STAMP_TOL = 1e-6  # s, a candidate belongs to a frame when their stamps agree this well
_ANSWERED_KEEP = 16  # stamps of recent candidates / failures remembered


@dataclass
class Slot:
    """A frame as the loop holds it: when it arrived and what its conversion cost."""

    frame: Frame
    rx: float
    conversion_ms: float | None = None
    time_jump_s: float | None = None  # how far its stamp jumped back (the loop started over)


@dataclass
class LoopDecision:
    """One decision to publish.

    Attributes:
        slot: The frame decided.
        candidate: The usable candidate given to the cycle (maybe of an older frame), or None.
        decision: The :class:`~vla_edge.planning.arbiter.ArbiterDecision`; None when the cycle raised.
        trigger: ``candidate | no_candidate | watchdog | superseded | cycle``.
        now: Loop time of the decision (s).
        arbiter_ms: Time the planning call took (ms).
        error: ``"<Type>: message"`` when the cycle raised.
        time_jump_s: Set on the first decision after a clock reset: how far the frame stamp
            jumped back (s); the decision then carries the reason ``time_jump_reset``.
    """

    slot: Slot
    candidate: Candidate | None
    decision: Any
    trigger: str
    now: float
    arbiter_ms: float
    error: str | None = None
    time_jump_s: float | None = None


class DriveLoop:
    """Which frame is decided when, with which candidate.

    Args:
        pipeline: A :class:`~vla_edge.pipeline.DrivePipeline` with a planning cycle.
        deadline_s: Longest wait for a frame's candidate after the frame arrived (s).
        cycle_period_s: Decide the latest frame again after this long without a new one (s).
        prepare_ahead: Run the frame-only planning right after a frame arrives.
        time_jump_s: A frame stamped this much before the last decided one is a clock reset.
        drop_window: Frames in the rolling drop-ratio window.
        perf: Duration clock for ``arbiter_ms`` (tests inject a fake one).
    """

    def __init__(
        self,
        pipeline: DrivePipeline,
        deadline_s: float,
        cycle_period_s: float,
        prepare_ahead: bool = True,
        time_jump_s: float = 1.0,
        drop_window: int = 100,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        for name, v in (
            ("deadline_s", deadline_s),
            ("cycle_period_s", cycle_period_s),
            ("time_jump_s", time_jump_s),
        ):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"DriveLoop {name} must be a finite number > 0, got {v!r}")
        self.pipeline = pipeline
        self.deadline_s, self.cycle_period_s = float(deadline_s), float(cycle_period_s)
        self.prepare_ahead, self.time_jump_s = bool(prepare_ahead), float(time_jump_s)
        self.perf = perf
        self.drops = DropCounter(drop_window)
        self._lock = threading.Lock()  # the slots below; never held while planning
        self._tick_lock = threading.Lock()  # one tick at a time (the cycle is stateful)
        self.stats: dict[str, int] = {
            "frames": 0,
            "out_of_order_frames": 0,
            "time_jumps": 0,
            "superseded_dropped": 0,
            "candidates": 0,
            "no_candidates": 0,
            "malformed_candidates": 0,
            "future_candidates": 0,
            "decisions": 0,
            "watchdog": 0,
            "errors": 0,
        }
        self.reset()

    @classmethod
    def from_config(cls, drive_cfg: dict[str, Any], pipeline: DrivePipeline, **kw: Any) -> DriveLoop:
        """Built from the nested drive parameters (``arbiter.*`` of ``config/drive.yaml``)."""
        arb = drive_cfg["arbiter"]
        return cls(
            pipeline,
            float(arb["deadline_ms"]) / 1000.0,
            float(arb["cycle_period_ms"]) / 1000.0,
            prepare_ahead=bool(arb["prepare_ahead"]),
            time_jump_s=float(arb["time_jump_ms"]) / 1000.0,
            drop_window=int(drive_cfg["diagnostics"]["window"]),
            **kw,
        )

    def step(self, frame: Frame, now: float | None = None) -> tuple[Candidate | None, LoopDecision | None]:
        """Lockstep (replay, simulator): frame, the student on it (when the pipeline has one),
        then a tick at ``now`` (default: the frame stamp, no transport delay).

        Returns:
            ``(inference result or None, the frame's decision or None when it was refused)``.
        """
        if not self.offer_frame(frame, frame.stamp):
            return None, None
        result = None
        if self.pipeline.runner is not None:
            result = self.pipeline.infer(frame)
        self.offer_candidate(result or Candidate(frame.stamp, error="no student (planner only)"), frame.stamp)
        mine = [d for d in self.tick(frame.stamp if now is None else now) if d.slot.frame is frame]
        return result, (mine[-1] if mine else None)

    def reset(self) -> None:
        """Forget frames, candidates and the decided stamp (new run, clock reset)."""
        with self._lock:
            self._slot: Slot | None = None  # newest frame (decided or not)
            self._old: Slot | None = None  # an undecided frame replaced by a newer one
            self._decided = -math.inf  # stamp of the last decided frame
            self._last_t = -math.inf  # loop time of the last decision
            self._candidate: Candidate | None = None  # newest usable candidate
            self._answered: deque[float] = deque(maxlen=_ANSWERED_KEEP)
            self._prepared: Any = None
        if self.pipeline.cycle is not None:
            self.pipeline.cycle.reset()

    @property
    def candidate(self) -> Candidate | None:
        """Newest usable candidate the loop holds (None after a reset or before the first)."""
        with self._lock:
            return self._candidate

    @property
    def has_frame(self) -> bool:
        """A frame has arrived (there is something to plan on)."""
        return self._slot is not None

    # -- inputs ---------------------------------------------------------------------------
    def offer_frame(
        self, frame: Frame, t: float, conversion_ms: float | None = None, missed: int = 0
    ) -> bool:
        """Take a newly assembled frame that arrived at loop time ``t``.

        Args:
            frame: The frame.
            t: Loop time it arrived (s).
            conversion_ms: Its PointCloud2 conversion + assembly time, for diagnostics.
            missed: Sweeps lost before it (never reached the caller), for the drop ratio.

        Returns:
            False when it was refused as older than the last decided or newest frame.
        """
        jumped = None
        with self._lock:
            newest = max(self._decided, self._slot.frame.stamp if self._slot is not None else -math.inf)
            stamp = float(frame.stamp)
            if not stamp > newest:
                if not (newest - stamp > self.time_jump_s):  # NaN stamps are refused here too
                    self.stats["out_of_order_frames"] += 1
                    self.drops.record(True)
                    return False
                jumped = newest - stamp
        if jumped is not None:
            self.stats["time_jumps"] += 1
            with self._tick_lock:  # no tick may run on the old timeline meanwhile
                self.reset()
        with self._lock:
            if self._slot is not None and self._slot.frame.stamp > self._decided:
                if self._old is not None:  # two undecided: the oldest is lost
                    self.stats["superseded_dropped"] += 1
                    missed += 1
                self._old = self._slot
            for _ in range(missed):
                self.drops.record(True)
            self.drops.record(False)
            self.stats["frames"] += 1
            self._slot = Slot(frame, float(t), conversion_ms, jumped)
        return True

    def offer_candidate(self, candidate: Candidate, t: float) -> str | None:
        """Take the inference result of a frame: a usable candidate, or one saying why not.

        A malformed (decoded) candidate is only counted: its stamp cannot be trusted. So is
        one stamped more than ``time_jump_s`` after the newest frame (a peer's clock fault):
        kept, it would outrank every real candidate and lock the student out.

        Returns:
            Why the candidate was refused, or None when it was taken.
        """
        with self._lock:
            if candidate.malformed or not math.isfinite(candidate.stamp):
                self.stats["malformed_candidates"] += 1
                return candidate.error or "stamp is not finite"
            newest = self._slot.frame.stamp if self._slot is not None else math.nan
            if candidate.stamp > newest + self.time_jump_s:  # False while there is no frame
                self.stats["future_candidates"] += 1
                return (
                    f"candidate stamped {candidate.stamp - newest:.3f} s after the newest frame "
                    f"(> arbiter.time_jump_ms = {1000 * self.time_jump_s:.0f}); ignored"
                )
            self._answered.append(float(candidate.stamp))
            if not candidate.usable:
                self.stats["no_candidates"] += 1
                return None
            self.stats["candidates"] += 1
            if self._candidate is None or candidate.stamp >= self._candidate.stamp:
                self._candidate = candidate
        return None

    # -- decisions ------------------------------------------------------------------------
    def tick(self, t: float) -> list[LoopDecision]:
        """Decide what is due at loop time ``t`` (see the module docstring).

        Returns at most one decision; after a ``superseded`` one, tick again (with the time
        after that decision) for the newer frame.
        """
        out: list[LoopDecision] = []
        with self._tick_lock:
            with self._lock:
                old, self._old = self._old, None
                slot = self._slot
            if old is not None and old.frame.stamp > self._decided:
                # One decision per tick: the caller ticks again with a fresh time for the newer frame.
                return [self._decide(old, t, "superseded")]
            if slot is None:
                return out
            trigger = ""
            if slot.frame.stamp > self._decided:
                if self._answered_for(slot.frame.stamp):
                    cand = self._usable_for(slot.frame)
                    trigger = (
                        "candidate"
                        if cand is not None and _same(cand.stamp, slot.frame.stamp)
                        else "no_candidate"
                    )
                elif t - slot.rx >= self.deadline_s:
                    trigger = "watchdog"
            elif t - self._last_t >= self.cycle_period_s:
                trigger = "cycle"
            if trigger:
                out.append(self._decide(slot, t, trigger))
            elif self.prepare_ahead and slot.frame.stamp > self._decided:
                self._prepare(slot, t)
        return out

    def _answered_for(self, stamp: float) -> bool:
        with self._lock:
            return any(_same(s, stamp) for s in self._answered)

    def _usable_for(self, frame: Frame) -> Candidate | None:
        """Newest usable candidate not newer than ``frame`` (never one of a later frame)."""
        with self._lock:
            cand = self._candidate
        return cand if cand is not None and cand.stamp <= frame.stamp + _STAMP_TOL else None

    def _prepare(self, slot: Slot, t: float) -> None:
        if self._prepared is not None and self._prepared.frame is slot.frame:
            return
        self._prepared = self.pipeline.prepare(slot.frame, t)  # never raises (PlanningCycle.prepare)

    def _decide(self, slot: Slot, t: float, trigger: str) -> LoopDecision:
        cand = self._usable_for(slot.frame)
        t0 = self.perf()
        decision, error = None, None
        try:
            # Kept, so the cycle re-decisions of this frame only run the cheap half.
            self._prepare(slot, t)
            decision = self.pipeline.plan(slot.frame, cand, t, prepared=self._prepared)
        except Exception as exc:  # noqa: BLE001 - a planner bug must not stop the loop
            error = f"{type(exc).__name__}: {exc}"
            self.stats["errors"] += 1
        with self._lock:
            self._decided, self._last_t = slot.frame.stamp, t
        self.stats["decisions"] += 1
        if trigger in ("watchdog", "superseded"):
            self.stats["watchdog"] += 1
        jump, slot.time_jump_s = slot.time_jump_s, None  # reported once, on the first decision
        if jump is not None and decision is not None and "time_jump_reset" not in decision.reasons:
            # The loop reset the cycle before it saw the frame, so the cycle cannot tell.
            decision.reasons.append("time_jump_reset")
        return LoopDecision(slot, cand, decision, trigger, t, 1000.0 * (self.perf() - t0), error, jump)


def _same(a: float, b: float) -> bool:
    return abs(a - b) < _STAMP_TOL
