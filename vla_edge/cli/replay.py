"""``vla-edge replay``: replay bags through the stack, score it, gate regressions.

Replay (writes DIR/metrics.json, records.jsonl, timing.json, report.html + PNGs)::

    vla-edge replay BAGS... --mode lockstep|realtime --out DIR [--config drive.yaml]
        [--engine student.onnx] [--backend onnxruntime] [--remap FROM:=TO ...]

* ``lockstep``: frames rebuilt in stamp order, DrivePipeline per frame, fixed noise seed,
  simulated clock: no DDS, no drops, the same inputs give the same metrics.json.
* ``realtime``: the bag is played over DDS at the recorded rate with /clock into the live
  graph (use_sim_time; --graph inprocess | subprocess | external) and its outputs are
  recorded; adds latency p50/p99 and deadline misses.

Compare two runs and gate (exit 1 when B regresses beyond config/replay.yaml ``gate``)::

    vla-edge replay compare A B --out DIR [--gate config/replay.yaml]

A and B are metrics.json files or replay output folders. With ``--bags BAGS...``, A and B
are instead engines (``.onnx``) or drive params files (``.yaml``), each replayed (``--mode``)
into DIR/a and DIR/b first.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``replay`` subcommand (``replay compare`` is its first positional)."""
    p = subparsers.add_parser(
        "replay",
        help="replay bags (lockstep | realtime), metrics, report; 'replay compare A B' gates regressions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bags", nargs="+", metavar="BAGS", help="rosbag2 folders / .mcap / .db3 (or: compare A B)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument(
        "--mode", choices=["lockstep", "realtime"], default="lockstep", help="replay mode (default lockstep)"
    )
    p.add_argument(
        "--config", default=None, help="drive params file (default: the shipped config/drive.yaml)"
    )
    p.add_argument("--engine", default=None, help="student ONNX (overrides engine_path)")
    p.add_argument("--backend", default=None, help="onnxruntime | tensorrt | torch_cuda (overrides backend)")
    p.add_argument(
        "--remap", action="append", default=[], metavar="FROM:=TO", help="topic remap (repeatable)"
    )
    p.add_argument("--replay-config", default=None, help="replay settings (default: config/replay.yaml)")
    p.add_argument(
        "--noise-seed", type=int, default=None, help="lockstep noise seed (default lockstep.noise_seed)"
    )
    p.add_argument(
        "--graph",
        choices=["inprocess", "subprocess", "external"],
        default=None,
        help="realtime: where the graph runs (default realtime.graph)",
    )
    p.add_argument(
        "--rate", type=float, default=None, help="realtime: playback speed (default realtime.rate)"
    )
    p.add_argument("--no-report", action="store_true", help="skip report.html and the PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    c = p.add_argument_group("compare (vla-edge replay compare A B ...)")
    c.add_argument("--gate", default=None, help="YAML with a 'gate' section (default: config/replay.yaml)")
    c.add_argument(
        "--bags",
        dest="compare_bags",
        nargs="+",
        default=None,
        metavar="BAG",
        help="replay these bags with A and B (engines .onnx or drive params .yaml) first",
    )
    c.add_argument(
        "--labels", nargs=2, default=None, metavar=("LA", "LB"), help="column labels (default A B)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch ``replay`` / ``replay compare``."""
    if args.bags and args.bags[0] == "compare":
        return run_compare(args)
    if args.gate or args.compare_bags or args.labels:
        print(
            "vla-edge replay: --gate/--bags/--labels belong to 'vla-edge replay compare A B'", file=sys.stderr
        )
        return 2
    metrics = replay_to_dir(args, args.bags, args.out, engine=args.engine, config=args.config)
    _print_summary(metrics)
    return _exit_code(metrics)


def _exit_code(metrics: dict[str, Any]) -> int:
    """1 when no sweep of the bags became a decided frame (empty or all-rejected bag)."""
    runs = metrics.get("bags") or []
    decided = sum(int(r.get("decided", r.get("frames", 0)) or 0) for r in runs)
    if decided == 0:
        sweeps = sum(int(r.get("sweeps", 0) or 0) for r in runs)
        skipped = sum(int(r.get("skipped", 0) or 0) for r in runs)
        print(
            f"vla-edge replay: no frame was decided ({sweeps} LiDAR sweeps, {skipped} skipped); "
            "the bag is empty, has no LiDAR topic or every sweep was rejected",
            file=sys.stderr,
        )
        return 1
    return 0


def replay_to_dir(
    args: argparse.Namespace, bags: list[str], out: Path, *, engine: str | None, config: str | None
) -> dict[str, Any]:
    """Run one replay into ``out`` (metrics.json, records.jsonl, timing.json, report)."""
    from tqdm import tqdm

    from vla_edge.config import load_config
    from vla_edge.params import unflatten
    from vla_edge.replay.lockstep import (
        drive_values,
        load_replay_config,
        parse_remaps,
        run_lockstep,
        total_sweeps,
        write_records,
    )
    from vla_edge.replay.metrics import MetricSettings, compute_metrics, latency_summary

    rcfg = load_replay_config(args.replay_config)
    if args.noise_seed is not None:
        rcfg["lockstep"]["noise_seed"] = int(args.noise_seed)
    remap = parse_remaps(args.remap, rcfg["remap"])
    values = drive_values(config, engine, args.backend)
    settings = MetricSettings.from_config(rcfg)
    out.mkdir(parents=True, exist_ok=True)
    topics = load_config(str(unflatten(dict(values))["topics_config"]), kind="topics")
    bar = tqdm(
        total=total_sweeps(bags, topics, remap), unit="sweep", disable=args.no_progress, desc=args.mode
    )
    try:
        if args.mode == "lockstep":
            res = run_lockstep(bags, values, rcfg, remap, progress=bar.update)
        else:
            from vla_edge.nodes.realtime_replay import run_realtime

            res = run_realtime(
                bags, values, rcfg, remap, out, graph=args.graph, rate=args.rate, progress=bar.update
            )
    finally:
        bar.close()
    realtime = None
    if res.realtime is not None:
        realtime = {k: v for k, v in res.realtime.items() if k != "latency_ms"}
        realtime["latency"] = latency_summary(
            res.realtime["latency_ms"], float(rcfg["realtime"]["deadline_ms"])
        )
    runs = [
        {"run": st.name, "sweeps": st.lidar_count, "frames": st.frames, "skipped": st.skipped}
        for st in res.runs
    ]
    if res.realtime is not None:  # realtime: frames = sweeps the graph decided
        for r in runs:
            r["decided"] = sum(1 for x in res.records if x["run"] == r["run"] and x["choice"] is not None)
    meta = _meta(values, rcfg, args.mode, config, remap)
    tracks = {st.name: st.tracks for st in res.runs}
    metrics = compute_metrics(
        res.records, tracks, settings, mode=args.mode, runs=runs, meta=meta, realtime=realtime
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    write_records(out, res.records)
    (out / "timing.json").write_text(
        json.dumps(res.timing, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    if not args.no_report:
        from vla_edge.replay.report import write_report

        write_report(
            out,
            metrics,
            res.records,
            res.snapshots,
            tracks,
            settings,
            rcfg["report"],
            title=f"vla_edge replay ({args.mode})",
        )
    return metrics


def _meta(
    values: dict[str, Any], rcfg: dict[str, Any], mode: str, config: str | None, remap: dict[str, str]
) -> dict[str, Any]:
    """Engine identity and replay settings recorded with the metrics."""
    from vla_edge.config import load_config, resolve_path
    from vla_edge.params import unflatten
    from vla_edge.pipeline import engine_path

    cfg = unflatten(dict(values))
    eng = engine_path(cfg)
    if eng is None:
        eng = resolve_path(str(load_config(str(cfg["inference_config"]), kind="inference")["engine"]))
    manifest = Path(eng).with_suffix(".json")
    info: dict[str, Any] = {}
    if manifest.is_file():
        try:
            man = json.loads(manifest.read_text(encoding="utf-8"))
            info = {"weights": man.get("weights"), "sha256": man.get("sha256"), "preset": man.get("preset")}
        except (OSError, json.JSONDecodeError):
            info = {}
    return {
        "engine": str(eng),
        **info,
        "backend": values.get("backend") or "(inference.yaml)",
        "drive_config": config or "(shipped drive.yaml)",
        "noise_seed": rcfg["lockstep"]["noise_seed"] if mode == "lockstep" else "(inference.yaml)",
        "plan_delay_ms": rcfg["lockstep"]["plan_delay_ms"] if mode == "lockstep" else None,
        "remap": dict(sorted(remap.items())),
    }


def _print_summary(m: dict[str, Any]) -> None:
    ol, dec = m["open_loop"], m["decisions"]
    print(
        f"{m['mode']}: {m['frames']} frames, decisions {dec['counts']}, "
        f"fallback rate {dec['fallback_rate']}, "
        f"student ADE {ol['student']['ade_m']['mean']} m, final ADE {ol['final']['ade_m']['mean']} m, "
        f"GT collisions {m['ground_truth'].get('collisions', 'n/a')}"
    )
    if m.get("realtime"):
        lat = m["realtime"]["latency"]
        print(
            f"latency p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, "
            f"deadline misses {lat['deadline_misses']}/{lat['sweeps']}"
        )


def run_compare(args: argparse.Namespace) -> int:
    """``vla-edge replay compare A B``: table, compare.json/html, exit 1 on regression."""
    from vla_edge.config import load_config
    from vla_edge.replay import ReplayError
    from vla_edge.replay.gate import compare, format_table, load_metrics
    from vla_edge.replay.report import write_compare_report

    rest = args.bags[1:]
    if len(rest) != 2:
        raise ReplayError(
            "usage: vla-edge replay compare A B --out DIR (A, B: metrics.json or replay folders)"
        )
    a_arg, b_arg = rest
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.compare_bags:
        sides = []
        for arg, sub in ((a_arg, "a"), (b_arg, "b")):
            engine = arg if arg.endswith(".onnx") else None
            config = arg if arg.endswith((".yaml", ".yml")) else None
            if engine is None and config is None:
                raise ReplayError(
                    f"with --bags, A and B are engines (.onnx) or drive params files (.yaml); got {arg!r}"
                )
            sides.append(replay_to_dir(args, args.compare_bags, out / sub, engine=engine, config=config))
        a, b = sides
    else:
        a, b = load_metrics(a_arg), load_metrics(b_arg)
    gate_cfg = load_config(args.gate or "replay", kind="replay")  # a gate-only file merges over replay.yaml
    if "gate" not in gate_cfg:
        raise ReplayError(f"{args.gate or 'config/replay.yaml'} has no 'gate' section")
    cmp = compare(a, b, gate_cfg["gate"])
    labels = tuple(args.labels) if args.labels else ("A", "B")
    print(format_table(cmp, *labels))
    (out / "compare.json").write_text(
        json.dumps({**cmp.to_dict(), "a": a_arg, "b": b_arg}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    dpi = int(load_config(args.replay_config or "replay", kind="replay")["report"]["dpi"])
    write_compare_report(out, cmp, labels, dpi)  # type: ignore[arg-type]
    return 0 if cmp.passed else 1
