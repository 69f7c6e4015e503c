"""``vla-edge-train onpolicy`` (the DAgger loop) and ``vla-edge-train promote`` (guarded engine swap)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vla_edge.errors import ConfigError, VlaEdgeError

ONPOLICY_DOC = """Close the loop: roll out the current student in the simulator (the expert takes over near
failure), label every visited state with the privileged expert, aggregate and retrain; iteration 0
drives the expert with DART perturbations. Runs or resumes in WORKDIR (rerun the same command to
continue); prints a results table per iteration and exports the last student to WORKDIR/export,
never to engines/ (use `promote` for that)."""

PROMOTE_DOC = """Replace the shipped engine only by a better one: run the candidate and the current engine
closed loop (ONNX Runtime) on held-out scenario seeds, both as the raw student alone and in the stack
(student + arbiter + Frenet fallback, what the vehicle runs), and copy the candidate into engines/ only
when its mean score is higher in each (and, in the stack, it has no more collision scenarios), or with
--force. A student that is better alone can still lose in the stack, for example by driving slowly
where the arbiter lets it. The promotion record (every score, seeds, difficulty) is added to the
candidate's manifest."""


PROMOTE_PLANNERS = ("student", "stack")


def register(sub: Any) -> None:
    """Add ``onpolicy`` and ``promote`` to the ``vla-edge-train`` subparsers."""
    p = sub.add_parser(
        "onpolicy", help="DAgger: on-policy rollouts labelled by the expert, aggregated, retrained",
        description=ONPOLICY_DOC,
    )  # fmt: skip
    p.add_argument(
        "--config", default="train", help="train config name or YAML path (default: config/train.yaml)"
    )
    p.add_argument("--workdir", required=True, help="work directory (data, runs, results, export); resumable")
    p.add_argument("--preset", default="tiny", help="model preset of config/model.yaml (default: tiny)")
    p.add_argument(
        "--iterations", type=int, default=None, help="DAgger iterations (default: onpolicy.iterations)"
    )
    p.add_argument(
        "--scenarios", default=None,
        help="scenarios per iteration, comma-separated, last repeats (default: onpolicy.scenarios)",
    )  # fmt: skip
    p.add_argument("--minutes", default=None, help="training minutes per iteration, comma-separated")
    p.add_argument("--seconds", type=float, default=None, help="simulated seconds per scenario")
    p.add_argument("--eval-scenarios", type=int, default=None, help="held-out scenarios per iteration row")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (default: train.batch_size)")
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: onpolicy.workers; 0 = all cores)"
    )
    p.add_argument(
        "--families", default=None,
        help="training scenario families, comma-separated (default: onpolicy.families); e.g. "
        "'stop_line' or the default list plus stop_line for the camera comparison",
    )  # fmt: skip
    p.add_argument(
        "--train-seed", type=int, default=None,
        help="scenario seed base (default: onpolicy.train_seed); give each chained run a new one",
    )  # fmt: skip
    p.add_argument(
        "--hazard-oversample", type=int, default=None,
        help="extra copies of hard-braking expert frames per epoch (default: onpolicy.hazard.oversample)",
    )  # fmt: skip
    p.add_argument(
        "--speedup-oversample", type=int, default=None,
        help="extra copies of frames where the expert speeds up, per epoch (default: "
        "onpolicy.hazard.speedup_oversample; against the copycat student that holds its speed)",
    )  # fmt: skip
    p.add_argument(
        "--intensity-dropout", type=float, default=None,
        help="share of training samples whose LiDAR intensities are all 0 (default: "
        "onpolicy.intensity_dropout; against a student that leans on the simulator's intensities)",
    )  # fmt: skip
    p.add_argument(
        "--observable-labels", action="store_true", default=None,
        help="label with the expert cut to the student's view (objects inside the pillar range, no "
        "agent start times; onpolicy.observable_labels, vla_edge/sim/label_view.py)",
    )  # fmt: skip
    p.add_argument(
        "--counterfactual-share", type=float, default=None,
        help="fraction of stored frames that also get a parked object close ahead, labelled by the "
        "expert (default: onpolicy.counterfactual.share; vla_edge/sim/counterfactual.py)",
    )  # fmt: skip
    p.add_argument("--init", default=None, help="checkpoint to start from (e.g. a committed one)")
    p.add_argument(
        "--finetune-lr", type=float, default=None,
        help="peak learning rate of iterations that start from a checkpoint (default: "
        "onpolicy.finetune_lr; 0 = train.lr)",
    )  # fmt: skip
    p.add_argument("--no-export", action="store_true", help="do not export the final student")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    p.set_defaults(func=run_onpolicy)

    p = sub.add_parser(
        "promote",
        help="copy a candidate student into engines/ only if it scores higher",
        description=PROMOTE_DOC,
    )
    p.add_argument(
        "candidate", help="directory with the candidate's student.onnx/.json(/.ts), e.g. WORKDIR/export"
    )
    p.add_argument(
        "--engines", default=None, help="engines directory to promote into (default: the package's engines/)"
    )
    p.add_argument("--scenarios", type=int, default=30, help="held-out scenarios per engine (default: 30)")
    p.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[9700],
        help="held-out scenario seeds, --scenarios each, scores pooled (default: 9700; use seeds that "
        "no training run and no earlier promotion has seen)",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per scenario (default: 20)")
    p.add_argument("--difficulty", default="mixed", help="difficulty 0..1 or 'mixed' (default: mixed)")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument(
        "--planner",
        nargs="+",
        choices=PROMOTE_PLANNERS,
        default=list(PROMOTE_PLANNERS),
        help="closed loops the candidate must win (default: both: student alone and stack)",
    )
    p.add_argument("--force", action="store_true", help="promote even if the candidate does not score higher")
    p.set_defaults(func=run_promote)


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{what} takes comma-separated numbers, got {text!r}") from None
    if not vals or min(vals) < 0:
        raise ConfigError(f"--{what} needs one or more numbers >= 0, got {text!r}")
    return vals


def onpolicy_config(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train/model configs with the command-line overrides, validated before any work starts."""
    from training.model.config import resolve_preset
    from vla_edge.config import load_config

    cfg, mcfg = load_config(args.config), load_config("model")
    resolve_preset(mcfg, args.preset)  # unknown preset: ConfigError now, not after data collection
    oc = cfg["onpolicy"]
    if args.iterations is not None:
        oc["iterations"] = args.iterations
    for key, text in (("scenarios", args.scenarios), ("minutes", args.minutes)):
        vals = _floats(text, key)
        if vals is not None:
            oc[key] = [int(v) for v in vals] if key == "scenarios" else vals
    for key, val in (
        ("seconds", args.seconds),
        ("eval_scenarios", args.eval_scenarios),
        ("workers", args.workers),
        ("train_seed", getattr(args, "train_seed", None)),
    ):
        if val is not None:
            if key == "train_seed" and val < 0:
                raise ConfigError(f"--train-seed {val}: must be >= 0")
            oc[key] = val
    ft = getattr(args, "finetune_lr", None)
    if ft is not None:
        if ft < 0:
            raise ConfigError(f"--finetune-lr {ft}: must be >= 0 (0 = train.lr)")
        oc["finetune_lr"] = ft
    if getattr(args, "observable_labels", None):
        oc["observable_labels"] = True
    share = getattr(args, "counterfactual_share", None)
    if share is not None:
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"--counterfactual-share {share}: must be in [0, 1]")
        oc.setdefault("counterfactual", {})["share"] = share
    drop = getattr(args, "intensity_dropout", None)
    if drop is not None:
        if not 0.0 <= drop <= 1.0:
            raise ConfigError(f"--intensity-dropout {drop}: must be in [0, 1] (0 = off)")
        oc["intensity_dropout"] = drop
    for flag, key in (("hazard_oversample", "oversample"), ("speedup_oversample", "speedup_oversample")):
        extra = getattr(args, flag, None)
        if extra is not None:
            if extra < 0:
                raise ConfigError(f"--{flag.replace('_', '-')} {extra}: must be >= 0 (0 = off)")
            oc.setdefault("hazard", {})[key] = extra
    if args.batch_size is not None:
        cfg["train"]["batch_size"] = args.batch_size
    fams = getattr(args, "families", None)
    if fams is not None:
        from vla_edge.sim.scenarios import ALL_FAMILIES

        names = [f.strip() for f in str(fams).split(",") if f.strip()]
        bad = [f for f in names if f not in ALL_FAMILIES]
        if not names or bad:
            raise ConfigError(
                f"--families {fams!r}: unknown {bad or 'empty list'}; choose from {', '.join(ALL_FAMILIES)}"
            )
        oc["families"] = names
    if int(oc["iterations"]) < 1:
        raise ConfigError(f"onpolicy.iterations must be >= 1, got {oc['iterations']}")
    scen = oc["scenarios"] if isinstance(oc["scenarios"], list) else [oc["scenarios"]]
    if min(int(s) for s in scen) < 1 or float(oc["seconds"]) <= 0:
        raise ConfigError("onpolicy.scenarios must be >= 1 per iteration and onpolicy.seconds > 0")
    return cfg, mcfg


def run_onpolicy(args: argparse.Namespace) -> int:
    """Run or resume the loop; prints the per-iteration table and the results path."""
    from training.onpolicy.loop import OnPolicyLoop

    cfg, mcfg = onpolicy_config(args)
    loop = OnPolicyLoop(Path(args.workdir), cfg, mcfg, args.preset, force_cpu=args.cpu, init=args.init)
    res = loop.run(int(cfg["onpolicy"]["iterations"]), export=not args.no_export)
    print(loop.table())
    print(f"results: {Path(args.workdir) / 'results.json'}")
    if "export" in res:
        print(
            f"exported: {res['export']['onnx']} "
            f"(promote with: vla-edge-train promote {Path(args.workdir) / 'export'})"
        )
    return 0


def _eval_engine(job: tuple[str, str, list[Any], float]) -> tuple[list[Any], dict[str, int], dict[str, Any]]:
    """Closed loop of one engine as ``planner`` (student or stack) on some scenarios (worker process).

    The same worker as ``vla-edge sim evaluate --planner P --engine E --backend onnxruntime``, so a
    promotion figure is reproduced by that command; a camera engine gets its camera there too.
    """
    from vla_edge.cli.sim import evaluate_share

    planner, onnx, specs, seconds = job
    args = {"planner": planner, "engine": onnx, "backend": "onnxruntime", "config": None}
    return evaluate_share((args | {"seconds": seconds, "camera": False, "no_lidar": False}, specs))


def closed_loop_engines(
    engines: dict[str, str], planners: list[str], specs: list[Any], seconds: float, workers: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{engine: {planner: summary}}``: mean score, collision and off-road scenario counts, and the
    raw-pass fraction (student) or the student's share of frames (stack) of each ONNX engine."""
    import multiprocessing as mp
    import os

    from tqdm import tqdm

    from vla_edge.cli.sim import merge_raw
    from vla_edge.sim.harness import SuiteResult
    from vla_edge.sim.summary import summarize

    n = max(1, workers or (os.cpu_count() or 1))
    chunks = [specs[i::n] for i in range(n) if specs[i::n]]
    keys = [(name, kind) for name in engines for kind in planners]
    jobs = [(kind, engines[name], c, seconds) for name, kind in keys for c in chunks]
    with mp.get_context("spawn").Pool(min(n, len(jobs))) as pool:
        parts = list(tqdm(pool.imap(_eval_engine, jobs), total=len(jobs), desc="closed loop", unit="chunk"))
    out: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in engines}
    for i, (name, kind) in enumerate(keys):
        mine = parts[i * len(chunks) : (i + 1) * len(chunks)]
        choices: dict[str, int] = {}
        for _, c, _ in mine:
            for k, v in c.items():
                choices[k] = choices.get(k, 0) + v
        result = SuiteResult([s for p in mine for s in p[0]]).to_dict()
        result |= {"choices": choices} | merge_raw([p[2] for p in mine])
        row = summarize(result)
        frames = sum(choices.values())
        row["student_share"] = choices.get("student", 0) / frames if kind == "stack" and frames else None
        out[name][kind] = {k: v for k, v in row.items() if v is not None}
    return out


def promotion_verdict(res: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Why the candidate does not beat the current engine (empty: it does, or there is none).

    It must score higher in every planner run, and in the stack also have no more collision
    scenarios: the stack's score can hide a collision that the fallback did not prevent.
    """
    if "current" not in res:
        return []
    why = []
    for kind, cand in res["candidate"].items():
        cur = res["current"][kind]
        if not cand["score"] > cur["score"]:
            why.append(f"{kind}: score {cand['score']:.3f} does not beat {cur['score']:.3f}")
        if kind == "stack" and cand["collision_scenarios"] > cur["collision_scenarios"]:
            n, m = cand["collision_scenarios"], cur["collision_scenarios"]
            why.append(f"stack: {n} collision scenarios against {m}")
    return why


def run_promote(args: argparse.Namespace) -> int:
    """Evaluate candidate vs current engine; copy on improvement (or --force). Exit 1 when refused."""
    import shutil

    from vla_edge.backends.manifest import load_manifest
    from vla_edge.config import engines_dir, load_config
    from vla_edge.sim.scenarios import suite

    cand = Path(args.candidate)
    dest = Path(args.engines) if args.engines else engines_dir()
    onnx, man = cand / "student.onnx", cand / "student.json"
    if not onnx.is_file() or not man.is_file():
        raise VlaEdgeError(
            f"{cand}: no student.onnx + student.json; export one first (vla-edge-train onpolicy)"
        )
    load_manifest(man)  # tampered or incomplete manifest: refuse before any work
    seeds = list(args.seed)
    sim_cfg = load_config("sim")
    specs = [s for seed in seeds for s in suite(args.scenarios, seed, None, args.difficulty, sim_cfg)]
    engines = {"candidate": str(onnx)}
    current = dest / "student.onnx"
    if current.is_file():
        engines["current"] = str(current)
    planners = list(dict.fromkeys(args.planner))
    res = closed_loop_engines(engines, planners, specs, args.seconds, args.workers)
    for name, rows in res.items():
        for kind, r in rows.items():
            extra = (
                f"student share {r['student_share']:.3f}"
                if "student_share" in r
                else f"raw pass {r.get('raw_pass_fraction', float('nan')):.3f}"
            )
            print(
                f"{name:9s} {kind:7s} score {r['score']:.3f}  collisions {r['collision_scenarios']}/"
                f"{r['scenarios']}  off-road {r['offroad_scenarios']}  progress {r['ep']:.3f}  {extra}"
            )
    why = promotion_verdict(res)
    if why and not args.force:
        print(f"refused on seeds {seeds} ({len(specs)} scenarios): " + "; ".join(why) + "; --force overrides")
        return 1
    doc = json.loads(man.read_text())
    doc["promotion"] = {
        "heldout": {
            "seeds": seeds,
            "scenarios": len(specs),
            "seconds": args.seconds,
            "difficulty": args.difficulty,
        },
        "candidate": res["candidate"],
        "replaced": res.get("current"),
        "forced": bool(why),
    }
    man.write_text(json.dumps(doc, indent=1))
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("student.onnx", "student.json", "student.ts"):
        if (cand / f).is_file():
            shutil.copy2(cand / f, dest / f)
        elif f == "student.ts" and (dest / f).is_file():
            # The replaced engine's TorchScript would sit beside a manifest that names another
            # hash: the torch backends would refuse it. Leave none rather than a stale one.
            (dest / f).unlink()
            print(
                f"{cand} has no student.ts: removed the replaced engine's from {dest}; the torch "
                "backends need one: vla-edge-train export --checkpoint <run>/best.pt (docs/training.md)"
            )
    print(f"promoted {cand} -> {dest}")
    return 0
