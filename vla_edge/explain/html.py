"""Self-contained HTML summary of an explain run: counts, divergence plot, BEV of flagged frames.

Figures are drawn with matplotlib (Agg), encoded as PNG and embedded as base64 ``data:``
URIs, so the report is one file that opens anywhere offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.types import Frame, Trajectory

COLOURS = {"student": "tab:blue", "teacher": "tab:green", "final": "tab:red", "reference": "0.5"}


def _png_b64(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def bev_png(
    frame: Frame,
    trajectories: dict[str, Trajectory | None],
    obstacles: list[tuple[float, float, float]] | None,
    title: str,
    range_m: float,
    max_points: int,
) -> str:
    """Top-down plot of one frame, base64 PNG.

    Args:
        frame: The rebuilt frame (points and reference path in base_link).
        trajectories: ``{"student": ..., "teacher": ..., "final": ...}`` (None = absent).
        obstacles: ``(x, y, radius)`` of obstacle clusters, if known.
        title: Figure title.
        range_m: Half size of the plotted square (m).
        max_points: LiDAR points drawn at most (evenly subsampled).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    pts = frame.points
    if len(pts) > max_points:
        pts = pts[:: int(np.ceil(len(pts) / max_points))]
    ax.scatter(pts[:, 1], pts[:, 0], s=0.3, c="0.7", rasterized=True)
    ref = np.asarray(frame.reference_path).reshape(-1, 2)
    if len(ref):
        ax.plot(ref[:, 1], ref[:, 0], "--", color=COLOURS["reference"], lw=1, label="reference")
    for x, y, r in obstacles or []:
        ax.add_patch(plt.Circle((y, x), r, fill=False, color="k", lw=0.8))
    for name, traj in trajectories.items():
        if traj is None:
            continue
        p = traj.with_origin()
        ax.plot(p[:, 1], p[:, 0], "-o", ms=2, color=COLOURS.get(name, "tab:purple"), label=name)
    ax.set_xlim(range_m, -range_m)  # y to the left, as seen from above with x up
    ax.set_ylim(-range_m / 2, 1.5 * range_m)
    ax.set_aspect("equal")
    ax.set_xlabel("y [m] (left +)")
    ax.set_ylabel("x [m] (forward)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    return _png_b64(fig)


def divergence_png(rows: list[dict[str, Any]]) -> str | None:
    """ADE over time with the flagged frames marked; None when there is no divergence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["stamp"], r["divergence"]["ade_m"]) for r in rows if r.get("divergence")]
    if not pts:
        return None
    t0 = rows[0]["stamp"]
    t, ade = np.array(pts).T
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.plot(t - t0, ade, lw=1, label="teacher vs student ADE")
    flagged = [
        (r["stamp"] - t0, r["divergence"]["ade_m"]) for r in rows if r["flagged"] and r.get("divergence")
    ]
    if flagged:
        ft, fa = np.array(flagged).T
        ax.scatter(ft, fa, c="tab:red", s=12, label="flagged")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("ADE [m]")
    ax.legend(fontsize=7)
    return _png_b64(fig)


def write_summary(
    path: Path, rows: list[dict[str, Any]], plots: list[tuple[dict[str, Any], str]], meta: dict[str, Any]
) -> Path:
    """Write the one-file HTML summary.

    Args:
        path: Output ``.html``.
        rows: Every per-frame row (as written to JSONL).
        plots: ``(row, png_b64)`` for the flagged frames that got a BEV plot.
        meta: Run information (bags, teacher, counts...) shown in a table.
    """
    esc = html.escape
    choices = Counter(str((r.get("decision") or {}).get("choice", "not logged")) for r in rows)
    flags = Counter(f for r in rows for f in r["flags"])
    ades = [r["divergence"]["ade_m"] for r in rows if r.get("divergence")]
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>vla-edge explain</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.frame{display:flex;gap:1em;"
        "margin:1em 0;border-top:1px solid #ddd;padding-top:1em}.txt{max-width:45em;font-size:14px}</style>",
        "</head><body><h1>vla-edge explain</h1><table>",
    ]
    for k, v in meta.items():
        out.append(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>")
    out.append(f"<tr><th>frames</th><td>{len(rows)}</td></tr>")
    choice_txt = ", ".join(f"{k}: {v}" for k, v in sorted(choices.items()))
    out.append(f"<tr><th>decisions</th><td>{esc(choice_txt)}</td></tr>")
    flag_txt = ", ".join(f"{k}: {v}" for k, v in sorted(flags.items())) or "none"
    out.append(f"<tr><th>flags</th><td>{esc(flag_txt)}</td></tr>")
    if ades:
        out.append(
            f"<tr><th>teacher vs student ADE</th><td>mean {np.mean(ades):.2f} m, "
            f"p95 {np.percentile(ades, 95):.2f} m, max {np.max(ades):.2f} m ({len(ades)} frames)</td></tr>"
        )
    out.append("</table>")
    div = divergence_png(rows)
    if div:
        out.append(f"<h2>Divergence over time</h2><img alt='divergence' src='data:image/png;base64,{div}'>")
    n_flagged = sum(1 for r in rows if r["flagged"])
    out.append(f"<h2>Flagged frames ({n_flagged}; {len(plots)} plotted)</h2>")
    for row, png in plots:
        dec = row.get("decision") or {}
        d = row.get("divergence") or {}
        info = (
            f"<b>frame {row['index']}</b> stamp {row['stamp']:.3f} - "
            f"flags: {esc(', '.join(row['flags']))}<br>"
            f"decision: {esc(str(dec.get('choice', 'not logged')))} "
            f"{esc(', '.join(map(str, dec.get('reasons', []) or [])))}<br>"
            + (f"ADE {d['ade_m']:.2f} m, FDE {d['fde_m']:.2f} m<br>" if d else "")
            + f"<p>{esc(row['reasoning'])}</p>"
        )
        out.append(
            f"<div class='frame'><img alt='BEV frame {row['index']}' src='data:image/png;base64,{png}'>"
            f"<div class='txt'>{info}</div></div>"
        )
    out.append("</body></html>")
    path.write_text("\n".join(out), encoding="utf-8")
    return path
