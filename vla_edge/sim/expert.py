"""Privileged expert driver: plans a path and a speed profile from ground-truth state.

Per planning step the expert

1. takes the ego lane ahead and nudges it laterally around parked objects that leave
   room on the road (checking the nudged corridor is clear of other parked objects);
2. caps speed by curvature, crew near the lane and narrow passes (with a braking look-back);
3. predicts every object's occupancy of the corridor along the path over the horizon, as
   an interval of arc lengths per time step, using bounds on each agent's motion
   (brake ... accelerate to its desired speed) along its known path;
4. samples speed profiles (target speed x braking level) and keeps the fastest one whose
   ego body (plus a speed-dependent gap) never meets an occupied interval and that can
   still stop comfortably at the horizon end; if none is safe, brakes hardest;
5. explains the outcome in one causal sentence, e.g.
   ``"Slowing: ground crew 9 m ahead crossing the lane"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.sim.agents import Agent
from vla_edge.sim.ego import Plan
from vla_edge.sim.label_view import LabelView
from vla_edge.sim.world import Polyline, StopLine, World, box_corners, rect_overlaps, wrap_angle

NAMES = {
    "crew": "ground crew",
    "cart_train": "baggage-cart train",
    "baggage_cart": "parked baggage carts",
    "fuel_truck": "fuel truck",
    "tug": "tug",
    "cone": "cones",
    "fod": "FOD",
    "barrier": "barriers",
    "aircraft_fuselage": "aircraft",
    "aircraft_wing": "aircraft",
    "aircraft": "aircraft under pushback",
    "stop_line": "stop line",
}


def pending_stop_lines(world: World, lookahead: float) -> list[StopLine]:
    """Painted stop lines that still apply to the ego, nearest first.

    A line applies until the ego has held at it for its dwell time (``cleared``) or crossed it
    (``passed``), and only within ``lookahead - 5`` m of the rear axle (the expert's path reach).
    The expert brakes for exactly these lines; the on-policy stop-line label
    (:func:`next_stop_line`) measures the first of them, so the two cannot disagree.
    """
    s_e = world.ego_s()
    reach = s_e + float(lookahead) - 5.0
    return sorted(
        (ln for ln in world.stop_lines if not (ln.passed or ln.cleared or ln.s > reach)), key=lambda ln: ln.s
    )


def next_stop_line(
    world: World, lookahead: float, lines: list[StopLine] | None = None
) -> tuple[float, StopLine] | None:
    """``(distance, line)`` of the first :func:`pending_stop_lines` line, or None.

    ``distance`` is along the ego lane from the ego's front bumper to the line (m, >= 0: 0 once
    the front stands on it). ``lines``: :func:`pending_stop_lines` when the caller has them.
    """
    lines = pending_stop_lines(world, lookahead) if lines is None else lines
    if not lines:
        return None
    front = world.ego_s() + world.ego.front_offset
    return max(0.0, lines[0].s - front), lines[0]


@dataclass
class _Obstacle:
    """Occupancy of the corridor: per time step an arc-length interval (NaN = free)."""

    lo: np.ndarray
    hi: np.ndarray
    cls: str
    oid: int
    behaviour: str
    static: bool
    speed: float = 0.0
    now: float = float("nan")  # arc length of its nearest point now (for the reasoning)


@dataclass
class ExpertDecision:
    """One planning step of the expert.

    Attributes:
        plan: Path + speed profile (odom frame).
        reasoning: Short causal sentence.
        action: ``"cruise" | "accelerate" | "follow" | "slow" | "stop" | "hold" | "nudge" | "brake"``.
        cause: Class of the object or condition that limits the speed (``""`` when none).
        cause_id: Object id of the cause, -1 when none.
        cause_dist: Distance (m) from the ego front to the cause, NaN when none.
        target_speed: Speed (m/s) at the end of the chosen profile.
        safe: False when no sampled profile was collision-free (emergency braking).
    """

    plan: Plan
    reasoning: str
    action: str
    cause: str = ""
    cause_id: int = -1
    cause_dist: float = float("nan")
    target_speed: float = 0.0
    safe: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class Expert:
    """The privileged driver.

    Args:
        cfg: The whole ``sim`` config.
        view: Plan only from what a sensor-limited student could know (labels for on-policy
            training, :mod:`vla_edge.sim.label_view`); None = the whole world (driving).
    """

    def __init__(self, cfg: dict[str, Any], view: LabelView | None = None) -> None:
        self.cfg = cfg
        self.view = view
        e = cfg["expert"]
        self.e = e
        self.hw = 0.5 * float(cfg["ego"]["width"])
        self.lane_w = float(cfg["route"]["lane_width"])
        self.step = 0.5
        self.n_t = round(float(e["horizon"]) / float(e["plan_dt"]))
        self.dt = float(e["plan_dt"])
        self.times = self.dt * np.arange(self.n_t + 1)

    def stop_line_distance(self, world: World) -> float:
        """Distance (m) from the ego front to the stop line this expert stops for next; inf when none.

        The on-policy stop-line label (camera presets, docs/model.md "Camera branch"): the
        line :meth:`plan` brakes and holds for (:func:`next_stop_line` of what this expert sees).
        """
        if self.view is not None:
            world = self.view.visible(world)
        nxt = next_stop_line(world, float(self.e["lookahead"]))
        return float("inf") if nxt is None else nxt[0]

    # ----------------------------------------------------------------- path
    def _path(
        self, world: World, s_e: float
    ) -> tuple[Polyline, np.ndarray, list[tuple[float, float, str, int]]]:
        """Ego-lane path ahead with nudges; returns it, the offsets and the nudges made."""
        e = self.e
        lane = world.lane
        s = np.arange(s_e - 2.0, min(lane.length, s_e + float(e["lookahead"])), self.step)
        if len(s) < 4:
            s = np.linspace(max(0.0, lane.length - 4.0), lane.length, 8)
        base = lane.interp(s)
        offs = np.zeros(len(s))
        nudges: list[tuple[float, float, str, int]] = []
        st = world.static
        if len(st):
            near = (
                np.hypot(*(st.xy - world.ego.xy()).T)
                < float(e["lookahead"]) + 0.5 * st.size[:, :2].max(1) + 5.0
            )
            sub = st.subset(near)
            if len(sub):
                c = sub.corners().reshape(-1, 2)
                cs, cd = lane.project(c, s[0] - 10.0, s[-1] + 10.0)
                cs = cs.reshape(-1, 4)
                cd = cd.reshape(-1, 4)
                lo_d, hi_d = cd.min(1), cd.max(1)
                lo_s, hi_s = cs.min(1), cs.max(1)
                clear = float(e["nudge_clearance"])
                band = self.hw + clear
                o_min = -0.5 * self.lane_w + float(e["road_edge_margin"]) + self.hw
                o_max = 1.5 * self.lane_w - float(e["road_edge_margin"]) - self.hw
                on_road = (hi_s > s[0]) & (lo_s < s[-1]) & (lo_d < o_max + band) & (hi_d > o_min - band)
                slope = float(e["nudge_slope"])
                # (index, bound, is_lower, optional): in-band objects may be passed on either
                # side (optional: dropped if it conflicts); others only bound the offset.
                cands: list[tuple[int, float, bool, bool]] = []
                for k in np.flatnonzero(on_road):
                    if lo_d[k] >= band:
                        cands.append((int(k), float(lo_d[k] - band), False, False))
                    elif hi_d[k] <= -band:
                        cands.append((int(k), float(hi_d[k] + band), True, False))
                    else:
                        left, right = float(hi_d[k] + band), float(lo_d[k] - band)
                        opts = [o for o in (left, right) if o_min <= o <= o_max]
                        if opts:
                            o = min(opts, key=abs)
                            cands.append((int(k), o, o == left, True))
                offs = self._envelope(s, cands, lo_s, hi_s, slope)
                for k, o, _low, optional in cands:
                    if optional and np.any(np.abs(offs[(s >= lo_s[k]) & (s <= hi_s[k])]) > 0.0):
                        nudges.append((float(lo_s[k] - s[0]), o, str(sub.cls[k]), int(sub.ids[k])))
                nudges.sort()
        if np.any(offs != 0.0):
            normal = np.stack([-np.sin(base[:, 2]), np.cos(base[:, 2])], axis=1)
            xy = base[:, :2] + normal * offs[:, None]
        else:
            xy = base[:, :2]
        return Polyline(xy), offs, nudges

    @staticmethod
    def _envelope(
        s: np.ndarray,
        cands: list[tuple[int, float, bool, bool]],
        lo_s: np.ndarray,
        hi_s: np.ndarray,
        slope: float,
    ) -> np.ndarray:
        """Lateral offsets along ``s`` within every object's bound, ramped at ``slope``.

        Each bound holds along its object (+-1 m) and relaxes by ``slope`` per metre away
        from it. Optional passes that contradict other bounds (no room to swing between
        them) are dropped: those objects block, and the speed planner stops for them.
        """
        active = list(cands)
        for _ in range(len(cands) + 1):
            low = np.full(len(s), -np.inf)
            up = np.full(len(s), np.inf)
            for k, o, is_low, _opt in active:
                dist = np.maximum(0.0, np.maximum(lo_s[k] - 1.0 - s, s - hi_s[k] - 1.0))
                if is_low:
                    low = np.maximum(low, o - slope * dist)
                else:
                    up = np.minimum(up, o + slope * dist)
            bad = low > up + 1e-9
            if not bad.any():
                return np.clip(0.0, low, up)
            keep = []
            for k, o, is_low, opt in active:
                reach = abs(o) / slope + 1.0
                if opt and np.any(bad & (s > lo_s[k] - reach) & (s < hi_s[k] + reach)):
                    continue
                keep.append((k, o, is_low, opt))
            if len(keep) == len(active):
                break
            active = keep
        return np.zeros(len(s))

    # ---------------------------------------------------------- speed limit
    def _speed_limit(
        self, world: World, path: Polyline, offs: np.ndarray, s_e_path: float
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[float, str, int, str]]]:
        e = self.e
        st = np.arange(0.0, path.length, self.step)
        yaw = np.unwrap(path.interp(st)[:, 2])
        kappa = np.abs(np.gradient(yaw, self.step)) if len(st) > 2 else np.zeros(len(st))
        kappa = np.convolve(kappa, np.ones(5) / 5.0, mode="same")
        v_cap = min(float(e["cruise_speed"]), float(self.cfg["ego"]["max_speed"]))
        vlim = np.minimum(v_cap, np.sqrt(float(e["max_lat_accel"]) / np.maximum(kappa, 1e-6)))
        reasons: list[tuple[float, str, int, str]] = []
        turn = vlim < v_cap - 0.3
        # Narrow passes (nudges): creep through.
        slow = float(e["crew_caution_speed"])
        off_i = np.interp(st, np.linspace(0, path.length, len(offs)), np.abs(offs))
        vlim = np.where(off_i > 0.3, np.minimum(vlim, float(e["nudge_speed"])), vlim)
        # Crew near the lane ahead.
        for ag in world.agents:
            if not ag.active or ag.kind != "crew":
                continue
            p = ag.boxes().xy[0]
            sc, dc = path.project(p[None, :])
            ahead = sc[0] - s_e_path
            if 0.0 < ahead < float(e["crew_caution_dist"]) and abs(dc[0]) < self.hw + self.lane_w + float(
                e["crew_caution_lateral"]
            ):
                sel = (st > sc[0] - 12.0) & (st < sc[0] + 3.0)
                vlim[sel] = np.minimum(vlim[sel], slow)
                reasons.append((float(sc[0]), "crew", ag.bodies[0].oid, "near the lane"))
        # Stand zone: an aircraft parked close to the lane caps the speed along it (airside rule).
        st_boxes = world.static
        if len(st_boxes):
            ac = st_boxes.subset(st_boxes.cls == "aircraft_fuselage")
            if len(ac):
                cs, cd = path.project(ac.corners().reshape(-1, 2))
                cs, cd = cs.reshape(-1, 4), cd.reshape(-1, 4)
                close = np.abs(cd).min(1) < float(e["stand_lateral"])
                for k in np.flatnonzero(close & (cs.max(1) > 0.0) & (cs.min(1) < path.length)):
                    lo_s, hi_s = float(cs[k].min()) - 5.0, float(cs[k].max()) + 5.0
                    sel = (st > lo_s) & (st < hi_s)
                    vlim[sel] = np.minimum(vlim[sel], float(e["stand_speed"]))
        # Braking look-back so every cap can be reached comfortably.
        b = float(e["decels"][0])
        out = vlim.copy()
        for i in range(len(out) - 2, -1, -1):
            out[i] = min(out[i], np.sqrt(out[i + 1] ** 2 + 2 * b * self.step))
        turn_s = st[turn & (st > s_e_path)]
        if len(turn_s):
            i0 = int(np.searchsorted(st, turn_s[0]))
            i1 = min(len(yaw) - 1, i0 + 20)
            sign = np.sign(yaw[i1] - yaw[i0])
            reasons.append((float(turn_s[0]), "turn_left" if sign > 0 else "turn_right", -1, ""))
        return st, out, reasons

    # --------------------------------------------------------- obstacles
    def _bounds(self, ag: Agent, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Min/max arc-length advance of an agent over the horizon times."""
        e = self.e
        t = self.times
        b = float(e["agent_decel"])
        a = float(e["agent_accel_max"])
        v = ag.v
        t_stop = v / b
        smin = np.where(t < t_stop, v * t - 0.5 * b * t * t, 0.5 * v * t_stop)
        if not ag.started:
            if self.view is not None:  # a sweep shows no plan to start: it stays until it moves
                return np.zeros_like(t), np.zeros_like(t)
            if ag.start_time is not None and ag.trigger_s is None:
                delay = max(0.0, ag.start_time - now)
                tt = np.maximum(t - delay, 0.0)
            elif ag.trigger_s is not None:
                return np.zeros_like(t), np.zeros_like(t)  # privileged: waits for its trigger
            else:
                tt = t
        else:
            tt = t
        vmax = max(v, ag.v0)
        t_acc = max(0.0, (vmax - v) / a)
        smax = np.where(
            tt < t_acc, v * tt + 0.5 * a * tt * tt, v * t_acc + 0.5 * a * t_acc**2 + vmax * (tt - t_acc)
        )
        return smin, smax

    def _obstacles(self, world: World, path: Polyline, s0: float) -> list[_Obstacle]:
        e = self.e
        out: list[_Obstacle] = []
        n = len(self.times)
        margin = float(e["lateral_margin"])
        ego_xy = world.ego.xy()
        reach = float(e["lookahead"]) + 10.0
        st = world.static
        if len(st):
            near = np.hypot(*(st.xy - ego_xy).T) < reach + 0.5 * st.size[:, :2].max(1)
            sub = st.subset(near)
            if len(sub):
                c = sub.corners().reshape(-1, 2)
                cs, cd = path.project(c)
                cs = cs.reshape(-1, 4)
                cd = cd.reshape(-1, 4)
                band = self.hw + margin
                hit = (cd.min(1) < band) & (cd.max(1) > -band) & (cs.max(1) > 0.0) & (cs.min(1) < path.length)
                for k in np.flatnonzero(hit):
                    out.append(
                        _Obstacle(
                            np.full(n, cs[k].min()),
                            np.full(n, cs[k].max()),
                            str(sub.cls[k]),
                            int(sub.ids[k]),
                            "blocking the lane",
                            True,
                        )
                    )
        for ag in world.agents:
            if not ag.active:
                continue
            head = ag.path.interp(ag.s)
            if np.hypot(head[0] - ego_xy[0], head[1] - ego_xy[1]) > reach + 60.0:
                continue
            smin, smax = self._bounds(ag, world.t)
            hp_s, _ = path.project(head[None, :2])
            rel = float(wrap_angle(head[2] - path.interp(float(np.clip(hp_s[0], 0, path.length)))[2]))
            oncoming = abs(rel) > 2.3 and ag.kind != "crew"
            s_lo = ag.s - ag.rear_offset - 0.5
            s_hi = ag.s + smax[-1] + ag.front_offset + 0.5
            samp = np.arange(s_lo, s_hi + self.step, self.step)
            if oncoming:  # head-on traffic keeps coming after the horizon: look along its whole way
                far = np.arange(
                    samp[-1] + 2 * self.step, min(ag.path.length, ag.s + reach + 20.0), 2 * self.step
                )
                samp = np.concatenate([samp, far])
            pts = ag.path.interp(samp)
            ps, pd = path.project(pts[:, :2])
            band = self.hw + 0.5 * ag.width + margin
            inside = (np.abs(pd) < band) & (ps > -5.0) & (ps < path.length + 5.0)
            if not inside.any():
                continue
            lo = np.full(n, np.nan)
            hi = np.full(n, np.nan)
            occ_lo = ag.s + smin - ag.rear_offset
            occ_hi = ag.s + smax + ag.front_offset
            inr = (samp[None, :] >= occ_lo[:, None]) & (samp[None, :] <= occ_hi[:, None]) & inside[None, :]
            any_t = inr.any(1)
            pad = 0.5 * ag.width
            big = np.where(inr, ps[None, :], np.inf)
            lo[any_t] = big[any_t].min(1) - pad
            small = np.where(inr, ps[None, :], -np.inf)
            hi[any_t] = small[any_t].max(1) + pad
            if oncoming:
                # Terminal interval: never stop inside the stretch its path shares with ours,
                # unless we can clear that stretch well before it can get there.
                ahead = inside & (samp >= ag.s - ag.rear_offset)
                if ahead.any() and not self._can_pass_first(world, ag, samp[ahead], ps[ahead] + pad, s0):
                    lo[-1] = min(np.nan_to_num(lo[-1], nan=np.inf), ps[ahead].min() - pad)
                    hi[-1] = max(np.nan_to_num(hi[-1], nan=-np.inf), ps[ahead].max() + pad)
                    any_t[-1] = True
            if not any_t.any():
                continue
            # Behaviour relative to the path for the reasoning.
            if ag.kind == "crew":
                beh = (
                    "crossing the lane"
                    if ag.v > 0.2
                    else ("standing in the lane" if ag.started else "at the lane edge")
                )
            elif oncoming:
                beh = "oncoming"
            elif abs(rel) > 0.7:
                beh = "crossing"
            else:
                beh = "in the lane" if ag.v > 0.3 else "stopped in the lane"
            cur = (samp >= ag.s - ag.rear_offset - 0.5) & (samp <= ag.s + ag.front_offset + 0.5)
            now = float(ps[cur].min()) if cur.any() else float(np.nanmin(lo))
            out.append(_Obstacle(lo, hi, ag.kind, ag.bodies[0].oid, beh, False, ag.v, now))
        return out

    def _can_pass_first(
        self, world: World, ag: Agent, samp_in: np.ndarray, ps_in: np.ndarray, s0: float
    ) -> bool:
        """True when the ego clears the shared stretch before the oncoming agent can reach it."""
        e = self.e
        reach_agent = max(0.0, float(samp_in.min()) - (ag.s + ag.front_offset))
        t_agent = reach_agent / max(ag.v, ag.v0, 0.5)  # a lower bound on its arrival
        v_pass = float(e["nudge_speed"])
        v_app = max(world.ego.v, v_pass)  # approach at least at passing speed
        approach = max(0.0, float(ps_in.min()) - s0)
        stretch = float(ps_in.max()) - max(float(ps_in.min()), s0) + world.ego.rear_overhang
        t_ego = max(0.0, v_pass - world.ego.v) / float(e["accel"]) + approach / v_app + stretch / v_pass
        return t_agent > t_ego + float(e["oncoming_margin"])

    def _standstill_clear(self, world: World) -> bool:
        """True when no agent's predicted sweep over the horizon touches the standing ego."""
        ego_fp = world.ego.footprint(inflate=0.3)
        centre = ego_fp.mean(0)
        for ag in world.agents:
            if not ag.active:
                continue
            smin, smax = self._bounds(ag, world.t)
            lo = ag.s + min(0.0, float(smin.min())) - ag.rear_offset
            hi = ag.s + float(smax[-1]) + ag.front_offset
            st = np.arange(lo, hi + 0.5, 0.5)
            pose = ag.path.interp(st)
            if np.hypot(*(pose[:, :2] - centre).T).min() > 15.0:
                continue
            boxes = box_corners(pose[:, :2], pose[:, 2], np.full(len(st), 1.0), np.full(len(st), ag.width))
            if rect_overlaps(ego_fp, boxes).any():
                return False
        return True

    # --------------------------------------------------------- profiles
    def _profiles(
        self, v0: float, s_lim: np.ndarray, v_lim: np.ndarray, s0: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = self.e
        v_cap = min(float(e["cruise_speed"]), float(self.cfg["ego"]["max_speed"]))
        targets = np.linspace(0.0, v_cap, int(e["speed_levels"]))
        decels = np.asarray(e["decels"], dtype=np.float64)
        tgt = np.repeat(targets, len(decels))
        dec = np.tile(decels, len(targets))
        acc = float(e["accel"])
        k = len(tgt)
        v = np.full(k, v0)
        s = np.full(k, s0)
        vs = np.empty((k, self.n_t + 1))
        ss = np.empty((k, self.n_t + 1))
        vs[:, 0], ss[:, 0] = v, s
        for i in range(1, self.n_t + 1):
            up = np.minimum(v + acc * self.dt, tgt)
            down = np.maximum(v - dec * self.dt, tgt)
            vn = np.where(v < tgt, up, down)
            cap = np.interp(s + v * self.dt, s_lim, v_lim)  # look one step ahead: no overshoot
            vn = np.where(vn > cap, np.maximum(cap, v - dec * self.dt), vn)
            vn = np.maximum(vn, 0.0)
            s = s + 0.5 * (v + vn) * self.dt
            v = vn
            vs[:, i], ss[:, i] = v, s
        return ss, vs, dec

    def plan(self, world: World) -> ExpertDecision:
        """Plan from the current world state (does not change the world)."""
        if self.view is not None:
            world = self.view.visible(world)
        e = self.e
        ego = world.ego
        s_e = world.ego_s()
        path, offs, nudges = self._path(world, s_e)
        s0 = float(path.project(ego.xy()[None, :])[0][0])
        s_lim, v_lim, limit_reasons = self._speed_limit(world, path, offs, s0)
        obstacles = self._obstacles(world, path, s0)
        front = ego.front_offset
        rear = ego.rear_overhang
        b_term = float(e["decels"][0])
        g0 = float(e["gap_static"])
        for ob in obstacles:  # stop smoothly before parked objects: a braking-curve speed cap
            if ob.static and ob.lo[0] > s0:
                room = ob.lo[0] - g0 - 1.0 - front - s_lim
                v_lim = np.minimum(v_lim, np.sqrt(2.0 * b_term * np.maximum(room, 0.0)))
        # Painted stop lines (privileged: the expert knows the world): stop before the line with
        # a braking-curve cap until the ego has held there for the dwell time.
        pending = pending_stop_lines(world, float(e["lookahead"]))
        for line in pending:
            p_line = world.lane.interp(line.s)[:2]
            sp = float(path.project(p_line[None, :])[0][0])
            room = sp - float(e["stop_line_margin"]) - front - s_lim
            v_lim = np.minimum(v_lim, np.sqrt(2.0 * b_term * np.maximum(room, 0.0)))
        stop_line = next_stop_line(world, float(e["lookahead"]), pending)
        ss, vs, dec = self._profiles(ego.v, s_lim, v_lim, s0)
        gap_dyn = g0 + float(e["gap_time"]) * vs
        first_hit = np.full(len(ss), np.inf)
        blame = np.full(len(ss), -1)
        contact = np.zeros(len(ss), dtype=bool)  # body overlap along the path, no buffer
        for j, ob in enumerate(obstacles):
            gap = g0 if ob.static else gap_dyn
            valid = ~np.isnan(ob.lo)
            lo = np.where(valid, ob.lo, np.inf)[None, :]
            hi = np.where(valid, ob.hi, -np.inf)[None, :]
            clash = (ss + front + gap > lo) & (ss - rear - 1.0 < hi)
            contact |= ((ss + front > lo) & (ss - rear < hi)).any(1)
            # Terminal: able to stop comfortably before what is still there at the horizon end.
            if valid[-1] and not ob.static:  # parked objects are handled by the speed cap
                stop_end = ss[:, -1] + front + vs[:, -1] ** 2 / (2 * b_term) + float(e["gap_static"])
                term = (stop_end > ob.lo[-1]) & (ss[:, -1] - rear - 1.0 < ob.hi[-1])
            else:
                term = np.zeros(len(ss), dtype=bool)
            t_hit = np.where(clash.any(1), self.times[np.argmax(clash, axis=1)], np.inf)
            t_hit = np.where(term & ~np.isfinite(t_hit), self.times[-1], t_hit)
            better = t_hit < first_hit
            first_hit = np.where(better, t_hit, first_hit)
            blame = np.where(better, j, blame)
        feasible = ~np.isfinite(first_hit)
        progress = ss[:, -1]
        safe = bool(feasible.any() or (~contact).any())
        if feasible.any():
            score = np.where(feasible, progress - 0.01 * dec, -np.inf)
            best = int(np.argmax(score))
        elif (~contact).any():  # inside the buffer but clear of contact: least progress, i.e. stop
            score = np.where(~contact, -progress + 0.01 * dec, -np.inf)
            best = int(np.argmax(score))
        elif ego.v < 0.5 and self._standstill_clear(world):
            # The path check is conservative around nudge ramps; standing still is exactly clear.
            safe = True
            best = int(np.lexsort((-dec, progress))[0])
        else:  # nothing is safe: the profile that delays contact most, braking hardest
            best = int(np.lexsort((-dec, -first_hit))[0])
        speeds = vs[best]
        plan = Plan(path, self.times.copy(), speeds.copy(), world.t)
        # Reasoning: what stops the next faster profile?
        v_cap = float(np.interp(s0, s_lim, v_lim))
        fastest = int(np.argmax(progress))
        cause_ob = None
        if best != fastest and blame[fastest] >= 0:
            cause_ob = obstacles[int(blame[fastest])]
        if not feasible.any() and blame[best] >= 0:
            cause_ob = obstacles[int(blame[best])]
        if cause_ob is None:  # a parked object's braking cap may bind every profile alike
            statics = [ob for ob in obstacles if ob.static and ob.lo[0] > s0]
            if statics:
                near = min(statics, key=lambda ob: ob.lo[0])
                reach = float(speeds.max()) ** 2 / (2 * b_term) + 15.0
                if near.lo[0] - s0 - front < reach:
                    cause_ob = near
        if stop_line is not None and cause_ob is None:
            dist, line = stop_line
            if dist < ego.v**2 / (2 * b_term) + 15.0:
                if ego.v < 0.3:
                    left = max(0.0, line.dwell - line.held)
                    text, action = f"Holding at the stop line: {left:.1f} s left", "hold"
                else:
                    text, action = f"Stopping: stop line {dist:.0f} m ahead", "stop"
                return ExpertDecision(plan, text, action, "stop_line", -1, dist, float(speeds[-1]), safe)
        return self._explain(
            world, plan, speeds, ego.v, s0, front, cause_ob, nudges, limit_reasons, v_cap, safe
        )

    def _explain(
        self,
        world: World,
        plan: Plan,
        speeds: np.ndarray,
        v: float,
        s0: float,
        front: float,
        ob: _Obstacle | None,
        nudges: list[tuple[float, float, str, int]],
        limits: list[tuple[float, str, int, str]],
        v_cap: float,
        safe: bool,
    ) -> ExpertDecision:
        v_end = float(speeds[-1])
        v_next = float(speeds[min(5, len(speeds) - 1)])
        cruise = float(self.e["cruise_speed"])
        if ob is not None:
            valid = ~np.isnan(ob.lo)
            # Where it is now, not its predicted reach.
            where = ob.now if np.isfinite(ob.now) else float(ob.lo[int(np.argmax(valid))])
            dist = max(0.0, where - s0 - front)
            what = NAMES.get(ob.cls, ob.cls)
            if not safe:
                action, verb = "brake", "Braking hard"
            elif v < 0.3 and v_next < 0.3:
                action, verb = "hold", "Waiting"
            elif v_end < 0.2:
                action, verb = "stop", "Stopping"
            elif ob.behaviour == "in the lane" and abs(v_next - ob.speed) < 1.0:
                action, verb = "follow", "Following"
            else:
                action, verb = "slow", "Slowing"
            if ob.behaviour == "crossing" or (ob.cls == "crew" and ob.behaviour != "at the lane edge"):
                verb = "Yielding" if action in ("slow", "stop", "hold") and ob.cls != "crew" else verb
            text = f"{verb}: {what} {dist:.0f} m ahead {ob.behaviour}"
            if ob.behaviour == "in the lane" and action == "follow":
                text = f"Following: {what} {dist:.0f} m ahead at {ob.speed:.1f} m/s"
            if ob.behaviour == "oncoming":
                text = f"{verb}: oncoming {what} {dist:.0f} m ahead, no room to pass"
            return ExpertDecision(plan, text, action, ob.cls, ob.oid, dist, v_end, safe)
        ahead_nudges = [n for n in nudges if -8.0 < n[0] - s0 - front < 35.0]
        if ahead_nudges:
            s_n, o, cls, oid = ahead_nudges[0]
            dist = max(0.0, s_n - s0 - front)
            side = "left" if o > 0 else "right"
            return ExpertDecision(
                plan,
                f"Nudging {side}: {NAMES.get(cls, cls)} {dist:.0f} m ahead narrow the lane",
                "nudge",
                cls,
                oid,
                dist,
                v_end,
                safe,
            )
        if v_end < v - 0.5 or (v_cap < v + 0.3 and v_cap < cruise - 0.3):
            for s_l, kind, oid, desc in sorted(limits):
                dist = max(0.0, s_l - s0 - front)
                if kind == "crew":
                    return ExpertDecision(
                        plan,
                        f"Slowing: ground crew {dist:.0f} m ahead {desc}",
                        "slow",
                        "crew",
                        oid,
                        dist,
                        v_end,
                        safe,
                    )
                if dist < 40.0:
                    side = "left" if kind == "turn_left" else "right"
                    return ExpertDecision(
                        plan,
                        f"Slowing for the {side} turn {dist:.0f} m ahead",
                        "slow",
                        kind,
                        -1,
                        dist,
                        v_end,
                        safe,
                    )
        if v_end > v + 0.5:
            return ExpertDecision(
                plan,
                f"Accelerating to {v_end:.1f} m/s on a clear service road",
                "accelerate",
                target_speed=v_end,
            )
        return ExpertDecision(plan, f"Cruising at {v:.1f} m/s, lane clear", "cruise", target_speed=v_end)
