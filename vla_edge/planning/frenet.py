"""Sampling Frenet planner in the style of Werling et al. (2010), fully vectorised.

Candidates are the product of

* end lateral offsets ``d1`` reached by a quintic ``d(t)`` (zero lateral speed and
  acceleration at the end),
* end speeds ``v1`` (0 means stop) reached by a quartic ``s(t)`` (zero acceleration at the
  end),
* manoeuvre durations ``T``; after ``T`` the candidate keeps ``d1`` and ``v1``.

All candidates are evaluated at once on ``[n_candidates, n_steps]`` arrays: Frenet ->
Cartesian through the reference path, finite-difference kinematics (the same function the
arbiter uses), the vehicle limits from ``vehicle.yaml``, and collision with the inflated
static grid plus constant-velocity predictions of moving clusters. The cost is Werling's:
integrated squared jerk, squared end offset, squared speed deviation and duration, plus a
soft clearance term. The cheapest feasible candidate is returned, or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.config import require
from vla_edge.planning.checks import STILL_RADIUS, Corridor, collision_levels, corridor_excess
from vla_edge.planning.kinematics import profile
from vla_edge.planning.obstacles import Footprint, Obstacles
from vla_edge.planning.reference_path import ReferencePath
from vla_edge.types import EgoState, Trajectory


@dataclass(frozen=True)
class FrenetParams:
    """Planner parameters from ``planner.yaml`` and limits from ``vehicle.yaml``."""

    dt: float
    horizon: float
    offsets: np.ndarray
    speeds: np.ndarray
    horizons: np.ndarray
    desired_speed: float
    min_speed_for_curvature: float
    min_speed: float
    low_speed: float
    max_speed: float
    max_accel: float
    max_decel: float
    max_jerk: float
    max_lat_accel: float
    max_yaw_rate: float
    max_curvature: float
    w_jerk: float
    w_offset: float
    w_speed: float
    w_time: float
    w_consistency: float
    w_clearance: float
    ttc_buffer: float
    ttc_min: float
    corridor: Corridor
    terminal_decel: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> FrenetParams:
        """Build from the merged config (``planner`` and ``vehicle`` sections)."""
        p = require(cfg, "planner", where="planner.yaml")
        v = require(cfg, "vehicle", where="vehicle.yaml")
        max_speed = float(require(v, "max_speed"))
        lo = require(p, "lateral_offsets")
        ts = require(p, "target_speeds")
        c = require(p, "cost")
        return cls(
            dt=float(require(p, "dt")),
            horizon=float(require(p, "horizon")),
            offsets=np.linspace(
                float(require(lo, "min")), float(require(lo, "max")), int(require(lo, "count"))
            ),
            speeds=np.linspace(float(require(ts, "min")), max_speed, int(require(ts, "count"))),
            horizons=np.asarray(require(p, "horizons"), dtype=np.float64),
            desired_speed=min(float(require(p, "desired_speed")), max_speed),
            min_speed_for_curvature=float(require(p, "min_speed_for_curvature")),
            min_speed=float(require(p, "min_speed")),
            low_speed=float(require(p, "low_speed_mode_below")),
            max_speed=max_speed,
            max_accel=float(require(v, "max_accel")),
            max_decel=float(require(v, "max_decel")),
            max_jerk=float(require(v, "max_jerk")),
            max_lat_accel=float(require(v, "max_lat_accel")),
            max_yaw_rate=float(require(v, "max_yaw_rate")),
            max_curvature=float(np.tan(float(require(v, "max_steer"))) / float(require(v, "wheelbase"))),
            w_jerk=float(require(c, "jerk")),
            w_offset=float(require(c, "lateral_offset")),
            w_speed=float(require(c, "speed_deviation")),
            w_time=float(require(c, "time")),
            w_consistency=float(require(c, "consistency")),
            w_clearance=float(require(c, "clearance")),
            ttc_buffer=float(require(cfg, "arbiter", "collision", "ttc_buffer", where="arbiter.yaml")),
            ttc_min=float(require(cfg, "arbiter", "collision", "ttc_min", where="arbiter.yaml")),
            corridor=Corridor.from_config(cfg),
            terminal_decel=float(require(p, "terminal_decel")),
        )

    @property
    def n_candidates(self) -> int:
        """Number of sampled candidates."""
        return len(self.offsets) * len(self.speeds) * len(self.horizons)


@dataclass
class FrenetResult:
    """Outcome of one planning call.

    Attributes:
        trajectory: Best feasible plan (ego frame, dt from config, ``source="frenet"``) or None.
        n_candidates: Candidates evaluated.
        n_feasible: Candidates passing every check.
        rejected: Candidates failing each check (a candidate may fail several).
        cost: Cost of the chosen candidate (0 when none).
        params: ``{"d1", "v1", "T"}`` of the chosen candidate.
    """

    trajectory: Trajectory | None
    n_candidates: int = 0
    n_feasible: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    params: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary."""
        return {
            "found": self.trajectory is not None,
            "n_candidates": int(self.n_candidates),
            "n_feasible": int(self.n_feasible),
            "rejected": {k: int(v) for k, v in self.rejected.items()},
            "cost": float(self.cost),
            "params": {k: float(v) for k, v in self.params.items()},
        }


def quartic_lon(s0: float, v0: float, a0: float, v1: np.ndarray, T: np.ndarray, t: np.ndarray) -> tuple:
    """Quartic s(t) with s, s', s'' at 0 and s'=v1, s''=0 at T; constant speed after T.

    Args:
        v1: ``[V, 1]`` (or broadcastable) end speeds; ``T``: ``[1, H]`` durations; ``t``: ``[S]``.

    Returns:
        ``(s, s_dot, s_ddot, s_dddot)`` each ``[V, H, S]``.
    """
    A = v1 - v0 - a0 * T
    B = -a0
    c4 = (B - 2 * A / T) / (4 * T**2)
    c3 = (A - 4 * T**3 * c4) / (3 * T**2)
    c3, c4, T3 = c3[..., None], c4[..., None], T[..., None]
    tt = np.minimum(t, T3)
    s = s0 + v0 * tt + 0.5 * a0 * tt**2 + c3 * tt**3 + c4 * tt**4
    sd = v0 + a0 * tt + 3 * c3 * tt**2 + 4 * c4 * tt**3
    sdd = a0 + 6 * c3 * tt + 12 * c4 * tt**2
    sddd = 6 * c3 + 24 * c4 * tt
    after = t > T3
    s = np.where(after, s + sd * (t - tt), s)
    sdd = np.where(after, 0.0, sdd)
    sddd = np.where(after, 0.0, sddd)
    return s, sd, sdd, sddd


def quintic_lat(d0: float, dd0: float, ddd0: float, d1: np.ndarray, T: np.ndarray, t: np.ndarray) -> tuple:
    """Quintic d(t) with d, d', d'' at 0 and d=d1, d'=d''=0 at T; constant after T.

    Returns:
        ``(d, d_dot, d_ddot, d_dddot)`` each ``[D, H, S]``.
    """
    h = d1 - (d0 + dd0 * T + 0.5 * ddd0 * T**2)
    hv = -(dd0 + ddd0 * T)
    ha = -ddd0
    c3 = 10 * h / T**3 - 4 * hv / T**2 + 0.5 * ha / T
    c4 = -15 * h / T**4 + 7 * hv / T**3 - ha / T**2
    c5 = 6 * h / T**5 - 3 * hv / T**4 + 0.5 * ha / T**3
    c3, c4, c5, T3 = c3[..., None], c4[..., None], c5[..., None], T[..., None]
    tt = np.minimum(t, T3)
    d = d0 + dd0 * tt + 0.5 * ddd0 * tt**2 + c3 * tt**3 + c4 * tt**4 + c5 * tt**5
    dd = dd0 + ddd0 * tt + 3 * c3 * tt**2 + 4 * c4 * tt**3 + 5 * c5 * tt**4
    ddd = ddd0 + 6 * c3 * tt + 12 * c4 * tt**2 + 20 * c5 * tt**3
    dddd = 6 * c3 + 24 * c4 * tt + 60 * c5 * tt**2
    after = t > T3
    return d, np.where(after, 0.0, dd), np.where(after, 0.0, ddd), np.where(after, 0.0, dddd)


class FrenetPlanner:
    """Vectorised Werling planner; one instance per vehicle configuration."""

    def __init__(self, params: FrenetParams, footprint: Footprint) -> None:
        self.params = params
        self.footprint = footprint
        n = round(params.horizon / params.dt)
        self.t = params.dt * np.arange(n + 1)
        # Time index of the end of each manoeuvre (distance travelled in low-speed mode).
        self._t_index = np.minimum(np.rint(params.horizons / params.dt).astype(int), n)[None, :]

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> FrenetPlanner:
        """Build from the merged config."""
        return cls(FrenetParams.from_config(cfg), Footprint.from_config(cfg))

    def initial_state(self, ref: ReferencePath, ego: EgoState) -> tuple[np.ndarray, np.ndarray]:
        """Frenet start state ``([s, s', s''], [d, d', d'', heading error, kappa * d])`` on ``ref``."""
        s0, d0 = ref.ego_frenet()
        _, _, th, kp = ref.interpolate(np.array([s0]))
        dth = float(np.arctan2(np.sin(-th[0]), np.cos(-th[0])))
        v = max(float(ego.v), 0.0)
        a = float(np.clip(ego.a, -self.params.max_decel, self.params.max_accel))
        scale = max(1.0 - float(kp[0]) * d0, 1e-3)
        lon = np.array([s0, v * np.cos(dth) / scale, a * np.cos(dth)])
        # lat[3:] (heading error, kappa * d0) serve the low-speed mode's start slope.
        lat = np.array([d0, v * np.sin(dth), a * np.sin(dth), dth, float(kp[0]) * d0])
        return lon, lat

    def candidates(self, ref: ReferencePath, ego: EgoState, prefilter: bool = True) -> dict[str, Any]:
        """Candidates as ``[N, S]`` arrays (x, y, yaw, speed) plus their parameters.

        With ``prefilter`` (Werling's decoupling), (end speed, T) pairs whose 1-D longitudinal
        profile already breaks the acceleration / jerk limits by more than 25 % are dropped
        before the Cartesian evaluation; they are counted as evaluated and rejected.
        """
        p = self.params
        lon, lat = self.initial_state(ref, ego)
        T = p.horizons[None, :]
        s, sd, sdd, sddd = quartic_lon(lon[0], lon[1], lon[2], p.speeds[:, None], T, self.t)
        nd, nv, nh, ns = len(p.offsets), len(p.speeds), len(p.horizons), len(self.t)
        lon_ok = np.ones((nv, nh), dtype=bool)
        if prefilter:
            slack = 1.25
            lon_ok &= (sdd <= slack * p.max_accel).all(-1) & (sdd >= -slack * p.max_decel).all(-1)
            lon_ok &= (np.abs(sddd) <= slack * p.max_jerk).all(-1) & (sd >= p.min_speed - 0.5).all(-1)
        vi, hi = np.nonzero(lon_ok)
        di = np.repeat(np.arange(nd), len(vi))
        vi, hi = np.tile(vi, nd), np.tile(hi, nd)
        # Everything that depends on s only is computed once per (end speed, T) profile and
        # gathered: the path lookup and its sin/cos run on 32 x 51 values, not 800 x 51.
        xr, yr, th, kp = ref.interpolate(s)
        sin_th, cos_th = np.sin(th), np.cos(th)
        lon_idx = (vi, hi)
        SD, KP = sd[lon_idx], kp[lon_idx]
        if max(float(ego.v), 0.0) < p.low_speed:
            # Werling's low-speed mode: d is a quintic in the distance travelled, so the
            # heading follows the path geometry even while the speed is (near) zero.
            u = s - lon[0]
            length = np.maximum(u[np.arange(nv)[:, None], np.arange(nh)[None, :], self._t_index], 1e-3)
            d_u0 = lat[1] / max(lon[1], 1e-6) if lon[1] > 0.1 else float(np.tan(lat[3]) * (1 - lat[4]))
            d, du, _, duuu = quintic_lat(lat[0], d_u0, 0.0, p.offsets[:, None, None], length[None], u)
            D, DU = d[di, vi, hi], du[di, vi, hi]
            scale = 1.0 - KP * D
            yaw = th[lon_idx] + np.arctan2(DU, scale)
            speed = SD * np.hypot(scale, DU)
            lat_jerk = duuu[di, vi, hi, 1:] * SD[:, 1:] ** 3
        else:
            d, dd, _, dddd = quintic_lat(lat[0], lat[1], lat[2], p.offsets[:, None], T, self.t)
            D, DD = d[di, hi], dd[di, hi]
            along = SD * (1.0 - KP * D)
            yaw = th[lon_idx] + np.arctan2(DD, along)
            speed = np.hypot(along, DD)
            lat_jerk = dddd[di, hi, 1:]
        x = xr[lon_idx] - D * sin_th[lon_idx]
        y = yr[lon_idx] + D * cos_th[lon_idx]
        # The t=0 column is the ego itself; at (near) standstill the heading is undefined,
        # so it is held from the last moving step instead of snapping to the path heading.
        x[:, 0], y[:, 0], yaw[:, 0] = 0.0, 0.0, 0.0
        moving = speed > 0.05
        moving[:, 0] = True
        if not moving.all():
            last = np.maximum.accumulate(np.where(moving, np.arange(ns), 0), axis=1)
            yaw = np.take_along_axis(yaw, last, axis=1)
        jerk2 = sddd[vi, hi, 1:] ** 2 + lat_jerk**2
        return {
            "x": x, "y": y, "yaw": yaw, "speed": speed, "d": D, "d0": float(lat[0]),
            "jerk_int": jerk2.sum(axis=1) * p.dt,
            "d1": p.offsets[di], "v1": p.speeds[vi], "T": p.horizons[hi], "s": s[lon_idx],
            "n_total": nd * nv * nh, "n_prefiltered": nd * int(np.count_nonzero(~lon_ok)),
        }  # fmt: skip

    def plan(
        self,
        ref: ReferencePath,
        ego: EgoState,
        obstacles: Obstacles | None,
        stamp: float,
        previous_d1: float | None = None,
        speed_cap: tuple[np.ndarray, np.ndarray] | None = None,
        rules: Any = None,
    ) -> FrenetResult:
        """Best feasible candidate for the ego on ``ref`` among ``obstacles``.

        Args:
            ref: Reference path in the ego frame.
            ego: Ego state (speed, acceleration; pose is the origin).
            obstacles: Inflated obstacles, or None for an empty scene.
            stamp: Stamp of the ego frame (seconds) for the output trajectory.
            previous_d1: End offset chosen in the previous cycle (consistency cost), if any.
            speed_cap: Airside-rule cap ``(s grid, v)`` along ``ref`` (``rules.speed_cap``).
            rules: :class:`~vla_edge.planning.rules.RulesParams` (needed with ``speed_cap``).

        Returns:
            :class:`FrenetResult`; ``trajectory`` is None when nothing is feasible.
        """
        p = self.params
        c = self.candidates(ref, ego)
        n = len(c["x"])
        if n == 0:
            return FrenetResult(None, c["n_total"], 0, {"lon_prefilter": c["n_prefiltered"]})
        # float32 is ample for the feasibility screen (jerk noise ~0.03 m/s^3 at 60 m) and
        # twice as fast; the arbiter re-checks the chosen plan in float64.
        xy = np.stack([c["x"], c["y"]], axis=-1).astype(np.float32)
        prof = profile(xy, c["yaw"].astype(np.float32), p.dt, p.min_speed_for_curvature)
        v0 = max(float(ego.v), 0.0)
        v_top = max(p.max_speed, v0) + 0.1
        fails = {
            "speed": (prof.speed > v_top).any(1) | (prof.speed < p.min_speed).any(1),
            "lon_accel": (prof.accel > p.max_accel + 1e-6).any(1) | (prof.accel < -p.max_decel - 1e-6).any(1),
            "jerk": (np.abs(prof.jerk) > p.max_jerk).any(1),
            "lat_accel": (np.abs(prof.lat_accel) > p.max_lat_accel).any(1),
            "yaw_rate": (np.abs(prof.yaw_rate) > p.max_yaw_rate).any(1),
            "curvature": (np.abs(prof.curvature) > p.max_curvature).any(1),
            "nonfinite": ~np.isfinite(xy).all(axis=(1, 2)) | ~np.isfinite(c["yaw"]).all(1),
            # Body edge must stay on the drivable corridor (or not leave it further).
            "corridor": corridor_excess(c["d"], c["d0"], p.corridor) > p.corridor.tolerance,
        }
        ok = np.ones(n, dtype=bool)
        for bad in fails.values():
            ok &= ~bad
        rejected = {"lon_prefilter": c["n_prefiltered"]}
        rejected.update({k: int(np.count_nonzero(v)) for k, v in fails.items()})
        rule_bad = np.zeros(n, dtype=bool)
        if rules is not None and obstacles is not None:
            from vla_edge.planning.rules import passing_blocked

            why = passing_blocked(obstacles, ref, rules, p.corridor.right)
            # Only before a pass starts: once the ego is half way out, the collision and TTC
            # checks against the predicted oncoming traffic decide whether to go on.
            if why and c["d0"] < 0.5 * rules.pass_offset:  # stay in the own lane
                wide = (c["d1"] > rules.pass_offset) & (c["d1"] > c["d0"] + 0.1)
                rejected[f"pass_{why}"] = int(np.count_nonzero(wide & ok))
                ok &= ~wide
        if speed_cap is not None and rules is not None:
            from vla_edge.planning.rules import allowed_speed

            lim = allowed_speed(speed_cap[0], speed_cap[1], c["s"][:, 1:], self.t[1:], v0, rules)
            rule_bad = (c["speed"][:, 1:] > lim).any(1)
            rejected["speed_rule"] = int(np.count_nonzero(rule_bad & ok))
        clearance = np.zeros(n)
        if obstacles is not None and ok.any():
            idx = np.flatnonzero(ok)
            x, y, yaw, t = c["x"][idx, 1:], c["y"][idx, 1:], c["yaw"][idx, 1:], self.t[1:]
            hit, near = collision_levels(x, y, yaw, t, obstacles, self.footprint, (0.0, p.ttc_buffer))
            still = np.hypot(x, y) < STILL_RADIUS  # standing where the ego is (checks.py)
            hit, near = hit & ~still, near & ~still
            hit = hit.any(axis=1)
            # Same TTC rule as the arbiter: buffered contact must not come before ttc_min.
            first = np.where(near.any(axis=1), t[np.argmax(near, axis=1)], np.inf)
            too_close = first < p.ttc_min
            # Terminal check: from the last pose the vehicle must be able to brake to a stop
            # at the comfortable terminal_decel straight ahead without hitting anything (no
            # receding-horizon trap where every cycle postpones braking until it is too late;
            # the gentle rate makes it slow early and smoothly instead of stopping late).
            v_end = np.maximum(c["speed"][idx, -1], 0.0)
            brake = v_end**2 / (2.0 * p.terminal_decel)
            frac = np.linspace(0.2, 1.0, 5)
            yaw_end = yaw[:, -1:]
            bx = x[:, -1:] + np.cos(yaw_end) * brake[:, None] * frac
            by = y[:, -1:] + np.sin(yaw_end) * brake[:, None] * frac
            t_end = np.full(len(frac), t[-1])
            trap = collision_levels(
                bx, by, np.broadcast_to(yaw_end, bx.shape), t_end, obstacles, self.footprint
            )[0]
            trap = trap.any(axis=1) & ~hit
            rejected["collision"] = int(np.count_nonzero(hit))
            rejected["terminal_stop"] = int(np.count_nonzero(trap))
            rejected["ttc"] = int(np.count_nonzero(too_close & ~hit & ~trap))
            ok[idx[hit | too_close | trap]] = False
            clearance[idx] = near.mean(axis=1)
        cost = (
            p.w_jerk * c["jerk_int"]
            + p.w_offset * c["d1"] ** 2
            + p.w_speed * (p.desired_speed - c["v1"]) ** 2
            + p.w_time * c["T"]
            + p.w_clearance * clearance
        )
        if previous_d1 is not None and np.isfinite(previous_d1):
            cost = cost + p.w_consistency * (c["d1"] - previous_d1) ** 2
        # Speed rules are hard unless no safe candidate keeps them: a limit that appears close
        # ahead (a person stepping into view) is then met by braking as hard as the feasible
        # candidates allow, never by an emergency stop.
        if (ok & ~rule_bad).any():
            ok &= ~rule_bad
        elif ok.any() and rule_bad.any():
            rejected["speed_rule_relaxed"] = 1
            cost = cost + 100.0 * c["v1"]
        n_ok = int(np.count_nonzero(ok))
        if n_ok == 0:
            return FrenetResult(None, c["n_total"], 0, rejected)
        best = int(np.flatnonzero(ok)[np.argmin(cost[ok])])
        poses = np.stack([c["x"][best, 1:], c["y"][best, 1:], c["yaw"][best, 1:]], axis=1)
        traj = Trajectory(poses, p.dt, stamp, c["speed"][best, 1:].copy(), "frenet")
        chosen = {"d1": c["d1"][best], "v1": c["v1"][best], "T": c["T"][best]}
        return FrenetResult(traj, c["n_total"], n_ok, rejected, float(cost[best]), chosen)
