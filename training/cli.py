"""``vla-edge-train`` / ``python -m training``: dataset, labels, training, distillation, export, evaluation.

Every subcommand has ``--help``. Training subcommands run as one process or under
``torchrun --nproc_per_node N -m training train ...`` (DDP, NCCL on GPU, gloo on CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from vla_edge.errors import VlaEdgeError

log = logging.getLogger("training")


def _cfg(args: argparse.Namespace) -> tuple[dict, dict]:
    from vla_edge.config import load_config

    return load_config(args.config), load_config("model")


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    """Scalar leaves of a nested dict as ``a.b`` keys (lists and long values left out)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)) and len(str(v)) <= 80:
            out[f"{prefix}{k}"] = v
    return out


def print_report(title: str, rows: dict[str, object], json_path: object) -> None:
    """A short key/value table and where the full JSON is (instead of hundreds of JSON lines)."""
    print(f"\n{title}")
    width = max((len(k) for k in rows), default=0)
    for k, v in rows.items():
        print(f"  {k:<{width}}  {f'{v:.4g}' if isinstance(v, float) else v}")
    print(f"  full results (JSON): {json_path}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default="train", help="train config name or YAML path (default: config/train.yaml)"
    )


# ---------------------------------------------------------------- dataset
def _dataset(args: argparse.Namespace) -> int:
    from training.dataset import build_dataset

    cfg, mcfg = _cfg(args)
    man = build_dataset(
        args.bags, args.out, cfg, mcfg, force=args.force, split_name=args.split_name, workers=args.workers
    )
    print_report("dataset", _flat(man["totals"]), f"{args.out}/manifest.json")
    return 0


def _label(args: argparse.Namespace) -> int:
    from training.labels import save_labels

    cfg, mcfg = _cfg(args)
    bev = tuple(cfg["labels"]["bev_size"])
    if args.teacher == "expert":
        from training.teachers.expert import expert_labels

        labels = expert_labels(args.dataset, args.split)
    elif args.teacher == "learned":
        if not args.checkpoint:
            raise VlaEdgeError(
                "--teacher learned needs --checkpoint (a trainer checkpoint, e.g. runs/teacher/best.pt)"
            )
        from training.teachers.learned import checkpoint_labels

        labels = checkpoint_labels(args.checkpoint, args.dataset, args.split, cfg, mcfg, args.name, args.cpu)
    else:
        from training.teachers.external import import_labels

        if not args.input:
            raise VlaEdgeError("--teacher external needs --input (JSON Lines or a vla_edge.labels/1 .npz)")
        labels, report = import_labels(
            args.input, args.dataset, args.name, float(cfg["dataset"]["label_match_tolerance"]), bev
        )
        print(json.dumps(report))
    path = save_labels(args.out, labels)
    print(f"wrote {len(labels)} '{labels.teacher}' labels to {path}")
    return 0


# ---------------------------------------------------------------- train / distill
def _train(args: argparse.Namespace, distill: bool = False) -> int:
    from training.runs import run_training
    from training.validate import validate_train

    cfg, mcfg = _cfg(args)
    validate_train(args, cfg, mcfg, distill)
    if args.batch_size:
        cfg["train"]["batch_size"] = args.batch_size
    summary = run_training(
        dataset=args.dataset,
        out_dir=args.out,
        preset=args.preset,
        cfg=cfg,
        model_cfg=mcfg,
        labels=args.labels,
        distill=distill,
        minutes=args.minutes,
        epochs=args.epochs,
        lr=args.lr,
        grad_accum=args.grad_accum,
        force_cpu=args.cpu,
        fresh=args.fresh,
        init_teacher=getattr(args, "init_teacher", None),
        anchors_path=args.anchors,
    )
    if summary is not None:
        keys = ("name", "preset", "steps", "planned_steps", "seconds", "device")
        rows = {k: summary[k] for k in keys if k in summary}
        rows.update(_flat({"best_val": summary.get("best_val") or {}}))
        print_report("training run", rows, f"{args.out}/summary.json")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from training.validate import validate_train

    validate_train(args, *_cfg(args), distill=True)
    if args.progressive:
        from training.progressive import run_progressive

        cfg, mcfg = _cfg(args)
        if not args.init_teacher:
            raise VlaEdgeError(
                "--progressive needs --init-teacher (checkpoint of the first stage, the teacher)"
            )
        out = run_progressive(
            args.dataset, args.out, args.init_teacher, cfg, mcfg, minutes=args.minutes, force_cpu=args.cpu
        )
        print(json.dumps(out, indent=1))
        return 0
    if not args.labels:
        raise VlaEdgeError("distill needs --labels (from `vla-edge-train label`), or --progressive")
    return _train(args, distill=True)


# ---------------------------------------------------------------- export / calib / evaluate
def _export(args: argparse.Namespace) -> int:
    from training.runs import export_checkpoint

    summary = export_checkpoint(args.checkpoint, args.out_dir, args.name, extra={"note": args.note or ""})
    print(json.dumps({k: summary[k] for k in ("onnx", "manifest", "bytes", "parity")}, indent=1))
    return 0


def _calib(args: argparse.Namespace) -> int:
    from training.calibration import export_calibration

    cfg, mcfg = _cfg(args)
    c = cfg["calibration"]
    s = export_calibration(
        args.dataset,
        args.out,
        args.frames or int(c["frames"]),
        args.split or str(c["split"]),
        int(c["seed"]),
        mcfg,
    )
    print(json.dumps({k: v for k, v in s.items() if k != "bags"}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_models

    cfg, mcfg = _cfg(args)
    models = {}
    for spec in args.model:
        name, _, ckpt = spec.partition("=")
        if not ckpt:
            raise VlaEdgeError(f"--model takes NAME=CHECKPOINT, got '{spec}'")
        models[name] = ckpt
    res = evaluate_models(
        args.dataset,
        models,
        cfg,
        mcfg,
        out_dir=args.out_dir,
        teacher=args.teacher,
        distilled=args.distilled,
        closed_loop=args.closed_loop,
        scenarios_seed=args.scenarios_seed,
        force_cpu=args.cpu,
        speedup=args.speedup,
    )
    print(res["table"])
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from pathlib import Path

    from training.pipeline import run_pipeline
    from training.validate import validate_pipeline

    cfg, mcfg = _cfg(args)
    validate_pipeline(args, cfg, mcfg)  # before any bag is generated
    res = run_pipeline(args, cfg, mcfg)
    if res.get("table"):
        print("\n" + str(res["table"]))
    rows: dict[str, object] = {"chosen student": res.get("chosen", "?"), "total_s": res.get("total_s", 0.0)}
    rows.update({f"stage {k} done at": v for k, v in (res.get("stages") or {}).items()})
    if res.get("export"):
        rows["exported"] = res["export"].get("onnx", "?")
    print_report("pipeline", rows, Path(args.workdir) / "pipeline_state.json")
    return 0


# ---------------------------------------------------------------- parser
def _train_args(p: argparse.ArgumentParser, distill: bool) -> None:
    _common(p)
    p.add_argument("--dataset", required=True, help="dataset directory (from `dataset`)")
    p.add_argument(
        "--out", required=True, help="run directory: checkpoints (last.pt, best.pt), tb/, summary.json"
    )
    p.add_argument("--preset", default="tiny", help="model preset of config/model.yaml (default: tiny)")
    p.add_argument(
        "--labels", help="teacher label file (.npz, vla_edge.labels/1)" + (" [required]" if distill else "")
    )
    p.add_argument(
        "--minutes", type=float, default=None, help="wall-clock budget (default: train.max_minutes)"
    )
    p.add_argument("--epochs", type=int, default=None, help="max epochs (default: train.epochs)")
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default: train.lr / teacher_lr)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="global batch (default: train.batch_size)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per rank per step (default: 1)")
    p.add_argument(
        "--anchors", help="anchors .npy [A,T,3] (default: <dataset>/anchors.npy, fitted if absent)"
    )
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    p.add_argument("--fresh", action="store_true", help="ignore an existing last.pt instead of resuming")
    p.add_argument(
        "--init-teacher",
        help="teacher checkpoint: with layer_reduction.enabled, initialise a shallow copy of it"
        + ("; with --progressive, the first stage" if distill else ""),
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``vla-edge-train`` argument parser."""
    ap = argparse.ArgumentParser(prog="vla-edge-train", description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "dataset", help="build cached dataset shards from rosbag2 bags", description=_dataset_doc()
    )
    _common(p)
    p.add_argument("bags", nargs="+", help="bag directories/files, or directories holding several bags")
    p.add_argument("--out", required=True, help="dataset directory (shards/ + manifest.json)")
    p.add_argument("--force", action="store_true", help="rebuild shards that are already cached")
    p.add_argument(
        "--split-name", help="put every bag in this split (e.g. test) instead of a train/val split"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: dataset.workers; 0 = all cores)"
    )
    p.set_defaults(func=_dataset)

    p = sub.add_parser("label", help="write teacher labels (vla_edge.labels/1) for a dataset")
    _common(p)
    p.add_argument("--dataset", required=True, help="dataset directory")
    p.add_argument(
        "--teacher",
        choices=("expert", "learned", "external"),
        required=True,
        help="expert: simulator's privileged expert; learned: a trained checkpoint; external: import",
    )
    p.add_argument("--checkpoint", help="trainer checkpoint for --teacher learned")
    p.add_argument("--input", help="JSON Lines / .npz for --teacher external")
    p.add_argument("--name", default="teacher", help="teacher name stored in the labels (default: teacher)")
    p.add_argument("--split", default="all", help="split to label: train, val, test or all (default: all)")
    p.add_argument("--out", required=True, help="output label file (.npz)")
    p.add_argument("--cpu", action="store_true", help="run a learned teacher on the CPU")
    p.set_defaults(func=_label)

    p = sub.add_parser("train", help="train a model on ground truth (optionally with teacher labels)")
    _train_args(p, distill=False)
    p.set_defaults(func=_train)

    p = sub.add_parser("distill", help="distil a student from teacher labels (or a progressive chain)")
    _train_args(p, distill=True)
    p.add_argument(
        "--progressive", action="store_true", help="run progressive.stages (teacher -> ... -> student)"
    )
    p.set_defaults(func=_distill)

    p = sub.add_parser("export", help="export a trained checkpoint to ONNX + manifest (weights: trained)")
    p.add_argument("--checkpoint", required=True, help="trainer checkpoint (best.pt)")
    p.add_argument(
        "--out-dir",
        default=None,
        help="output directory (default: export/ beside the checkpoint; never the shipped engines/: "
        "use `vla-edge-train promote`)",
    )
    p.add_argument("--name", default="student", help="file stem (default: student)")
    p.add_argument("--note", help="free text stored in the manifest's training info")
    p.set_defaults(func=_export)

    p = sub.add_parser("export-calib", help="export the INT8 calibration set (npz of model inputs)")
    _common(p)
    p.add_argument("--dataset", required=True, help="dataset directory")
    p.add_argument("--out", required=True, help="output .npz (a .json summary is written beside it)")
    p.add_argument("--frames", type=int, default=None, help="frames (default: calibration.frames, >= 500)")
    p.add_argument("--split", default=None, help="split (default: calibration.split)")
    p.set_defaults(func=_calib)

    p = sub.add_parser("evaluate", help="ADE/FDE + closed-loop score of models on held-out scenario bags")
    _common(p)
    p.add_argument(
        "--dataset", required=True, help="held-out dataset directory (built with --split-name test)"
    )
    p.add_argument("--model", action="append", default=[], help="NAME=CHECKPOINT (repeatable)")
    p.add_argument(
        "--teacher", default="teacher", help="model NAME that is the teacher (retention denominator)"
    )
    p.add_argument("--distilled", default="distilled", help="model NAME that is the distilled student")
    p.add_argument(
        "--closed-loop",
        type=int,
        default=None,
        help="closed-loop held-out scenarios per model (-1 skips; default: evaluate.closed_loop_scenarios)",
    )
    p.add_argument(
        "--scenarios-seed",
        type=int,
        default=None,
        help="seed of the held-out scenarios (default: sim.heldout_seed)",
    )
    p.add_argument(
        "--speedup",
        type=float,
        default=None,
        help="GPU teacher/student speedup to record (from docs/model.md)",
    )
    p.add_argument("--out-dir", default=None, help="results directory (default: evaluate.results_dir)")
    p.add_argument("--cpu", action="store_true", help="evaluate on the CPU")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "pipeline",
        help="the whole chain: sim bags -> dataset -> teacher -> labels -> students -> eval -> export",
    )
    _common(p)
    p.add_argument("--workdir", required=True, help="scratch directory (bags, datasets, runs)")
    p.add_argument("--train-scenarios", type=int, default=None, help="default: sim.train_scenarios")
    p.add_argument("--heldout-scenarios", type=int, default=None, help="default: sim.heldout_scenarios")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per scenario (default: sim.duration)"
    )
    p.add_argument("--teacher-minutes", type=float, default=3.0, help="teacher training budget (default: 3)")
    p.add_argument("--student-minutes", type=float, default=2.0, help="budget per student (default: 2)")
    p.add_argument("--teacher-preset", default="teacher", help="teacher preset (default: teacher)")
    p.add_argument("--student-preset", default="tiny", help="student preset (default: tiny)")
    p.add_argument(
        "--closed-loop", type=int, default=None, help="closed-loop scenarios per model (-1 = skip)"
    )
    p.add_argument(
        "--export-dir", default=None, help="where the chosen student is exported (default: no export)"
    )
    p.add_argument("--results-dir", default=None, help="results tables/JSON (default: <workdir>/results)")
    p.add_argument("--workers", type=int, default=0, help="processes for generation/dataset (0 = all cores)")
    p.add_argument("--cpu", action="store_true", help="force CPU")
    p.add_argument("--batch-size", type=int, default=None, help="override train.batch_size (students)")
    p.add_argument("--teacher-batch-size", type=int, default=None, help="global batch of the teacher run")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--speedup", type=float, default=None, help="GPU teacher/student speedup to record")
    p.set_defaults(func=_pipeline)

    from training.quantize import add_parser as register_quantize

    register_quantize(sub)

    from training.reexport import add_parser as register_reexport

    register_reexport(sub)

    from training.onpolicy.commands import register as register_onpolicy

    register_onpolicy(sub)
    # `vla-edge-train COMMAND --help` opens with a description line: the listing's help text
    # where the subcommand gave none.
    for action in sub._choices_actions:  # argparse keeps the help texts only here
        parser = sub.choices[action.dest]
        if not parser.description and action.help:
            parser.description = action.help[0].upper() + action.help[1:] + "."
    return ap


def _dataset_doc() -> str:
    return (
        "Rebuild frames from bags with the runtime's FrameAssembler, attach the ground-truth future from "
        "future odometry (T poses at dt, ego frame), drop bad segments (stationary, teleports, gaps, end of "
        "bag, stale inputs; counts reported), cache one shard per bag (npz) with a manifest, split by bag."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vla-edge-train`` and ``python -m training``."""
    from vla_edge.cli import run_parser

    return run_parser(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
