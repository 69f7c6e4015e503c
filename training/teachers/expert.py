"""Teacher (a): the simulator's privileged expert (``/sim/expert_trajectory``, ``/sim/reasoning``).

The dataset builder stores, per frame, the expert trajectory published at (or within the label
tolerance of) the LiDAR stamp, already in ``base_link`` at that stamp and resampled to the
model's T and dt, plus the reasoning string. The expert has one plan and no BEV features, so
its labels carry no ``mode_logits``/``bev_features``; confidence is 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data import DatasetError, load_split_arrays, read_manifest
from training.labels import TeacherLabels


def expert_labels(dataset_dir: str | Path, split: str = "all") -> TeacherLabels:
    """Labels of the privileged expert for every frame of ``split`` that has one.

    Raises:
        DatasetError: If no frame of the split carries an expert trajectory (bags without the
            ``/sim/*`` topics, e.g. real logs).
    """
    man = read_manifest(dataset_dir)
    a = load_split_arrays(dataset_dir, split)
    valid = a.get("expert_valid")
    if valid is None or not np.any(valid):
        raise DatasetError(
            f"no frame of split '{split}' in {dataset_dir} has a /sim/expert_trajectory; the expert "
            "teacher needs simulator bags (use --teacher learned or external for real logs)"
        )
    sel = np.flatnonzero(valid)
    reasoning = a["reasoning"][sel].astype(str) if "reasoning" in a else None
    return TeacherLabels(
        teacher="expert",
        dt=float(man["dt"]),
        bag=a["bag"][sel].astype(str),
        stamp=a["stamp"][sel].astype(np.float64),
        trajectory=a["expert"][sel].astype(np.float32),
        confidence=np.ones(len(sel), dtype=np.float32),
        reasoning=reasoning,
    )
