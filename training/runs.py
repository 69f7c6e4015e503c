"""Glue for one training run and for exporting a trained checkpoint (used by the CLI and pipeline)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import distributed as dist_utils
from training.data import DatasetError, SplitData, load_split_arrays
from training.distill import LossWeights
from training.labels import load_labels
from training.trainer import RunSpec, load_checkpoint, train

log = logging.getLogger(__name__)


def fit_anchors(dataset_dir: str | Path, model_cfg: dict[str, Any], seed: int) -> np.ndarray:
    """k-means anchors over the GT futures of the train split (the model session's ``kmeans_anchors``)."""
    from training.model.anchors import kmeans_anchors

    gt = load_split_arrays(dataset_dir, "train").get("gt")
    if gt is None or len(gt) == 0:
        raise DatasetError(f"{dataset_dir}: no training frames to fit anchors on")
    k = int(model_cfg["trajectory"]["num_anchors"])
    if len(gt) < k:  # worded for the user instead of k-means' ValueError
        raise DatasetError(
            f"{dataset_dir}: the train split has {len(gt)} usable frames, but the {k} trajectory anchors "
            "(model.yaml trajectory.num_anchors) need at least one frame each: record more or longer bags "
            "(pipeline: --train-scenarios / --duration)"
        )
    rng = np.random.default_rng(seed)
    sample = gt[rng.permutation(len(gt))[:20000]]  # k-means cost grows with N x k
    return kmeans_anchors(sample, k, seed=seed)


def anchors_for(
    dataset_dir: str | Path, model_cfg: dict[str, Any], seed: int, path: str | None
) -> np.ndarray:
    """Anchors from ``path``, else ``<dataset>/anchors.npy``, fitted and saved there when absent."""
    p = Path(path) if path else Path(dataset_dir) / "anchors.npy"
    if p.exists():
        return np.load(p).astype(np.float32)
    if path:
        raise DatasetError(f"anchors file {p} not found")
    anchors = fit_anchors(dataset_dir, model_cfg, seed)
    np.save(p, anchors)
    log.info("fitted %d anchors on %s -> %s", len(anchors), dataset_dir, p)
    return anchors


def run_training(
    dataset: str | Path,
    out_dir: str | Path,
    preset: str,
    cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    labels: str | Path | None = None,
    distill: bool = False,
    minutes: float | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    grad_accum: int = 1,
    force_cpu: bool = False,
    fresh: bool = False,
    init_teacher: str | Path | None = None,
    anchors_path: str | None = None,
    info: dist_utils.DistInfo | None = None,
) -> dict[str, Any] | None:
    """Load data (+labels), pick the loss weights and train; returns the summary on rank 0.

    GT-only when ``distill`` is False (labels, if given, are then ignored by the loss).
    With ``layer_reduction.enabled`` and ``init_teacher``, the student is the shallow copy of
    the teacher's preset initialised from the kept teacher layers.
    """
    tc = cfg["train"]
    info = info or dist_utils.setup(force_cpu=force_cpu)
    dev = info.device if (info.device.type == "cuda" and tc["data_on_device"]) else None
    tol = float(cfg["dataset"]["label_match_tolerance"])
    lab = load_labels(labels) if (labels and distill) else None
    train_data = SplitData.load(dataset, "train", lab, tol, dev)
    val_data = SplitData.load(dataset, "val", None, tol, dev)
    if len(val_data) == 0:
        log.warning("dataset %s has no val split; validating on 10%% of train frames", dataset)
        val_data = train_data.subset(np.arange(0, len(train_data), 10))
    anchors = anchors_for(dataset, model_cfg, int(cfg["seed"]), anchors_path)
    weights = LossWeights.from_config(cfg["loss"])
    if not distill:
        weights = weights.gt_only()
    init_state = None
    mcfg = model_cfg
    lr_cfg = tc["teacher_lr"] if preset == "teacher" else tc["lr"]
    if cfg["layer_reduction"]["enabled"] and init_teacher:
        from training.layer_reduction import derive_preset, reduce_state
        from training.modelio import build

        ck = load_checkpoint(Path(init_teacher))
        keep = {str(k): list(v) for k, v in cfg["layer_reduction"]["keep"].items()}
        mcfg, preset = derive_preset(ck.get("model_cfg") or model_cfg, ck["preset"], keep)
        init_state, counts = reduce_state(ck["model"], build(preset, mcfg, anchors), keep)
        log.info("layer reduction: %s from %s, %s", preset, init_teacher, counts)
    spec = RunSpec(
        name=Path(out_dir).name,
        preset=preset,
        out_dir=Path(out_dir),
        weights=weights,
        lr=float(lr if lr is not None else lr_cfg),
        max_minutes=float(minutes if minutes is not None else tc["max_minutes"]),
        epochs=int(epochs if epochs is not None else tc["epochs"]),
        init_from=init_state,
        grad_accum=grad_accum,
        force_cpu=force_cpu,
        extra={
            "fresh": fresh,
            "info": {
                "preset": preset,
                "dataset": str(dataset),
                "labels": str(labels) if lab is not None else None,
                "loss": weights.__dict__,
                "train_frames": len(train_data),
                "val_frames": len(val_data),
            },
        },
    )
    summary = train(spec, train_data, val_data, anchors, cfg, mcfg, info)
    return summary if info.is_main else None


def export_checkpoint(
    checkpoint: str | Path, out_dir: str | Path | None, name: str = "student", extra: dict | None = None
) -> dict[str, Any]:
    """Export a trainer checkpoint through the model session's exporter with ``weights: trained``."""
    from training.export import default_export_dir, export
    from training.modelio import build
    from vla_edge.config import load_config

    ck = load_checkpoint(Path(checkpoint))
    model = build(ck["preset"], ck.get("model_cfg") or load_config("model"), np.asarray(ck["anchors"]))
    model.load_state_dict(ck["model"])
    info = dict(ck.get("training", {}))
    info.update(extra or {})
    info["checkpoint_step"] = int(ck.get("step", -1))
    return export(
        model.eval().to(torch.device("cpu")),
        out_dir or default_export_dir(checkpoint),
        name,
        weights="trained",
        training_info=info,
    )
