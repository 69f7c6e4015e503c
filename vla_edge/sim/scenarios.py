"""Seeded scenario families for apron / service-road driving, with a difficulty knob.

Families (``config/sim.yaml`` ``scenario.families``):

* ``empty_road`` - the route with its background (parked aircraft, cones, FOD, traffic).
* ``crossing_cart`` - a baggage-cart train crosses the road ahead on a crossing lane, timed
  to reach the conflict zone about when the ego would; the ego must yield.
* ``crew_stepping_out`` - ground crew step off the shoulder across the road when the ego
  comes close, sometimes from behind a parked cart and pausing in the ego lane.
* ``blocked_lane`` - a broken-down fuel truck in the ego lane and barriers across the other
  lane: the ego must stop and wait.
* ``narrow_pass`` - a parked cart train reaches far into the ego lane and cones narrow the
  other side: the ego must nudge around it, slowly, yielding to oncoming tugs.

Difficulty 0..1 interpolates each family's ``[easy, hard]`` ranges in the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.sim.agents import Agent, make_bodies
from vla_edge.sim.ego import EgoVehicle
from vla_edge.sim.world import (
    Boxes,
    Marking,
    Polyline,
    SimError,
    World,
    box_corners,
    build_ground,
    rect_overlaps,
)

FAMILIES = ("empty_road", "crossing_cart", "crew_stepping_out", "blocked_lane", "narrow_pass")
#: Families added for the safety suite (``vla_edge/sim/families.py``); ``suite()`` accepts all.
SAFETY_FAMILIES = (
    "pushback",
    "slow_lead",
    "crew_occluded",
    "debris_in_lane",
    "stand_approach",
    "intersection",
    "lidar_degraded",
)
#: Families where the camera matters (paint the LiDAR cannot see; ``vla_edge/sim/families.py``).
CAMERA_FAMILIES = ("stop_line",)
#: What the safety suite cycles through (contacts; camera families are scored by the harness).
SUITE_FAMILIES = FAMILIES + SAFETY_FAMILIES
ALL_FAMILIES = FAMILIES + SAFETY_FAMILIES + CAMERA_FAMILIES


@dataclass(frozen=True)
class ScenarioSpec:
    """What to build: family, seed and difficulty.

    Attributes:
        family: One of :data:`FAMILIES`.
        seed: Scenario seed (same seed, same world).
        difficulty: 0 (easy) .. 1 (hard).
    """

    family: str
    seed: int
    difficulty: float

    @property
    def name(self) -> str:
        """A file-system friendly name."""
        return f"{self.family}_s{self.seed}_d{round(self.difficulty * 100):03d}"


def suite(
    n: int,
    seed: int,
    families: list[str] | tuple[str, ...] | None = None,
    difficulty: float | str | None = None,
    cfg: dict[str, Any] | None = None,
) -> list[ScenarioSpec]:
    """``n`` scenario specs cycling through ``families``, seeded from ``seed``.

    Args:
        n: Number of scenarios.
        seed: Base seed; scenario ``i`` gets seed ``seed * 1000 + i``.
        families: Families to cycle through (default: the config's list).
        difficulty: A number 0..1, ``"mixed"`` (uniform per scenario) or None (config value).
        cfg: The ``sim`` config (loaded when None).

    Raises:
        SimError: Unknown family or difficulty out of range.
    """
    if cfg is None:
        from vla_edge.config import load_config

        cfg = load_config("sim")
    fams = list(families or cfg["scenario"]["families"])
    bad = [f for f in fams if f not in ALL_FAMILIES]
    if bad:
        raise SimError(f"unknown scenario family {bad}; choose from {', '.join(ALL_FAMILIES)}")
    if n < 1:
        raise SimError(f"need at least one scenario, got {n}")
    diff = cfg["scenario"]["difficulty"] if difficulty is None else difficulty
    rng = np.random.default_rng([seed, 7919])
    out = []
    for i in range(n):
        if diff == "mixed":
            d = float(rng.uniform(0.0, 1.0))
        else:
            try:
                d = float(diff)
            except (TypeError, ValueError):
                raise SimError(f"difficulty must be a number in [0, 1] or 'mixed', got {diff!r}") from None
            if not 0.0 <= d <= 1.0:
                raise SimError(f"difficulty must be within [0, 1], got {d}")
        out.append(ScenarioSpec(fams[i % len(fams)], seed * 1000 + i, round(d, 3)))
    return out


def _lerp(pair: list[float], d: float) -> float:
    return float(pair[0] + (pair[1] - pair[0]) * d)


def _arc(start: np.ndarray, yaw: float, radius: float, angle: float, step: float) -> tuple[np.ndarray, float]:
    sign = np.sign(angle)
    centre = start + radius * np.array([-np.sin(yaw), np.cos(yaw)]) * sign
    n = max(2, int(np.ceil(abs(angle) * radius / step)) + 1)
    th = np.linspace(0.0, angle, n)
    phi0 = yaw - sign * np.pi / 2
    pts = centre + radius * np.stack([np.cos(phi0 + th), np.sin(phi0 + th)], axis=1)
    return pts, yaw + angle


def make_route(
    cfg: dict[str, Any], rng: np.random.Generator, length: float, first_straight: float
) -> tuple[Polyline, list[tuple[float, float]]]:
    """A service-road centre line of straights and turns; returns it and its straight intervals."""
    rc = cfg["route"]
    step = float(rc["sample_step"])
    pts = [np.zeros((1, 2))]
    pos = np.zeros(2)
    yaw = 0.0
    s = 0.0
    straights = []
    first = True
    turn_sign = float(rng.choice([-1.0, 1.0]))
    while s < length:
        ln = float(rng.uniform(rc["straight_min"], rc["straight_max"]))
        if first:
            ln = max(ln, first_straight)
            first = False
        n = max(2, int(np.ceil(ln / step)) + 1)
        seg = pos + np.linspace(0, ln, n)[:, None] * np.array([np.cos(yaw), np.sin(yaw)])
        pts.append(seg[1:])
        straights.append((s, s + ln))
        s += ln
        pos = seg[-1]
        if s >= length:
            break
        r = float(rng.uniform(rc["turn_radius_min"], rc["turn_radius_max"]))
        ang = np.radians(float(rng.uniform(rc["turn_angle_min_deg"], rc["turn_angle_max_deg"])))
        ang = turn_sign * ang
        lim = np.pi / 2
        if abs(yaw + ang) > lim:  # keep the heading within +-90 deg: the road never crosses itself
            ang = np.sign(ang) * max(0.0, lim - abs(yaw)) if np.sign(ang) == np.sign(yaw) else ang
        if abs(ang) < np.radians(5):
            ang = -turn_sign * np.radians(
                float(rng.uniform(rc["turn_angle_min_deg"], rc["turn_angle_max_deg"]))
            )
        arc, yaw = _arc(pos, yaw, r, ang, step)
        pts.append(arc[1:])
        s += abs(ang) * r
        pos = arc[-1]
        turn_sign = -np.sign(ang)
    return Polyline(np.concatenate(pts)), straights


class _Builder:
    """Collects static boxes, zones and agents with unique ids."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.classes = cfg["classes"]
        self.colors = cfg["camera"]["class_colors"]
        self.boxes: list[Boxes] = []
        self.markings: list[Marking] = []
        self.zones: list[np.ndarray] = []
        self.agents: list[Agent] = []
        self.next_id = 1

    def add_box(
        self,
        cls: str,
        x: float,
        y: float,
        yaw: float,
        size: tuple[float, float, float] | None = None,
        z0: float = 0.0,
    ) -> np.ndarray:
        c = self.classes[cls]
        sz = np.array(size if size is not None else c["size"], dtype=np.float64)
        self.boxes.append(
            Boxes(
                np.array([[x, y]]),
                np.array([yaw]),
                sz[None, :],
                np.array([z0]),
                np.array([cls], dtype=object),
                np.array([self.next_id]),
                np.array([float(c["reflectivity"])]),
                np.array([self.colors[cls]], dtype=np.uint8),
                np.zeros(1, dtype=bool),
                np.zeros((1, 2)),
            )
        )
        self.next_id += 1
        return box_corners(np.array([x, y]), yaw, sz[0], sz[1])[0]

    def static(self) -> Boxes:
        return Boxes.concat(self.boxes)

    def agent(
        self, kind: str, path: Polyline, s: float, v: float, v0: float, carts: int = 0, **kw: Any
    ) -> Agent:
        ap = self.cfg["agents"]
        bodies = make_bodies(kind, self.classes, self.colors, self.next_id, carts, float(ap["train_gap"]))
        self.next_id += len(bodies)
        a_max = float(ap["crew_accel"] if kind == "crew" else ap["vehicle_accel"])
        ag = Agent(kind, path, s, v, v0, a_max, bodies, ap, **kw)
        self.agents.append(ag)
        return ag


def _free_of(corners: np.ndarray, taken: list[np.ndarray], inflate: float) -> bool:
    if not taken:
        return True
    c = corners.mean(0)
    grown = c + (corners - c) * (1.0 + inflate / max(1.0, np.abs(corners - c).max()))
    return not rect_overlaps(grown, np.array(taken)).any()


def _place_aircraft(
    b: _Builder,
    rng: np.random.Generator,
    route: Polyline,
    road_half: float,
    s: float,
    side: float,
    taken: list[np.ndarray],
) -> bool:
    """Parked aircraft perpendicular to the road, nose-in or tail-to-road, with a no-go zone."""
    cls = b.classes
    fl, fw, _ = cls["aircraft_fuselage"]["size"]
    span = cls["aircraft_wing"]["size"][1]
    x, y, ryaw = route.interp(s)
    nose_in = bool(rng.random() < 0.5)
    gap = float(rng.uniform(*b.cfg["scenario"]["aircraft_gap"]))
    normal = np.array([-np.sin(ryaw), np.cos(ryaw)]) * side
    centre = np.array([x, y]) + normal * (road_half + gap + 0.5 * fl)
    yaw_ac = float(np.arctan2(-normal[1], -normal[0])) if nose_in else float(np.arctan2(normal[1], normal[0]))
    footprint = box_corners(centre, yaw_ac, fl, span)[0]
    sd = route.project(footprint)[1]
    if np.abs(sd).min() < road_half + gap - 1.0 or not _free_of(footprint, taken, 10.0):
        return False
    taken.append(footprint)
    fwd = np.array([np.cos(yaw_ac), np.sin(yaw_ac)])
    lat = np.array([-fwd[1], fwd[0]])
    b.add_box("aircraft_fuselage", *centre, yaw_ac, z0=1.2)
    from vla_edge.sim.families import stand_markings  # families.py builds on scenarios' builder

    stand_markings(b, centre, yaw_ac, fl, nose_in)
    wing_c = centre + fwd * 1.0
    b.add_box("aircraft_wing", *wing_c, yaw_ac, z0=2.8)
    fin = cls["aircraft_fuselage"]["size"]
    b.add_box("aircraft_wing", *(centre - fwd * (0.5 * fin[0] - 3.0)), yaw_ac, size=(4.0, 0.5, 6.0), z0=5.0)
    for k in (-1.0, 1.0):
        e = centre + fwd * 3.0 + lat * k * 6.0
        b.add_box("aircraft_fuselage", *e, yaw_ac, size=(3.6, 2.2, 2.2), z0=0.9)
    # Zone between the road edge and the aircraft end facing the road.
    inner = road_half + 1.0
    outer = road_half + gap - 0.5
    base = np.array([x, y])
    along = np.array([np.cos(ryaw), np.sin(ryaw)])
    half = 0.5 * span if not nose_in else 0.5 * fw + 4.0
    zone = np.array(
        [
            base + normal * inner - along * half,
            base + normal * inner + along * half,
            base + normal * outer + along * half,
            base + normal * outer - along * half,
        ]
    )
    _, zd = route.project(zone)
    if np.abs(zd).min() > road_half + 0.5:
        b.zones.append(zone)
    return True


def _background(
    b: _Builder,
    rng: np.random.Generator,
    route: Polyline,
    road_half: float,
    d: float,
    keep_clear: list[tuple[float, float]],
) -> None:
    sc = b.cfg["scenario"]
    L = route.length
    taken: list[np.ndarray] = []
    n_ac = int(rng.poisson(_lerp(sc["aircraft_per_100m"], d) * L / 100.0))
    for _ in range(n_ac):
        for _try in range(6):
            s = float(rng.uniform(30.0, L - 30.0))
            if _place_aircraft(b, rng, route, road_half, s, float(rng.choice([-1.0, 1.0])), taken):
                break

    def clear(s: float) -> bool:
        return all(not (lo <= s <= hi) for lo, hi in keep_clear)

    for cls, key, dmin, dmax in (("cone", "cones_per_100m", 0.3, 1.0), ("fod", "fod_per_100m", 0.6, 3.0)):
        n = int(rng.poisson(_lerp(sc[key], d) * L / 100.0))
        for _ in range(n):
            s = float(rng.uniform(5.0, L - 5.0))
            if not clear(s):
                continue
            side = float(rng.choice([-1.0, 1.0]))
            off = side * (road_half + float(rng.uniform(dmin, dmax)))
            x, y, yaw = route.interp(s)
            p = np.array([x, y]) + off * np.array([-np.sin(yaw), np.cos(yaw)])
            corners = box_corners(p, yaw, *b.classes[cls]["size"][:2])[0]
            if np.abs(route.project(corners)[1]).min() < road_half + 0.1 or not _free_of(corners, taken, 0.5):
                continue
            b.add_box(cls, *p, float(yaw + rng.uniform(-1, 1)))


def make_scenario(spec: ScenarioSpec, cfg: dict[str, Any], seconds: float) -> World:
    """Build the world of ``spec`` for a run of ``seconds`` (the route is long enough).

    Raises:
        SimError: Unknown family or a difficulty outside [0, 1].
    """
    if spec.family not in ALL_FAMILIES:
        raise SimError(f"unknown scenario family '{spec.family}'; choose from {', '.join(ALL_FAMILIES)}")
    if not 0.0 <= spec.difficulty <= 1.0:
        raise SimError(f"difficulty must be within [0, 1], got {spec.difficulty}")
    rng = np.random.default_rng([spec.seed, 104729])
    d = float(spec.difficulty)
    sc = cfg["scenario"]
    lane_w = float(cfg["route"]["lane_width"])
    road_half = lane_w
    cruise = float(cfg["expert"]["cruise_speed"])
    s_start = float(sc["ego_start_s"])
    event_s = s_start + float(rng.uniform(*sc["event_distance"]))
    length = (
        s_start
        + cruise * (seconds + float(cfg["time"]["horizon_extra"]))
        + float(cfg["route"]["length_margin"])
    )
    route, _straights = make_route(cfg, rng, max(length, event_s + 80.0), event_s + 40.0)
    lane = route.offset(-0.5 * lane_w)
    other_lane = route.offset(0.5 * lane_w).reversed()
    b = _Builder(cfg)
    crossings: list[Polyline] = []
    keep_clear = [(event_s - 30.0, event_s + 30.0)]
    _background(b, rng, route, road_half, d, keep_clear)
    ex, ey, eyaw = route.interp(event_s)
    e_pt = np.array([ex, ey])
    fwd = np.array([np.cos(eyaw), np.sin(eyaw)])
    left = np.array([-fwd[1], fwd[0]])
    classes = cfg["classes"]
    ap = cfg["agents"]
    v_lo, v_hi = sc["agent_speed"]
    info: dict[str, Any] = {}
    stop_lines: list[Any] = []
    no_lead = False
    oncoming_kinds = ["tug", "fuel_truck", "cart_train"]
    oncoming_window = (0.0, route.length)

    if spec.family == "crossing_cart":
        side = float(rng.choice([-1.0, 1.0]))
        half = float(sc["crossing_half_length"])
        line = Polyline(np.array([e_pt + left * side * half, e_pt - left * side * half]))
        crossings.append(line)
        carts = round(_lerp(sc["crossing_train_carts"], d))
        v0 = float(rng.uniform(v_lo, v_hi))
        # Arrival times: ego front at the near edge of the crossing vs train front at the ego lane.
        ego_v0 = float(np.mean(sc["ego_start_speed"]))
        dist_ego = event_s - s_start - 0.5 * float(cfg["route"]["crossing_width"])
        t_ego = dist_ego / cruise + max(0.0, cruise - ego_v0) / (2 * float(cfg["expert"]["accel"]))
        slack = _lerp(sc["crossing_slack"], d) + float(rng.uniform(-1.0, 1.0))
        t_arr = max(2.0, t_ego - slack)
        start_dist = float(rng.uniform(*sc["crossing_start_dist"]))  # head front to the near road edge
        a = float(ap["vehicle_accel"])
        t_acc = v0 / a
        d_acc = 0.5 * a * t_acc**2
        travel = t_acc + (start_dist - d_acc) / v0 if start_dist > d_acc else np.sqrt(2 * start_dist / a)
        start_time = t_arr - travel
        head_len = classes["tug"]["size"][0]
        s_head = half - road_half - start_dist - 0.5 * head_len
        if start_time < 0.0:  # start moving at once, from closer
            start_time = 0.0
        train = b.agent("cart_train", line, max(s_head, 0.0), 0.0, v0, carts, start_time=start_time)
        # The train path must hold the whole train behind its head at the start.
        if s_head < train.rear_offset:
            ext = Polyline(
                np.array([e_pt + left * side * (half + train.rear_offset + 5.0), e_pt - left * side * half])
            )
            crossings[-1] = ext
            train.path = ext
            train.s = s_head + train.rear_offset + 5.0 if s_head > 0 else train.rear_offset + 5.0
        info.update(train_carts=carts, train_speed=v0, train_start=start_time)
    elif spec.family == "crew_stepping_out":
        side = float(rng.choice([-1.0, 1.0], p=[0.7, 0.3]))  # right shoulder is the common case
        off0 = float(rng.uniform(*sc["crew_start_offset"]))
        # side > 0: crew start on the right shoulder and walk left across the road.
        start = e_pt - left * side * (road_half + off0)
        end = e_pt + left * side * (road_half + 2.0)
        walk = Polyline(np.array([start, end]))
        trig = _lerp(sc["crew_trigger_dist"], d) * float(rng.uniform(0.85, 1.15))
        v = float(rng.uniform(*ap["crew_speed"]))
        # Pause where the crew centre crosses the ego lane centre.
        d_cross = off0 + 0.5 * lane_w if side > 0 else off0 + 1.5 * lane_w
        pause = _lerp(sc["crew_pause"], d) * float(rng.uniform(0.5, 1.0))
        b.agent(
            "crew",
            walk,
            0.5,
            0.0,
            v,
            trigger_s=event_s - trig,
            pause_at=d_cross,
            pause_for=pause,
            despawn_at_end=False,
        )
        if d > 0.5:  # a parked cart on the shoulder hides the crew until they step out
            occ = e_pt - fwd * 5.0 + (-left if side > 0 else left) * (road_half + 1.2)
            b.add_box("baggage_cart", *occ, eyaw)
        info.update(
            crew_side="right" if side > 0 else "left", crew_trigger=trig, crew_speed=v, crew_pause=pause
        )
    elif spec.family == "blocked_lane":
        truck = classes["fuel_truck"]["size"]
        p = e_pt - left * (0.5 * lane_w + float(rng.uniform(-0.2, 0.2)))
        b.add_box("fuel_truck", *p, float(eyaw + rng.uniform(-0.05, 0.05)))
        bw = classes["barrier"]["size"][0]
        n_bar = int(np.ceil(lane_w / bw)) + 1
        for k in range(n_bar):
            q = e_pt - fwd * (0.5 * truck[0] - 1.0) + left * (0.25 + (k + 0.5) * (lane_w / n_bar) + 0.1)
            b.add_box("barrier", *q, float(eyaw + np.pi / 2))
        oncoming_window = (0.0, event_s - 15.0)
        info.update(block_s=event_s)
    elif spec.family == "narrow_pass":
        r = _lerp(sc["narrow_intrusion"], d) * float(rng.uniform(0.95, 1.0))
        cw = classes["baggage_cart"]["size"][1]
        off = -road_half + r - 0.5 * cw  # centre of the parked train, lateral from the road centre
        carts = int(rng.integers(3, 6))
        ln = classes["baggage_cart"]["size"][0]
        for k in range(carts):
            p = e_pt + fwd * (k * (ln + 0.8)) + left * off
            b.add_box("baggage_cart", *p, eyaw)
        c_in = _lerp(sc["narrow_left_cones"], d)
        cs = classes["cone"]["size"][0]
        for k in range(-2, carts + 2):
            p = e_pt + fwd * (k * (ln + 0.8)) + left * (road_half - c_in + 0.5 * cs)
            b.add_box("cone", *p, eyaw)
        oncoming_kinds = ["tug"]
        no_lead = True
        info.update(intrusion=r, left_cones=c_in, parked_carts=carts)
    elif spec.family in SAFETY_FAMILIES + CAMERA_FAMILIES:
        from vla_edge.sim.families import build_family

        fam = build_family(spec.family, b, rng, d, route, lane, road_half, event_s, s_start, cfg)
        crossings += fam.crossings
        no_lead = no_lead or fam.no_lead
        if fam.oncoming_kinds is not None:
            oncoming_kinds = fam.oncoming_kinds
        if fam.oncoming_window is not None:
            oncoming_window = fam.oncoming_window
        info.update(fam.info)
        stop_lines = fam.stop_lines

    # Background traffic: oncoming agents in the other lane, maybe a slower lead vehicle.
    n_on = int(rng.poisson(_lerp(sc["oncoming_per_100m"], d) * route.length / 100.0))
    used: list[float] = []
    for _ in range(n_on):
        kind = str(rng.choice(oncoming_kinds))
        s_route = float(rng.uniform(max(60.0, oncoming_window[0]), max(61.0, oncoming_window[1])))
        s_path = other_lane.length - s_route
        if any(abs(s_path - u) < 30.0 for u in used) or s_path < 20.0:
            continue
        used.append(s_path)
        v0 = float(rng.uniform(v_lo, v_hi))
        b.agent(kind, other_lane, s_path, v0, v0, int(rng.integers(1, 4)) if kind == "cart_train" else 0)
    if not no_lead and rng.random() < _lerp(sc["lead_vehicle_prob"], d):
        kind = str(rng.choice(["tug", "cart_train"]))
        v0 = float(rng.uniform(*sc["lead_speed"]))
        s_lead = s_start + float(rng.uniform(*sc["lead_gap"]))
        b.agent(kind, lane, s_lead, v0, v0, int(rng.integers(1, 4)) if kind == "cart_train" else 0)
        info["lead_vehicle"] = kind

    static = b.static()
    for ag in b.agents:
        ag.prepare(static)
    ground = build_ground(cfg, route, road_half, crossings, b.zones, b.markings, spec.seed)
    x0, y0, yaw0 = lane.interp(s_start)
    v_start = float(rng.uniform(*sc["ego_start_speed"]))
    ego = EgoVehicle(cfg["ego"], x0, y0, yaw0, v_start)
    ego.s_hint = s_start
    t_cfg = cfg["time"]
    stamp0 = float(t_cfg["start_epoch"]) + float(t_cfg["seed_stride"]) * float(spec.seed % 100000)
    return World(
        cfg,
        spec.family,
        spec.seed,
        d,
        route,
        lane,
        road_half,
        crossings,
        b.zones,
        static,
        b.agents,
        ego,
        ground,
        0.0,
        stamp0,
        event_s,
        info,
        stop_lines,
        b.markings,
    )
