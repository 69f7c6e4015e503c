"""Dataset from rosbag2 bags: frames rebuilt with the runtime's own code, GT from future odometry.

Per bag (one worker process each, tqdm over bags):

1. read the vehicle topics of ``config/topics.yaml`` (MCAP or sqlite3, synthetic or real) in
   log order through :class:`~vla_edge.bag_frames.BagFrames`, the loop explain and replay use;
2. rebuild one :class:`~vla_edge.types.Frame` per kept LiDAR sweep (every
   ``dataset.frame_stride``-th) with the runtime's
   :class:`~vla_edge.frame_assembly.FrameAssembler` (same conversions, sync and staleness rules
   as on the vehicle; camera images are not read — the model does not use them);
3. attach the ground-truth future (T poses at
   dt from ``config/model.yaml``, ego frame) from the bag's own future odometry and drop bad
   segments (:mod:`training.segments`: ``end_of_bag``, ``gap``, ``teleport``, ``stationary``,
   plus ``stale_input`` for frames the assembler flagged stale); the counts go into the manifest;
4. compute the model inputs with the runtime's builder (:mod:`vla_edge.model_inputs`), exactly
   what the engine sees on the vehicle, and cache them as one shard ``shards/<bag>.npz``
   (pillar features stored as float16 to halve the size);
5. where the bag has ``/sim/expert_trajectory`` / ``/sim/reasoning`` (simulator bags), keep the
   privileged expert's plan and reasoning for the frame (teacher (a)).

The split is by bag (seeded shuffle of bag names, ``dataset.val_fraction`` of them to
``val``), so no scenario contributes frames to both sides. A shard is rebuilt only when missing
or with ``--force``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from training.data import FORMAT, MANIFEST, DatasetError
from training.segments import REASONS, OdometryTrack, SegmentFilter, classify_window, future_trajectory
from vla_edge.bag_frames import BagFrames, bag_topics, frame_roles
from vla_edge.errors import VlaEdgeError
from vla_edge.fsutil import atomic_path

log = logging.getLogger(__name__)


def find_bags(paths: list[str | Path]) -> list[Path]:
    """Expand arguments into bag paths (a rosbag2 directory has ``metadata.yaml``; ``.mcap``/``.db3`` files).

    Raises:
        DatasetError: If a path does not exist or nothing bag-like is found.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DatasetError(f"bag path {p} does not exist")
        if (p.is_file() and p.suffix in (".mcap", ".db3")) or (p.is_dir() and (p / "metadata.yaml").exists()):
            out.append(p)
        elif p.is_dir():
            subs = sorted(q for q in p.iterdir() if (q / "metadata.yaml").exists() or q.suffix in (".mcap",))
            out.extend(subs)
    if not out:
        raise DatasetError(f"no rosbag2 bags found under {[str(p) for p in paths]}")
    names = [bag_name(b) for b in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DatasetError(f"bag names must be unique (they key shards and labels): duplicates {sorted(dup)}")
    return out


def bag_name(path: Path) -> str:
    """Name of a bag: its directory name, or the file stem."""
    return path.name if path.is_dir() else path.stem


def split_bags(names: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Assign whole bags to ``train``/``val`` (seeded; at least one of each when there are ≥ 2 bags)."""
    order = sorted(names)
    rng = np.random.default_rng(seed)
    perm = [order[i] for i in rng.permutation(len(order))]
    n_val = round(val_fraction * len(order))
    if len(order) >= 2 and val_fraction > 0:
        n_val = min(max(n_val, 1), len(order) - 1)
    return {b: ("val" if i < n_val else "train") for i, b in enumerate(perm)}


@dataclass
class BagJob:
    """Everything a worker needs to turn one bag into a shard."""

    bag: Path
    shard: Path
    topics: dict[str, Any]
    frame_cfg: dict[str, Any]
    calibration_cfg: dict[str, Any]
    model_cfg: dict[str, Any]
    dataset_cfg: dict[str, Any]


@dataclass
class BagResult:
    """What a worker reports back."""

    bag: str
    frames: int
    counts: dict[str, int]
    lidar_messages: int
    seconds: float
    errors: list[str] = field(default_factory=list)


def _expert_poses(msg: Any, horizon: int, dt: float) -> np.ndarray | None:
    """A ``/sim/expert_trajectory`` Path (base_link, poses at stamp + k·dt) as ``[T, 3]``, or None."""
    from vla_edge.conversions import path_to_trajectory

    try:
        traj = path_to_trajectory(msg)
    except VlaEdgeError:
        return None
    if traj.horizon + 1e-6 < horizon * dt:
        return None
    return traj.resample(dt, horizon * dt).poses.astype(np.float32)


def process_bag(job: BagJob) -> BagResult:
    """Rebuild the frames of one bag and write its shard (runs in a worker process)."""
    from vla_edge.model_inputs import frame_inputs
    from vla_edge.pillarize import PillarSpec

    t0 = time.monotonic()
    name = bag_name(job.bag)
    spec = PillarSpec.from_config(job.model_cfg)
    horizon = int(job.model_cfg["trajectory"]["num_poses"])
    dt = float(job.model_cfg["trajectory"]["dt"])
    filt = SegmentFilter.from_config(job.dataset_cfg["filter"])
    stride = max(1, int(job.dataset_cfg["frame_stride"]))
    tol = float(job.dataset_cfg["label_match_tolerance"])
    cap = int(job.dataset_cfg["max_frames_per_bag"])
    sim = job.topics.get("sim", {})
    role = frame_roles(job.topics)
    if sim.get("expert_trajectory"):
        role[sim["expert_trajectory"]] = "expert"
    if sim.get("reasoning"):
        role[sim["reasoning"]] = "reasoning"
    have = bag_topics([job.bag])
    missing = [t for t, k in role.items() if k in ("lidar", "odometry") and t not in have]
    if missing:
        raise DatasetError(
            f"bag {job.bag} has no {missing}; it has {sorted(have)} (set the names in config/topics.yaml)"
        )
    frame_cfg = json.loads(json.dumps(job.frame_cfg))
    frame_cfg["images"]["decode"] = False  # the model does not use images
    frames: list[Any] = []
    odo: list[tuple[float, float, float, float, float]] = []
    experts: dict[int, np.ndarray] = {}
    reasons: list[tuple[float, str]] = []
    errors: list[str] = []

    def on_error(kind: str, t: float, exc: Exception) -> None:
        if len(errors) < 20:
            errors.append(f"{kind} at {t:.3f}: {exc}")

    src = BagFrames(
        [job.bag],
        role,
        frame_cfg,
        job.calibration_cfg,
        frame_stride=stride,
        name=name,
        on_error=on_error,
        skip_undecodable=True,  # a corrupt message must not kill the whole dataset
    )
    for item in src:
        if item.ego is not None:
            st = item.ego
            odo.append((st.stamp, st.x, st.y, st.yaw, st.v))
        elif item.frame is not None:
            frames.append(item.frame)
        elif item.kind == "expert":
            poses = _expert_poses(item.msg, horizon, dt)
            if poses is not None:
                experts[round(item.stamp * 1e3)] = poses
        elif item.kind == "reasoning":
            reasons.append((item.log_time, str(item.msg.data)))
    lidar_seen = src.lidar
    counts = dict.fromkeys(REASONS, 0)
    if not odo:
        counts["end_of_bag"] = len(frames)
        _write_shard(job.shard, name, [], spec, horizon)
        return BagResult(name, 0, counts, lidar_seen, time.monotonic() - t0, errors or ["no odometry"])
    arr = np.array(odo)
    track = OdometryTrack(t=arr[:, 0], xy=arr[:, 1:3], yaw=arr[:, 3], v=arr[:, 4])
    r_t = np.array([r[0] for r in reasons]) if reasons else np.zeros(0)
    e_keys = np.array(sorted(experts)) if experts else np.zeros(0, dtype=np.int64)
    rows = []
    for fr in frames:
        # A sweep with 0 (or too few plausible) points is flagged stale ("lidar") by the
        # FrameAssembler, so it never becomes a training row (issue 14.9).
        reason = "stale_input" if fr.stale else classify_window(track, fr.stamp, horizon * dt, filt)
        counts[reason] += 1
        if reason != "ok" or (cap and len(rows) >= cap):
            continue
        inp = frame_inputs(fr, spec)
        row = {
            "stamp": fr.stamp,
            "pillar_features": inp["pillar_features"].astype(np.float16),
            "pillar_coords": inp["pillar_coords"].astype(np.int16),
            "pillar_count": np.int32(inp["pillar_count"]),
            "ego_state": inp["ego_state"],
            "reference_path": inp["reference_path"],
            "gt": future_trajectory(track, fr.stamp, horizon, dt).astype(np.float32),
            "speed": np.float32(fr.ego.v),
            "expert": np.zeros((horizon, 3), np.float32),
            "expert_valid": False,
            "reasoning": "",
        }
        if len(e_keys):
            k = round(fr.stamp * 1e3)
            j = int(np.argmin(np.abs(e_keys - k)))
            if abs(int(e_keys[j]) - k) <= tol * 1e3:
                row["expert"], row["expert_valid"] = experts[int(e_keys[j])], True
        if len(r_t):
            j = int(np.argmin(np.abs(r_t - fr.stamp)))
            if abs(r_t[j] - fr.stamp) <= tol:
                row["reasoning"] = reasons[j][1]
        rows.append(row)
    _write_shard(job.shard, name, rows, spec, horizon)
    return BagResult(name, len(rows), counts, lidar_seen, time.monotonic() - t0, errors)


def _write_shard(path: Path, bag: str, rows: list[dict[str, Any]], spec: Any, horizon: int) -> None:
    P, M, C, K = spec.max_pillars, spec.max_points, spec.num_features, spec.num_path_points

    def stack(key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        if not rows:
            return np.zeros((0, *shape), dtype=dtype)
        return np.stack([np.asarray(r[key], dtype=dtype) for r in rows])

    arrays = {
        "bag": np.array([bag] * len(rows), dtype=str),
        "stamp": np.array([r["stamp"] for r in rows], dtype=np.float64),
        "pillar_features": stack("pillar_features", (P, M, C), np.float16),
        "pillar_coords": stack("pillar_coords", (P, 2), np.int16),
        "pillar_count": np.array([r["pillar_count"] for r in rows], dtype=np.int32),
        "ego_state": stack("ego_state", (6,), np.float32),
        "reference_path": stack("reference_path", (K, 2), np.float32),
        "gt": stack("gt", (horizon, 3), np.float32),
        "speed": np.array([r["speed"] for r in rows], dtype=np.float32),
        "expert": stack("expert", (horizon, 3), np.float32),
        "expert_valid": np.array([r["expert_valid"] for r in rows], dtype=bool),
        "reasoning": np.array([r["reasoning"] for r in rows], dtype=str),
    }
    with atomic_path(path, suffix=".tmp.npz", mode=0o644) as tmp:  # np.savez keeps a .npz name
        np.savez(tmp, **arrays)


def _spec_hash(model_cfg: dict[str, Any], dataset_cfg: dict[str, Any]) -> str:
    """Hash of everything that changes shard contents (a mismatch forces a rebuild)."""
    keys = {k: model_cfg[k] for k in ("pillars", "inputs", "trajectory")}
    keys["dataset"] = {k: dataset_cfg[k] for k in ("frame_stride", "filter", "max_frames_per_bag")}
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def build_dataset(
    bags: list[str | Path],
    out_dir: str | Path,
    cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    force: bool = False,
    split_name: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Build (or update) a dataset directory from bags; returns the manifest.

    Args:
        bags: Bag paths or directories of bags.
        out_dir: Dataset directory (``shards/`` + ``manifest.json``).
        cfg: Parsed ``config/train.yaml``.
        model_cfg: Parsed ``config/model.yaml``.
        force: Rebuild shards even when cached.
        split_name: Put every bag in this split (e.g. ``test``) instead of train/val.
        workers: Worker processes (None: ``dataset.workers``; 0: one per core).

    Raises:
        DatasetError: No bags, unreadable bags, or no frame survived at all.
    """
    from vla_edge.config import load_config

    dc = cfg["dataset"]
    out = Path(out_dir)
    paths = find_bags(bags)
    names = [bag_name(p) for p in paths]
    splits = (
        {n: split_name for n in names}
        if split_name
        else split_bags(names, float(dc["val_fraction"]), int(cfg["seed"]))
    )
    topics, frame_cfg, cal_cfg = load_config("topics"), load_config("frame"), load_config("calibration")
    digest = _spec_hash(model_cfg, dc)
    old: dict[str, Any] = {}
    if (out / MANIFEST).exists():
        try:
            old = json.loads((out / MANIFEST).read_text())
        except json.JSONDecodeError:
            old = {}
    reuse = (not force) and old.get("spec_hash") == digest
    jobs, results = [], {}
    for p, n in zip(paths, names):
        shard = out / "shards" / f"{n}.npz"
        prev = old.get("bags", {}).get(n) if reuse else None
        if prev is not None and shard.exists():
            results[n] = BagResult(n, prev["frames"], prev["counts"], prev.get("lidar_messages", 0), 0.0)
            continue
        jobs.append(BagJob(p, shard, topics, frame_cfg, cal_cfg, model_cfg, dc))
    n_workers = int(dc["workers"]) if workers is None else int(workers)
    n_workers = n_workers or os.cpu_count() or 1
    n_workers = max(1, min(n_workers, len(jobs)))
    if jobs:
        if n_workers == 1:
            it = (process_bag(j) for j in jobs)
            for r in tqdm(it, total=len(jobs), desc="bags", unit="bag"):
                results[r.bag] = r
        else:
            with ProcessPoolExecutor(n_workers) as pool:
                for r in tqdm(pool.map(process_bag, jobs), total=len(jobs), desc="bags", unit="bag"):
                    results[r.bag] = r
    totals = dict.fromkeys(REASONS, 0)
    entries = {}
    for n in names:
        r = results[n]
        for k, v in r.counts.items():
            totals[k] = totals.get(k, 0) + int(v)
        entries[n] = {
            "split": splits[n],
            "frames": r.frames,
            "counts": r.counts,
            "lidar_messages": r.lidar_messages,
            "shard": f"shards/{n}.npz",
            "errors": r.errors,
        }
        for e in r.errors[:3]:
            log.warning("%s: %s", n, e)
    kept = {
        s: sum(e["frames"] for e in entries.values() if e["split"] == s) for s in sorted(set(splits.values()))
    }
    totals_out = {
        "frames_kept": sum(kept.values()),
        "frames_by_split": kept,
        "dropped": totals,
        "bags": len(names),
    }
    man = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spec_hash": digest,
        "horizon": int(model_cfg["trajectory"]["num_poses"]),
        "dt": float(model_cfg["trajectory"]["dt"]),
        "frame_stride": int(dc["frame_stride"]),
        "filter": dc["filter"],
        "bags": entries,
        "totals": totals_out,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(man, indent=1))
    log.info(
        "dataset %s: %d frames kept %s; dropped %s",
        out,
        totals_out["frames_kept"],
        kept,
        {k: v for k, v in totals.items() if k != "ok"},
    )
    if totals_out["frames_kept"] == 0:
        raise DatasetError(
            f"no frame of {len(names)} bag(s) survived filtering ({totals}); check the topics in "
            "config/topics.yaml and the thresholds under dataset.filter in config/train.yaml"
        )
    return man
