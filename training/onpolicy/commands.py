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
closed loop (raw student alone, ONNX Runtime) on held-out scenario seeds, and copy the candidate into
engines/ only when its mean score is higher (or --force). The promotion record (both scores, seeds,
difficulty) is added to the candidate's manifest."""


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
    if getattr(args, "observable_labels", None):
        oc["observable_labels"] = True
    share = getattr(args, "counterfactual_share", None)
    if share is not None:
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"--counterfactual-share {share}: must be in [0, 1]")
        oc.setdefault("counterfactual", {})["share"] = share
    extra = getattr(args, "hazard_oversample", None)
    if extra is not None:
        if extra < 0:
            raise ConfigError(f"--hazard-oversample {extra}: must be >= 0 (0 = off)")
        oc.setdefault("hazard", {})["oversample"] = extra
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


def _eval_engine(job: tuple[str, list[Any], float]) -> list[dict[str, Any]]:
    """Closed-loop rows of one engine on some scenarios (worker process; ONNX Runtime, 1 thread)."""
    from dataclasses import asdict

    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.inference import StudentRunner, engine_declares_camera
    from vla_edge.planning.arbiter import ArbiterParams
    from vla_edge.planning.cycle import load_planning_config
    from vla_edge.sim.harness import run_suite
    from vla_edge.sim.student_planner import StudentPlanner

    onnx, specs, seconds = job
    inf = load_config("inference")
    inf.setdefault("onnxruntime", {})["intra_op_threads"] = 1
    # A camera engine (tiny_cam) drives with the rendered camera (decoded RGB: camera "raw").
    camera = engine_declares_camera(onnx)
    calib = Calibration.from_config(load_config("calibration")) if camera else None
    runner = StudentRunner.from_config(
        load_config("model"), "onnxruntime", onnx, inf, camera="raw" if camera else "none", calibration=calib
    )
    planner = StudentPlanner(runner, ArbiterParams.from_config(load_planning_config(None)))
    res = run_suite(planner, specs, seconds=seconds, render_camera=camera or None)
    rows = [asdict(s) for s in res.scenarios]
    for r in rows:
        r["min_ttc"] = None
    rows[0]["raw"] = planner.stats()
    return rows


def closed_loop_engines(
    engines: dict[str, str], specs: list[Any], seconds: float, workers: int
) -> dict[str, dict[str, Any]]:
    """Mean score, collision and off-road scenario counts of each ONNX engine (raw student drives)."""
    import multiprocessing as mp
    import os

    import numpy as np
    from tqdm import tqdm

    n = max(1, workers or (os.cpu_count() or 1))
    chunks = [specs[i::n] for i in range(n) if specs[i::n]]
    jobs = [(path, c, seconds) for path in engines.values() for c in chunks]
    with mp.get_context("spawn").Pool(min(n, len(jobs))) as pool:
        parts = list(tqdm(pool.imap(_eval_engine, jobs), total=len(jobs), desc="closed loop", unit="chunk"))
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(engines):
        rows = [r for p in parts[i * len(chunks) : (i + 1) * len(chunks)] for r in p]
        raws = [r["raw"] for r in rows if "raw" in r]
        plans = sum(x["raw_plans"] for x in raws)
        out[name] = {
            "score": float(np.mean([r["score"] for r in rows])),
            "collision_scenarios": sum(1 for r in rows if r["collisions"]),
            "offroad_scenarios": sum(1 for r in rows if r["dac"] < 1.0),
            "raw_pass_fraction": (
                sum(x["raw_pass_fraction"] * x["raw_plans"] for x in raws) / plans if plans else None
            ),
            "scenarios": len(rows),
        }
    return out


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
    res = closed_loop_engines(engines, specs, args.seconds, args.workers)
    for name, r in res.items():
        print(
            f"{name:9s} score {r['score']:.3f}  collisions {r['collision_scenarios']}/{r['scenarios']}  "
            f"off-road {r['offroad_scenarios']}  raw pass {r['raw_pass_fraction']:.3f}"
        )
    better = "current" not in res or res["candidate"]["score"] > res["current"]["score"]
    if not better and not args.force:
        print(
            f"refused: candidate {res['candidate']['score']:.3f} does not beat the current engine "
            f"{res['current']['score']:.3f} on seeds {seeds} ({len(specs)} scenarios); "
            "--force overrides"
        )
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
        "forced": bool(args.force and not better),
    }
    man.write_text(json.dumps(doc, indent=1))
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("student.onnx", "student.json", "student.ts"):
        if (cand / f).is_file():
            shutil.copy2(cand / f, dest / f)
    print(f"promoted {cand} -> {dest}")
    return 0
