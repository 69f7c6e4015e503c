"""Teacher (b): a trained model (normally the large ``teacher`` preset trained on ground truth).

For every frame it records the best-scoring mode as ``trajectory``, all mode logits, the BEV
features average-pooled to the schema's fixed resolution (``labels.bev_size``), and the
softmax probability of the best mode as ``confidence``. It has no reasoning text.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from training import modelio
from training.data import SplitData
from training.labels import TeacherLabels
from training.trainer import load_checkpoint

log = logging.getLogger(__name__)


def load_model(checkpoint: str | Path, model_cfg: dict, device: torch.device) -> torch.nn.Module:
    """Rebuild a trained model from a trainer checkpoint, in eval mode on ``device``."""
    ck = load_checkpoint(Path(checkpoint))
    anchors = np.asarray(ck["anchors"], dtype=np.float32)
    model = modelio.build(ck["preset"], ck.get("model_cfg") or model_cfg, anchors)
    model.load_state_dict(ck["model"])
    return model.to(device).eval()


def learned_labels(
    model: torch.nn.Module,
    data: SplitData,
    bev_size: tuple[int, int],
    batch_size: int,
    noise_seed: int,
    device: torch.device,
    name: str = "teacher",
    dt: float = 0.5,
    amp: bool = True,
) -> TeacherLabels:
    """Run ``model`` over every frame of ``data`` and collect schema labels."""
    model.eval()
    trajs, logits, bevs, conf = [], [], [], []
    n = len(data)
    use_amp = amp and device.type == "cuda"
    with torch.no_grad():
        for lo in tqdm(range(0, n, batch_size), desc=f"label {name}", unit="batch", leave=False):
            idx = np.arange(lo, min(n, lo + batch_size))
            batch = data.batch(idx, device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                out = modelio.infer(model, batch, modelio.fixed_noise(model, len(idx), noise_seed, device))
            scores = out["scores"].float()
            best = scores.argmax(dim=1)
            trajs.append(out["trajectories"].float()[torch.arange(len(idx)), best].cpu().numpy())
            logits.append(scores.cpu().numpy())
            conf.append(torch.softmax(scores, dim=1).max(dim=1).values.cpu().numpy())
            bev = F.adaptive_avg_pool2d(out["bev_features"].float(), bev_size)
            bevs.append(bev.to(torch.float16).cpu().numpy())
    return TeacherLabels(
        teacher=name,
        dt=dt,
        bag=data.bag.copy(),
        stamp=data.stamp.copy(),
        trajectory=np.concatenate(trajs).astype(np.float32),
        confidence=np.concatenate(conf).astype(np.float32),
        mode_logits=np.concatenate(logits).astype(np.float32),
        bev_features=np.concatenate(bevs),
        reasoning=None,
    )


def checkpoint_labels(
    checkpoint: Any, dataset: Any, split: str, cfg: dict[str, Any], mcfg: dict[str, Any], name: str, cpu: bool
) -> Any:
    """Labels of ``split`` of ``dataset`` from the model in ``checkpoint`` (``label`` command, pipeline)."""
    from training.data import read_manifest
    from training.trainer import runtime_noise_seed

    dev = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    model = load_model(checkpoint, mcfg, dev)
    data = SplitData.load(dataset, split, device=dev if cfg["train"]["data_on_device"] else None)
    return learned_labels(
        model, data, tuple(cfg["labels"]["bev_size"]), int(cfg["labels"]["batch_size"]), runtime_noise_seed(),
        dev, name=name, dt=float(read_manifest(dataset)["dt"]),
    )  # fmt: skip
