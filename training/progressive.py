"""Progressive distillation: teacher → intermediate → student (``progressive.stages``).

Stage 0 is the given teacher checkpoint. For every following preset, the previous stage
labels the whole dataset (learned teacher, :mod:`training.teachers.learned`) and the stage is
distilled from those labels with the full distillation loss. Each step is a smaller capacity
gap than teacher → student directly (10B → 3B → 1B → 200M in the literature, ~90–95 %
retention per step).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from training import distributed as dist_utils
from training.data import SplitData, read_manifest
from training.labels import save_labels
from training.runs import run_training
from training.teachers.learned import learned_labels, load_model
from training.trainer import runtime_noise_seed

log = logging.getLogger(__name__)


def run_progressive(
    dataset: str | Path,
    out_dir: str | Path,
    teacher_checkpoint: str | Path,
    cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    minutes: float | None = None,
    force_cpu: bool = False,
) -> list[dict[str, Any]]:
    """Run the chain; returns one summary per distilled stage (rank 0)."""
    stages = [str(s) for s in cfg["progressive"]["stages"]]
    if len(stages) < 2:
        from vla_edge.errors import ConfigError

        raise ConfigError("progressive.stages needs at least two presets (teacher first)")
    info = dist_utils.setup(force_cpu=force_cpu)
    out = Path(out_dir)
    prev = Path(teacher_checkpoint)
    summaries = []
    dt = float(read_manifest(dataset)["dt"])
    for i, preset in enumerate(stages[1:], 1):
        label_path = out / f"labels_stage{i - 1}_{stages[i - 1]}.npz"
        if info.is_main and not label_path.exists():
            model = load_model(prev, model_cfg, info.device)
            data = SplitData.load(dataset, "all", device=info.device if info.device.type == "cuda" else None)
            labels = learned_labels(
                model, data, tuple(cfg["labels"]["bev_size"]), int(cfg["labels"]["batch_size"]),
                runtime_noise_seed(), info.device, name=f"stage{i - 1}_{stages[i - 1]}", dt=dt,
            )  # fmt: skip
            save_labels(label_path, labels)
            del model, data
        dist_utils.barrier(info)
        run_dir = out / f"stage{i}_{preset}"
        s = run_training(
            dataset, run_dir, preset, cfg, model_cfg, labels=label_path, distill=True, minutes=minutes,
            force_cpu=force_cpu, info=info,
        )  # fmt: skip
        if s is not None:
            summaries.append({k: v for k, v in s.items() if k != "history"})
        prev = run_dir / "best.pt"
        log.info("progressive stage %d (%s) done -> %s", i, preset, prev)
    return summaries
