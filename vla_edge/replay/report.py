"""Replay report: one self-contained ``report.html`` (inline CSS, base64 PNGs) + the PNG files.

Plots (matplotlib, Agg backend, written next to the HTML):

* ``bev_<i>.png`` - bird's-eye view of a few frames: LiDAR points, LiDAR obstacle clusters,
  ground-truth boxes (simulator bags), the logged future (odometry), and the student,
  Frenet and final trajectories;
* ``timeline.png`` - decision per frame over time (and latency in realtime mode);
* ``ade.png`` - per-frame ADE of student / Frenet / final.

``compare.html`` (+ ``compare.png``) shows two runs side by side with the gate's verdict.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.replay.metrics import MetricSettings, ObjectTracks, future_in_ego, pose_at

CHOICE_ORDER = ("student", "frenet", "hold_previous", "emergency_stop")
CHOICE_COLOR = {
    "student": "#1f77b4",
    "frenet": "#2ca02c",
    "hold_previous": "#ff7f0e",
    "emergency_stop": "#d62728",
}
CSS = """
body{font-family:system-ui,Arial,sans-serif;margin:1.5em;color:#222;max-width:1300px}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
.bad{background:#fdd}.ok{background:#dfd}.grid{display:flex;flex-wrap:wrap;gap:8px}
.grid figure{margin:0}figcaption{font-size:.8em;color:#555}code{background:#f4f4f4;padding:0 3px}
"""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def _img(data: bytes, alt: str, caption: str = "") -> str:
    b64 = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">{cap}</figure>'


def _xy(d: Mapping[str, Any] | None) -> np.ndarray | None:
    if not d or not d.get("poses"):
        return None
    return np.vstack([[0.0, 0.0], np.asarray(d["poses"], dtype=np.float64)[:, :2]])


def plot_bev(
    snap: Mapping[str, Any], tracks: Any, s: MetricSettings, window: Sequence[float], path: Path, dpi: int
) -> bytes:
    """One BEV frame (base_link: x forward = up, y left = left)."""
    from matplotlib.patches import Circle, Polygon

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 6.0))
    x0, x1, y0, y1 = (float(v) for v in window)
    pts = np.asarray(snap.get("points") or np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    ax.scatter(-pts[:, 1], pts[:, 0], s=0.3, c="#999999", label="LiDAR", rasterized=True)
    for cx, cy, r in snap.get("clusters") or []:
        ax.add_patch(Circle((-cy, cx), r, fill=False, ec="#d62728", lw=0.8))
    stamp = float(snap["stamp"])
    pose0 = pose_at(tracks.odom, stamp) if tracks is not None else None
    if pose0 is not None and tracks.objects:
        boxes, mask = ObjectTracks(tracks.objects).at(np.array([stamp]))
        c, sn = np.cos(pose0[2]), np.sin(pose0[2])
        for b in boxes[mask[:, 0], 0]:
            dx, dy = b[0] - pose0[0], b[1] - pose0[1]
            ex, ey, yaw = c * dx + sn * dy, -sn * dx + c * dy, b[2] - pose0[2]
            hl, hw = 0.5 * b[3], 0.5 * b[4]
            corners = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]])
            rc, rs = np.cos(yaw), np.sin(yaw)
            cx = ex + rc * corners[:, 0] - rs * corners[:, 1]
            cy = ey + rs * corners[:, 0] + rc * corners[:, 1]
            ax.add_patch(Polygon(np.column_stack([-cy, cx]), closed=True, fill=False, ec="#1f3bb3", lw=1.0))
    if tracks is not None:
        times = s.eval_dt * np.arange(1, round(s.horizon / s.eval_dt) + 1)
        gt = future_in_ego(tracks.odom, stamp, times)
        if gt is not None:
            xy, valid = gt
            ax.plot(-xy[valid, 1], xy[valid, 0], "o", ms=3, color="#9467bd", label="logged future")
    for key, style, color in (
        ("student", "-", "#ff7f0e"),
        ("frenet", "--", "#2ca02c"),
        ("final", "-", "#000000"),
    ):
        xy = _xy(snap.get(key))
        if xy is not None:
            ax.plot(-xy[:, 1], xy[:, 0], style, color=color, lw=1.6, label=key)
    ax.plot([0], [0], marker="^", color="k", ms=8)
    ax.set_xlim(-y1, -y0)
    ax.set_ylim(x0, x1)
    ax.set_aspect("equal")
    ax.set_xlabel("-y (m, right)")
    ax.set_ylabel("x (m, forward)")
    ax.set_title(f"{snap.get('choice')} @ {stamp:.2f}", fontsize=9)
    ax.legend(loc="lower right", fontsize=6)
    return _save(fig, path, dpi)


def plot_timeline(
    records: Sequence[Mapping[str, Any]], path: Path, dpi: int, deadline_ms: float | None = None
) -> bytes:
    """Decision per frame (and latency when present, with the deadline) over time."""
    plt = _plt()
    lat = [r.get("latency_ms") for r in records]
    has_lat = any(v is not None for v in lat)
    fig, axes = plt.subplots(
        2 if has_lat else 1, 1, figsize=(9, 4.5 if has_lat else 2.6), sharex=True, squeeze=False
    )
    t0 = min((float(r["stamp"]) for r in records), default=0.0)
    t = np.array([float(r["stamp"]) - t0 for r in records])
    ax = axes[0, 0]
    for i, ch in enumerate(CHOICE_ORDER):
        sel = np.array([r.get("choice") == ch for r in records], dtype=bool)
        ax.scatter(t[sel], np.full(sel.sum(), i), s=10, color=CHOICE_COLOR[ch], label=ch)
    none = np.array([r.get("choice") is None for r in records], dtype=bool)
    ax.scatter(t[none], np.full(none.sum(), -1), s=10, marker="x", color="k", label="no plan")
    ax.set_yticks(range(-1, len(CHOICE_ORDER)), ["no plan", *CHOICE_ORDER])
    ax.set_title("decision per LiDAR frame", fontsize=9)
    if has_lat:
        ax2 = axes[1, 0]
        y = np.array([np.nan if v is None else v for v in lat], dtype=np.float64)
        ax2.plot(t, y, ".-", lw=0.8)
        if deadline_ms is not None:
            ax2.axhline(deadline_ms, color="#d62728", ls="--", lw=0.8, label="deadline")
            ax2.legend(fontsize=7)
        ax2.set_ylabel("latency (ms)")
        ax2.set_title("LiDAR publish -> /planning/trajectory", fontsize=9)
    axes[-1, 0].set_xlabel("time since first frame (s)")
    return _save(fig, path, dpi)


def plot_ade(series: Sequence[Mapping[str, Any]], path: Path, dpi: int) -> bytes:
    """Per-frame ADE over time."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    t0 = min((float(r["stamp"]) for r in series), default=0.0)
    for key, color in (("student", "#ff7f0e"), ("frenet", "#2ca02c"), ("final", "#000000")):
        pts = [(float(r["stamp"]) - t0, r[key]) for r in series if key in r]
        if pts:
            a = np.asarray(pts)
            ax.plot(a[:, 0], a[:, 1], ".-", color=color, lw=0.8, label=key)
    ax.set_ylabel("ADE (m)")
    ax.set_xlabel("time since first frame (s)")
    ax.legend(fontsize=7)
    return _save(fig, path, dpi)


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str], classes: Sequence[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def metrics_tables(m: Mapping[str, Any]) -> str:
    """HTML tables of a metrics mapping."""
    parts = []
    dec = m.get("decisions", {})
    parts.append("<h2>Decisions</h2>")
    parts.append(
        _table(
            [[k, v, v / dec["total"] if dec.get("total") else None] for k, v in dec.get("counts", {}).items()]
            + [
                ["fallback rate", "", dec.get("fallback_rate")],
                ["emergency rate", "", dec.get("emergency_rate")],
            ],
            ["choice", "count", "share"],
        )
    )
    reasons = sorted(dec.get("reasons", {}).items(), key=lambda kv: -kv[1])
    parts.append(_table(reasons, ["reason code", "count"]))
    parts.append("<h2>Open-loop displacement vs logged future (odometry)</h2>")
    ol = m.get("open_loop", {})
    parts.append(
        _table(
            [
                [
                    k,
                    v["ade_m"]["mean"],
                    v["ade_m"]["median"],
                    v["ade_m"]["count"],
                    v["fde_m"]["mean"],
                    v["fde_m"]["count"],
                ]
                for k, v in ol.items()
            ],
            ["plan", "ADE mean (m)", "ADE median (m)", "frames", "FDE mean (m)", "frames (full horizon)"],
        )
    )
    parts.append("<h2>Comfort (NAVSIM limits)</h2>")
    cf = m.get("comfort", {})
    keys = list(next(iter(cf.values()), {}).get("by_limit", {}).keys())
    parts.append(
        _table(
            [
                [k, v["plans"], v["violating"], v["rate"], *[v["by_limit"][x] for x in keys]]
                for k, v in cf.items()
            ],
            ["plan", "plans", "violating", "rate", *keys],
        )
    )
    gt = m.get("ground_truth", {})
    parts.append("<h2>Ground-truth collision / TTC</h2>")
    if gt.get("available"):
        parts.append(
            _table(
                [
                    [
                        gt["plans"],
                        gt["collisions"],
                        gt["collision_rate"],
                        gt["ttc_violations"],
                        gt["min_ttc_s"],
                    ]
                ],
                ["plans", "collisions", "rate", "TTC violations", "min TTC (s)"],
            )
        )
        if gt.get("events"):
            parts.append(
                _table(
                    [[e["stamp"], e["t"], e["object"]] for e in gt["events"][:50]],
                    ["frame", "t (s)", "object"],
                )
            )
    else:
        parts.append("<p>No ground-truth objects (<code>/sim/objects</code>) in these bags.</p>")
    rt = m.get("realtime")
    if rt:
        parts.append("<h2>Realtime</h2>")
        lat = rt.get("latency", {})
        parts.append(_table([[k, v] for k, v in lat.items()], ["latency / deadline", "value"]))
        parts.append(_table([[k, v] for k, v in rt.items() if k != "latency"], ["graph", "value"]))
    bags = m.get("bags", [])
    if bags:
        parts.append("<h2>Bags</h2>")
        head = list(bags[0].keys())
        parts.append(_table([[b.get(h) for h in head] for b in bags], head))
    return "".join(parts)


def write_report(
    out_dir: Path,
    metrics: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    snapshots: Sequence[Mapping[str, Any]],
    tracks: Mapping[str, Any],
    s: MetricSettings,
    report_cfg: Mapping[str, Any],
    title: str = "vla_edge replay",
) -> Path:
    """Write the PNGs and ``report.html`` into ``out_dir``; returns the HTML path."""
    dpi = int(report_cfg["dpi"])
    window = report_cfg["bev_range_m"]
    imgs = []
    for i, snap in enumerate(snapshots):
        data = plot_bev(snap, tracks.get(snap["run"]), s, window, out_dir / f"bev_{i:02d}.png", dpi)
        imgs.append(
            _img(
                data,
                f"BEV frame {i}",
                f"{Path(str(snap['run'])).name} @ {float(snap['stamp']):.2f}: {snap.get('choice')}",
            )
        )
    deadline = (metrics.get("realtime") or {}).get("latency", {}).get("deadline_ms")
    timeline = _img(plot_timeline(records, out_dir / "timeline.png", dpi, deadline), "decision timeline")
    ade = _img(plot_ade(metrics.get("series", {}).get("ade", []), out_dir / "ade.png", dpi), "per-frame ADE")
    meta = metrics.get("meta", {})
    summary = [
        ["mode", metrics.get("mode")],
        ["frames", metrics.get("frames")],
        ["engine", meta.get("engine")],
        ["weights", meta.get("weights")],
        ["student ADE (m)", metrics["open_loop"]["student"]["ade_m"]["mean"]],
        ["final ADE (m)", metrics["open_loop"]["final"]["ade_m"]["mean"]],
        ["fallback rate", metrics["decisions"]["fallback_rate"]],
        ["GT collisions", metrics.get("ground_truth", {}).get("collisions")],
    ]
    if metrics.get("realtime"):
        summary.append(["latency p99 (ms)", metrics["realtime"]["latency"]["p99_ms"]])
    body = [
        f"<h1>{html.escape(title)}</h1>",
        _table(summary, ["", "value"]),
        "<h2>Timeline</h2>",
        timeline,
        ade,
        "<h2>BEV frames</h2>",
        "<p>Grey: LiDAR; red circles: LiDAR obstacle clusters; blue: ground-truth boxes; purple dots: "
        "logged future; orange: student; green dashed: Frenet; black: final.</p>",
        '<div class="grid">' + "".join(imgs) + "</div>",
        metrics_tables(metrics),
    ]
    return _write_html(out_dir / "report.html", title, body)


def _write_html(path: Path, title: str, body: Sequence[str]) -> Path:
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    path.write_text(doc, encoding="utf-8")
    return path


def write_compare_report(out_dir: Path, cmp: Any, labels: tuple[str, str], dpi: int) -> Path:
    """``compare.html`` + ``compare.png``: side-by-side table and bars of the compared metrics."""
    plt = _plt()
    rows = [r for r in cmp.rows if r.a is not None and r.b is not None]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    if rows:
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r.a for r in rows], 0.4, label=labels[0])
        ax.bar(
            x + 0.2,
            [r.b for r in rows],
            0.4,
            label=labels[1],
            color=["#d62728" if r.regressed else "#ff7f0e" for r in rows],
        )
        ax.set_xticks(x, [f"{r.metric} ({r.unit})" for r in rows], rotation=30, ha="right", fontsize=7)
        ax.legend(fontsize=7)
    data = _save(fig, out_dir / "compare.png", dpi)
    table = _table(
        [
            [r.metric, r.unit, r.a, r.b, r.delta, r.rule, "REGRESSED" if r.regressed else "ok"]
            for r in cmp.rows
        ],
        ["metric", "unit", labels[0], labels[1], "delta", "rule", "result"],
        ["bad" if r.regressed else "ok" for r in cmp.rows],
    )
    verdict = "PASS" if cmp.passed else "FAIL"
    body = [
        f"<h1>Replay comparison: {html.escape(labels[0])} vs {html.escape(labels[1])} - gate {verdict}</h1>",
        table,
        "".join(f"<p>note: {html.escape(n)}</p>" for n in cmp.notes),
        _img(data, "comparison chart"),
    ]
    return _write_html(out_dir / "compare.html", f"replay compare: {verdict}", body)
