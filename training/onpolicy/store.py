"""Sparse on-policy frames: storage on disk and GPU batches for the trainer.

A frame costs its points (int16 x 4, ~0.1 MB for a 32-beam sweep) instead of the dense
``P x M x C`` float pillar tensor (2.6 MB float32), so 10^5 frames fit in GPU memory.
:class:`SparseSplitData` has the interface the trainer expects of
:class:`training.data.SplitData` (``len``, ``batch``, ``subset``) and pillarizes each batch
on the device with the same arithmetic as the runtime.

A camera preset's frames also carry ``images`` (uint8 ``[F, H, W, 3]``, already resized to the
model input by :func:`vla_edge.camera_input.resized_image`) and ``camera_reason`` (index into
:data:`vla_edge.camera_input.REASONS`); each batch normalises them with
:func:`vla_edge.camera_input.image_normalisation` (the runtime's tensor, bit for bit), gives
``camera_valid = 0`` and a zero image where the runtime would run LiDAR-only, and applies
camera dropout (``onpolicy.camera_dropout``) so that LiDAR-only mode is trained. LiDAR-only
frames have ``images = None`` and are stored exactly as before.

Camera frames also carry ``stop_line_m``: the privileged simulator's along-lane distance (m)
from the ego front to the next stop line that still applies (+inf: none), the target of the
training-only stop-line head. It is stored in metres and binned per batch
(:func:`stop_line_classes`, the preset's ``camera.stop_line_bins``), so new bins need no new
collection. Files written before it existed load with ``stop_line_m = None`` (unknown: class
-1, masked out of the loss; not "none").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.model.pillars import pillarize_batch
from training.modelio import MissingImagesError
from training.onpolicy.collect import POINT_QUANTUM
from vla_edge.camera_input import CameraSpec, image_normalisation
from vla_edge.fsutil import atomic_path
from vla_edge.pillarize import PillarSpec

FORMAT = "vla_edge.onpolicy/1"


@dataclass
class SparseFrames:
    """Frames with sparse points (numpy, CPU).

    Attributes:
        points: ``[N, 4]`` int16, every frame's points back to back (units of ``POINT_QUANTUM``);
            ``[N, 5]`` with the time lag (s, same units) for multi-sweep presets.
        offsets: ``[F + 1]`` int64, frame ``i`` is ``points[offsets[i]:offsets[i + 1]]``.
        ego: ``[F, 6]`` ego-state model input.
        path: ``[F, K, 2]`` reference-path model input.
        gt: ``[F, T, 3]`` expert label.
        scenario: ``[F]`` int64 scenario seed of each frame.
        iteration: ``[F]`` int32 DAgger iteration that collected it.
        expert_drove: ``[F]`` bool, the expert (not the student) drove at that frame.
        images: ``[F, H, W, 3]`` uint8 resized camera images (camera presets), else None.
        camera_reason: ``[F]`` uint8 camera reason code (0 = ``ok``), with ``images``.
        stop_line_m: ``[F]`` float32 distance (m) from the ego front to the next stop line that
            still applies, +inf when none, NaN when unknown; None when not stored (LiDAR-only
            presets, camera files collected before the label existed).
    """

    points: np.ndarray
    offsets: np.ndarray
    ego: np.ndarray
    path: np.ndarray
    gt: np.ndarray
    scenario: np.ndarray
    iteration: np.ndarray
    expert_drove: np.ndarray
    images: np.ndarray | None = None
    camera_reason: np.ndarray | None = None
    stop_line_m: np.ndarray | None = None

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
            **_camera_cat([{k: a.get(k) for k in _CAMERA} for a in arr]),
            stop_line_m=_label_cat([(a.get("stop_line_m"), len(a["gt"])) for a in arr]),
        )

    @classmethod
    def concat(cls, parts: list[SparseFrames]) -> SparseFrames:
        """All frames of ``parts`` in order."""
        counts = np.concatenate([np.diff(p.offsets) for p in parts])
        return cls(
            points=np.concatenate([p.points for p in parts]),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in _PER_FRAME},
            **_camera_cat([{k: getattr(p, k) for k in _CAMERA} for p in parts]),
            stop_line_m=_label_cat([(p.stop_line_m, len(p)) for p in parts]),
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
            **{k: getattr(self, k)[idx] for k in _OPTIONAL if getattr(self, k) is not None},
        )

    def save(self, path: Path) -> None:
        """Write one ``.npz`` (atomic)."""
        cam = {k: getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None}
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, format=FORMAT, points=self.points, offsets=self.offsets,
                     **{k: getattr(self, k) for k in _PER_FRAME}, **cam)  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> SparseFrames:
        """Read a file written by :meth:`save`.

        Raises:
            ValueError: Not an on-policy frames file.
        """
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT:
                raise ValueError(f"{path}: not a {FORMAT} file (format {z['format']})")
            cam = {k: z[k] for k in _OPTIONAL if k in z.files}
            return cls(points=z["points"], offsets=z["offsets"], **{k: z[k] for k in _PER_FRAME}, **cam)

    def digest(self) -> str:
        """sha256 over every array (dataset provenance in the engine manifest)."""
        h = hashlib.sha256()
        cam = [getattr(self, k) for k in _OPTIONAL if getattr(self, k) is not None]
        for a in (self.points, self.offsets, *(getattr(self, k) for k in _PER_FRAME), *cam):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()


_PER_FRAME = ("ego", "path", "gt", "scenario", "iteration", "expert_drove")
#: Per-frame arrays of camera presets only (absent from LiDAR-only files).
_CAMERA = ("images", "camera_reason")
#: Optional per-frame arrays (saved, loaded, subset and hashed when present).
_OPTIONAL = (*_CAMERA, "stop_line_m")


def _label_cat(parts: list[tuple[np.ndarray | None, int]]) -> np.ndarray | None:
    """Concatenated ``stop_line_m`` of ``(array or None, frames)`` parts: NaN (unknown) for parts
    without it (collected before the label existed); None when no part has it."""
    if all(a is None for a, _ in parts):
        return None
    return np.concatenate(
        [np.full(n, np.nan, np.float32) if a is None else np.asarray(a, np.float32) for a, n in parts]
    )


def stop_line_classes(distance: np.ndarray | None, bins: tuple[float, ...], frames: int) -> np.ndarray:
    """Class of each frame's stop-line distance (m) over the upper bin edges ``bins``.

    ``0`` for ``d < bins[0]``, ``i`` for ``bins[i-1] <= d < bins[i]``, ``len(bins)`` for none or
    beyond (``d >= bins[-1]``, +inf included), -1 for unknown (NaN; all ``frames`` when
    ``distance`` is None).
    """
    if distance is None:
        return np.full(frames, -1, np.int64)
    d = np.asarray(distance, np.float64)
    known = ~np.isnan(d)
    cls = np.searchsorted(np.asarray(bins, np.float64), np.where(known, d, 0.0), side="right")
    return np.where(known, cls, -1).astype(np.int64)


def _camera_cat(parts: list[dict[str, np.ndarray | None]]) -> dict[str, np.ndarray]:
    """Concatenated camera arrays when every part has them, nothing when none has.

    Raises:
        MissingImagesError: Some parts have images and others not (collected with another preset).
    """
    have = [p["images"] is not None for p in parts]
    if not any(have):
        return {}
    if not all(have):
        raise MissingImagesError(
            "on-policy frames mix parts with and without camera images (a work directory collected "
            "with a LiDAR-only preset, continued with a camera preset): use a new --workdir"
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in _CAMERA}  # type: ignore[misc]


class SparseSplitData:
    """Trainer view of :class:`SparseFrames`: tensors on ``device``, pillarized per batch.

    Args:
        frames: The frames.
        spec: Pillar spec of the model being trained.
        device: Where the frames live (the GPU when they fit).
        camera: The camera input of a camera preset: batches get ``image`` and ``camera_valid``.
        camera_dropout: Share of samples per batch given ``camera_valid = 0`` and a zero image
            (the runtime's LiDAR-only input), drawn from a generator seeded with ``seed``.
        seed: Seed of the camera dropout draws.
        order: Frame index of each sample (None: each frame once). Repeating a frame's index
            oversamples it without copying its points (see :func:`oversample_order`).
        stop_line_bins: The preset's ``camera.stop_line_bins`` (with ``camera``): batches get
            ``stop_line [B]`` int64, the distance class (:func:`stop_line_classes`), -1 where
            unknown or where the sample has no usable image (camera invalid or dropped out).
        intensity_dropout: Share of samples per batch whose LiDAR intensities are all zero
            (a sensor without intensity), drawn from the same seeded generator.
        intensity_gain: ``(low, high)``: every other sample's intensities times a gain drawn
            log-uniformly from this range (another sensor's reflectivity); ``(1, 1)`` = off.

    Raises:
        MissingImagesError: ``camera`` given but the frames hold no images.
    """

    teacher_bev_shape = None

    def __init__(
        self,
        frames: SparseFrames,
        spec: PillarSpec,
        device: torch.device | None = None,
        camera: CameraSpec | None = None,
        camera_dropout: float = 0.0,
        seed: int = 0,
        order: np.ndarray | None = None,
        stop_line_bins: tuple[float, ...] = (),
        intensity_dropout: float = 0.0,
        intensity_gain: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        dev = device or torch.device("cpu")
        self.spec = spec
        self.frames = frames
        self.order = None if order is None else np.asarray(order, dtype=np.int64)
        o = self.order
        if o is not None and len(o) and not 0 <= o.min() <= o.max() < len(frames):
            raise ValueError(f"order holds indices outside 0..{len(frames) - 1}")
        self.camera, self.camera_dropout, self.seed = camera, float(camera_dropout), int(seed)
        if not 0.0 <= self.camera_dropout <= 1.0:
            raise ValueError(f"camera_dropout must be in [0, 1], got {camera_dropout}")
        self.intensity_dropout = float(intensity_dropout)
        self.intensity_gain = (float(intensity_gain[0]), float(intensity_gain[1]))
        lo, hi = self.intensity_gain
        if not 0.0 <= self.intensity_dropout <= 1.0 or not 0.0 < lo <= hi:
            raise ValueError(
                f"intensity_dropout must be in [0, 1] and intensity_gain 0 < low <= high, got "
                f"{intensity_dropout} and {intensity_gain} (train.yaml onpolicy)"
            )
        self._gen = torch.Generator().manual_seed(self.seed)
        if camera is not None:
            if frames.images is None or frames.camera_reason is None:
                raise MissingImagesError(
                    f"camera '{camera.name}': these on-policy frames hold no images (collected for a "
                    "LiDAR-only preset); collect with the camera preset in a new --workdir"
                )
            if tuple(frames.images.shape[1:]) != (camera.height, camera.width, 3):
                raise MissingImagesError(
                    f"stored images are {frames.images.shape[1:]}, the model takes "
                    f"{camera.height} x {camera.width} x 3: collect again for this preset"
                )
            scale, mean, inv_std = image_normalisation(camera)
            self.images = torch.from_numpy(frames.images).to(dev)
            self.image_valid = torch.from_numpy(frames.camera_reason == 0).to(dev)
            self._norm = (
                torch.tensor(scale, dtype=torch.float32),
                torch.from_numpy(mean),
                torch.from_numpy(inv_std),
            )
        self.stop_line_bins = tuple(float(b) for b in stop_line_bins) if camera is not None else ()
        if self.stop_line_bins:
            cls = stop_line_classes(frames.stop_line_m, self.stop_line_bins, len(frames))
            self.stop_line = torch.from_numpy(cls).to(dev)
        if frames.points.ndim != 2 or frames.points.shape[1] < spec.point_columns:
            raise ValueError(
                f"these on-policy frames hold {frames.points.shape[1:]} point columns, the model reads "
                f"{spec.point_columns} (a multi-sweep preset needs frames collected for it): "
                "use a new --workdir"
            )
        self.points = torch.from_numpy(frames.points).to(dev)
        self.offsets = torch.from_numpy(frames.offsets).to(dev)
        self.tensors = {
            "ego_state": torch.from_numpy(frames.ego).to(dev),
            "reference_path": torch.from_numpy(frames.path).to(dev),
            "gt": torch.from_numpy(frames.gt).to(dev),
        }

    def __len__(self) -> int:
        return len(self.frames) if self.order is None else len(self.order)

    def _frame_index(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(idx) if self.order is None else self.order[np.asarray(idx)]

    def subset(self, idx: np.ndarray) -> SparseSplitData:
        """A new view holding samples ``idx`` (each once)."""
        return SparseSplitData(
            self.frames.subset(self._frame_index(idx)), self.spec, self.points.device,
            self.camera, self.camera_dropout, self.seed, stop_line_bins=self.stop_line_bins,
            intensity_dropout=self.intensity_dropout, intensity_gain=self.intensity_gain,
        )  # fmt: skip

    def batch(self, idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Samples ``idx`` as model inputs + ``gt`` on ``device`` (pillarized there)."""
        dev = self.points.device
        ti = torch.as_tensor(self._frame_index(idx), dtype=torch.long, device=dev)
        starts, ends = self.offsets[ti], self.offsets[ti + 1]
        counts = ends - starts
        total = int(counts.sum())
        new_off = torch.zeros(len(ti) + 1, dtype=torch.long, device=dev)
        new_off[1:] = torch.cumsum(counts, 0)
        sel = torch.repeat_interleave(starts - new_off[:-1], counts, output_size=total)
        sel = sel + torch.arange(total, device=dev)
        pts = self.points[sel].to(device).float() * POINT_QUANTUM
        if self.intensity_dropout > 0.0 or self.intensity_gain != (1.0, 1.0):
            pts[:, 3] *= torch.repeat_interleave(
                self._intensity_factors(len(ti)).to(device), counts.to(device)
            )
        feats, coords, count = pillarize_batch(pts, new_off.to(device), self.spec)
        out = {"pillar_features": feats, "pillar_coords": coords, "pillar_count": count}
        for k, v in self.tensors.items():
            out[k] = v[ti].to(device, non_blocking=True).float()
        if self.camera is not None:
            out.update(self._camera_batch(ti, device))
        return out

    def _intensity_factors(self, n: int) -> torch.Tensor:
        """Per-sample intensity multipliers: 0 for dropped samples, else a log-uniform gain."""
        lo, hi = np.log(self.intensity_gain)
        gain = torch.exp(lo + (hi - lo) * torch.rand(n, generator=self._gen, dtype=torch.float64)).float()
        keep = torch.rand(n, generator=self._gen) >= self.intensity_dropout
        return torch.where(keep, gain, torch.zeros_like(gain))

    def _camera_batch(self, ti: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """``image [B, 3, H, W]`` and ``camera_valid [B, 1]`` of frames ``ti`` (with dropout)."""
        scale, mean, inv_std = (t.to(device) for t in self._norm)
        # (x * scale - mean) * inv_std in float32, op by op: camera_input.normalise_image's arithmetic
        img = (self.images[ti].to(device).float() * scale - mean) * inv_std
        img = img.permute(0, 3, 1, 2).contiguous()
        valid = self.image_valid[ti].to(device)
        if self.camera_dropout > 0.0:
            keep = torch.rand(len(ti), generator=self._gen) >= self.camera_dropout
            valid = valid & keep.to(device)
        img = torch.where(valid[:, None, None, None], img, torch.zeros((), device=device))
        out = {"image": img, "camera_valid": valid.float()[:, None]}
        if self.stop_line_bins:  # no image, nothing to read the line from: unknown
            cls = self.stop_line[ti].to(device)
            out["stop_line"] = torch.where(valid, cls, torch.full_like(cls, -1))
        return out


def hazard_mask(
    frames: SparseFrames, spec: PillarSpec, horizon_s: float, ratio: float, min_speed: float
) -> np.ndarray:
    """Frames whose expert label brakes hard: it covers under ``ratio`` of the constant-speed distance.

    These are the rare states (a cart crossing, crew stepping out) where the student's collisions
    come from; most frames cruise. ``horizon_s`` is the label's last pose time; frames slower
    than ``min_speed`` (m/s) are never hazards (starting and creeping look the same as braking).
    """
    v = frames.ego[:, 0].astype(np.float64) * spec.ego_scale[0]
    dist = np.linalg.norm(frames.gt[:, -1, :2].astype(np.float64), axis=1)
    return (v > min_speed) & (dist < ratio * v * horizon_s)


def speedup_mask(frames: SparseFrames, spec: PillarSpec, horizon_s: float, margin: float) -> np.ndarray:
    """Frames whose expert label speeds up: it covers over ``margin`` m more than constant speed.

    A student given its own speed learns to copy it (the "copycat" shortcut): most frames cruise,
    so holding the current speed fits nearly every label, and it then never speeds up on an open
    road (the 2026-12-07 multi-sweep candidate held 3 m/s for 20 s where the expert reached 6.5).
    These frames are the few where the speed must change upwards.
    """
    v = frames.ego[:, 0].astype(np.float64) * spec.ego_scale[0]
    dist = np.linalg.norm(frames.gt[:, -1, :2].astype(np.float64), axis=1)
    return dist > v * horizon_s + margin


def oversample_order(extra: np.ndarray) -> np.ndarray:
    """Sample order that holds frame ``i`` ``1 + extra[i]`` times (frames in order, then the repeats)."""
    extra = np.asarray(extra, dtype=np.int64)
    idx = np.arange(len(extra), dtype=np.int64)
    return np.concatenate([idx, np.repeat(idx, np.maximum(extra, 0))])
