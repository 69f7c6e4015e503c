"""Lockstep replay: bag -> frames in stamp order -> DrivePipeline, deterministically.

How time is handled (the whole point of lockstep):

* Inputs are fed to one :class:`~vla_edge.frame_assembly.FrameAssembler` per run in
  **header-stamp order**; at equal stamps odometry, reference path and images go before the
  LiDAR sweep. A small reorder buffer (``lockstep.reorder_window_s``) absorbs messages that
  were logged a little after their stamp (recorder bags log receive time), so the order
  never depends on transport jitter.
* Every sweep gets a frame, the student runs on it (no deadline, no drops) with the fixed
  noise seed ``lockstep.noise_seed``, and the planning cycle runs with the candidate of that
  same frame at the **simulated clock** ``now = frame stamp + lockstep.plan_delay_ms``.
  Staleness, student age and frame-deadline checks therefore see the same numbers on every
  run, on any machine.
* Wall-clock stage timings are measured but written to ``timing.json`` only; ``metrics.json``
  holds nothing that depends on the machine, so two runs give identical files.

The bag reading here (:func:`iter_run_frames`, on the shared
:class:`~vla_edge.bag_frames.BagFrames` loop) is shared with realtime replay, which uses it for
the logged odometry / ground-truth tracks and the BEV snapshots.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.bag_frames import BagFrames, bag_topics, count_messages, frame_roles
from vla_edge.config import load_config, require
from vla_edge.errors import VlaEdgeError
from vla_edge.replay import ReplayError
from vla_edge.types import Frame, trajectory_to_json

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- config


def load_replay_config(path: str | Path | None = None) -> dict[str, Any]:
    """``config/replay.yaml`` (or ``path``), checked for the sections replay needs."""
    cfg = load_config(str(path) if path else "replay", kind="replay")
    for key in ("remap", "lockstep", "realtime", "metrics", "report", "gate"):
        require(cfg, key, where="replay.yaml")
    return cfg


def parse_remaps(items: Sequence[str] | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``["FROM:=TO", ...]`` (ROS remap syntax) merged over ``base``.

    Raises:
        ReplayError: An item is not ``FROM:=TO`` with two topic names.
    """
    out = {str(k): str(v) for k, v in (base or {}).items()}
    for item in items or []:
        src, sep, dst = item.partition(":=")
        if not sep or not src.startswith("/") or not dst.startswith("/"):
            raise ReplayError(
                f"bad --remap {item!r}; write FROM:=TO with topic names, e.g. /points:=/sensing/lidar/points"
            )
        out[src] = dst
    return out


def drive_values(config_file: str | Path | None, engine: str | None, backend: str | None) -> dict[str, Any]:
    """Flat drive parameters as ``vla-edge drive`` resolves them (shipped < file < flags)."""
    from vla_edge.params import resolve_overrides

    return resolve_overrides(config_file, {"engine_path": engine, "backend": backend})


# ---------------------------------------------------------------------------- bag reading


@dataclass
class Tracks:
    """Logged motion of one run, for metrics.

    Attributes:
        odom: ``[N, 4]`` (t, x, y, yaw) of every odometry message, odom frame, by stamp.
        objects: Ground-truth boxes per ``/sim/objects`` message: ``(t, keys, classes, boxes)``
            with keys ``"<class>/<id>"`` and boxes ``[M, 5]`` (x, y, yaw, length, width) in
            the odom frame; empty for non-simulator bags.
    """

    odom: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    objects: list[tuple[float, list[str], list[str], np.ndarray]] = field(default_factory=list)


@dataclass
class RunFrames:
    """Bookkeeping of one run's frame pass."""

    name: str
    bags: list[Path]
    lidar_count: int = 0
    frames: int = 0
    skipped: int = 0
    tracks: Tracks = field(default_factory=Tracks)


def expand_runs(paths: Sequence[str | Path]) -> list[Any]:
    """Bag arguments -> runs (recorder splits of one session form one run).

    Reuses the explain tool's discovery: rosbag2 folders (MCAP or sqlite3), bare ``.mcap``
    files, recorder output folders (``splits/``).
    """
    from vla_edge.explain.rebuild import Run, group_runs

    if not paths:
        raise ReplayError("no bags given; pass one or more rosbag2 folders")
    runs = []
    for p in paths:
        path = Path(p)
        if path.is_file() and path.suffix == ".db3":  # a bare sqlite3 file: its folder is the bag
            runs.append(Run(str(path.parent), [path.parent]))
            continue
        try:
            runs.extend(group_runs([path]))
        except VlaEdgeError as exc:
            raise ReplayError(str(exc)) from None
    return runs


def _objects_from_markers(msg: Any, ignore: set[str]) -> tuple[list[str], list[str], np.ndarray]:
    from vla_edge.conversions.trajectory import yaw_from_quaternion_msg

    ids, classes, boxes = [], [], []
    for m in msg.markers:
        if str(m.ns) in ignore or int(m.action) != 0:
            continue
        p = m.pose
        ids.append(f"{m.ns}/{int(m.id)}")
        classes.append(str(m.ns))
        boxes.append(
            [p.position.x, p.position.y, yaw_from_quaternion_msg(p.orientation), m.scale.x, m.scale.y]
        )
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    return ids, classes, arr


def input_roles(topics: Mapping[str, Any], camera: str) -> dict[str, str]:
    """``{topic: role}`` of what replay reads: the graph's inputs plus ``/sim/objects``."""
    return {**frame_roles(topics, camera), topics["sim"]["objects"]: "objects"}


def iter_run_frames(
    run: Any,
    *,
    topics: Mapping[str, Any],
    remap: Mapping[str, str],
    frame_cfg: Mapping[str, Any],
    calibration_cfg: Mapping[str, Any],
    camera: str,
    reorder_window_s: float,
    state: RunFrames,
    ignore_classes: Sequence[str] = (),
) -> Iterator[Frame]:
    """Frames of one run in stamp order, filling ``state`` (tracks, counts) on the way.

    The shared :class:`~vla_edge.bag_frames.BagFrames` loop in stamp order with its reorder
    buffer. A sweep the assembler refuses (typed error) is counted in ``state.skipped`` and
    skipped, as the vehicle's node would.

    Raises:
        ReplayError: A bag lacks the LiDAR or odometry topic (after remapping).
    """
    have_all = bag_topics(run.bags, remap)  # a split may lack a topic (e.g. the last one); the run may not
    for need in ("lidar", "odometry"):
        topic = topics["inputs"][need]
        if topic not in have_all:
            raise ReplayError(
                f"{run.name}: no {need} topic {topic} (bag has {sorted(have_all)}); "
                "remap it with --remap FROM:=TO or replay.yaml remap"
            )
    ignore = set(ignore_classes)
    odom_rows: list[tuple[float, float, float, float]] = []
    src = BagFrames(
        run.bags,
        input_roles(topics, camera),
        frame_cfg,
        calibration_cfg,
        remap=remap,
        reorder_window_s=reorder_window_s,
        name=run.name,
    )
    try:
        for item in src:
            if item.ego is not None:
                odom_rows.append((item.stamp, item.ego.x, item.ego.y, item.ego.yaw))
            elif item.kind == "objects":
                ids, cls, boxes = _objects_from_markers(item.msg, ignore)
                state.tracks.objects.append((item.stamp, ids, cls, boxes))
            elif item.frame is not None:
                state.lidar_count, state.frames, state.skipped = src.lidar, src.frames, src.skipped
                yield item.frame
    finally:
        state.lidar_count, state.frames, state.skipped = src.lidar, src.frames, src.skipped
    odom = np.asarray(odom_rows, dtype=np.float64).reshape(-1, 4)
    state.tracks.odom = odom[np.argsort(odom[:, 0], kind="stable")] if len(odom) else odom


# ---------------------------------------------------------------------------- records


def bev_points(points: np.ndarray, window: Sequence[float], max_points: int) -> list[list[float]]:
    """LiDAR x/y inside the BEV window, strided down to ``max_points`` (deterministic)."""
    x0, x1, y0, y1 = (float(v) for v in window)
    pts = np.asarray(points)[:, :2]
    keep = pts[(pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)]
    step = max(1, int(np.ceil(len(keep) / max(1, max_points))))
    return np.round(keep[::step], 2).tolist()


def snapshot_indices(n: int, per_bag: int) -> set[int]:
    """Evenly spaced sweep indices ``0..n-1`` (at most ``per_bag``)."""
    if n <= 0 or per_bag <= 0:
        return set()
    return {round(i) for i in np.linspace(0, n - 1, min(n, per_bag))}


def clusters_of(decision_dict: Mapping[str, Any] | None) -> list[list[float]]:
    """``[[cx, cy, r], ...]`` of the LiDAR obstacle clusters in a decision dict."""
    obs = (decision_dict or {}).get("obstacles") or {}
    return [[*c["centroid"][:2], c["radius"]] for c in obs.get("clusters", [])]


@dataclass
class ReplayResult:
    """What a replay produced (also written to its output folder).

    Attributes:
        records: One dict per frame (see docs/replay.md), in replay order.
        runs: Per run bookkeeping with the logged tracks.
        snapshots: BEV data of a few frames per run (points, plans, clusters).
        timing: Wall-clock measurements (never in metrics.json for lockstep).
        realtime: Realtime-only raw data (latencies, counts), None for lockstep.
    """

    records: list[dict[str, Any]]
    runs: list[RunFrames]
    snapshots: list[dict[str, Any]]
    timing: dict[str, Any]
    realtime: dict[str, Any] | None = None


def run_lockstep(
    bags: Sequence[str | Path],
    values: Mapping[str, Any],
    replay_cfg: Mapping[str, Any],
    remap: Mapping[str, str],
    progress: Callable[[int], None] | None = None,
    pipeline: Any | None = None,
) -> ReplayResult:
    """Replay ``bags`` through the pipeline in lockstep.

    Args:
        bags: Bag arguments (folders, ``.mcap``/``.db3`` files, recorder folders).
        values: Flat drive parameters (:func:`drive_values`).
        replay_cfg: ``replay.yaml`` mapping.
        remap: Topic remapping ``{in bag: topics.yaml name}``.
        progress: Called with 1 per processed sweep (tqdm ``update``).
        pipeline: A ready :class:`~vla_edge.pipeline.DrivePipeline` (tests); built from
            ``values`` when None.
    """
    from vla_edge.drive_loop import DriveLoop
    from vla_edge.params import unflatten
    from vla_edge.pipeline import DrivePipeline

    runs = expand_runs(bags)
    cfg = unflatten(dict(values))
    t_load = time.perf_counter()
    if pipeline is None:
        pipeline = DrivePipeline.from_config(cfg)
    seed = replay_cfg["lockstep"]["noise_seed"]
    pipeline.noise_seed = None if seed is None else int(seed)
    loop = DriveLoop.from_config(cfg, pipeline)  # the arbiter node's timing policy, simulated clock
    load_s = time.perf_counter() - t_load
    delay = float(replay_cfg["lockstep"]["plan_delay_ms"]) / 1000.0
    rep = replay_cfg["report"]
    topics = load_config(str(cfg["topics_config"]), kind="topics")
    frame_cfg = load_config(str(cfg["frame_config"]), kind="frame")
    calib_cfg = load_config(str(cfg["calibration_config"]), kind="calibration")
    records: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []
    states: list[RunFrames] = []
    infer_ms: list[float] = []
    plan_ms: list[float] = []
    for run in runs:
        state = RunFrames(run.name, list(run.bags))
        states.append(state)
        loop.reset()  # a new run starts without plans, tracks or hysteresis
        n_lidar = _lidar_count(run, topics, remap)
        picks = snapshot_indices(n_lidar, int(rep["bev_frames_per_bag"]))
        frames = iter_run_frames(
            run,
            topics=topics,
            remap=remap,
            frame_cfg=frame_cfg,
            calibration_cfg=calib_cfg,
            camera=str(cfg["camera"]),
            reorder_window_s=float(replay_cfg["lockstep"]["reorder_window_s"]),
            state=state,
            ignore_classes=replay_cfg["metrics"]["collision"]["ignore_classes"],
        )
        for i, frame in enumerate(frames):
            result, step = loop.step(frame, frame.stamp + delay)
            if step is None or step.decision is None:  # out of order (refused) or a planner bug
                continue
            decision = step.decision
            infer_ms.append(float(result.timing_ms.get("total", 0.0)) if result is not None else 0.0)
            plan_ms.append(step.arbiter_ms)
            d = decision.to_dict()
            student = result.trajectory if result is not None and result.usable else None
            rec = {
                "run": run.name,
                "stamp": round(float(frame.stamp), 6),
                "choice": decision.choice,
                "reasons": list(decision.reasons),
                "student": trajectory_to_json(student),
                "frenet": trajectory_to_json(decision.frenet),
                "final": trajectory_to_json(decision.trajectory),
                "candidate_error": None if result is None else result.error,
                "stale": sorted(frame.stale),
            }
            records.append(rec)
            if i in picks:
                snapshots.append(
                    {
                        **rec,
                        "points": bev_points(frame.points, rep["bev_range_m"], int(rep["bev_max_points"])),
                        "clusters": clusters_of(d),
                    }
                )
            if progress is not None:
                progress(1)
    timing = {
        "load_s": load_s,
        "infer_ms": _pcts(infer_ms),
        "plan_ms": _pcts(plan_ms),
        "frames": len(records),
    }
    return ReplayResult(records, states, snapshots, timing)


def _lidar_count(run: Any, topics: Mapping[str, Any], remap: Mapping[str, str]) -> int:
    return count_messages(run.bags, topics["inputs"]["lidar"], remap)


def total_sweeps(bags: Sequence[str | Path], topics: Mapping[str, Any], remap: Mapping[str, str]) -> int:
    """LiDAR messages over all runs (progress bars)."""
    return sum(_lidar_count(run, topics, remap) for run in expand_runs(bags))


def _pcts(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
    }


def write_records(out_dir: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """``records.jsonl``: one JSON object per frame (sorted keys: byte-identical reruns)."""
    path = out_dir / "records.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    """Inverse of :func:`write_records`."""
    with path.open("r", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
