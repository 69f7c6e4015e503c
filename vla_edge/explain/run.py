"""``vla-edge explain`` core: bags -> rebuilt frames -> teacher -> aligned rows + HTML.

One row per rebuilt LiDAR frame, in log order (schema in ``docs/recording.md``):
``stamp``, teacher and student trajectories, the logged decision, their divergence
(ADE/FDE in metres), the reasoning text, and the flags that put a frame in the HTML.

The student trajectory is the logged candidate (``/vla_edge/candidate_trajectory``)
when the bag has one for the frame's stamp; otherwise it is recomputed on the rebuilt
frame with the engine named in ``config/explain.yaml`` (``student.engine``), and the row
says which (``student.source``: ``logged`` | ``recomputed`` | ``none``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_edge.config import load_config, require, resolve_path
from vla_edge.errors import ConfigError, ModelError, VlaEdgeError
from vla_edge.explain.rebuild import RebuiltFrame, group_runs, iter_frames, lidar_count
from vla_edge.explain.teachers import Teacher, TeacherContext, TeacherOutput, load_teacher
from vla_edge.recording.events import divergence
from vla_edge.types import Trajectory, trajectory_to_json

LOG = logging.getLogger(__name__)

ROW_FORMAT = "vla_edge.explain_row/1"
PYARROW_HINT = "--format parquet needs pyarrow (pip install pyarrow); or use --format jsonl"


@dataclass
class ExplainResult:
    """Where the outputs went and what they hold."""

    rows_path: Path
    html_path: Path | None
    rows: int
    flagged: int
    runs: int


class StudentSource:
    """Logged candidate when present, else the student recomputed on the rebuilt frame."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        own = require(cfg, "student", where="explain.yaml")
        self.recompute = bool(require(own, "recompute_if_missing", where="explain.yaml student"))
        self.engine = require(own, "engine", where="explain.yaml student")
        self.backend = str(require(own, "backend", where="explain.yaml student"))
        self.seed = int(require(own, "noise_seed", where="explain.yaml student"))
        self.model_cfg_name = require(cfg, "model_config", where="explain.yaml")
        self._runner: Any = None
        self._failed: str | None = None

    def get(self, item: RebuiltFrame) -> tuple[Trajectory | None, str]:
        """``(trajectory, source)`` for one frame."""
        if item.logged.candidate is not None:
            return item.logged.candidate, "logged"
        if not self.recompute or self._failed:
            return None, "none"
        try:
            if self._runner is None:
                from vla_edge.inference import StudentRunner

                self._runner = StudentRunner.from_config(
                    load_config(self.model_cfg_name, kind="model"), self.backend, resolve_path(self.engine)
                )
            return self._runner.run(item.frame, noise_seed=self.seed).trajectory, "recomputed"
        except ModelError as exc:
            self._failed = str(exc)
            LOG.warning("student cannot be recomputed (%s); rows without a logged candidate get none", exc)
            return None, "none"
        except VlaEdgeError as exc:
            LOG.warning("student recompute failed on frame %.3f: %s", item.frame.stamp, exc)
            return None, "none"


def flags_for(row: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """Why a row is interesting: fallback / emergency stop choice, high divergence."""
    fl = require(cfg, "flag", where="explain.yaml")
    out = []
    choice = (row.get("decision") or {}).get("choice")
    if choice in require(fl, "emergency_choices", where="explain.yaml flag"):
        out.append("emergency_stop")
    elif choice in require(fl, "fallback_choices", where="explain.yaml flag"):
        out.append("fallback")
    d = row.get("divergence")
    if d and d["ade_m"] > float(require(fl, "divergence_m", where="explain.yaml flag")):
        out.append("high_divergence")
    return out


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def make_row(
    index: int,
    item: RebuiltFrame,
    teacher: Teacher,
    out: TeacherOutput,
    student: Trajectory | None,
    source: str,
) -> dict[str, Any]:
    """One JSON row (see module docstring)."""
    div = None
    if out.trajectory is not None and student is not None:
        ade, fde = divergence(out.trajectory, student)
        div = {
            "ade_m": round(ade, 4),
            "fde_m": round(fde, 4),
            "horizon_s": min(out.trajectory.horizon, student.horizon),
        }
    f = item.frame
    return {
        "format": ROW_FORMAT,
        "index": index,
        "run": item.run,
        "bag": item.bag,
        "stamp": f.stamp,
        "teacher": {
            "name": teacher.name,
            "trajectory": trajectory_to_json(out.trajectory),
            "confidence": _finite(out.confidence),
        },
        "student": {"source": source, "trajectory": trajectory_to_json(student)},
        "final": trajectory_to_json(item.logged.final),
        "decision": item.logged.decision,
        "divergence": div,
        "reasoning": out.reasoning,
        "frame": {
            "n_points": len(f.points),
            "stale": sorted(f.stale),
            "ages": {k: round(float(v), 4) for k, v in f.ages.items()},
            "ego": {"v": f.ego.v, "a": f.ego.a, "yaw_rate": f.ego.yaw_rate},
        },
        "teacher_extra": out.extra,
    }


def _obstacle_circles(out: TeacherOutput) -> list[tuple[float, float, float]] | None:
    clusters = ((out.extra or {}).get("obstacles") or {}).get("clusters")
    if not clusters:
        return None
    return [(c["centroid"][0], c["centroid"][1], c["radius"]) for c in clusters]


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(PYARROW_HINT) from None


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    """Rows as Parquet (nested fields as JSON strings). Needs pyarrow.

    Raises:
        ConfigError: If pyarrow is not installed.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "--format parquet needs pyarrow (pip install pyarrow); or use --format jsonl"
        ) from None
    flat = [
        {k: (json.dumps(v) if isinstance(v, (dict, list)) or v is None else v) for k, v in r.items()}
        for r in rows
    ]
    pq.write_table(pa.Table.from_pylist(flat), path)
    return path


def explain(
    bags: list[str | Path],
    out_dir: str | Path,
    cfg: dict[str, Any] | None = None,
    teacher: str | None = None,
    fmt: str | None = None,
    html: bool | None = None,
    progress: bool = True,
    remap: dict[str, str] | None = None,
) -> ExplainResult:
    """Run a teacher over logged bags and write rows (+ HTML summary).

    Args:
        bags: Bag folders, folders of bags, or ``.mcap`` files.
        out_dir: Output folder (created): ``explain.jsonl|parquet``, ``summary.html``.
        cfg: Parsed ``config/explain.yaml``; loaded when None.
        teacher: Built-in name, ``module:Class`` or entry-point name; config when None.
        fmt: ``jsonl`` or ``parquet``; config when None.
        html: Write the HTML summary; config when None.
        progress: Show a tqdm bar.
        remap: ``{topic in bag: topic of topics.yaml}`` for bags recorded under other names.

    Raises:
        BagError: Unreadable bags. ModelError: Learned teacher artefact missing.
        ConfigError: Bad config or missing optional dependency.
    """
    from tqdm import tqdm

    from vla_edge.explain.html import bev_png, write_summary

    cfg = load_config("explain") if cfg is None else cfg
    fmt = fmt or str(require(cfg, "output", "format", where="explain.yaml"))
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"explain format must be jsonl or parquet, got {fmt!r}")
    if fmt == "parquet":
        _require_pyarrow()  # fail before the (long) run, not after it
    html = bool(require(cfg, "output", "html", where="explain.yaml")) if html is None else html
    hcfg = require(cfg, "html", where="explain.yaml")
    topics = load_config(require(cfg, "topics_config", where="explain.yaml"), kind="topics")
    frame_cfg = load_config(require(cfg, "frame_config", where="explain.yaml"), kind="frame")
    calib_cfg = load_config(require(cfg, "calibration_config", where="explain.yaml"), kind="calibration")
    spec = teacher or str(require(cfg, "teacher", where="explain.yaml"))
    runs = group_runs(list(bags))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(lidar_count(r, topics, remap) for r in runs)
    rows: list[dict[str, Any]] = []
    plots: list[tuple[dict[str, Any], str]] = []
    max_plots = int(require(hcfg, "max_plots", where="explain.yaml html"))
    rows_path = out / f"explain.{fmt}"
    jsonl = rows_path.open("w", encoding="utf-8") if fmt == "jsonl" else None
    bar = tqdm(total=total, unit="frame", desc="explain", disable=not progress)
    try:
        for run in runs:
            tch = load_teacher(spec, cfg)  # fresh state per run (teachers may track objects)
            students = StudentSource(cfg)
            for item in iter_frames(run, topics, frame_cfg, calib_cfg, remap):
                student, source = students.get(item)
                ctx = TeacherContext(len(rows), item.bag, item.logged.decision, student, item.logged.final)
                res = tch.explain(item.frame, ctx)
                row = make_row(len(rows), item, tch, res, student, source)
                row["flags"] = flags_for(row, cfg)
                row["flagged"] = bool(row["flags"])
                rows.append(row)
                if jsonl is not None:
                    jsonl.write(json.dumps(row) + "\n")
                if html and row["flagged"] and len(plots) < max_plots:
                    title = f"frame {row['index']} t={item.frame.stamp:.2f} {','.join(row['flags'])}"
                    trajs = {"student": student, "teacher": res.trajectory, "final": item.logged.final}
                    png = bev_png(
                        item.frame, trajs, _obstacle_circles(res), title,
                        float(require(hcfg, "bev_range_m", where="explain.yaml html")),
                        int(require(hcfg, "max_points", where="explain.yaml html")),
                    )  # fmt: skip
                    plots.append((row, png))
                bar.update(1)
    finally:
        bar.close()
        if jsonl is not None:
            jsonl.close()
    if fmt == "parquet":
        write_parquet(rows, rows_path)
    html_path = None
    if html:
        meta = {"bags": ", ".join(map(str, bags)), "teacher": spec, "runs": len(runs), "rows": rows_path.name}
        html_path = write_summary(out / "summary.html", rows, plots, meta)
    return ExplainResult(rows_path, html_path, len(rows), sum(r["flagged"] for r in rows), len(runs))
