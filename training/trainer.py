"""Trainer: AdamW + warm-up/cosine, AMP on GPU, checkpoints with resume, TensorBoard, DDP.

The same :func:`train` runs as one CPU process or under ``torchrun`` on N GPUs/nodes:

* the GLOBAL batch (``train.batch_size``) is cut into ``world × grad_accum`` equal micro-batches;
  rank ``r`` takes micro-batches ``r·k .. r·k + k-1`` of every step. A single process with
  ``grad_accum = k·W`` therefore takes exactly the steps of a W-rank run with ``grad_accum = k``
  (the BatchNorm statistics are per micro-batch in both cases), which is what the DDP test checks;
* shuffling and the diffusion noise/timesteps of a step are drawn from generators seeded by
  ``(seed, epoch)`` and ``(seed, step)`` for the whole global batch, so they never depend on the
  number of processes;
* a wall-clock budget (``max_minutes``) shortens the cosine schedule to the steps that fit; all
  ranks agree on it (minimum over ranks).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training import distributed as dist_utils
from training import modelio
from training.data import SplitData
from training.distill import FeatureProjector, LossWeights, distillation_loss, nearest_anchor
from vla_edge.config import load_config, require
from vla_edge.errors import VlaEdgeError

log = logging.getLogger(__name__)


class TrainingError(VlaEdgeError):
    """A training run cannot start or continue (bad batch split, corrupt checkpoint, ...)."""


@dataclass
class RunSpec:
    """One training run (one model).

    Attributes:
        name: Run name (directory under the work dir, TensorBoard tag).
        preset: Model preset (``tiny``, ``base``, ``teacher``...).
        out_dir: Directory for checkpoints, logs and metrics.
        weights: Loss weights (GT-only runs switch the teacher terms off).
        lr: Peak learning rate.
        max_minutes: Wall-clock budget (0 = none).
        epochs: Upper bound on epochs.
        init_from: Optional state dict to start from (layer reduction, progressive stages).
        grad_accum: Micro-batches per rank per step.
        force_cpu: Train on the CPU even when CUDA exists.
    """

    name: str
    preset: str
    out_dir: Path
    weights: LossWeights
    lr: float
    max_minutes: float
    epochs: int
    init_from: dict[str, torch.Tensor] | None = None
    grad_accum: int = 1
    force_cpu: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _Student(nn.Module):
    """Model + optional feature projector, so DDP syncs both through one forward."""

    def __init__(self, model: nn.Module, projector: nn.Module | None) -> None:
        super().__init__()
        self.model = model
        self.projector = projector

    def forward(self, batch: dict[str, torch.Tensor], t: torch.Tensor, noise: torch.Tensor) -> dict[str, Any]:
        out = modelio.train_forward(self.model, batch, t, noise)
        if self.projector is not None:
            out["bev_projected"] = self.projector(out["bev_features"].float())
        return out


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def cosine_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine down to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _tensorboard(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # noqa: BLE001 - tensorboard is optional
        log.warning("TensorBoard unavailable (%s); install `tensorboard` for logs. Continuing without.", exc)
        return None
    return SummaryWriter(log_dir=str(path))


def _autocast(device: torch.device, amp: str) -> Any:
    if device.type != "cuda" or amp == "off":
        return torch.autocast(device_type="cpu", enabled=False)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is None:
        raise TrainingError(f"train.amp must be bf16, fp16 or off, got '{amp}'")
    return torch.autocast(device_type="cuda", dtype=dtype)


def step_noise(
    seed: int, step: int, global_batch: int, num_anchors: int, horizon: int, t_max: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diffusion noise ``[B, A, T, 3]`` and timesteps ``[B]`` of a whole global step (CPU, seeded)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    noise = torch.randn(global_batch, num_anchors, horizon, 3, generator=g)
    t = torch.randint(0, t_max, (global_batch,), generator=g)
    return noise, t


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """Shuffled frame order of an epoch (identical on every rank)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def _targets(
    batch: dict[str, torch.Tensor], anchors: torch.Tensor, weights: LossWeights
) -> dict[str, torch.Tensor]:
    tgt = {"gt": batch["gt"], "gt_mode": nearest_anchor(batch["gt"], anchors)}
    if "teacher_traj" in batch:
        tgt["teacher_traj"] = batch["teacher_traj"]
        tgt["teacher_mode"] = nearest_anchor(batch["teacher_traj"], anchors)
        tgt["teacher_mask"] = batch["teacher_mask"]
        if weights.delta > 0 and "teacher_logits" in batch:
            tgt["teacher_logits"] = batch["teacher_logits"]
        if weights.gamma > 0 and "teacher_bev" in batch:
            tgt["teacher_bev"] = batch["teacher_bev"]
    if "stop_line" in batch:
        tgt["stop_line"] = batch["stop_line"]
    return tgt


def evaluate_split(
    model: nn.Module, data: SplitData, device: torch.device, noise_seed: int, max_frames: int, batch_size: int
) -> dict[str, float]:
    """ADE/FDE (metres, best-scoring mode vs GT) of a model over (up to ``max_frames`` of) a split.

    A model with the training-only stop-line head, on a split with the label (``stop_line``),
    also gets ``stop_line_acc`` (top-1 over the frames with a known class) and
    ``stop_line_acc_line`` (the same over frames with a line inside the bins, i.e. not the
    "none / beyond" class that most frames have); NaN when no such frame.
    """
    n = len(data) if max_frames <= 0 else min(len(data), max_frames)
    if n == 0:
        return {"ade": float("nan"), "fde": float("nan"), "frames": 0}
    model.eval()
    ade, fde = [], []
    sl_hit, sl_cls = [], []
    sl_model = getattr(model, "module", model)
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            idx = np.arange(lo, min(n, lo + batch_size))
            batch = data.batch(idx, device)
            out = modelio.infer(model, batch, modelio.fixed_noise(model, len(idx), noise_seed, device))
            best = out["trajectories"][torch.arange(len(idx)), out["scores"].argmax(dim=1)]
            err = (best[..., :2] - batch["gt"][..., :2]).norm(dim=-1)
            ade.append(err.mean(dim=1).cpu())
            fde.append(err[:, -1].cpu())
            if "stop_line" in batch and getattr(sl_model, "has_stop_line_head", False):
                logits = sl_model.stop_line_logits(batch)
                none = logits.shape[1] - 1  # the last class: no line within the bins
                sl_hit.append((logits.argmax(dim=1) == batch["stop_line"]).cpu())
                sl_cls.append(batch["stop_line"].cpu())
    model.train()
    res: dict[str, float] = {
        "ade": float(torch.cat(ade).mean()),
        "fde": float(torch.cat(fde).mean()),
        "frames": int(n),
    }
    if sl_hit:
        hit, cls = torch.cat(sl_hit), torch.cat(sl_cls)
        known, line = cls >= 0, (cls >= 0) & (cls < none)
        res["stop_line_acc"] = float(hit[known].float().mean()) if known.any() else float("nan")
        res["stop_line_acc_line"] = float(hit[line].float().mean()) if line.any() else float("nan")
    return res


def runtime_noise_seed() -> int:
    """Seed of the vehicle's fixed diffusion noise (``noise.seed`` of ``config/inference.yaml``)."""
    return int(require(load_config("inference"), "noise", "seed", where="inference.yaml"))


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def widen_point_features(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Start a multi-sweep model from a single-sweep checkpoint.

    The pillar feature net's input weight gains a column for the time lag; it starts at zero,
    so the widened model computes exactly what the checkpoint did until training moves it.
    Every other tensor must match as it is.
    """
    out = dict(state)
    for k, v in state.items():
        w = own.get(k)
        if (
            k.endswith("pfn.linear.weight") and w is not None and v.ndim == 2 and w.ndim == 2
            and v.shape[0] == w.shape[0] and v.shape[1] < w.shape[1]
        ):  # fmt: skip
            wide = torch.zeros_like(w)
            wide[:, : v.shape[1]] = v
            out[k] = wide
    return out


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train` on the CPU.

    Raises:
        TrainingError: If the file is missing or not a checkpoint.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainingError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise TrainingError(f"checkpoint {path} is unreadable ({exc}); delete it and retrain") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "preset" not in ckpt:
        raise TrainingError(f"{path} is not a vla_edge training checkpoint (no 'model'/'preset')")
    return ckpt


def train(
    spec: RunSpec,
    train_data: SplitData,
    val_data: SplitData,
    anchors: np.ndarray,
    cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    info: dist_utils.DistInfo | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train one model; returns a summary (best val ADE/FDE, steps, paths).

    Args:
        spec: What to train.
        train_data: Training split (frames + optional teacher labels).
        val_data: Validation split.
        anchors: ``[A, T, 3]`` shared anchors (metres).
        cfg: Parsed ``config/train.yaml``.
        model_cfg: Parsed ``config/model.yaml``.
        info: Distributed info (default: :func:`training.distributed.setup`).
        progress: Optional callback receiving the logged scalars.

    Raises:
        TrainingError: On an invalid batch split or an unusable checkpoint.
    """
    tc = cfg["train"]
    info = info or dist_utils.setup(force_cpu=spec.force_cpu)
    global_batch = int(tc["batch_size"])
    parts = info.world * spec.grad_accum
    if global_batch % parts:
        raise TrainingError(
            f"train.batch_size {global_batch} must split evenly into world {info.world} x grad_accum "
            f"{spec.grad_accum} micro-batches"
        )
    if len(train_data) < global_batch:
        raise TrainingError(
            f"training split has {len(train_data)} frames, fewer than one batch ({global_batch})"
        )
    micro = global_batch // parts
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # static shapes: pick the fastest conv kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed = int(cfg["seed"])
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    dist_utils.seed_all(seed)
    model = modelio.build(spec.preset, model_cfg, anchors).to(info.device)
    if spec.init_from is not None:
        model.load_state_dict(widen_point_features(spec.init_from, model.state_dict()), strict=False)
    projector = None
    if spec.weights.gamma > 0 and train_data.teacher_bev_shape is not None:
        c_t, h_t, w_t = train_data.teacher_bev_shape
        projector = FeatureProjector(modelio.bev_channels(model), c_t, (h_t, w_t)).to(info.device)
    net = _Student(model, projector)
    if info.distributed:
        if info.device.type == "cuda" and bool(tc["sync_bn"]):
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = DistributedDataParallel(
            net, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=float(tc["weight_decay"]))
    steps_per_epoch = len(train_data) // global_batch
    plan = {"total": max(1, int(spec.epochs) * steps_per_epoch)}
    warmup = min(int(tc["warmup_steps"]), max(1, plan["total"] // 10))
    min_ratio = float(tc["min_lr_ratio"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_factor(s, warmup, plan["total"], min_ratio)
    )

    last_path, best_path = spec.out_dir / "last.pt", spec.out_dir / "best.pt"
    step, best = 0, {"ade": float("inf"), "fde": float("inf"), "step": -1}
    if last_path.exists() and not spec.extra.get("fresh", False):
        ck = load_checkpoint(last_path)
        model.load_state_dict(ck["model"])
        if projector is not None and ck.get("projector") is not None:
            projector.load_state_dict(ck["projector"])
        opt.load_state_dict(ck["optimizer"])
        plan["total"] = int(ck["plan_total"])
        step, best = int(ck["step"]), dict(ck["best"])
        sched.last_epoch = step
        for group, base in zip(opt.param_groups, sched.base_lrs):
            group["lr"] = base * cosine_factor(step, warmup, plan["total"], min_ratio)
        if info.is_main:
            log.info("%s: resumed from %s at step %d/%d", spec.name, last_path, step, plan["total"])

    writer = _tensorboard(spec.out_dir / "tb") if info.is_main else None
    amp = str(tc["amp"])
    t_max = modelio.train_max_timestep(model)
    A, T = anchors.shape[0], anchors.shape[1]
    anchors_t = torch.as_tensor(anchors, dtype=torch.float32, device=info.device)
    budget_s = float(spec.max_minutes) * 60.0
    t_start = time.monotonic()
    budget_checked = budget_s <= 0
    t_ten = t_start
    clip = float(tc["grad_clip"])
    noise_seed = runtime_noise_seed()
    history: list[dict[str, float]] = []

    def checkpoint(path: Path) -> None:
        _save(
            path,
            {
                "model": model.state_dict(),
                "projector": projector.state_dict() if projector is not None else None,
                "optimizer": opt.state_dict(),
                "step": step,
                "plan_total": plan["total"],
                "best": best,
                "preset": spec.preset,
                "anchors": torch.as_tensor(np.asarray(anchors, dtype=np.float32)),
                "name": spec.name,
                "model_cfg": model_cfg,
                # read by training/export.py into the engine manifest
                "training": {
                    "run": spec.name,
                    "step": step,
                    "best_val": dict(best),
                    **spec.extra.get("info", {}),
                },
            },
        )

    def validate() -> dict[str, float]:
        nonlocal best
        m = evaluate_split(
            model, val_data, info.device, noise_seed, int(tc["val_max_frames"]), micro * spec.grad_accum
        )
        if info.is_main and m["ade"] < best["ade"]:
            best = {"ade": m["ade"], "fde": m["fde"], "step": step}
            checkpoint(best_path)
        return m

    net.train()
    bar = tqdm(total=plan["total"], initial=step, desc=spec.name, unit="step", disable=not info.is_main)
    epoch = step // max(1, steps_per_epoch)
    stop = step >= plan["total"]
    while not stop:
        order = epoch_order(seed, epoch, len(train_data))
        first = step - epoch * steps_per_epoch
        for s in range(first, steps_per_epoch):
            if step >= plan["total"]:
                stop = True
                break
            gidx = order[s * global_batch : (s + 1) * global_batch]
            noise_all, t_all = step_noise(seed, step, global_batch, A, T, t_max)
            opt.zero_grad(set_to_none=True)
            logs: dict[str, float] = {}
            for j in range(spec.grad_accum):
                part = info.rank * spec.grad_accum + j
                sl = slice(part * micro, (part + 1) * micro)
                batch = train_data.batch(gidx[sl], info.device)
                noise, t = noise_all[sl].to(info.device), t_all[sl].to(info.device)
                sync_ctx = net.no_sync() if (info.distributed and j + 1 < spec.grad_accum) else _nullctx()
                with sync_ctx:
                    with _autocast(info.device, amp):
                        out = net(batch, t, noise)
                    student = {
                        "trajectories": out["trajectories"].float(),
                        "scores": out["scores"].float(),
                        "aux": out.get("aux", []),
                    }
                    if projector is not None:
                        student["bev_features"] = out["bev_projected"]
                    if "stop_line_logits" in out:
                        student["stop_line_logits"] = out["stop_line_logits"]
                    terms = distillation_loss(
                        student, _targets(batch, anchors_t, spec.weights), spec.weights, _Identity()
                    )
                    (terms["total"] / spec.grad_accum).backward()
                for k, v in terms.items():
                    logs[k] = logs.get(k, 0.0) + float(v.detach()) / spec.grad_accum
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            if not budget_checked and step == 10:
                t_ten = time.monotonic()  # steps 1-10 include kernel autotuning: time 10-30 instead
            if not budget_checked and step == 30:
                per_step = (time.monotonic() - t_ten) / 20.0
                fit = int((budget_s - (time.monotonic() - t_start)) / (per_step * 1.15)) + step
                fit = int(dist_utils.all_reduce_min(float(fit), info))
                if fit < plan["total"]:
                    plan["total"] = max(step + 1, fit)
                    bar.total = plan["total"]
                    if info.is_main:
                        log.info("%s: %.3f s/step, budget fits %d steps", spec.name, per_step, plan["total"])
                budget_checked = True
            if step % int(tc["log_every"]) == 0 or step == 1:
                lt = dist_utils.all_reduce_mean(torch.tensor([logs[k] for k in sorted(logs)]), info)
                scal = {k: float(v) for k, v in zip(sorted(logs), lt)}
                scal["lr"] = float(sched.get_last_lr()[0])
                if writer is not None:
                    for k, v in scal.items():
                        writer.add_scalar(f"train/{k}", v, step)
                if info.is_main:
                    history.append({"step": step, **scal})
                    if progress:
                        progress({"step": step, **scal})
            if step % int(tc["val_every"]) == 0:
                m = validate()
                if writer is not None:
                    for key in ("ade", "fde", "stop_line_acc", "stop_line_acc_line"):
                        if key in m:
                            writer.add_scalar(f"val/{key}", m[key], step)
                if info.is_main:
                    sl = f" stop-line acc {m['stop_line_acc']:.3f}" if "stop_line_acc" in m else ""
                    log.info("%s step %d: val ADE %.3f FDE %.3f%s", spec.name, step, m["ade"], m["fde"], sl)
            if step % int(tc["ckpt_every"]) == 0 and info.is_main:
                checkpoint(last_path)
            if budget_s > 0 and time.monotonic() - t_start > budget_s:
                stop = True
                break
        else:
            epoch += 1
            continue
        break
    bar.close()
    final = validate()
    if info.is_main:
        checkpoint(last_path)
        if not best_path.exists():
            checkpoint(best_path)
    if writer is not None:
        writer.close()
    summary = {
        "name": spec.name,
        "preset": spec.preset,
        "steps": step,
        "planned_steps": plan["total"],
        "seconds": time.monotonic() - t_start,
        "final_val": final,
        "best_val": best,
        "best_checkpoint": str(best_path),
        "history": history,
        "world": info.world,
        "device": str(info.device),
    }
    if info.is_main:
        (spec.out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


class _nullctx:  # noqa: N801 - mirrors contextlib.nullcontext without the import cost
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
