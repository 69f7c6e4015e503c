"""Airside rules as configuration: zone speed limits, right of way, clearance per class.

All numbers live in ``planner.yaml`` ``planner.rules`` with their source. The vehicle has no
airport map here, so zones are recognised from what the LiDAR sees along the reference path:

* ``service_road`` - the default limit on the reference path;
* ``apron`` - the ego is off the service-road corridor (further from the path than
  ``apron_offset``);
* ``near_stand`` - an aircraft-sized cluster within ``stand_lateral`` of the path: the limit
  applies along the aircraft's extent plus ``stand_margin``;
* ``near_personnel`` - a person-sized cluster within ``personnel_lateral`` of the path ahead:
  the limit applies from ``personnel_before`` before it to ``personnel_after`` past it.

**Passing**: the ego may move its body across the centre line (end offset above
``pass_offset``) only when :func:`passing_blocked` finds no oncoming agent ahead and, with
``overtake_moving`` false, no moving lead to overtake (the 60 m LiDAR region of interest
cannot show the other lane clear for the ~8 s an overtake of a slow tug takes).

**Aircraft have right of way**: aircraft-sized clusters keep the largest clearance (their
cells are inflated by ``clearance.aircraft`` more) and are never passed closer; a pushback
into the road is static occupancy plus that clearance, so the ego waits. **Minimum lateral
clearance per class** is the same mechanism for ``person`` and ``object``.

Speed limits become a cap ``v_cap(s)`` along the path with a comfortable braking look-back
(``rule_decel``): a plan may exceed the cap only while braking towards it at least at
``rule_decel`` (a limit that appears suddenly is not a reason for an emergency stop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.errors import ConfigError
from vla_edge.planning.obstacles import Obstacles
from vla_edge.planning.reference_path import ReferencePath

CLASSES = ("person", "aircraft", "object")


@dataclass(frozen=True)
class RulesParams:
    """``planner.yaml`` ``planner.rules`` (see the YAML for units and sources)."""

    zone_speed: dict[str, float]
    clearance: dict[str, float]
    person_max_extent: float
    person_min_height: float
    person_max_bottom: float
    person_min_extent: float
    person_max_speed: float
    aircraft_min_extent: float
    stand_lateral: float
    stand_margin: float
    personnel_lateral: float
    personnel_before: float
    personnel_after: float
    apron_offset: float
    rule_decel: float
    tolerance: float
    pass_offset: float
    overtake_moving: bool
    oncoming_check: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RulesParams:
        """Build from the merged config; every key is required and range-checked."""
        r = require(cfg, "planner", "rules", where="planner.yaml")
        zones = require(r, "zones")
        clear = require(r, "clearance")
        out = cls(
            zone_speed={
                k: float(require(zones, k)) for k in ("service_road", "apron", "near_stand", "near_personnel")
            },
            clearance={k: float(require(clear, k)) for k in CLASSES},
            person_max_extent=float(require(r, "person_max_extent")),
            person_min_height=float(require(r, "person_min_height")),
            person_max_bottom=float(require(r, "person_max_bottom")),
            person_min_extent=float(require(r, "person_min_extent")),
            person_max_speed=float(require(r, "person_max_speed")),
            aircraft_min_extent=float(require(r, "aircraft_min_extent")),
            stand_lateral=float(require(r, "stand_lateral")),
            stand_margin=float(require(r, "stand_margin")),
            personnel_lateral=float(require(r, "personnel_lateral")),
            personnel_before=float(require(r, "personnel_before")),
            personnel_after=float(require(r, "personnel_after")),
            apron_offset=float(require(r, "apron_offset")),
            rule_decel=float(require(r, "rule_decel")),
            tolerance=float(require(r, "tolerance")),
            pass_offset=float(require(r, "pass_offset")),
            overtake_moving=bool(require(r, "overtake_moving")),
            oncoming_check=float(require(r, "oncoming_check")),
        )
        for k, v in out.zone_speed.items():
            if not 0.5 <= v <= 30.0:
                raise ConfigError(
                    f"planner.yaml: planner.rules.zones.{k} must be within [0.5, 30] m/s, got {v}"
                )
        for k, v in out.clearance.items():
            if not 0.0 <= v <= 10.0:
                raise ConfigError(
                    f"planner.yaml: planner.rules.clearance.{k} must be within [0, 10] m, got {v}"
                )
        if not out.rule_decel > 0.0:
            raise ConfigError(f"planner.yaml: planner.rules.rule_decel must be > 0, got {out.rule_decel}")
        return out


def classify(obstacles: Obstacles, p: RulesParams) -> np.ndarray:
    """``person`` / ``aircraft`` / ``object`` per cluster from its footprint and height."""
    ext = obstacles.extents.reshape(-1, 4)
    size = np.maximum(ext[:, 2] - ext[:, 0], ext[:, 3] - ext[:, 1])
    out = np.full(len(size), "object", dtype=object)
    stands = obstacles.bottoms <= p.person_max_bottom  # a person stands on the ground (not a fuselage slice)
    # One-cell slivers are fragments of sparsely seen vehicles, and a confirmed track faster
    # than a person runs is a vehicle part.
    sized = (size <= p.person_max_extent) & (size >= p.person_min_extent)
    fast = (obstacles.hits >= 3) & (np.hypot(*obstacles.velocities.T) > p.person_max_speed)
    out[sized & (obstacles.heights >= p.person_min_height) & stands & ~fast] = "person"
    out[size >= p.aircraft_min_extent] = "aircraft"
    return out


def speed_cap(
    obstacles: Obstacles | None, ref: ReferencePath, p: RulesParams, s_max: float
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Speed cap along the path ``(s grid, v_cap)`` with braking look-back, and active zones.

    Args:
        obstacles: Classified clusters (None: only the road limit).
        ref: Reference path (ego frame).
        p: Rule parameters.
        s_max: Arc length (from the path start) up to which the cap is needed.

    Returns:
        The arc-length grid, the cap on it, and ``{zone: distance ahead}`` of the zones found.
    """
    s0, d0 = ref.ego_frenet()
    s = np.arange(s0 - 5.0, max(s_max, s0) + 5.0, 0.5)
    road = p.zone_speed["apron" if abs(d0) > p.apron_offset else "service_road"]
    cap = np.full(len(s), road)
    zones: dict[str, float] = {}
    if obstacles is not None and obstacles.n_clusters:
        cls = obstacles.classes
        for kind, lateral in (("aircraft", p.stand_lateral), ("person", p.personnel_lateral)):
            idx = np.flatnonzero(cls == kind)
            if not len(idx):
                continue
            ext = obstacles.extents[idx]
            # Corners and centre of each cluster's box: nearest lateral offset and its s range.
            pts = np.stack(
                [ext[:, [0, 1]], ext[:, [2, 1]], ext[:, [2, 3]], ext[:, [0, 3]], obstacles.centroids[idx]],
                axis=1,
            )
            cs, cd = ref.to_frenet(pts.reshape(-1, 2))
            cs, cd = cs.reshape(-1, 5), cd.reshape(-1, 5)
            crosses = (cd.min(1) < 0.0) & (cd.max(1) > 0.0)
            dist = np.where(crosses, 0.0, np.abs(cd).min(1))
            for k in np.flatnonzero(dist < lateral):
                if kind == "aircraft":
                    lo, hi, zone = cs[k].min() - p.stand_margin, cs[k].max() + p.stand_margin, "near_stand"
                else:
                    lo, hi, zone = (
                        cs[k, 4] - p.personnel_before,
                        cs[k, 4] + p.personnel_after,
                        "near_personnel",
                    )
                if hi < s0 - 5.0:
                    continue
                sel = (s >= lo) & (s <= hi)
                cap[sel] = np.minimum(cap[sel], p.zone_speed[zone])
                zones[zone] = min(zones.get(zone, np.inf), float(max(0.0, lo - s0)))
    # Braking look-back: every cap is reachable at the rule deceleration.
    ds = np.diff(s, append=s[-1] + 0.5)
    out = cap.copy()
    for i in range(len(out) - 2, -1, -1):
        out[i] = min(out[i], np.sqrt(out[i + 1] ** 2 + 2.0 * p.rule_decel * ds[i]))
    return s, out, zones


def allowed_speed(
    cap_s: np.ndarray, cap_v: np.ndarray, s: np.ndarray, t: np.ndarray, v0: float, p: RulesParams
) -> np.ndarray:
    """Highest admissible speed at path positions ``s`` and times ``t``.

    The cap at ``s``, or - while the ego is above it - the ego's speed reduced at
    ``rule_decel`` (brake towards a limit that appeared, no emergency stop), plus the tolerance.
    """
    return np.maximum(np.interp(s, cap_s, cap_v), v0 - p.rule_decel * t) + p.tolerance


def passing_blocked(obstacles: Obstacles | None, ref: ReferencePath, p: RulesParams, lane_half: float) -> str:
    """Why the ego may not move into the other lane now ('' when it may).

    * ``oncoming``: a tracked agent moving against the path direction in the other lane
      within ``oncoming_check`` ahead (the other lane is not shown clear);
    * ``moving_lead``: with ``overtake_moving`` false, a tracked agent moving along the
      ego lane ahead (no overtaking of moving vehicles; passing parked ones is allowed).
    """
    if obstacles is None or not obstacles.n_clusters:
        return ""
    m = obstacles.predicted_mask()
    if not m.any():
        return ""
    s0, _ = ref.ego_frenet()
    s, d = ref.to_frenet(obstacles.centroids[m])
    _, _, th, _ = ref.interpolate(s)
    v = obstacles.velocities[m]
    hits = obstacles.hits[m]
    along = v[:, 0] * np.cos(th) + v[:, 1] * np.sin(th)
    ahead = (s > s0 - 5.0) & (s < s0 + p.oncoming_check)
    # Confirmed tracks only (fragments of parked objects flicker with spurious velocities).
    if np.any(ahead & (hits >= 5) & (along < -1.0) & (d > 0.0) & (d < 3.0 * lane_half)):
        return "oncoming"
    lead = ahead & (s > s0) & (hits >= 10) & (along > 1.0) & (np.abs(d) < lane_half)
    if not p.overtake_moving and np.any(lead):
        return "moving_lead"
    return ""
