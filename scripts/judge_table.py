"""Side-by-side table of `vla-edge sim evaluate` results named ``<engine>_<seed>_<difficulty>.json``.

Prints a markdown table (one row per engine: each seed/difficulty cell is score / collision
scenarios / off-road scenarios / raw pass, then the pooled score and collisions) and writes
the same figures as JSON. Used by ``scripts/gpu_session.sh judge``.

    python scripts/judge_table.py DIR [--out judge.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vla_edge.sim.summary import summarize_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="folder of <engine>_<seed>_<difficulty>.json files")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    table: dict[str, dict[str, dict]] = {}
    for f in sorted(args.dir.glob("*_*_*.json")):
        engine, seed, diff = f.stem.rsplit("_", 2)
        try:
            table.setdefault(engine, {})[f"{seed}:{diff}"] = summarize_file(f)
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            print(f"skipping {f.name}: {exc}", file=sys.stderr)
    if not table:
        print(f"no results in {args.dir}", file=sys.stderr)
        return 1
    cells = sorted({c for rows in table.values() for c in rows})
    head = " | ".join(f"{c}: score / coll / off / raw" for c in cells)
    print(f"| engine | {head} | pooled score / coll |")
    print("|---|" + "---|" * (len(cells) + 1))
    for engine in sorted(table, key=lambda e: (e != "shipped", e)):
        rows, parts = table[engine], []
        for c in cells:
            s = rows.get(c)
            raw = "–" if s is None or s["raw_pass_fraction"] is None else f"{s['raw_pass_fraction']:.3f}"
            parts.append(
                "–" if s is None
                else f"{s['score']:.3f} / {s['collision_scenarios']} / {s['offroad_scenarios']} / {raw}"
            )  # fmt: skip
        n = sum(s["scenarios"] for s in rows.values())
        pooled = sum(s["score"] * s["scenarios"] for s in rows.values()) / n
        coll = sum(s["collision_scenarios"] for s in rows.values())
        table[engine]["pooled"] = {"score": pooled, "scenarios": n, "collision_scenarios": coll}
        print(f"| {engine} | " + " | ".join(parts) + f" | {pooled:.3f} / {coll} of {n} |")
    if args.out:
        args.out.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
