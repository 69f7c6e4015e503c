"""Diagnostic statuses of the drive graph (pure: no rclpy).

The nodes compute numbers; this module turns them into ``DiagnosticStatus``-shaped dicts
(``name``, ``level``, ``message``, ``hardware_id``, ``values``) with OK/WARN/ERROR levels
from the thresholds in ``config/drive.yaml`` (``diagnostics.*``). Like Autoware's
planning_validator, the measured value and the threshold travel together so a reader sees
why a level was raised.

Status names (``DiagnosticArray`` on ``/diagnostics``):

* ``vla_edge/decision`` - arbiter choice and reasons (OK student, WARN fallback, ERROR e-stop);
* ``vla_edge/timing`` - per-stage times (conversion, pillarization, inference, arbiter) and
  model execution time;
* ``vla_edge/inputs`` - input ages, stale inputs, LiDAR frame-drop ratio;
* ``vla_edge/candidate`` - per-frame student result on ``candidate_info``;
* ``vla_edge/input_error`` - a skipped frame (malformed cloud, unassemblable frame, model error);
* ``vla_edge/lidar`` - a sweep whose points are unusable (``points_invalid``: controlled stop);
* ``vla_edge/drive_loop`` - a clock reset (``time_jump_reset``: the drive loop started over).
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vla_edge.config import require
from vla_edge.errors import ConfigError

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}
STAGES = ("conversion", "pillarization", "inference", "arbiter")


@dataclass(frozen=True)
class Thresholds:
    """Level thresholds (see ``diagnostics`` in ``config/drive.yaml`` for units)."""

    hardware_id: str
    stage_warn_ms: float
    stage_error_ms: float
    model_warn_ms: float
    model_error_ms: float
    drop_warn_ratio: float
    drop_error_ratio: float
    age_warn_s: float
    age_error_s: float
    fallback_level: int
    estop_level: int
    window: int

    @classmethod
    def from_config(cls, drive_cfg: Mapping[str, Any]) -> Thresholds:
        """Read ``drive_cfg["diagnostics"]`` (nested drive parameters).

        Raises:
            ConfigError: A key is missing or a level is not 0, 1 or 2.
        """
        names = cls.__dataclass_fields__
        values = {k: require(dict(drive_cfg), "diagnostics", k, where="drive.yaml") for k in names}
        for k in ("fallback_level", "estop_level"):
            if int(values[k]) not in (OK, WARN, ERROR):
                raise ConfigError(f"drive.yaml: diagnostics.{k} must be 0, 1 or 2, got {values[k]}")
        return cls(**values)


def level_for(value: float, warn: float, error: float) -> int:
    """OK below ``warn``, WARN from ``warn``, ERROR from ``error``; non-finite is ERROR."""
    if value is None or not math.isfinite(float(value)):
        return ERROR
    if value >= error:
        return ERROR
    if value >= warn:
        return WARN
    return OK


def status(
    name: str, level: int, message: str, values: Mapping[str, Any], hardware_id: str
) -> dict[str, Any]:
    """A ``DiagnosticStatus``-shaped dict; values are stringified (KeyValue is string/string)."""
    return {
        "name": name,
        "level": int(level),
        "message": message,
        "hardware_id": hardware_id,
        "values": {str(k): _fmt(v) for k, v in values.items()},
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, (list, tuple, set, dict)):
        return json.dumps(sorted(v) if isinstance(v, set) else v, default=str)
    return str(v)


def decision_status(decision: Mapping[str, Any], th: Thresholds) -> dict[str, Any]:
    """Status for one :class:`ArbiterDecision` (given as its ``to_dict()``)."""
    choice = str(decision.get("choice", "unknown"))
    reasons = list(decision.get("reasons", []))
    if choice == "student":
        level = OK
    elif choice == "emergency_stop":
        level = th.estop_level
    elif choice in ("frenet", "hold_previous"):
        level = th.fallback_level
    else:
        level = ERROR
    values: dict[str, Any] = {"choice": choice, "reasons": reasons}
    for name, check in (decision.get("checks") or {}).items():
        values[f"check.{name}"] = _check_text(check)
    msg = choice if not reasons else f"{choice}: {', '.join(reasons)}"
    return status("vla_edge/decision", level, msg, values, th.hardware_id)


def _check_text(check: Any) -> str:
    if isinstance(check, Mapping):
        return f"value={check.get('value')} threshold={check.get('threshold')} ok={check.get('ok')}"
    return str(check)


def timing_status(
    stages_ms: Mapping[str, float | None], model_ms: float | None, th: Thresholds
) -> dict[str, Any]:
    """Status for per-stage times; missing stages (no candidate) are reported as ``n/a``."""
    level = OK
    slow: list[str] = []
    values: dict[str, Any] = {}
    for stage in STAGES:
        ms = stages_ms.get(stage)
        if ms is None:
            values[f"{stage}_ms"] = "n/a"
            continue
        values[f"{stage}_ms"] = float(ms)
        lv = level_for(ms, th.stage_warn_ms, th.stage_error_ms)
        if lv > OK:
            slow.append(f"{stage} {ms:.1f} ms")
        level = max(level, lv)
    if model_ms is None:
        values["model_exec_ms"] = "n/a"
    else:
        values["model_exec_ms"] = float(model_ms)
        lv = level_for(model_ms, th.model_warn_ms, th.model_error_ms)
        if lv > OK:
            slow.append(f"model {model_ms:.1f} ms")
        level = max(level, lv)
    values["stage_warn_ms"] = th.stage_warn_ms
    values["stage_error_ms"] = th.stage_error_ms
    msg = "slow: " + ", ".join(slow) if slow else "within budget"
    return status("vla_edge/timing", level, msg, values, th.hardware_id)


def inputs_status(
    ages: Mapping[str, float], stale: Iterable[str], drop_ratio: float | None, th: Thresholds
) -> dict[str, Any]:
    """Status for input freshness and the LiDAR frame-drop ratio.

    A stale input (flagged by the frame assembler against its own limit) is ERROR.
    """
    stale = sorted(set(stale))
    level = ERROR if stale else OK
    notes = [f"stale: {', '.join(stale)}"] if stale else []
    values: dict[str, Any] = {}
    for name, age in sorted(ages.items()):
        values[f"age.{name}_s"] = float(age)
        lv = level_for(abs(float(age)), th.age_warn_s, th.age_error_s)
        if lv > OK and name not in stale:
            notes.append(f"{name} {age:.3f} s old")
        level = max(level, lv)
    values["stale"] = stale
    if drop_ratio is not None:
        values["frame_drop_ratio"] = float(drop_ratio)
        lv = level_for(drop_ratio, th.drop_warn_ratio, th.drop_error_ratio)
        if lv > OK:
            notes.append(f"dropping {100 * drop_ratio:.0f}% of sweeps")
        level = max(level, lv)
    msg = "; ".join(notes) if notes else "inputs fresh"
    return status("vla_edge/inputs", level, msg, values, th.hardware_id)


def candidate_status(
    stamp: float,
    scores: Iterable[float] | None,
    timing_ms: Mapping[str, float],
    ages: Mapping[str, float],
    stale: Iterable[str],
    drop_ratio: float,
    th: Thresholds,
    deadline_missed: bool = False,
    camera: str = "",
) -> dict[str, Any]:
    """Status published with each candidate on ``candidate_info`` (scores, timing, ages).

    ``camera`` is a camera model's image reason code (``ok``, ``stale``, ``corrupt`` ...; empty
    for a LiDAR-only model): anything but ``ok`` means the plan was made LiDAR-only (WARN).
    """
    score_list = [float(s) for s in scores] if scores is not None else []
    model_ms = timing_ms.get("inference")
    level = level_for(model_ms, th.model_warn_ms, th.model_error_ms) if model_ms is not None else OK
    if deadline_missed:
        level = max(level, WARN)
    stale = sorted(set(stale))
    if stale:
        level = max(level, WARN)
    values: dict[str, Any] = {
        "stamp": f"{stamp:.9f}",
        "scores": [round(s, 5) for s in score_list],
        "best_mode": int(max(range(len(score_list)), key=score_list.__getitem__)) if score_list else -1,
        "deadline_missed": deadline_missed,
        "frame_drop_ratio": float(drop_ratio),
        "stale": stale,
    }
    for k, v in timing_ms.items():
        values[f"{k}_ms"] = float(v)
    for k, v in ages.items():
        values[f"age.{k}_s"] = float(v)
    msg = "deadline missed, candidate withheld" if deadline_missed else "candidate published"
    if camera:
        values["camera"] = camera
        if camera != "ok":
            level = max(level, WARN)
            msg += f"; camera {camera}: planned LiDAR-only"
    return status("vla_edge/candidate", level, msg, values, th.hardware_id)


def error_status(
    stage: str, error: BaseException | str, stamp: float | None, th: Thresholds
) -> dict[str, Any]:
    """Status for a frame skipped because of bad input or a model failure."""
    kind = type(error).__name__ if isinstance(error, BaseException) else "Error"
    values = {"stage": stage, "error_type": kind, "stamp": "n/a" if stamp is None else f"{stamp:.9f}"}
    return status("vla_edge/input_error", ERROR, f"{stage}: frame skipped: {error}", values, th.hardware_id)


def time_jump_status(jump_s: float, limit_s: float, stamp: float, th: Thresholds) -> dict[str, Any]:
    """WARN status of a frame stamped far before the last decided one: the drive loop
    took it as a clock reset (bag loop, clock set back) and started over."""
    values = {"jump_s": f"{jump_s:.3f}", "time_jump_ms": f"{1000 * limit_s:.0f}", "stamp": f"{stamp:.9f}"}
    return status(
        "vla_edge/drive_loop",
        WARN,
        f"time_jump_reset: frame stamp {jump_s:.3f} s before the last decided one "
        f"(> arbiter.time_jump_ms = {1000 * limit_s:.0f}); drive loop and planner state reset",
        values,
        th.hardware_id,
    )


def points_status(problem: str, stamp: float | None, th: Thresholds) -> dict[str, Any]:
    """ERROR status of a sweep whose points are unusable (planned on as a controlled stop)."""
    values = {"error_type": "points_invalid", "stamp": "n/a" if stamp is None else f"{stamp:.9f}"}
    return status("vla_edge/lidar", ERROR, f"{problem}; controlled stop", values, th.hardware_id)


class DropCounter:
    """Rolling LiDAR frame-drop ratio over the last ``window`` sweeps received."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ConfigError(f"diagnostics.window must be >= 1, got {window}")
        self._events: deque[bool] = deque(maxlen=int(window))
        self.received = 0
        self.dropped = 0

    def record(self, dropped: bool) -> None:
        """Record one received sweep and whether it was dropped (never processed)."""
        self._events.append(bool(dropped))
        self.received += 1
        self.dropped += int(dropped)

    @property
    def ratio(self) -> float:
        """Dropped fraction of the sweeps in the window (0 when none yet)."""
        return sum(self._events) / len(self._events) if self._events else 0.0


def worst_level(statuses: Iterable[Mapping[str, Any]]) -> int:
    """Highest level among ``statuses`` (OK when empty)."""
    return max((int(s["level"]) for s in statuses), default=OK)


class SweepGaps:
    """Sweeps that never arrived, from gaps in the header stamps.

    A reader with history depth 1 keeps only the newest sweep, so sweeps overwritten in the
    DDS queue (or lost upstream) are invisible to callbacks; a gap of ``k`` periods between
    consecutive stamps means ``k - 1`` sweeps were missed. The period is a low quantile
    (10 %) of the recent intervals, so no sensor rate has to be configured.

    The count is bounded by ``max_missed``: a larger gap is a clock jump or a bad stamp
    (stamp 0 after 2026 would be 1.7e10 "missed" sweeps, and callers loop over the count),
    not a loss; it counts 0 and is reported through :attr:`jumps`.
    """

    def __init__(self, history: int = 20, max_missed: int = 50) -> None:
        self._intervals: deque[float] = deque(maxlen=history)
        self._last: float | None = None
        self.max_missed = int(max_missed)
        self.jumps = 0  # gaps too large to be lost sweeps (clock jumps, bad stamps)

    def missed(self, stamp: float) -> int:
        """Record ``stamp`` (s); return how many sweeps are missing before it (<= max_missed)."""
        last, self._last = self._last, stamp
        if last is None or not math.isfinite(stamp) or stamp <= last:
            return 0
        dt = stamp - last
        # A low quantile, not the median: when most sweeps are lost (a flood into a depth-1
        # queue) most intervals are multiples of the period and the median would learn the
        # decimated rate, reporting ~35 % drops where ~70 % were lost.
        period = sorted(self._intervals)[len(self._intervals) // 10] if len(self._intervals) >= 5 else None
        if period is None or period <= 0:
            self._intervals.append(dt)
            return 0
        k = round(dt / period) - 1 if dt / period < 1e9 else 1 << 62
        if k > self.max_missed:
            self.jumps += 1  # not an interval of this sensor: keep it out of the median
            return 0
        self._intervals.append(dt)
        return max(0, k)
