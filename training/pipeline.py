"""The whole offline chain in one command (what produced the shipped ``engines/student.onnx``).

1. generate synthetic scenario bags with the simulator: a training set and a held-out set
   from disjoint seeds (``sim.train_seed`` / ``sim.heldout_seed``), in parallel processes;
2. build the datasets (train/val split by bag; held-out as split ``test``);
3. train the ``teacher`` preset on GT and, concurrently on the same GPU, the GT-only student;
4. label every frame with the teacher (and with the privileged expert);
5. distil the student from the teacher labels (same epochs and schedule as the GT-only one);
6. evaluate expert / teacher / GT-only student / distilled student (open + closed loop);
7. export the better student (the distilled one unless the GT-only one beats it) with
   ``weights: trained``, and the INT8 calibration set.

Every stage writes under ``--workdir``; a finished stage is skipped when re-run (resume).
Concurrent runs are subprocesses of ``python -m training train``, so each owns its GPU
memory and a crash of one does not take the others down.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vla_edge.errors import VlaEdgeError

log = logging.getLogger(__name__)


def _gen_one(job: tuple[str, int, float]) -> tuple[str, float]:
    from training.evaluate import SCENARIO_DIFFICULTY
    from vla_edge.sim.bag import write_scenario_bag

    path, seed, seconds = job
    t0 = time.monotonic()
    if not (Path(path) / "metadata.yaml").exists():
        write_scenario_bag(
            Path(path),
            seed=seed,
            seconds=seconds,
            overwrite=True,
            camera_mode="none",
            difficulty=SCENARIO_DIFFICULTY,
        )
    return path, time.monotonic() - t0


def generate_bags(out: Path, n: int, seed: int, seconds: float, workers: int) -> list[Path]:
    """``n`` scenario bags with seeds ``seed .. seed+n-1`` under ``out`` (cached)."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(out / f"scenario_{seed + i:05d}"), seed + i, seconds) for i in range(n)]
    w = max(1, min(workers or os.cpu_count() or 1, n))
    with ProcessPoolExecutor(w) as pool:
        for _ in tqdm(pool.map(_gen_one, jobs), total=n, desc=f"generate {out.name}", unit="bag"):
            pass
    return [Path(j[0]) for j in jobs]


def _train_cmd(
    args: argparse.Namespace, dataset: Path, out: Path, preset: str, minutes: float, labels: Path | None
) -> list[str]:
    cmd = [sys.executable, "-m", "training", "distill" if labels else "train", "--config", args.config]
    cmd += ["--dataset", str(dataset), "--out", str(out), "--preset", preset, "--minutes", str(minutes)]
    if labels:
        cmd += ["--labels", str(labels)]
    if args.cpu:
        cmd.append("--cpu")
    if preset == args.teacher_preset and args.teacher_batch_size:
        cmd += ["--batch-size", str(args.teacher_batch_size)]
    elif args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.epochs and preset != args.teacher_preset:
        cmd += ["--epochs", str(args.epochs)]
    return cmd


def last_progress_line(log_path: Path, tail_bytes: int = 4096) -> str:
    """The newest line of a run's log (tqdm rewrites its bar with ``\\r``), for the console."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(max(0, log_path.stat().st_size - tail_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    parts = [p.strip() for p in text.replace("\r", "\n").split("\n")]
    return next((p for p in reversed(parts) if p), "")


def _run_parallel(cmds: dict[str, list[str]], logdir: Path, poll_s: float = 1.0) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, cmd in cmds.items():
        fh = (logdir / f"{name}.log").open("w")
        procs[name] = (subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT), fh)
        log.info("started %s: %s (log %s)", name, " ".join(cmd), logdir / f"{name}.log")
    # The runs log to files (so parallel bars do not interleave); one console line per run
    # mirrors the newest line of its log, i.e. its training progress bar.
    bars = {
        name: tqdm(total=0, position=i, bar_format="{desc}", desc=f"{name}: starting", leave=True)
        for i, name in enumerate(procs)
    }
    while any(p.poll() is None for p, _ in procs.values()):
        for name, bar in bars.items():
            bar.set_description_str(f"{name}: {last_progress_line(logdir / f'{name}.log')}"[:200])
        time.sleep(poll_s)
    for name, bar in bars.items():
        bar.set_description_str(f"{name}: {last_progress_line(logdir / f'{name}.log')}"[:200])
        bar.close()
    failed = []
    for name, (p, fh) in procs.items():
        rc = p.wait()
        fh.close()
        if rc != 0:
            failed.append(f"{name} (exit {rc}, see {logdir / (name + '.log')})")
    if failed:
        raise VlaEdgeError(f"training run(s) failed: {', '.join(failed)}")


def _stage(state: dict[str, Any], name: str, path: Path) -> None:
    state.setdefault("stages", {})[name] = time.strftime("%H:%M:%S")
    path.write_text(json.dumps(state, indent=1, default=str))
    log.info("=== stage %s done", name)


def run_pipeline(args: argparse.Namespace, cfg: dict[str, Any], model_cfg: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) the chain; returns the state dict (paths, results, chosen export)."""
    from training.dataset import build_dataset
    from training.evaluate import evaluate_models
    from training.labels import save_labels
    from training.teachers.expert import expert_labels

    sc = cfg["sim"]
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    state_path = wd / "pipeline_state.json"
    state: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    n_train = args.train_scenarios or int(sc["train_scenarios"])
    n_held = args.heldout_scenarios or int(sc["heldout_scenarios"])
    secs = args.duration or float(sc["duration"])
    t0 = time.monotonic()
    train_bags = generate_bags(wd / "bags" / "train", n_train, int(sc["train_seed"]), secs, args.workers)
    held_bags = generate_bags(wd / "bags" / "heldout", n_held, int(sc["heldout_seed"]), secs, args.workers)
    state["generate_s"] = time.monotonic() - t0
    _stage(state, "generate", state_path)

    ds, ds_test = wd / "dataset", wd / "dataset_heldout"
    m1 = build_dataset([str(b) for b in train_bags], ds, cfg, model_cfg, workers=args.workers)
    m2 = build_dataset(
        [str(b) for b in held_bags], ds_test, cfg, model_cfg, split_name="test", workers=args.workers
    )
    state["dataset"] = {"train": m1["totals"], "heldout": m2["totals"]}
    from training.runs import anchors_for

    anchors_for(ds, model_cfg, int(cfg["seed"]), None)  # fit once, before parallel runs
    _stage(state, "dataset", state_path)

    runs = wd / "runs"
    teacher_dir, gt_dir, kd_dir = runs / "teacher", runs / "student_gt", runs / "student_distilled"
    if not (teacher_dir / "summary.json").exists() or not (gt_dir / "summary.json").exists():
        _run_parallel(
            {
                "teacher": _train_cmd(args, ds, teacher_dir, args.teacher_preset, args.teacher_minutes, None),
                "student_gt": _train_cmd(args, ds, gt_dir, args.student_preset, args.student_minutes, None),
            },
            wd / "logs",
        )
    _stage(state, "train_teacher_and_gt_student", state_path)

    labels_path = wd / "labels" / "teacher.npz"
    if not labels_path.exists():
        from training.teachers.learned import checkpoint_labels

        best = teacher_dir / "best.pt"
        teacher_labels = checkpoint_labels(best, ds, "all", cfg, model_cfg, "teacher", args.cpu)
        save_labels(labels_path, teacher_labels)
        del teacher_labels
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the distillation run is another process: give the memory back
        try:
            save_labels(wd / "labels" / "expert.npz", expert_labels(ds, "all"))
        except VlaEdgeError as exc:
            log.warning("no expert labels: %s", exc)
    _stage(state, "label", state_path)

    if not (kd_dir / "summary.json").exists():
        _run_parallel(
            {
                "student_distilled": _train_cmd(
                    args, ds, kd_dir, args.student_preset, args.student_minutes, labels_path
                )
            },
            wd / "logs",
        )
    _stage(state, "distill", state_path)

    models = {
        "teacher": str(teacher_dir / "best.pt"),
        "student_gt": str(gt_dir / "best.pt"),
        "distilled": str(kd_dir / "best.pt"),
    }
    res = evaluate_models(
        ds_test,
        models,
        cfg,
        model_cfg,
        out_dir=args.results_dir or (wd / "results"),
        teacher="teacher",
        distilled="distilled",
        closed_loop=args.closed_loop,
        force_cpu=args.cpu,
        speedup=args.speedup,
        workers=args.workers or (os.cpu_count() or 1),
    )
    state["results"] = {k: v for k, v in res.items() if k != "table"}
    state["table"] = res["table"]
    _stage(state, "evaluate", state_path)

    rows = res["models"]
    chosen = "distilled"
    kd_cl = (rows["distilled"].get("closed_loop") or {}).get("score")
    gt_cl = (rows["student_gt"].get("closed_loop") or {}).get("score")
    if kd_cl is not None and gt_cl is not None:
        if gt_cl > kd_cl:
            chosen = "student_gt"
    elif rows["student_gt"]["ade"] < rows["distilled"]["ade"]:
        chosen = "student_gt"
    state["chosen"] = chosen
    if args.export_dir:
        from training.runs import export_checkpoint

        summ = export_checkpoint(
            models[chosen],
            args.export_dir,
            "student",
            extra={"pipeline_choice": chosen, "results": res["table"]},
        )
        state["export"] = {k: summ[k] for k in ("onnx", "manifest", "bytes", "parity")}
    from training.calibration import export_calibration

    cc = cfg["calibration"]
    calib = export_calibration(
        ds, wd / "calib" / "calib.npz", int(cc["frames"]), str(cc["split"]), int(cc["seed"]), model_cfg
    )
    state["calibration"] = {k: v for k, v in calib.items() if k != "bags"}
    state["total_s"] = time.monotonic() - t0
    _stage(state, "export", state_path)
    return state
