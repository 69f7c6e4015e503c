"""Check every ``vla-edge-train`` argument before any work starts.

A wrong preset name or a data set too small for the anchors used to surface after minutes
of bag generation (``--teacher-preset huge`` after 8.9 GB of bags; ``need at least k=20
trajectories for k-means`` after the dataset stage). Each ``validate_*`` collects every
problem and raises one :class:`ConfigError` that lists them, worded for the user.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from vla_edge.config import load_config, require
from vla_edge.errors import ConfigError


def _presets(model_cfg: dict[str, Any]) -> list[str]:
    return sorted(require(model_cfg, "presets", where="model.yaml"))


def _check_preset(problems: list[str], flag: str, name: str, model_cfg: dict[str, Any]) -> None:
    if name not in _presets(model_cfg):
        problems.append(
            f"{flag} {name!r} is not a preset of config/model.yaml; choose one of {_presets(model_cfg)}"
        )


def _check_number(
    problems: list[str], flag: str, value: float | None, low: float, high: float | None = None
) -> None:
    """``value`` (None = not given, fine) must be in ``[low, high]``."""
    if value is None:
        return
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        problems.append(f"{flag} must be {rng}, got {value}")


def _check_writable_dir(problems: list[str], flag: str, path: str | None) -> None:
    """``path`` exists as a writable directory or can be created (nearest existing parent writable)."""
    if not path:
        return
    p = Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        problems.append(f"{flag} {path} exists and is not a directory")
        return
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        problems.append(f"{flag} {path}: {probe} is not writable")


def _raise(command: str, problems: list[str]) -> None:
    if problems:
        lines = "\n  - ".join(problems)
        raise ConfigError(f"nothing was started ({command}); fix these first:\n  - {lines}")


def min_frames(model_cfg: dict[str, Any]) -> int:
    """Training frames the anchors need at least: one GT future per k-means anchor."""
    return int(require(model_cfg, "trajectory", "num_anchors", where="model.yaml"))


def expected_train_frames(
    cfg: dict[str, Any], model_cfg: dict[str, Any], scenarios: int, seconds: float
) -> int:
    """Rough count of train-split frames from ``scenarios`` bags of ``seconds`` each.

    Frames come at the simulator's ``time.frame_dt``; the last ``T*dt`` seconds of a bag have
    no full GT future; ``dataset.val_fraction`` of the bags go to validation.
    """
    frame_dt = float(require(load_config("sim"), "time", "frame_dt", where="sim.yaml"))
    traj = require(model_cfg, "trajectory", where="model.yaml")
    horizon = float(traj["num_poses"]) * float(traj["dt"])
    val = float(require(cfg, "dataset", "val_fraction", where="train.yaml"))
    train_bags = scenarios - max(1, round(val * scenarios)) if scenarios > 1 else scenarios
    return int(max(0, train_bags) * max(0.0, seconds - horizon) / frame_dt)


def validate_pipeline(args: argparse.Namespace, cfg: dict[str, Any], model_cfg: dict[str, Any]) -> None:
    """Every argument of ``vla-edge-train pipeline`` (raises before any bag is generated)."""
    problems: list[str] = []
    _check_preset(problems, "--teacher-preset", args.teacher_preset, model_cfg)
    _check_preset(problems, "--student-preset", args.student_preset, model_cfg)
    _check_number(problems, "--train-scenarios", args.train_scenarios, 1)
    _check_number(problems, "--heldout-scenarios", args.heldout_scenarios, 1)
    _check_number(problems, "--duration", args.duration, 1.0)
    _check_number(problems, "--teacher-minutes", args.teacher_minutes, 0.0)  # 0 = no budget
    _check_number(problems, "--student-minutes", args.student_minutes, 0.0)
    _check_number(problems, "--closed-loop", args.closed_loop, -1)
    _check_number(problems, "--workers", args.workers, 0)
    _check_number(problems, "--batch-size", args.batch_size, 1)
    _check_number(problems, "--teacher-batch-size", args.teacher_batch_size, 1)
    _check_number(problems, "--epochs", args.epochs, 1)
    _check_number(problems, "--speedup", args.speedup, 0.0)
    _check_writable_dir(problems, "--workdir", args.workdir)
    _check_writable_dir(problems, "--export-dir", args.export_dir)
    _check_writable_dir(problems, "--results-dir", args.results_dir)
    sc = require(cfg, "sim", where="train.yaml")
    n = args.train_scenarios or int(sc["train_scenarios"])
    secs = args.duration or float(sc["duration"])
    if n >= 1 and secs >= 1.0:
        have, need = expected_train_frames(cfg, model_cfg, n, secs), min_frames(model_cfg)
        if have < need:
            problems.append(
                f"{n} training scenarios of {secs:g} s give about {have} training frames, but the "
                f"{need} trajectory anchors (model.yaml trajectory.num_anchors) need at least {need}: "
                "raise --train-scenarios or --duration"
            )
    _raise("pipeline", problems)


def validate_train(
    args: argparse.Namespace, cfg: dict[str, Any], model_cfg: dict[str, Any], distill: bool
) -> None:
    """Every argument of ``vla-edge-train train`` / ``distill`` (raises before the model is built)."""
    problems: list[str] = []
    command = "distill" if distill else "train"
    if not getattr(args, "progressive", False):
        _check_preset(problems, "--preset", args.preset, model_cfg)
    if not (Path(args.dataset) / "manifest.json").is_file():
        problems.append(
            f"--dataset {args.dataset} has no manifest.json (build it with `vla-edge-train dataset`)"
        )
    if distill and not args.labels and not getattr(args, "progressive", False):
        problems.append("distill needs --labels (write them with `vla-edge-train label`), or --progressive")
    for flag, value in (
        ("--labels", args.labels),
        ("--anchors", args.anchors),
        ("--init-teacher", args.init_teacher),
    ):
        if value and not Path(value).is_file():
            problems.append(f"{flag} {value}: no such file")
    _check_number(problems, "--minutes", args.minutes, 0.0)  # 0 = no budget (train.max_minutes)
    _check_number(problems, "--epochs", args.epochs, 1)
    _check_number(problems, "--lr", args.lr, 1e-9, 1.0)
    _check_number(problems, "--batch-size", args.batch_size, 1)
    _check_number(problems, "--grad-accum", args.grad_accum, 1)
    _check_writable_dir(problems, "--out", args.out)
    _raise(command, problems)
