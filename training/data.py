"""In-memory access to one dataset split (frames + optional teacher labels) for training.

A split is the concatenation of its bags' shards (see :mod:`training.dataset`). The whole split
is held as torch tensors, on the GPU when ``train.data_on_device`` allows, and batches are
gathered by index — no DataLoader workers, no per-step host→device copies.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.labels import TeacherLabels, align
from vla_edge.errors import VlaEdgeError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "vla_edge.dataset/1"
# model inputs + GT stored per frame in every shard
FRAME_KEYS = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path", "gt")
FLOAT_KEYS = ("pillar_features", "ego_state", "reference_path", "gt", "teacher_traj", "teacher_logits")


class DatasetError(VlaEdgeError):
    """A dataset directory, manifest or shard is missing or inconsistent."""


def read_manifest(dataset_dir: str | Path) -> dict[str, Any]:
    """Load ``manifest.json`` of a dataset directory.

    Raises:
        DatasetError: If it is missing or of another format.
    """
    path = Path(dataset_dir) / MANIFEST
    try:
        man = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(
            f"no dataset manifest at {path}; build one with `vla-edge-train dataset`"
        ) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"dataset manifest {path} is not valid JSON: {exc}") from None
    if man.get("format") != FORMAT:
        raise DatasetError(f"{path}: format '{man.get('format')}' is not '{FORMAT}'; rebuild the dataset")
    return man


def load_split_arrays(dataset_dir: str | Path, split: str) -> dict[str, np.ndarray]:
    """Concatenate the shards of ``split`` (``train``, ``val`` or ``all``) into numpy arrays."""
    dataset_dir = Path(dataset_dir)
    man = read_manifest(dataset_dir)
    bags = [
        b for b, e in sorted(man["bags"].items()) if (split == "all" or e["split"] == split) and e["frames"]
    ]
    parts: dict[str, list[np.ndarray]] = {}
    for bag in bags:
        shard = dataset_dir / man["bags"][bag]["shard"]
        try:
            with np.load(shard, allow_pickle=False) as z:
                for k in z.files:
                    parts.setdefault(k, []).append(z[k])
        except (OSError, ValueError) as exc:
            raise DatasetError(f"shard {shard} is unreadable ({exc}); rebuild with --force") from None
    if not parts:
        return {}
    return {k: np.concatenate(v) for k, v in parts.items()}


class SplitData:
    """Frames of one split as tensors, plus aligned teacher labels when given.

    Attributes:
        tensors: Per-frame tensors, first axis = frame.
        bag: ``[N]`` bag names; ``stamp``: ``[N]`` stamps (s).
        teacher_bev_shape: ``(C, H, W)`` of teacher BEV labels, or None.
    """

    def __init__(self, arrays: dict[str, np.ndarray], device: torch.device | None = None) -> None:
        self.bag = arrays.get("bag", np.array([], dtype=str)).astype(str)
        self.stamp = arrays.get("stamp", np.array([], dtype=np.float64)).astype(np.float64)
        self.expert = arrays.get("expert")
        self.expert_valid = arrays.get("expert_valid")
        self.tensors: dict[str, torch.Tensor] = {}
        self.teacher_bev_shape: tuple[int, int, int] | None = None
        dev = device or torch.device("cpu")
        for k in (*FRAME_KEYS, "teacher_traj", "teacher_logits", "teacher_bev", "teacher_mask"):
            if k in arrays:
                self.tensors[k] = torch.from_numpy(np.ascontiguousarray(arrays[k])).to(dev)
        if "teacher_bev" in self.tensors:
            self.teacher_bev_shape = tuple(self.tensors["teacher_bev"].shape[1:])  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self.stamp)

    @classmethod
    def load(
        cls,
        dataset_dir: str | Path,
        split: str,
        labels: TeacherLabels | None = None,
        tol: float = 0.06,
        device: torch.device | None = None,
    ) -> SplitData:
        """Load a split and attach ``labels`` (matched by bag and stamp within ``tol`` s)."""
        arrays = load_split_arrays(dataset_dir, split)
        if labels is not None and arrays:
            arrays.update(teacher_arrays(labels, arrays["bag"].astype(str), arrays["stamp"], tol))
        return cls(arrays, device)

    def subset(self, idx: np.ndarray) -> SplitData:
        """A new split holding the frames ``idx`` (same device)."""
        out = SplitData({})
        out.bag, out.stamp = self.bag[idx], self.stamp[idx]
        out.expert = None if self.expert is None else self.expert[idx]
        out.expert_valid = None if self.expert_valid is None else self.expert_valid[idx]
        ti = torch.as_tensor(idx, dtype=torch.long)
        out.tensors = {k: v[ti.to(v.device)] for k, v in self.tensors.items()}
        out.teacher_bev_shape = self.teacher_bev_shape
        return out

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Gather frames ``idx`` as a batch on ``device`` (features as float32, coords as int32)."""
        out = {}
        for k, v in self.tensors.items():
            sel = v[torch.as_tensor(idx, dtype=torch.long, device=v.device)].to(device, non_blocking=True)
            if k in FLOAT_KEYS or k == "teacher_bev":
                sel = sel.float()
            elif k in ("pillar_coords", "pillar_count"):
                sel = sel.int()
            out[k] = sel
        return out


def teacher_arrays(
    labels: TeacherLabels, bags: np.ndarray, stamps: np.ndarray, tol: float
) -> dict[str, np.ndarray]:
    """Per-frame teacher arrays (zeros where a frame has no label) and the ``teacher_mask``."""
    rows = align(labels, bags, stamps, tol)
    mask = rows >= 0
    safe = np.where(mask, rows, 0)
    out = {
        "teacher_mask": mask,
        "teacher_traj": np.where(mask[:, None, None], labels.trajectory[safe], 0.0).astype(np.float32),
    }
    if labels.mode_logits is not None:
        out["teacher_logits"] = np.where(mask[:, None], labels.mode_logits[safe], 0.0).astype(np.float32)
    if labels.bev_features is not None:
        bev = labels.bev_features[safe].astype(np.float16)
        bev[~mask] = 0
        out["teacher_bev"] = bev
    log.info("labels '%s': %d/%d frames matched", labels.teacher, int(mask.sum()), len(mask))
    return out
