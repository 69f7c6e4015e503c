"""A vs B comparison of two replays and the regression gate (``vla-edge replay compare``).

``A`` is the baseline (e.g. the engine on the vehicle), ``B`` the candidate. Every rule of
``replay.yaml`` ``gate`` compares one metric; B *regresses* when any rule fires, and the
command exits non-zero. Rules (units in the YAML):

* relative ADE/FDE rules fire when ``B > A * (1 + rel)`` **and** ``B - A > min_abs_m``;
* rate rules (fallback, emergency, comfort, deadline misses) fire when B's rate exceeds A's
  by more than the given percentage points;
* count rules (collisions, TTC violations) fire when B has more than the allowed number of
  extra events;
* latency p99 fires on a relative increase, only when both runs are realtime.

A metric missing on either side (e.g. no ground-truth objects, lockstep vs realtime) is
listed as ``n/a`` and never fires.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.replay import ReplayError
from vla_edge.replay.metrics import FORMAT


def load_metrics(path: str | Path) -> dict[str, Any]:
    """``metrics.json`` from a file or a replay output folder.

    Raises:
        ReplayError: Missing file, bad JSON or not a replay metrics file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReplayError(f"{p} not found; pass a metrics.json or the --out folder of a replay") from None
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{p} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReplayError(f"{p} is not a replay metrics file (format {FORMAT!r} expected)")
    return data


def _get(m: Mapping[str, Any], *keys: str) -> Any:
    node: Any = m
    for k in keys:
        if not isinstance(node, Mapping) or k not in node:
            return None
        node = node[k]
    return node


@dataclass
class Row:
    """One compared metric."""

    metric: str
    unit: str
    a: float | None
    b: float | None
    rule: str
    regressed: bool

    @property
    def delta(self) -> float | None:
        """``b - a`` (None when either is missing)."""
        return None if self.a is None or self.b is None else self.b - self.a

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "metric": self.metric,
            "unit": self.unit,
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "rule": self.rule,
            "regressed": self.regressed,
        }


@dataclass
class Comparison:
    """Result of :func:`compare`."""

    rows: list[Row]
    notes: list[str]

    @property
    def regressions(self) -> list[Row]:
        """Rows whose rule fired."""
        return [r for r in self.rows if r.regressed]

    @property
    def passed(self) -> bool:
        """True when no rule fired."""
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``compare.json``)."""
        return {
            "passed": self.passed,
            "regressions": [r.metric for r in self.regressions],
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }


def _rel(name: str, a: Any, b: Any, rel: float, floor: float, unit: str = "m") -> Row:
    if a is None or b is None:
        return Row(name, unit, a, b, f"+{100 * rel:.0f} % and +{floor} {unit}", False)
    fired = b > a * (1.0 + rel) and (b - a) > floor
    return Row(name, unit, float(a), float(b), f"+{100 * rel:.0f} % and +{floor} {unit}", bool(fired))


def _pp(name: str, a: Any, b: Any, pp: float) -> Row:
    av = None if a is None else 100.0 * float(a)
    bv = None if b is None else 100.0 * float(b)
    fired = av is not None and bv is not None and bv - av > pp
    return Row(name, "%", av, bv, f"+{pp} pp", bool(fired))


def _count(name: str, a: Any, b: Any, allowed: float) -> Row:
    fired = a is not None and b is not None and (b - a) > allowed
    return Row(name, "count", a, b, f"+{allowed:g} new", bool(fired))


def frames_signature(m: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``[(run, sweeps)]`` that identifies which bags a run replayed."""
    return [(str(b.get("run")), int(b.get("sweeps", 0))) for b in m.get("bags", [])]


def compare(a: Mapping[str, Any], b: Mapping[str, Any], gate: Mapping[str, Any]) -> Comparison:
    """Compare baseline ``a`` with candidate ``b`` under the ``gate`` thresholds.

    Raises:
        ReplayError: The runs replayed different bags and ``require_same_frames`` is set.
    """
    notes: list[str] = []
    if frames_signature(a) != frames_signature(b):
        msg = f"the runs replayed different bags/sweeps: A {frames_signature(a)} vs B {frames_signature(b)}"
        if bool(gate["require_same_frames"]):
            raise ReplayError(msg + "; replay the same bags, or set gate.require_same_frames: false")
        notes.append(msg)
    if a.get("mode") != b.get("mode"):
        notes.append(
            f"modes differ (A {a.get('mode')}, B {b.get('mode')}): "
            "timing-dependent metrics differ legitimately"
        )
    floor = float(gate["min_abs_m"])
    rows = [
        _rel(
            "student ADE",
            _get(a, "open_loop", "student", "ade_m", "mean"),
            _get(b, "open_loop", "student", "ade_m", "mean"),
            float(gate["student_ade_rel"]),
            floor,
        ),
        _rel(
            "student FDE",
            _get(a, "open_loop", "student", "fde_m", "mean"),
            _get(b, "open_loop", "student", "fde_m", "mean"),
            float(gate["student_fde_rel"]),
            floor,
        ),
        _rel(
            "final ADE",
            _get(a, "open_loop", "final", "ade_m", "mean"),
            _get(b, "open_loop", "final", "ade_m", "mean"),
            float(gate["final_ade_rel"]),
            floor,
        ),
        _pp(
            "fallback rate",
            _get(a, "decisions", "fallback_rate"),
            _get(b, "decisions", "fallback_rate"),
            float(gate["fallback_rate_pp"]),
        ),
        _pp(
            "emergency-stop rate",
            _get(a, "decisions", "emergency_rate"),
            _get(b, "decisions", "emergency_rate"),
            float(gate["emergency_rate_pp"]),
        ),
        _pp(
            "comfort violations (final)",
            _get(a, "comfort", "final", "rate"),
            _get(b, "comfort", "final", "rate"),
            float(gate["comfort_violation_rate_pp"]),
        ),
        _count(
            "GT collisions",
            _get(a, "ground_truth", "collisions"),
            _get(b, "ground_truth", "collisions"),
            float(gate["new_collisions"]),
        ),
        _count(
            "GT TTC violations",
            _get(a, "ground_truth", "ttc_violations"),
            _get(b, "ground_truth", "ttc_violations"),
            float(gate["new_ttc_violations"]),
        ),
    ]
    both_rt = a.get("mode") == "realtime" and b.get("mode") == "realtime"
    la, lb = (
        (_get(a, "realtime", "latency", "p99_ms"), _get(b, "realtime", "latency", "p99_ms"))
        if both_rt
        else (None, None)
    )
    rows.append(_rel("latency p99", la, lb, float(gate["latency_p99_rel"]), 0.0, unit="ms"))
    da, db = (
        (
            _get(a, "realtime", "latency", "deadline_miss_rate"),
            _get(b, "realtime", "latency", "deadline_miss_rate"),
        )
        if both_rt
        else (None, None)
    )
    rows.append(_pp("deadline-miss rate", da, db, float(gate["deadline_miss_rate_pp"])))
    return Comparison(rows, notes)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def format_table(cmp: Comparison, label_a: str = "A", label_b: str = "B") -> str:
    """Plain-text side-by-side table (what the CLI prints)."""
    head = (
        f"{'metric':<28} {'unit':<6} {label_a[:12]:>12} {label_b[:12]:>12} {'delta':>10}  {'rule':<22} result"
    )
    lines = [head, "-" * len(head)]
    for r in cmp.rows:
        res = "REGRESSED" if r.regressed else ("n/a" if r.delta is None else "ok")
        nums = f"{_fmt(r.a):>12} {_fmt(r.b):>12} {_fmt(r.delta):>10}"
        lines.append(f"{r.metric:<28} {r.unit:<6} {nums}  {r.rule:<22} {res}")
    lines.extend(f"note: {n}" for n in cmp.notes)
    lines.append(
        "GATE: " + ("PASS" if cmp.passed else "FAIL (" + ", ".join(r.metric for r in cmp.regressions) + ")")
    )
    return "\n".join(lines)
