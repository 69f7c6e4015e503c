"""The figures the docs' tables quote, from one ``vla-edge sim evaluate --out`` JSON file.

One definition of "collision scenarios", "off-road scenarios" and the rest, shared by the
scripts that tabulate runs side by side (``scripts/judge_table.py``, ``scripts/gpu_student.sh``,
``scripts/camera_compare.sh``), so their tables cannot count differently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Score, scenario counts and student statistics of one evaluate result (its parsed JSON).

    Raises:
        KeyError: ``result`` is not an evaluate result (no ``aggregate`` or ``scenarios``).
    """
    agg, rows = result["aggregate"], result["scenarios"]
    return {
        "score": float(agg["score"]),
        "scenarios": len(rows),
        "collision_scenarios": sum(1 for s in rows if s["collisions"]),
        "offroad_scenarios": sum(1 for s in rows if s["dac"] < 1.0),
        "stop_line_violations": int(agg.get("stop_line_violations", 0)),
        "ep": float(agg["ep"]),
        "comfort": float(agg["comfort"]),
        "raw_pass_fraction": result.get("raw_pass_fraction"),
        "raw_failed_checks": result.get("raw_failed_checks"),
        "camera_fallbacks": result.get("camera_fallbacks"),
        "choices": result.get("choices") or None,
    }


def summarize_file(path: str | Path) -> dict[str, Any]:
    """:func:`summarize` of the JSON file at ``path``."""
    return summarize(json.loads(Path(path).read_text()))
