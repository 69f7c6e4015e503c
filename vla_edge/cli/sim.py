"""``vla-edge sim``: the airside scenario simulator.

Subcommands:

* ``generate`` - seeded scenarios driven by the privileged expert, written as rosbag2
  MCAP bags with the vehicle's topics (LiDAR, camera, odometry, reference path) plus
  ground truth under ``/sim/...``; one bag directory per scenario in ``--out``.
* ``evaluate`` - closed-loop PDMS-style scores of a planner over a seeded suite: the
  privileged ``expert``, a ``straight`` baseline, the on-vehicle ``stack`` (student +
  arbiter, as ``vla-edge drive`` runs it) or its ``frenet`` fallback alone.

Examples::

    vla-edge sim generate --scenarios 5 --seconds 60 --seed 1 --out runs/sim
    vla-edge sim evaluate --planner stack --scenarios 10 --seconds 20 --out runs/eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``sim`` subcommand and its ``generate`` action."""
    p = subparsers.add_parser(
        "sim",
        help="airside scenario simulator (generate synthetic bags)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="sim_command", metavar="ACTION")
    g = sub.add_parser(
        "generate",
        help="generate scenario bags driven by the expert",
        description="Generate seeded scenarios (expert-driven) as rosbag2 MCAP bags, one directory each.",
    )
    g.add_argument("--scenarios", type=int, default=1, help="number of scenarios (default 1)")
    g.add_argument("--seconds", type=float, default=20.0, help="recorded seconds per scenario (default 20)")
    g.add_argument("--seed", type=int, default=0, help="base seed; scenario i uses seed*1000+i (default 0)")
    g.add_argument(
        "--out", type=Path, required=True, help="output directory (bags go to OUT/<scenario name>)"
    )
    g.add_argument(
        "--family",
        action="append",
        default=None,
        help="scenario family to use (repeatable; default: config scenario.families, cycled). One of "
        "scenarios.ALL_FAMILIES: the default five, the safety families and the camera family stop_line",
    )
    g.add_argument(
        "--difficulty",
        default=None,
        help="difficulty 0..1 or 'mixed' (uniform per scenario); default from config/sim.yaml",
    )
    g.add_argument("--lidar", default=None, help="LiDAR preset: 32x1024 (default) or 128x2048")
    g.add_argument(
        "--camera",
        default=None,
        choices=["raw", "jpeg", "none"],
        help="camera output: raw Image, jpeg CompressedImage, or none (default from config)",
    )
    g.add_argument("--overwrite", action="store_true", help="replace bags that already exist in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=run_generate)
    e = sub.add_parser(
        "evaluate",
        help="closed-loop PDMS-style scores of a planner",
        description="Run a planner closed loop over seeded scenarios and print per-scenario and mean scores "
        "(NC, DAC, EP, TTC, comfort, score = NC*DAC*(5 TTC + 5 EP + 2 C)/12).",
    )
    e.add_argument(
        "--planner",
        default="expert",
        choices=["expert", "expert_view", "straight", "student", "stack", "frenet"],
        help="expert (privileged), expert_view (the expert cut to the student's view: objects inside "
        "the pillar range, no agent start times; what observable labels can teach), straight "
        "(constant-speed baseline), student (the raw student's best "
        "mode drives, no arbiter), stack (student + arbiter), frenet (arbiter without the student); "
        "default expert",
    )
    e.add_argument(
        "--scenarios",
        type=int,
        default=None,
        help="number of scenarios (default 5; --suite: suite.scenarios)",
    )
    e.add_argument(
        "--seconds", type=float, default=None, help="seconds per scenario (default harness.seconds)"
    )
    e.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    e.add_argument(
        "--family", action="append", default=None, help="scenario family (repeatable; default all)"
    )
    e.add_argument("--difficulty", default=None, help="difficulty 0..1 or 'mixed' (default from config)")
    e.add_argument(
        "--config", default=None, help="drive params file for stack/frenet (default config/drive.yaml)"
    )
    e.add_argument(
        "--engine", default=None, help="student model for --planner student/stack (default from config)"
    )
    e.add_argument(
        "--backend", default=None, help="inference backend for --planner student/stack (default from config)"
    )
    e.add_argument("--camera", action="store_true", help="render the front camera into Frame.images")
    e.add_argument(
        "--no-lidar",
        action="store_true",
        help="leave Frame.points empty (fast; only for planners that do not use the LiDAR, e.g. expert)",
    )
    e.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    e.add_argument(
        "--suite",
        default=None,
        choices=["safety"],
        help="safety: the safety suite (all families, 'mixed' difficulty, --scenarios default "
        "suite.scenarios = 200, contacts judged at-fault or not, e-stop causes; see docs/safety.md)",
    )
    e.add_argument("--html", type=Path, default=None, help="--suite: write the HTML report (BEV plots) here")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.add_argument(
        "--workers", type=int, default=1,
        help="processes, each running a share of the scenarios (default 1; 0 = one per core); same scores",
    )  # fmt: skip
    e.set_defaults(func=run_evaluate)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run_generate(args: argparse.Namespace) -> int:
    """Generate the scenarios; prints one summary line per bag and writes OUT/index.json."""
    import shutil

    from tqdm import tqdm

    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.errors import BagError
    from vla_edge.sim.bag_writer import generate_scenario
    from vla_edge.sim.scenarios import suite

    cfg = load_config("sim")
    if args.lidar is not None and args.lidar not in cfg["lidar"]["presets"]:
        print(
            f"vla-edge sim generate: unknown --lidar '{args.lidar}'; choose one of "
            f"{', '.join(cfg['lidar']['presets'])}",
            file=sys.stderr,
        )
        return 2
    if args.seconds <= 0:
        print("vla-edge sim generate: --seconds must be > 0", file=sys.stderr)
        return 2
    specs = suite(args.scenarios, args.seed, args.family, args.difficulty, cfg)
    calib = Calibration.from_config(load_config("calibration"))
    topics = load_config("topics")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    frames_each = round(args.seconds / float(cfg["time"]["frame_dt"]))
    bar = tqdm(total=frames_each * len(specs), unit="frame", desc="sim generate", disable=args.no_progress)
    index = []
    try:
        for spec in specs:
            path = out / spec.name
            if path.exists():
                if not args.overwrite:
                    raise BagError(f"{path} exists; pass --overwrite or choose another --out")
                shutil.rmtree(path)
            bar.set_postfix_str(spec.name)
            res = generate_scenario(
                spec,
                path,
                cfg,
                calib,
                topics,
                args.seconds,
                lidar_preset=args.lidar,
                camera_mode=args.camera,
                on_frame=lambda: bar.update(1),
            )
            index.append(
                {
                    "bag": spec.name,
                    "family": spec.family,
                    "seed": spec.seed,
                    "difficulty": spec.difficulty,
                    "frames": res.frames,
                    "messages": res.messages,
                    "collisions": len(res.collisions),
                    "seconds_wall": round(res.timing["total"], 2),
                }
            )
            tqdm.write(
                f"{path}: {res.frames} frames, {res.messages} messages, "
                f"{len(res.collisions)} expert collisions, {res.timing['total']:.1f} s"
            )
    finally:
        bar.close()
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return 0


def _planner(args: argparse.Namespace, sim_cfg: dict[str, Any]) -> tuple[Any, dict[str, int]]:
    """The planner of ``--planner`` and its counter of arbiter choices (:func:`make_planner`)."""
    from vla_edge.sim.planners import make_planner

    return make_planner(args.planner, sim_cfg, args.config, args.engine, args.backend)


def evaluate_share(
    job: tuple[dict[str, Any], list[Any]],
) -> tuple[list[Any], dict[str, int], dict[str, Any]]:
    """Scores, arbiter choices and raw-plan stats of one worker's share of the scenarios."""
    from vla_edge.config import load_config
    from vla_edge.sim.harness import run_suite

    args_dict, specs = job
    args = argparse.Namespace(**args_dict)
    sim_cfg = load_config("sim")
    planner, choices = _planner(args, sim_cfg)
    res = run_suite(
        planner,
        specs,
        seconds=args.seconds,
        cfg=sim_cfg,
        render_camera=args.camera or bool(getattr(planner, "needs_camera", False)),
        render_lidar=False if args.no_lidar else None,
    )
    raw = planner.stats() if hasattr(planner, "stats") else {}
    return res.scenarios, choices, raw


def merge_raw(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Planner stats of several workers as one: raw-plan pass fraction weighted by plans, counters summed."""
    from collections import Counter

    parts = [p for p in parts if p]
    if not parts:
        return {}
    out: dict[str, Any] = {}
    if "raw_plans" in parts[0]:
        plans = sum(int(p["raw_plans"]) for p in parts)
        passed = sum(float(p["raw_pass_fraction"]) * int(p["raw_plans"]) for p in parts if p["raw_plans"])
        out |= {"raw_plans": plans, "raw_pass_fraction": passed / plans if plans else float("nan")}
    for key in ("raw_failed_checks", "student_refusals", "camera_fallbacks"):
        if key in parts[0]:
            total: Counter[str] = Counter()
            for p in parts:
                total.update(p[key])
            out[key] = dict(total.most_common())
    return out


def _evaluate(
    args: argparse.Namespace, sim_cfg: dict[str, Any]
) -> tuple[Any, dict[str, int], dict[str, Any]]:
    """Run the suite in this process or split over ``--workers`` processes (scenario order kept)."""
    import multiprocessing as mp
    import os

    from tqdm import tqdm

    from vla_edge.sim.harness import SuiteResult
    from vla_edge.sim.scenarios import suite

    specs = suite(args.scenarios, args.seed, args.family, args.difficulty, sim_cfg)
    workers = min(len(specs), args.workers if args.workers > 0 else os.cpu_count() or 1)
    if workers <= 1:
        scen, choices, raw = evaluate_share((vars(args) | {"no_progress": True}, specs))
        return SuiteResult(scen), choices, raw
    args_dict = {k: v for k, v in vars(args).items() if k != "func"}
    jobs = [(args_dict, specs[i::workers]) for i in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = list(
            tqdm(pool.imap(evaluate_share, jobs), total=len(jobs), desc="workers", disable=args.no_progress)
        )
    order = {s.name: i for i, s in enumerate(specs)}
    scenarios = sorted((s for p in parts for s in p[0]), key=lambda s: order.get(s.name, 0))
    choices: dict[str, int] = {}
    for _, c, _ in parts:
        for k, v in c.items():
            choices[k] = choices.get(k, 0) + v
    return SuiteResult(scenarios), choices, merge_raw([p[2] for p in parts])


def run_evaluate(args: argparse.Namespace) -> int:
    """Score the planner; prints the table (and arbiter choices) and optionally writes JSON."""
    from vla_edge.config import load_config

    sim_cfg = load_config("sim")
    if args.suite == "safety":
        from vla_edge.sim.suite import run_safety_suite, table, write_report

        res = run_safety_suite(
            args.planner,
            int(args.scenarios or sim_cfg["suite"]["scenarios"]),
            args.seed,
            difficulty=args.difficulty or "mixed",
            seconds=args.seconds,
            workers=args.workers,
            families=args.family,
            config=args.config,
            engine=args.engine,
            backend=args.backend,
            progress=not args.no_progress,
        )
        print(table(res))
        write_report(res, args.out, args.html)
        return 0
    if args.scenarios is None:
        args.scenarios = 5
    if args.workers == 1:
        from vla_edge.sim.harness import run_suite

        planner, choices = _planner(args, sim_cfg)
        res = run_suite(
            planner,
            args.scenarios,
            seconds=args.seconds,
            seed=args.seed,
            families=args.family,
            difficulty=args.difficulty,
            cfg=sim_cfg,
            render_camera=args.camera or bool(getattr(planner, "needs_camera", False)),
            render_lidar=False if args.no_lidar else None,
            progress=not args.no_progress,
        )
        raw = planner.stats() if hasattr(planner, "stats") else {}
    else:
        res, choices, raw = _evaluate(args, sim_cfg)
    print(res.table())
    agg = res.aggregate
    print(
        f"scenarios {int(agg['scenarios'])}, collision rate {agg['collision_rate']:.3f}, "
        f"off-road scenarios {sum(1 for s in res.scenarios if s.dac < 1.0)}, "
        f"planner failures {sum(s.planner_failures for s in res.scenarios)}, "
        f"stop-line violations {int(agg['stop_line_violations'])}"
    )
    if choices:
        print("arbiter choices:", ", ".join(f"{k} {v}" for k, v in sorted(choices.items())))
    if raw.get("student_refusals") is not None:
        top = ", ".join(f"{k} {v}" for k, v in list(raw["student_refusals"].items())[:6]) or "none"
        print(f"student refused (frames where it did not drive, by failed check): {top}")
    if "raw_plans" in raw:
        worst = ", ".join(f"{k} {v}" for k, v in list(raw["raw_failed_checks"].items())[:4]) or "none"
        print(
            f"raw student plans passing the arbiter's kinematic/comfort checks unsmoothed: "
            f"{raw['raw_pass_fraction']:.3f} of {raw['raw_plans']} (most failed: {worst})"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        d = res.to_dict()
        d["planner"] = args.planner
        d["choices"] = choices
        d.update(raw)
        args.out.write_text(json.dumps(d, indent=1))
    return 0
