"""``vla-edge explain BAGS... --out DIR``: teacher explanations of logged drives."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
BAGS may be rosbag2 folders, folders of bags (a recorder output dir, its splits/ or
events/<id>/) or .mcap files. Writes DIR/explain.jsonl (or .parquet, needs pyarrow) with
one row per LiDAR frame, and DIR/summary.html with BEV plots of flagged frames.
Teachers: scene (planning stack, no model), learned (exported `teacher` preset),
module:Class, or an entry point of group vla_edge.teachers. See docs/recording.md.
"""


def register(subparsers: Any) -> None:
    """Add the ``explain`` subcommand."""
    p = subparsers.add_parser(
        "explain",
        help="explain logged drives with a teacher (rows per frame + HTML summary)",
        description="Rebuild frames from logged bags with the vehicle's code, run a teacher and "
        "write per-frame explanations aligned to LiDAR stamps.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bags", nargs="+", metavar="BAGS", help="rosbag2 folders, folders of bags, or .mcap files")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--teacher", default=None, help="scene | learned | module:Class | entry-point name "
                   "(default: teacher in config/explain.yaml)")  # fmt: skip
    p.add_argument(
        "--format", choices=("jsonl", "parquet"), default=None, help="row format (default: config)"
    )
    p.add_argument("--config", default="explain", help="explain config name or path (default: explain)")
    p.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                   help="read bag topic FROM as TO (topics.yaml name); repeatable")  # fmt: skip
    p.add_argument("--no-html", action="store_true", help="skip summary.html")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``vla-edge explain``."""
    from vla_edge.config import load_config
    from vla_edge.errors import ConfigError
    from vla_edge.explain.run import explain

    remap = {}
    for item in args.remap:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise ConfigError(f"--remap wants FROM:=TO, got {item!r}")
        remap[src] = dst

    res = explain(
        args.bags,
        args.out,
        load_config(args.config, kind="explain"),
        teacher=args.teacher,
        fmt=args.format,
        html=False if args.no_html else None,
        progress=not args.no_progress,
        remap=remap or None,
    )
    print(f"{res.rows} frames from {res.runs} run(s), {res.flagged} flagged -> {res.rows_path}")
    if res.html_path is not None:
        print(f"summary: {res.html_path}")
    return 0 if res.rows else 1
