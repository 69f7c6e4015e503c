"""Teacher-label schema (``vla_edge.labels/1``): what every teacher writes, one file per teacher.

A label file is an ``.npz`` with one row per dataset frame. Frames are keyed by
``(bag, stamp)``: the bag name as in the dataset manifest and the LiDAR stamp in seconds.

=================  ==========================  ===============================================
key                shape / dtype               meaning
=================  ==========================  ===============================================
``format``         str                         ``"vla_edge.labels/1"``
``teacher``        str                         who produced it (``expert``, ``teacher``, ...)
``dt``             float64                     time step of ``trajectory`` in seconds
``bag``            ``[N]`` str                 bag name of the frame
``stamp``          ``[N]`` float64             LiDAR stamp of the frame, seconds
``trajectory``     ``[N, T, 3]`` float32       best trajectory (x, y, yaw) in ``base_link`` at
                                               ``stamp``; poses at ``dt .. T·dt`` (origin implicit)
``confidence``     ``[N]`` float32             teacher confidence in [0, 1]
``mode_logits``    ``[N, A]`` float32          optional: logits over the A shared anchor modes
``bev_features``   ``[N, C, H, W]`` float16    optional: BEV features at the fixed resolution
                                               ``labels.bev_size`` of ``config/train.yaml``
``reasoning``      ``[N]`` str                 optional: free-text reasoning ("" where none)
=================  ==========================  ===============================================

External teachers (e.g. a VLA such as Alpamayo run offline) may instead deliver JSON Lines,
one object per frame: ``{"bag": str, "stamp": float, "dt": float, "trajectory": [[x, y, yaw],
...], "mode_logits": [...]?, "confidence": float?, "reasoning": str?}``; see
:func:`labels_from_jsonl`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_edge.errors import VlaEdgeError
from vla_edge.types import Trajectory

FORMAT = "vla_edge.labels/1"


class LabelSchemaError(VlaEdgeError):
    """A teacher-label file does not follow the ``vla_edge.labels/1`` schema."""


@dataclass
class TeacherLabels:
    """Per-frame outputs of one teacher (see the module docstring for the schema)."""

    teacher: str
    dt: float
    bag: np.ndarray
    stamp: np.ndarray
    trajectory: np.ndarray
    confidence: np.ndarray
    mode_logits: np.ndarray | None = None
    bev_features: np.ndarray | None = None
    reasoning: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.stamp)

    def validate(self, horizon: int | None = None, bev_size: tuple[int, int] | None = None) -> None:
        """Check shapes, dtypes and finiteness.

        Args:
            horizon: Expected T, if known.
            bev_size: Expected (H, W) of ``bev_features``, if known.

        Raises:
            LabelSchemaError: On any violation, naming the field.
        """
        n = len(self.stamp)
        if self.bag.shape != (n,):
            raise LabelSchemaError(f"labels '{self.teacher}': bag must be [N={n}], got {self.bag.shape}")
        if self.trajectory.ndim != 3 or self.trajectory.shape[0] != n or self.trajectory.shape[2] != 3:
            raise LabelSchemaError(
                f"labels '{self.teacher}': trajectory must be [N={n}, T, 3], got {self.trajectory.shape}"
            )
        if horizon is not None and self.trajectory.shape[1] != horizon:
            raise LabelSchemaError(
                f"labels '{self.teacher}': trajectory has T={self.trajectory.shape[1]}, dataset needs "
                f"T={horizon}; resample it (labels_from_jsonl does) before saving"
            )
        if not np.all(np.isfinite(self.trajectory)):
            raise LabelSchemaError(f"labels '{self.teacher}': trajectory holds NaN/Inf")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise LabelSchemaError(f"labels '{self.teacher}': dt must be > 0 s, got {self.dt}")
        if self.confidence.shape != (n,):
            raise LabelSchemaError(f"labels '{self.teacher}': confidence must be [N={n}]")
        if self.mode_logits is not None and (self.mode_logits.ndim != 2 or self.mode_logits.shape[0] != n):
            raise LabelSchemaError(f"labels '{self.teacher}': mode_logits must be [N={n}, A]")
        if self.bev_features is not None:
            if self.bev_features.ndim != 4 or self.bev_features.shape[0] != n:
                raise LabelSchemaError(f"labels '{self.teacher}': bev_features must be [N={n}, C, H, W]")
            if bev_size is not None and tuple(self.bev_features.shape[2:]) != tuple(bev_size):
                raise LabelSchemaError(
                    f"labels '{self.teacher}': bev_features are {self.bev_features.shape[2:]}, schema "
                    f"resolution is {tuple(bev_size)} (labels.bev_size in config/train.yaml)"
                )
        if self.reasoning is not None and self.reasoning.shape != (n,):
            raise LabelSchemaError(f"labels '{self.teacher}': reasoning must be [N={n}]")


def save_labels(path: str | Path, labels: TeacherLabels) -> Path:
    """Validate and write a label file (``.npz``, uncompressed for fast loading)."""
    labels.validate()
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "teacher": np.array(labels.teacher),
        "dt": np.array(float(labels.dt)),
        "bag": labels.bag.astype(str),
        "stamp": labels.stamp.astype(np.float64),
        "trajectory": labels.trajectory.astype(np.float32),
        "confidence": labels.confidence.astype(np.float32),
    }
    if labels.mode_logits is not None:
        arrays["mode_logits"] = labels.mode_logits.astype(np.float32)
    if labels.bev_features is not None:
        arrays["bev_features"] = labels.bev_features.astype(np.float16)
    if labels.reasoning is not None:
        arrays["reasoning"] = labels.reasoning.astype(str)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def load_labels(path: str | Path) -> TeacherLabels:
    """Read and validate a label file.

    Raises:
        LabelSchemaError: If the file is missing, unreadable or off-schema.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise LabelSchemaError(f"label file not found: {path}; run `vla-edge-train label` first") from None
    except (OSError, ValueError) as exc:
        raise LabelSchemaError(f"label file {path} is not a readable npz: {exc}") from None
    fmt = str(data.get("format", ""))
    if fmt != FORMAT:
        raise LabelSchemaError(f"label file {path}: format is '{fmt}', expected '{FORMAT}'")
    required = ("teacher", "dt", "bag", "stamp", "trajectory", "confidence")
    missing = [k for k in required if k not in data]
    if missing:
        raise LabelSchemaError(f"label file {path}: missing keys {missing}")
    labels = TeacherLabels(
        teacher=str(data["teacher"]),
        dt=float(data["dt"]),
        bag=data["bag"].astype(str),
        stamp=data["stamp"].astype(np.float64),
        trajectory=data["trajectory"].astype(np.float32),
        confidence=data["confidence"].astype(np.float32),
        mode_logits=data.get("mode_logits"),
        bev_features=data.get("bev_features"),
        reasoning=data["reasoning"].astype(str) if "reasoning" in data else None,
    )
    labels.validate()
    return labels


def _resample(poses: np.ndarray, dt_in: float, dt_out: float, horizon: int) -> np.ndarray:
    """Resample poses given at ``dt_in`` to ``horizon`` poses at ``dt_out`` (needs enough span)."""
    if abs(dt_in - dt_out) < 1e-9 and len(poses) >= horizon:
        return poses[:horizon]
    if dt_in * len(poses) + 1e-6 < dt_out * horizon:
        raise LabelSchemaError(
            f"external label spans {dt_in * len(poses):.2f} s, dataset needs {dt_out * horizon:.2f} s"
        )
    return Trajectory(poses, dt_in, 0.0).resample(dt_out, dt_out * horizon).poses


def labels_from_jsonl(path: str | Path, teacher: str, dt: float, horizon: int) -> TeacherLabels:
    """Import external labels (teacher c) from JSON Lines, resampled to the dataset's T and dt.

    Args:
        path: JSON Lines file, one object per frame (schema in the module docstring).
        teacher: Name to record as the teacher.
        dt: Dataset trajectory step in seconds.
        horizon: Dataset trajectory length T.

    Raises:
        LabelSchemaError: On a malformed line (the line number is given).
    """
    rows = []
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelSchemaError(f"cannot read external labels {path}: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            poses = np.asarray(obj["trajectory"], dtype=np.float64)
            if poses.ndim != 2 or poses.shape[1] not in (2, 3):
                raise ValueError(f"trajectory must be a list of [x, y(, yaw)], got shape {poses.shape}")
            if poses.shape[1] == 2:  # yaw from the heading of consecutive points
                full = np.vstack([[0.0, 0.0], poses])
                yaw = np.arctan2(np.diff(full[:, 1]), np.diff(full[:, 0]))
                poses = np.column_stack([poses, yaw])
            poses = _resample(poses, float(obj.get("dt", dt)), dt, horizon)
            rows.append(
                (
                    str(obj["bag"]),
                    float(obj["stamp"]),
                    poses,
                    obj.get("mode_logits"),
                    float(obj.get("confidence", 1.0)),
                    str(obj.get("reasoning", "")),
                )
            )
        except LabelSchemaError as exc:
            raise LabelSchemaError(f"{path}:{lineno}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelSchemaError(f"{path}:{lineno}: bad external label ({exc!r})") from None
    if not rows:
        raise LabelSchemaError(f"external label file {path} holds no labels")
    have_logits = all(r[3] is not None for r in rows)
    return TeacherLabels(
        teacher=teacher,
        dt=dt,
        bag=np.array([r[0] for r in rows]),
        stamp=np.array([r[1] for r in rows], dtype=np.float64),
        trajectory=np.stack([r[2] for r in rows]).astype(np.float32),
        confidence=np.array([r[4] for r in rows], dtype=np.float32),
        mode_logits=np.array([r[3] for r in rows], dtype=np.float32) if have_logits else None,
        reasoning=np.array([r[5] for r in rows]),
    )


def align(labels: TeacherLabels, bags: np.ndarray, stamps: np.ndarray, tol: float) -> np.ndarray:
    """For each dataset frame ``(bags[i], stamps[i])`` the label row index, or -1 if none within ``tol`` s."""
    out = np.full(len(stamps), -1, dtype=np.int64)
    for bag in np.unique(bags):
        rows = np.flatnonzero(labels.bag == bag)
        if rows.size == 0:
            continue
        order = rows[np.argsort(labels.stamp[rows])]
        ls = labels.stamp[order]
        sel = np.flatnonzero(bags == bag)
        j = np.clip(np.searchsorted(ls, stamps[sel]), 1, max(1, len(ls) - 1))
        cand = np.stack([j - 1, np.minimum(j, len(ls) - 1)], axis=1)
        d = np.abs(ls[cand] - stamps[sel, None])
        best = cand[np.arange(len(sel)), d.argmin(axis=1)]
        ok = d.min(axis=1) <= tol
        out[sel[ok]] = order[best[ok]]
    return out
