"""INT8 calibration set for TensorRT post-training quantisation, exported from the dataset.

The file is an ``.npz`` whose keys are the ONNX input names, each with a leading frame axis:
``pillar_features [N, P, M, C]`` float32, ``pillar_coords [N, P, 2]`` int32, ``pillar_count
[N]`` int32, ``ego_state [N, 6]``, ``reference_path [N, K, 2]`` and ``noise [N, A, T, 3]``
(the runtime's fixed noise, ``noise.seed`` of ``config/inference.yaml``, so the calibrated
ranges are those seen on the vehicle). A calibrator feeds ``x[i:i+1]`` per key per batch.
With ~1.3 MB of pillar features per frame, 500 frames are ~650 MB: generate it on demand, do
not commit it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.data import DatasetError, load_split_arrays, read_manifest
from vla_edge.config import load_config, require

log = logging.getLogger(__name__)

INPUT_KEYS = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path")


def export_calibration(
    dataset_dir: str | Path,
    out_path: str | Path,
    frames: int,
    split: str,
    seed: int,
    model_cfg: dict[str, Any] | None = None,
    inference_cfg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``frames`` randomly chosen frames of ``split`` as model inputs.

    Args:
        dataset_dir: Dataset built by ``vla-edge-train dataset``.
        out_path: Output ``.npz``.
        frames: Frames wanted (all frames of the split when it has fewer; a warning says so).
        split: ``train``, ``val`` or ``all``.
        seed: Seed of the frame subsample.
        model_cfg: Parsed ``config/model.yaml`` (loaded when None).
        inference_cfg: Parsed ``config/inference.yaml`` (loaded when None).

    Returns:
        Summary with the frame count, bags used and file size.

    Raises:
        DatasetError: If the split holds no frame.
    """
    read_manifest(dataset_dir)
    arrays = load_split_arrays(dataset_dir, split)
    n_have = len(arrays.get("stamp", []))
    if n_have == 0:
        raise DatasetError(f"split '{split}' of {dataset_dir} has no frames; cannot build a calibration set")
    if n_have < frames:
        log.warning("split '%s' has only %d frames (< %d wanted); using all of them", split, n_have, frames)
    idx = np.sort(np.random.default_rng(seed).permutation(n_have)[: min(frames, n_have)])
    mc = load_config("model") if model_cfg is None else model_cfg
    ic = load_config("inference") if inference_cfg is None else inference_cfg
    A = int(require(mc, "trajectory", "num_anchors", where="model.yaml"))
    T = int(require(mc, "trajectory", "num_poses", where="model.yaml"))
    noise_seed = int(require(ic, "noise", "seed", where="inference.yaml"))
    noise = np.random.default_rng(noise_seed).standard_normal((1, A, T, 3), dtype=np.float32)
    out = {
        "pillar_features": arrays["pillar_features"][idx].astype(np.float32),
        "pillar_coords": arrays["pillar_coords"][idx].astype(np.int32),
        "pillar_count": arrays["pillar_count"][idx].astype(np.int32),
        "ego_state": arrays["ego_state"][idx].astype(np.float32),
        "reference_path": arrays["reference_path"][idx].astype(np.float32),
        "noise": np.repeat(noise, len(idx), axis=0),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_path, **out)
    bags = sorted(set(arrays["bag"][idx].astype(str).tolist()))
    summary = {
        "file": str(out_path),
        "frames": len(idx),
        "requested": frames,
        "split": split,
        "bags": bags,
        "bytes": out_path.stat().st_size,
        "inputs": {k: list(v.shape[1:]) for k, v in out.items()},
    }
    out_path.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    return summary
