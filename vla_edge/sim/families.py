"""Safety-suite scenario families (``scenarios.SAFETY_FAMILIES``), each with a difficulty knob.

* ``pushback`` - an aircraft is pushed back tail first from a road-side stand into the
  service road and stops there (engine start); aircraft have right of way: the ego waits
  or passes the tail in the other lane when it is clear.
* ``slow_lead`` - a slow tug (or cart train) in the ego lane; following is always safe, an
  overtake in the other lane only when the oncoming traffic allows it.
* ``crew_occluded`` - ground crew step out from right behind a parked cart or truck on the
  shoulder (the LiDAR sees them only once they step out).
* ``debris_in_lane`` - a cone line closing part of the ego lane and a dropped bag in the lane.
* ``stand_approach`` - the road passes a stand whose aircraft is parked close to the road,
  with ground crew beside it: the stand speed limit applies (``expert.stand_*``).
* ``intersection`` - a crossing service lane with right of way: a tug and a cart train cross
  from both sides, timed to meet the ego.
* ``lidar_degraded`` - crew stepping out while the LiDAR suffers rain (range noise and
  spurious near returns), dropout and a blocked sector (``World.info["lidar"]``).

Camera family (``scenarios.CAMERA_FAMILIES``):

* ``stop_line`` - a painted stop line across the ego lane (camera-only paint: no geometry,
  no LiDAR reflectivity): the ego must stop at it and hold for a dwell time before it
  continues (``World.stop_lines``; running it is a violation the harness scores). Difficulty
  brings the line closer to the start and wears its paint.

Every ``[easy, hard]`` range lives in ``config/sim.yaml`` ``scenario``; difficulty 0..1
interpolates it. At default difficulty no agent enters the ego's path inside the ego's
stopping distance at the comfort deceleration (the suite checks this from ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.sim.world import Marking, Polyline, SimError, StopLine


@dataclass
class FamilyParts:
    """What a family adds beyond its boxes and agents (already in the builder)."""

    crossings: list[Polyline] = field(default_factory=list)
    no_lead: bool = False
    oncoming_kinds: list[str] | None = None
    oncoming_window: tuple[float, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    stop_lines: list[StopLine] = field(default_factory=list)


def stand_markings(b: Any, centre: np.ndarray, yaw: float, length: float, nose_in: bool) -> None:
    """Paint a stand's lead-in line (along the aircraft axis) and its nose stop bar (camera only).

    The lead-in line runs along the fuselage and on beyond its end away from the road; the
    stop bar crosses it at the nose. Both stay off the service road (apron paint) and draw
    no random numbers.
    """
    fwd = np.array([np.cos(yaw), np.sin(yaw)])
    lat = np.array([-fwd[1], fwd[0]])
    sc = b.cfg["scenario"]
    extra = float(sc["stand_lead_in_extra"])
    nose = centre + fwd * (0.5 * length - 1.0)
    tail = centre - fwd * (0.5 * length + (extra if nose_in else 0.0))
    nose_end = nose + fwd * (0.0 if nose_in else extra)
    w = float(sc["stand_line_width"])
    half_bar = 0.5 * float(sc["stand_stop_bar_length"])
    b.markings.append(Marking(np.array([tail, nose_end]), w, "stand_paint", off_road=True))
    b.markings.append(Marking(np.array([nose - lat * half_bar, nose + lat * half_bar]), 2 * w, "stand_paint",
                              off_road=True))  # fmt: skip


def _lerp(pair: list[float], d: float) -> float:
    return float(pair[0] + (pair[1] - pair[0]) * d)


def _ego_arrival(cfg: dict[str, Any], dist: float) -> float:
    """Time (s) a cruising expert starting at mean speed needs for ``dist`` metres."""
    cruise = float(cfg["expert"]["cruise_speed"])
    v0 = float(np.mean(cfg["scenario"]["ego_start_speed"]))
    return dist / cruise + max(0.0, cruise - v0) / (2 * float(cfg["expert"]["accel"]))


def _crossing_agent(
    b: Any,
    rng: np.random.Generator,
    cfg: dict[str, Any],
    e_pt: np.ndarray,
    left: np.ndarray,
    side: float,
    kind: str,
    carts: int,
    t_arr: float,
    road_half: float,
) -> tuple[Polyline, Any]:
    """An agent on a crossing line through ``e_pt`` timed to reach the road at ``t_arr``."""
    sc, ap = cfg["scenario"], cfg["agents"]
    half = float(sc["crossing_half_length"])
    v0 = float(rng.uniform(*sc["agent_speed"]))
    start_dist = float(rng.uniform(*sc["crossing_start_dist"]))
    a = float(ap["vehicle_accel"])
    t_acc = v0 / a
    d_acc = 0.5 * a * t_acc**2
    travel = t_acc + (start_dist - d_acc) / v0 if start_dist > d_acc else np.sqrt(2 * start_dist / a)
    start_time = max(0.0, t_arr - travel)
    head_len = float(cfg["classes"]["tug" if kind == "cart_train" else kind]["size"][0])
    extra = 40.0  # room behind the head for the whole train
    line = Polyline(np.array([e_pt + left * side * (half + extra), e_pt - left * side * half]))
    s_head = half + extra - road_half - start_dist - 0.5 * head_len
    ag = b.agent(kind, line, s_head, 0.0, v0, carts, start_time=start_time)
    return line, ag


def build_family(
    family: str,
    b: Any,
    rng: np.random.Generator,
    d: float,
    route: Polyline,
    lane: Polyline,
    road_half: float,
    event_s: float,
    s_start: float,
    cfg: dict[str, Any],
) -> FamilyParts:
    """Add ``family``'s event around ``event_s`` to builder ``b``.

    Raises:
        SimError: Unknown family.
    """
    sc, ap, classes = cfg["scenario"], cfg["agents"], cfg["classes"]
    lane_w = float(cfg["route"]["lane_width"])
    ex, ey, eyaw = route.interp(event_s)
    e_pt = np.array([ex, ey])
    fwd = np.array([np.cos(eyaw), np.sin(eyaw)])
    left = np.array([-fwd[1], fwd[0]])
    out = FamilyParts()
    if family == "pushback":
        side = float(rng.choice([-1.0, 1.0]))  # -1: stand on the ego's (right) side
        fl = float(classes["aircraft_fuselage"]["size"][0])
        gap = _lerp(sc["pushback_gap"], d) * float(rng.uniform(0.9, 1.1))
        intrude = _lerp(sc["pushback_intrusion"], d) * float(rng.uniform(0.9, 1.0))
        v = _lerp(sc["pushback_speed"], d)
        d0 = road_half + gap + fl + 5.0  # path start, lateral from the road centre
        # Motion towards the road; the tail (the "head" of the motion) stops ``intrude`` in.
        line = Polyline(
            np.array([e_pt + left * side * d0, e_pt + left * side * (road_half - intrude - 0.5 * fl)])
        )
        line = Polyline(line.resample(0.5))
        s0 = d0 - road_half - gap - 0.5 * fl
        trig = _lerp(sc["pushback_trigger"], d) * float(rng.uniform(0.9, 1.1))
        b.agent("aircraft", line, s0, 0.0, v, trigger_s=event_s - trig, despawn_at_end=False)
        out.info.update(pushback_side="left" if side > 0 else "right", pushback_gap=gap,
                        pushback_intrusion=intrude, pushback_speed=v, pushback_trigger=trig)  # fmt: skip
    elif family == "slow_lead":
        kind = str(rng.choice(["tug", "cart_train"]))
        v0 = _lerp(sc["slow_lead_speed"], d) * float(rng.uniform(0.9, 1.1))
        gap = float(rng.uniform(*sc["slow_lead_gap"]))
        b.agent(kind, lane, s_start + gap, v0, v0, int(rng.integers(1, 4)) if kind == "cart_train" else 0)
        out.no_lead = True
        out.info.update(lead_vehicle=kind, lead_speed=v0, lead_gap=gap)
    elif family == "crew_occluded":
        side = 1.0  # right shoulder, so the occluder sits between the ego and the crew
        off0 = float(rng.uniform(*sc["occluded_crew_offset"]))
        start = e_pt - left * side * (road_half + off0)
        end = e_pt + left * side * (road_half + 2.0)
        trig = _lerp(sc["occluded_trigger"], d) * float(rng.uniform(0.9, 1.1))
        v = float(rng.uniform(*ap["crew_speed"]))
        pause = _lerp(sc["crew_pause"], d) * float(rng.uniform(0.5, 1.0))
        b.agent("crew", Polyline(np.array([start, end])), 0.5, 0.0, v, trigger_s=event_s - trig,
                pause_at=off0 + 0.5 * lane_w, pause_for=pause, despawn_at_end=False)  # fmt: skip
        occ_cls = "fuel_truck" if rng.random() < d else "baggage_cart"
        ln, wd = classes[occ_cls]["size"][:2]
        occ = e_pt - fwd * (0.5 * ln + 0.8) - left * (road_half + 0.3 + 0.5 * wd)
        b.add_box(occ_cls, *occ, eyaw)
        out.info.update(crew_trigger=trig, crew_speed=v, crew_pause=pause, occluder=occ_cls)
    elif family == "debris_in_lane":
        intr = _lerp(sc["debris_intrusion"], d) * float(rng.uniform(0.9, 1.0))
        cs = float(classes["cone"]["size"][0])
        n_c = int(rng.integers(4, 8))
        for k in range(n_c):  # a taper: the cones reach further into the lane towards the end
            frac = min(1.0, (k + 1) / 3.0)
            p = e_pt + fwd * (2.0 * k) - left * (road_half - frac * intr + 0.5 * cs)
            b.add_box("cone", *p, eyaw)
        bag = tuple(float(x) for x in sc["debris_size"])
        lat = float(rng.uniform(-0.5, 0.5)) * lane_w * 0.6
        p = e_pt + fwd * float(rng.uniform(30.0, 40.0)) - left * (0.5 * lane_w - lat)
        b.add_box("fod", *p, float(eyaw + rng.uniform(-1, 1)), size=bag)
        out.oncoming_window = (0.0, event_s - 20.0)
        out.info.update(cone_intrusion=intr, cones=n_c, debris_lateral=lat)
    elif family == "stand_approach":
        fl = float(classes["aircraft_fuselage"]["size"][0])
        gap = _lerp(sc["stand_gap"], d) * float(rng.uniform(0.9, 1.1))
        normal = -left  # the stand is on the ego's (right) side
        centre = e_pt + normal * (road_half + gap + 0.5 * fl)
        yaw_ac = float(np.arctan2(-normal[1], -normal[0]))  # nose towards the road
        b.add_box("aircraft_fuselage", *centre, yaw_ac, z0=1.2)

        stand_markings(b, centre, yaw_ac, fl, nose_in=True)
        b.add_box("aircraft_wing", *(centre + fwd * 0.0 - normal * 1.0), yaw_ac, z0=2.8)
        for k in (-1.0, 1.0):
            b.add_box("aircraft_fuselage", *(centre - normal * 3.0 + fwd * k * 6.0), yaw_ac,
                      size=(3.6, 2.2, 2.2), z0=0.9)  # fmt: skip
        n_crew = round(_lerp(sc["stand_crew"], d))
        for _ in range(n_crew):
            p = (
                e_pt
                + fwd * float(rng.uniform(-8.0, 8.0))
                + normal * (road_half + float(rng.uniform(1.0, 2.5)))
            )
            b.add_box("crew", *p, float(rng.uniform(-np.pi, np.pi)))
        out.oncoming_window = (0.0, event_s - 20.0)
        out.info.update(stand_gap=gap, stand_crew=n_crew)
    elif family == "intersection":
        slack = _lerp(sc["intersection_slack"], d) + float(rng.uniform(-1.0, 1.0))
        dist_ego = event_s - s_start - 0.5 * float(cfg["route"]["crossing_width"])
        t_ego = _ego_arrival(cfg, dist_ego)
        first = float(rng.choice([-1.0, 1.0]))
        l1, _ = _crossing_agent(b, rng, cfg, e_pt, left, first, "tug", 0, max(2.0, t_ego - slack), road_half)
        carts = round(_lerp(sc["crossing_train_carts"], d))
        t2 = max(3.0, t_ego - slack + float(rng.uniform(1.0, 4.0)))
        l2, _ = _crossing_agent(b, rng, cfg, e_pt, left, -first, "cart_train", carts, t2, road_half)
        out.crossings += [l1, l2]
        out.info.update(intersection_slack=slack, train_carts=carts)
    elif family == "lidar_degraded":
        side = 1.0
        off0 = float(rng.uniform(*sc["crew_start_offset"]))
        start = e_pt - left * side * (road_half + off0)
        end = e_pt + left * side * (road_half + 2.0)
        trig = _lerp(sc["crew_trigger_dist"], 0.5 * d) * float(rng.uniform(0.9, 1.1))
        v = float(rng.uniform(*ap["crew_speed"]))
        b.agent("crew", Polyline(np.array([start, end])), 0.5, 0.0, v, trigger_s=event_s - trig,
                despawn_at_end=False)  # fmt: skip
        lo = float(sc["lidar_blocked_from_deg"])
        width = _lerp(sc["lidar_blocked_width_deg"], d)
        lidar = {
            "range_noise": _lerp(sc["lidar_range_noise"], d),
            "dropout": _lerp(sc["lidar_dropout"], d),
            "rain_clutter": _lerp(sc["lidar_rain_clutter"], d),
            "rain_range": list(sc["lidar_rain_range"]),
            "blocked_sectors": [[lo, lo + width]],
        }
        out.info.update(lidar=lidar, crew_trigger=trig, crew_speed=v)
    elif family == "stop_line":
        dist = _lerp(sc["stop_line_distance"], d) * float(rng.uniform(0.9, 1.1))
        s_line = s_start + dist
        dwell = float(rng.uniform(*sc["stop_line_dwell"]))
        wear = _lerp(sc["stop_line_wear"], d)
        width = float(sc["stop_line_width"])
        # Across the ego lane, from inside the right edge line to the centre line.
        a = s_line - 0.5 * width
        c = s_line + 0.5 * width
        right = -0.5 * lane_w + 0.25
        left = 0.5 * lane_w - 0.1
        quad = ((a, right), (c, right), (c, left), (a, left))
        corners = [lane.offset(off).interp(ss)[:2] for ss, off in quad]
        b.markings.append(Marking(np.array(corners), 0.0, "stop_line", wear=wear))
        out.stop_lines.append(
            StopLine(s_line, dwell, float(sc["stop_line_zone"]), float(sc["stop_line_stop_speed"]))
        )
        out.no_lead = True  # agents do not obey paint: a lead vehicle would hide the rule
        out.info.update(
            stop_line_s=s_line, stop_line_dwell=dwell, stop_line_wear=wear, stop_line_distance=dist
        )
    else:
        raise SimError(f"unknown safety family '{family}'")
    return out
