"""Teacher (c): import labels produced elsewhere (e.g. a VLA such as Alpamayo run offline).

Accepts JSON Lines (one object per frame, see :mod:`training.labels`) or an ``.npz`` already in
the ``vla_edge.labels/1`` schema. Trajectories are resampled to the dataset's T and dt; labels
are checked against the dataset (how many frames they match within the stamp tolerance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data import load_split_arrays, read_manifest
from training.labels import LabelSchemaError, TeacherLabels, align, labels_from_jsonl, load_labels


def import_labels(
    path: str | Path, dataset_dir: str | Path, name: str, tol: float, bev_size: tuple[int, int]
) -> tuple[TeacherLabels, dict[str, int]]:
    """Load external labels and report how many dataset frames they cover.

    Returns:
        ``(labels, {"labels": n, "matched_frames": m, "dataset_frames": f})``.

    Raises:
        LabelSchemaError: Off-schema file, or no label matches any dataset frame.
    """
    man = read_manifest(dataset_dir)
    T, dt = int(man["horizon"]), float(man["dt"])
    path = Path(path)
    if path.suffix == ".npz":
        labels = load_labels(path)
        if abs(labels.dt - dt) > 1e-9:
            raise LabelSchemaError(f"{path}: dt {labels.dt} s differs from the dataset's {dt} s")
        labels.teacher = name or labels.teacher
    else:
        labels = labels_from_jsonl(path, name, dt, T)
    labels.validate(horizon=T, bev_size=bev_size)
    a = load_split_arrays(dataset_dir, "all")
    rows = align(labels, a["bag"].astype(str), a["stamp"], tol)
    matched = int(np.sum(rows >= 0))
    if matched == 0:
        raise LabelSchemaError(
            f"none of the {len(labels)} labels in {path} matches a frame of {dataset_dir} (bag names and "
            f"stamps within {tol} s); check the 'bag' field uses the dataset's bag names"
        )
    return labels, {"labels": len(labels), "matched_frames": matched, "dataset_frames": len(rows)}
