"""Sparse on-policy frames: storage on disk and GPU batches for the trainer.

A frame costs its points (int16 x 4, ~0.1 MB for a 32-beam sweep) instead of the dense
``P x M x C`` float pillar tensor (2.6 MB float32), so 10^5 frames fit in GPU memory.
:class:`SparseSplitData` has the interface the trainer expects of
:class:`training.data.SplitData` (``len``, ``batch``, ``subset``) and pillarizes each batch
on the device with the same arithmetic as the runtime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.model.pillars import pillarize_batch
from training.onpolicy.collect import POINT_QUANTUM
from vla_edge.fsutil import atomic_path
from vla_edge.pillarize import PillarSpec

FORMAT = "vla_edge.onpolicy/1"


@dataclass
class SparseFrames:
    """Frames with sparse points (numpy, CPU).

    Attributes:
        points: ``[N, 4]`` int16, every frame's points back to back (units of ``POINT_QUANTUM``).
        offsets: ``[F + 1]`` int64, frame ``i`` is ``points[offsets[i]:offsets[i + 1]]``.
        ego: ``[F, 6]`` ego-state model input.
        path: ``[F, K, 2]`` reference-path model input.
        gt: ``[F, T, 3]`` expert label.
        scenario: ``[F]`` int64 scenario seed of each frame.
        iteration: ``[F]`` int32 DAgger iteration that collected it.
        expert_drove: ``[F]`` bool, the expert (not the student) drove at that frame.
    """

    points: np.ndarray
    offsets: np.ndarray
    ego: np.ndarray
    path: np.ndarray
    gt: np.ndarray
    scenario: np.ndarray
    iteration: np.ndarray
    expert_drove: np.ndarray

    def __len__(self) -> int:
        return len(self.gt)

    @classmethod
    def from_jobs(cls, results: list[dict], iteration: int) -> SparseFrames:
        """Concatenate :func:`~training.onpolicy.collect.run_job` results of one iteration."""
        arr = [r["arrays"] for r in results if r["stats"]["frames"] > 0]
        if not arr:
            raise ValueError("no frames collected")
        counts = np.concatenate([a["counts"] for a in arr])
        return cls(
            points=np.concatenate([a["points"] for a in arr]),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            ego=np.concatenate([a["ego"] for a in arr]),
            path=np.concatenate([a["path"] for a in arr]),
            gt=np.concatenate([a["gt"] for a in arr]),
            scenario=np.concatenate(
                [
                    np.full(len(a["gt"]), r["stats"]["seed"])
                    for a, r in zip(arr, results)
                    if r["stats"]["frames"]
                ]
            ).astype(np.int64),
            iteration=np.full(len(counts), iteration, dtype=np.int32),
            expert_drove=np.concatenate([a["expert_drove"] for a in arr]),
        )

    @classmethod
    def concat(cls, parts: list[SparseFrames]) -> SparseFrames:
        """All frames of ``parts`` in order."""
        counts = np.concatenate([np.diff(p.offsets) for p in parts])
        return cls(
            points=np.concatenate([p.points for p in parts]),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in _PER_FRAME},
        )

    def subset(self, mask: np.ndarray) -> SparseFrames:
        """Frames where ``mask`` is true (or the integer indices ``mask``)."""
        idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        counts = ends - starts
        sel = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(
            counts.sum()
        )
        return SparseFrames(
            points=self.points[sel],
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            **{k: getattr(self, k)[idx] for k in _PER_FRAME},
        )

    def save(self, path: Path) -> None:
        """Write one ``.npz`` (atomic)."""
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, format=FORMAT, points=self.points, offsets=self.offsets,
                     **{k: getattr(self, k) for k in _PER_FRAME})  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> SparseFrames:
        """Read a file written by :meth:`save`.

        Raises:
            ValueError: Not an on-policy frames file.
        """
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT:
                raise ValueError(f"{path}: not a {FORMAT} file (format {z['format']})")
            return cls(points=z["points"], offsets=z["offsets"], **{k: z[k] for k in _PER_FRAME})

    def digest(self) -> str:
        """sha256 over every array (dataset provenance in the engine manifest)."""
        h = hashlib.sha256()
        for a in (self.points, self.offsets, *(getattr(self, k) for k in _PER_FRAME)):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


_PER_FRAME = ("ego", "path", "gt", "scenario", "iteration", "expert_drove")


class SparseSplitData:
    """Trainer view of :class:`SparseFrames`: tensors on ``device``, pillarized per batch.

    Args:
        frames: The frames.
        spec: Pillar spec of the model being trained.
        device: Where the frames live (the GPU when they fit).
    """

    teacher_bev_shape = None

    def __init__(self, frames: SparseFrames, spec: PillarSpec, device: torch.device | None = None) -> None:
        dev = device or torch.device("cpu")
        self.spec = spec
        self.frames = frames
        self.points = torch.from_numpy(frames.points).to(dev)
        self.offsets = torch.from_numpy(frames.offsets).to(dev)
        self.tensors = {
            "ego_state": torch.from_numpy(frames.ego).to(dev),
            "reference_path": torch.from_numpy(frames.path).to(dev),
            "gt": torch.from_numpy(frames.gt).to(dev),
        }

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, idx: np.ndarray) -> SparseSplitData:
        """A new view holding frames ``idx``."""
        return SparseSplitData(self.frames.subset(np.asarray(idx)), self.spec, self.points.device)

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Frames ``idx`` as model inputs + ``gt`` on ``device`` (pillarized there)."""
        dev = self.points.device
        ti = torch.as_tensor(np.asarray(idx), dtype=torch.long, device=dev)
        starts, ends = self.offsets[ti], self.offsets[ti + 1]
        counts = ends - starts
        total = int(counts.sum())
        new_off = torch.zeros(len(ti) + 1, dtype=torch.long, device=dev)
        new_off[1:] = torch.cumsum(counts, 0)
        sel = torch.repeat_interleave(starts - new_off[:-1], counts, output_size=total)
        sel = sel + torch.arange(total, device=dev)
        pts = self.points[sel].to(device).float() * POINT_QUANTUM
        feats, coords, count = pillarize_batch(pts, new_off.to(device), self.spec)
        out = {"pillar_features": feats, "pillar_coords": coords, "pillar_count": count}
        for k, v in self.tensors.items():
            out[k] = v[ti].to(device, non_blocking=True).float()
        return out
