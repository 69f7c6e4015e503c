"""Replay metrics (pure numpy): open-loop ADE/FDE, decisions, comfort, latency, GT collisions.

Definitions (also in ``docs/replay.md``):

* **Ground-truth future**: the logged odometry (x, y) interpolated at ``stamp + k*eval_dt``
  and expressed in the ego frame at ``stamp`` (ego pose = odometry interpolated at ``stamp``).
* **ADE** of a plan: mean distance between the plan (linearly resampled at the same times,
  from its implicit origin) and the ground truth, over ``k*eval_dt <= min(horizon_s, plan
  horizon, logged future)``; a frame counts when at least ``min_future_s`` of future is
  logged. **FDE**: the distance at ``horizon_s`` (only frames with the full horizon logged
  and a plan that long). Reported as the mean over frames (and the median).
* **Fallback rate**: share of decisions whose choice is not ``student``; emergency rate:
  share of ``emergency_stop``.
* **Comfort**: a plan violates a limit when its position-derived profile (the arbiter's own
  :mod:`vla_edge.planning.kinematics`) exceeds a NAVSIM limit of ``arbiter.limits``.
* **Collision / TTC** (bags with ``/sim/objects``): the ego footprint circles along the plan
  (``collision.dt_s`` steps up to ``collision.horizon_s``) against the ground-truth boxes *at
  the same future time* (object tracks interpolated by id). A contact counts as a collision
  only while the planned ego moves faster than ``min_moving_speed`` (NAVSIM's at-fault
  rule); the TTC of a plan is the first time the footprint grown by ``ttc_buffer_m`` touches
  a box, a violation when below ``ttc_threshold_s``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import load_config, require
from vla_edge.planning.checks import kinematics
from vla_edge.planning.kinematics import trajectory_profile
from vla_edge.types import Trajectory

FORMAT = "vla_edge.replay_metrics/1"
COMFORT_KEYS = ("lat_accel", "max_lon_accel", "min_lon_accel", "jerk", "yaw_rate")


@dataclass(frozen=True)
class MetricSettings:
    """Parsed ``replay.yaml`` ``metrics`` section plus the limits and footprint it refers to."""

    eval_dt: float
    horizon: float
    min_future: float
    limits: dict[str, float]
    min_speed_for_curvature: float
    col_dt: float
    col_horizon: float
    ttc_threshold: float
    ttc_buffer: float
    min_moving_speed: float
    circle_offsets: np.ndarray
    circle_radius: float

    @classmethod
    def from_config(cls, replay_cfg: Mapping[str, Any]) -> MetricSettings:
        """Build from ``replay.yaml``; loads the comfort limits and the vehicle footprint."""
        from vla_edge.planning.cycle import load_planning_config
        from vla_edge.planning.obstacles import Footprint

        m = require(dict(replay_cfg), "metrics", where="replay.yaml")
        lim_cfg = load_config(
            str(require(m, "comfort_limits_config", where="replay.yaml metrics")), kind="arbiter"
        )
        lim = require(lim_cfg, "arbiter", "limits", where="comfort_limits_config")
        fp = Footprint.from_config(load_planning_config())
        c = require(m, "collision", where="replay.yaml metrics")
        return cls(
            eval_dt=float(m["eval_dt_s"]),
            horizon=float(m["horizon_s"]),
            min_future=float(m["min_future_s"]),
            limits={
                "lat_accel": float(lim["max_lat_accel"]),
                "max_lon_accel": float(lim["max_lon_accel"]),
                "min_lon_accel": float(lim["min_lon_accel"]),
                "jerk": float(lim["max_jerk"]),
                "yaw_rate": float(lim["max_yaw_rate"]),
            },
            min_speed_for_curvature=float(lim["min_speed_for_curvature"]),
            col_dt=float(c["dt_s"]),
            col_horizon=float(c["horizon_s"]),
            ttc_threshold=float(c["ttc_threshold_s"]),
            ttc_buffer=float(c["ttc_buffer_m"]),
            min_moving_speed=float(c["min_moving_speed"]),
            circle_offsets=np.asarray(fp.offsets, dtype=np.float64),
            circle_radius=float(fp.radius),
        )


# ---------------------------------------------------------------------------- odometry


def pose_at(odom: np.ndarray, t: float) -> tuple[float, float, float] | None:
    """Odometry (x, y, yaw) interpolated at ``t``; None outside the logged span."""
    if len(odom) == 0 or t < odom[0, 0] - 1e-6 or t > odom[-1, 0] + 1e-6:
        return None
    yaw = np.unwrap(odom[:, 3])
    return (
        float(np.interp(t, odom[:, 0], odom[:, 1])),
        float(np.interp(t, odom[:, 0], odom[:, 2])),
        float(np.interp(t, odom[:, 0], yaw)),
    )


def future_in_ego(odom: np.ndarray, stamp: float, times: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Logged positions at ``stamp + times`` in the ego frame at ``stamp``.

    Returns:
        ``(xy [K, 2], valid [K])`` (valid = inside the logged span), or None when the
        ego pose at ``stamp`` is not logged.
    """
    p0 = pose_at(odom, stamp)
    if p0 is None:
        return None
    t = stamp + np.asarray(times, dtype=np.float64)
    valid = t <= odom[-1, 0] + 1e-6
    x = np.interp(t, odom[:, 0], odom[:, 1]) - p0[0]
    y = np.interp(t, odom[:, 0], odom[:, 2]) - p0[1]
    c, s = np.cos(p0[2]), np.sin(p0[2])
    return np.column_stack([c * x + s * y, -s * x + c * y]), valid


def as_trajectory(d: Mapping[str, Any] | None, stamp: float) -> Trajectory | None:
    """Trajectory from a record's ``{"dt", "poses"}``."""
    if not d or not d.get("poses"):
        return None
    return Trajectory(np.asarray(d["poses"], dtype=np.float64), float(d["dt"]), stamp)


def displacement_errors(
    traj: Trajectory, odom: np.ndarray, stamp: float, s: MetricSettings
) -> tuple[float, float | None] | None:
    """``(ADE, FDE or None)`` of one plan against the logged future; None when not evaluable."""
    n = round(s.horizon / s.eval_dt)
    times = s.eval_dt * np.arange(1, n + 1)
    gt = future_in_ego(odom, stamp, times)
    if gt is None:
        return None
    xy, valid = gt
    usable = valid & (times <= traj.horizon + 1e-9)
    k = int(np.count_nonzero(usable))
    if k == 0 or times[k - 1] < s.min_future - 1e-9:
        return None
    src_t = np.concatenate([[0.0], traj.times])
    src = traj.with_origin()
    pred = np.column_stack([np.interp(times[:k], src_t, src[:, 0]), np.interp(times[:k], src_t, src[:, 1])])
    err = np.hypot(*(pred - xy[:k]).T)
    fde = float(err[-1]) if k == n else None
    return float(err.mean()), fde


def _summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "median": None, "max": None, "count": 0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(a.mean()), 6),
        "median": round(float(np.median(a)), 6),
        "max": round(float(a.max()), 6),
        "count": len(values),
    }


# ---------------------------------------------------------------------------- comfort


def comfort_violations(traj: Trajectory, s: MetricSettings) -> dict[str, bool]:
    """Which NAVSIM comfort limits a plan violates (True = violated)."""
    prof = trajectory_profile(traj, s.min_speed_for_curvature)
    meas = kinematics(prof)
    lim = s.limits
    return {
        "lat_accel": meas["lat_accel"][0] > lim["lat_accel"],
        "max_lon_accel": meas["max_lon_accel"][0] > lim["max_lon_accel"],
        "min_lon_accel": meas["min_lon_accel"][0] < lim["min_lon_accel"],
        "jerk": meas["jerk"][0] > lim["jerk"],
        "yaw_rate": meas["yaw_rate"][0] > lim["yaw_rate"],
    }


# ---------------------------------------------------------------------------- ground truth


class ObjectTracks:
    """Ground-truth boxes by object key, interpolated in time.

    Args:
        messages: ``[(t, keys, classes, boxes [M, 5] (x, y, yaw, l, w))]`` (odom frame).
    """

    def __init__(self, messages: Sequence[tuple[float, Sequence[str], Sequence[str], np.ndarray]]) -> None:
        per: dict[str, list[tuple[float, np.ndarray]]] = {}
        for t, keys, _cls, boxes in messages:
            for key, box in zip(keys, np.asarray(boxes).reshape(-1, 5), strict=False):
                per.setdefault(key, []).append((float(t), box))
        self.last_msg = max((float(m[0]) for m in messages), default=-np.inf)
        self.keys = sorted(per)
        self.times = [np.array([t for t, _ in per[k]]) for k in self.keys]
        self.boxes = [np.stack([b for _, b in per[k]]) for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    def at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``[O, K, 5]`` at times ``t [K]`` and a mask ``[O, K]`` of known ones.

        Before its first sighting an object is unknown; after its last one it is held
        when it was seen in the last message (static scene end) and unknown otherwise
        (it left the sensor range).
        """
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros((len(self.keys), len(t), 5))
        mask = np.zeros((len(self.keys), len(t)), dtype=bool)
        for i, (ts, bx) in enumerate(zip(self.times, self.boxes, strict=True)):
            yaw = np.unwrap(bx[:, 2])
            for j, col in enumerate((bx[:, 0], bx[:, 1], yaw, bx[:, 3], bx[:, 4])):
                out[i, :, j] = np.interp(t, ts, col)
            held = ts[-1] >= self.last_msg - 1e-6
            mask[i] = (t >= ts[0] - 1e-6) & ((t <= ts[-1] + 1e-6) | held)
        return out, mask


def _world_plan(
    traj: Trajectory, pose0: tuple[float, float, float], dt: float, horizon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plan poses at ``dt`` steps (up to ``horizon``) in the odom frame + planned speeds."""
    h = min(horizon, traj.horizon)
    n = max(1, int(np.floor(h / dt + 1e-9)))
    times = dt * np.arange(1, n + 1)
    src_t = np.concatenate([[0.0], traj.times])
    src = traj.with_origin().copy()
    src[:, 2] = np.unwrap(src[:, 2])
    loc = np.stack([np.interp(times, src_t, src[:, k]) for k in range(3)], axis=1)
    c, s = np.cos(pose0[2]), np.sin(pose0[2])
    world = np.column_stack(
        [
            pose0[0] + c * loc[:, 0] - s * loc[:, 1],
            pose0[1] + s * loc[:, 0] + c * loc[:, 1],
            loc[:, 2] + pose0[2],
        ]
    )
    prev = np.vstack([[0.0, 0.0], loc[:-1, :2]])
    speed = np.hypot(*(loc[:, :2] - prev).T) / dt
    return times, world, speed


def plan_contacts(
    traj: Trajectory,
    pose0: tuple[float, float, float],
    stamp: float,
    objects: ObjectTracks,
    s: MetricSettings,
) -> dict[str, Any]:
    """Collision and TTC of one plan against the ground-truth objects.

    Returns:
        ``{"collision": bool, "t_collision": float | None, "ttc": float | None, "object": key | None}``
        (``ttc`` = first buffered contact time, at fault only).
    """
    times, world, speed = _world_plan(traj, pose0, s.col_dt, s.col_horizon)
    none = {"collision": False, "t_collision": None, "ttc": None, "object": None}
    if len(objects) == 0:
        return none
    boxes, mask = objects.at(stamp + times)  # [O, K, 5]
    c, sn = np.cos(world[:, 2]), np.sin(world[:, 2])
    cx = world[:, 0, None] + c[:, None] * s.circle_offsets[None, :]  # [K, C]
    cy = world[:, 1, None] + sn[:, None] * s.circle_offsets[None, :]
    dx = cx[None] - boxes[:, :, None, 0]  # [O, K, C]
    dy = cy[None] - boxes[:, :, None, 1]
    bc, bs = np.cos(boxes[:, :, None, 2]), np.sin(boxes[:, :, None, 2])
    lx, ly = bc * dx + bs * dy, -bs * dx + bc * dy
    ex = np.maximum(np.abs(lx) - 0.5 * boxes[:, :, None, 3], 0.0)
    ey = np.maximum(np.abs(ly) - 0.5 * boxes[:, :, None, 4], 0.0)
    dist = np.hypot(ex, ey).min(axis=2)  # [O, K] footprint-to-box clearance + radius
    dist = np.where(mask, dist, np.inf)
    at_fault = speed > s.min_moving_speed  # [K]
    hit = (dist <= s.circle_radius) & at_fault[None]
    near = (dist <= s.circle_radius + s.ttc_buffer) & at_fault[None]
    out = dict(none)
    if near.any():
        k = int(np.argmax(near.any(axis=0)))
        out["ttc"] = round(float(times[k]), 6)
    if hit.any():
        k = int(np.argmax(hit.any(axis=0)))
        out["collision"] = True
        out["t_collision"] = round(float(times[k]), 6)
        out["object"] = objects.keys[int(np.argmax(hit[:, k]))]
    return out


# ---------------------------------------------------------------------------- aggregate


def compute_metrics(
    records: Sequence[Mapping[str, Any]],
    tracks: Mapping[str, Any],
    s: MetricSettings,
    *,
    mode: str,
    runs: Sequence[Mapping[str, Any]] = (),
    meta: Mapping[str, Any] | None = None,
    realtime: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Aggregate per-frame records into the ``metrics.json`` mapping.

    Args:
        records: Frame records (``run``, ``stamp``, ``choice``, ``reasons``, ``student``,
            ``frenet``, ``final``...).
        tracks: ``{run name: Tracks}`` (odometry and ground-truth objects).
        s: Settings.
        mode: ``"lockstep"`` or ``"realtime"``.
        runs: Per run counts for the ``bags`` table.
        meta: Engine / config description copied into the result.
        realtime: Realtime measurements (``latency_ms`` list, counts) or None.
    """
    choices = Counter(r["choice"] for r in records if r.get("choice"))
    reasons: Counter[str] = Counter()
    for r in records:
        reasons.update(r.get("reasons") or [])
    n_dec = sum(choices.values())
    errors: dict[str, list[float]] = {
        f"{k}_{m}": [] for k in ("student", "frenet", "final") for m in ("ade", "fde")
    }
    comfort = {
        k: {"plans": 0, "violating": 0, "by_limit": dict.fromkeys(COMFORT_KEYS, 0)}
        for k in ("student", "final")
    }
    objects = {name: ObjectTracks(tr.objects) for name, tr in tracks.items()}
    has_gt = any(len(o) for o in objects.values())
    gt = {"plans": 0, "collisions": 0, "ttc_violations": 0, "min_ttc_s": None, "events": []}
    ade_series: list[dict[str, Any]] = []
    for r in records:
        odom = tracks[r["run"]].odom
        stamp = float(r["stamp"])
        row: dict[str, Any] = {"stamp": stamp}
        for kind in ("student", "frenet", "final"):
            traj = as_trajectory(r.get(kind), stamp)
            if traj is None:
                continue
            e = displacement_errors(traj, odom, stamp, s)
            if e is not None:
                errors[f"{kind}_ade"].append(e[0])
                row[kind] = round(e[0], 4)
                if e[1] is not None:
                    errors[f"{kind}_fde"].append(e[1])
            if kind in comfort:
                viol = comfort_violations(traj, s)
                c = comfort[kind]
                c["plans"] += 1
                c["violating"] += int(any(viol.values()))
                for key, bad in viol.items():
                    c["by_limit"][key] += int(bad)
        ade_series.append(row)
        final = as_trajectory(r.get("final"), stamp)
        pose0 = pose_at(odom, stamp)
        if has_gt and final is not None and pose0 is not None and len(objects[r["run"]]):
            res = plan_contacts(final, pose0, stamp, objects[r["run"]], s)
            gt["plans"] += 1
            if res["collision"]:
                gt["collisions"] += 1
                gt["events"].append({"stamp": stamp, "t": res["t_collision"], "object": res["object"]})
            if res["ttc"] is not None:
                gt["min_ttc_s"] = res["ttc"] if gt["min_ttc_s"] is None else min(gt["min_ttc_s"], res["ttc"])
                gt["ttc_violations"] += int(res["ttc"] < s.ttc_threshold)
    for c in comfort.values():
        c["rate"] = round(c["violating"] / c["plans"], 6) if c["plans"] else None
    out: dict[str, Any] = {
        "format": FORMAT,
        "mode": mode,
        "meta": dict(meta or {}),
        "bags": list(runs),
        "frames": len(records),
        "decisions": {
            "total": n_dec,
            "counts": dict(sorted(choices.items())),
            "reasons": dict(sorted(reasons.items())),
            "fallback_rate": round(1.0 - choices.get("student", 0) / n_dec, 6) if n_dec else None,
            "emergency_rate": round(choices.get("emergency_stop", 0) / n_dec, 6) if n_dec else None,
            "frames_without_student": sum(1 for r in records if not r.get("student")),
        },
        "open_loop": {
            kind: {"ade_m": _summary(errors[f"{kind}_ade"]), "fde_m": _summary(errors[f"{kind}_fde"])}
            for kind in ("student", "frenet", "final")
        },
        "comfort": comfort,
        "ground_truth": (
            {
                **gt,
                "available": True,
                "collision_rate": round(gt["collisions"] / gt["plans"], 6) if gt["plans"] else None,
            }
            if has_gt
            else {"available": False}
        ),
        "settings": {
            "eval_dt_s": s.eval_dt,
            "horizon_s": s.horizon,
            "min_future_s": s.min_future,
            "comfort_limits": s.limits,
            "ttc_threshold_s": s.ttc_threshold,
        },
        "series": {"ade": ade_series},
    }
    if realtime is not None:
        out["realtime"] = dict(realtime)
    return out


def latency_summary(latency_ms: Sequence[float | None], deadline_ms: float) -> dict[str, Any]:
    """p50/p99/mean/max of the latencies that exist, and deadline misses.

    A frame without a plan (None) is a miss; so is one later than ``deadline_ms``.
    """
    have = [float(v) for v in latency_ms if v is not None]
    misses = sum(1 for v in latency_ms if v is None or v > deadline_ms)
    n = len(latency_ms)
    a = np.asarray(have) if have else np.zeros(0)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3) if have else None,
        "p99_ms": round(float(np.percentile(a, 99)), 3) if have else None,
        "mean_ms": round(float(a.mean()), 3) if have else None,
        "max_ms": round(float(a.max()), 3) if have else None,
        "deadline_ms": deadline_ms,
        "deadline_misses": misses,
        "deadline_miss_rate": round(misses / n, 6) if n else None,
        "frames_without_plan": sum(1 for v in latency_ms if v is None),
        "sweeps": n,
    }
