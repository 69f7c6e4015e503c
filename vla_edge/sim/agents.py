"""Moving agents: tugs, baggage-cart trains, fuel trucks and ground crew.

Every agent follows a fixed path (a lane, a crossing lane or a walking line) with an
IDM-like longitudinal law. It brakes for whatever occupies its path ahead: other agents,
parked objects and the ego. A cart train is one agent whose bodies trail the head along
the path. Agents can wait for a start time or for the ego to come close (a trigger), pause
on their path (crew picking up FOD) and leave the scene at the end of their path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.sim.world import Boxes, Polyline, box_corners

# Look-ahead (m) of an agent's IDM: beyond it a leader changes the acceleration by < 5 %.
_IDM_RANGE = 50.0


@dataclass
class Body:
    """One rigid body of an agent, trailing the head by ``offset`` metres along the path."""

    offset: float
    cls: str
    size: tuple[float, float, float]
    oid: int
    reflectivity: float
    color: tuple[int, int, int]


@dataclass
class Agent:
    """A path-following agent.

    Attributes:
        kind: ``"tug"``, ``"fuel_truck"``, ``"cart_train"``, ``"crew"`` or ``"aircraft"``
            (under pushback).
        path: The path followed (odom frame).
        s: Arc length of the head body centre.
        v: Speed along the path (m/s).
        v0: Desired speed (m/s).
        a_max: Maximum acceleration (m/s^2).
        bodies: Bodies, the head first.
        params: The ``agents`` config section.
        start_time: Scenario time (s) before which the agent waits (None: no wait).
        trigger_s: Ego arc length along the ego lane that starts the agent (None: no trigger).
        pause_at: Arc length where the agent stands still for ``pause_for`` seconds.
        pause_for: Pause duration (s).
        despawn_at_end: Leave the scene at the end of the path (vehicles); crew stay.
        active: False once the agent has left.
        started: True once the agent may move.
    """

    kind: str
    path: Polyline
    s: float
    v: float
    v0: float
    a_max: float
    bodies: list[Body]
    params: dict[str, Any]
    start_time: float | None = None
    trigger_s: float | None = None
    pause_at: float | None = None
    pause_for: float = 0.0
    despawn_at_end: bool = True
    active: bool = True
    started: bool = False
    _static_stops: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _paused: float = 0.0
    _cache: Any = None

    @property
    def width(self) -> float:
        """Widest body width in m."""
        return max(b.size[1] for b in self.bodies)

    @property
    def front_offset(self) -> float:
        """Distance from the head centre to the front of the head body."""
        return 0.5 * self.bodies[0].size[0]

    @property
    def rear_offset(self) -> float:
        """Distance from the head centre back to the rear of the last body."""
        last = self.bodies[-1]
        return last.offset + 0.5 * last.size[0]

    def prepare(self, static: Boxes) -> None:
        """Precompute where parked objects block this agent's path (arc lengths)."""
        if not len(static):
            return
        corners = static.corners()
        s, d = self.path.project(corners.reshape(-1, 2))
        s = s.reshape(-1, 4)
        d = d.reshape(-1, 4)
        half = 0.5 * self.width + float(self.params["lateral_margin"])
        on = (d.min(1) < half) & (d.max(1) > -half) & (s.max(1) > 0) & (s.min(1) < self.path.length)
        self._static_stops = np.sort(s[on].min(1))

    def boxes(self) -> Boxes:
        """Boxes of the bodies at the current arc length (cached until the agent moves)."""
        key = (self.s, self.v)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = self._make_boxes()
        self._cache = (key, out)
        return out

    def _make_boxes(self) -> Boxes:
        st = np.array([self.s - b.offset for b in self.bodies])
        pose = self.path.interp(st)
        n = len(self.bodies)
        vel = self.v * np.stack([np.cos(pose[:, 2]), np.sin(pose[:, 2])], axis=1)
        return Boxes(
            xy=pose[:, :2],
            yaw=pose[:, 2],
            size=np.array([b.size for b in self.bodies], dtype=np.float64),
            z0=np.zeros(n),
            cls=np.array([b.cls for b in self.bodies], dtype=object),
            ids=np.array([b.oid for b in self.bodies], dtype=np.int64),
            reflectivity=np.array([b.reflectivity for b in self.bodies]),
            color=np.array([b.color for b in self.bodies], dtype=np.uint8),
            moving=np.ones(n, dtype=bool),
            speed=vel,
        )

    def _gap_ahead(
        self, ego_box: np.ndarray, ego_vel: np.ndarray, others: list[Agent]
    ) -> tuple[float, float]:
        """Free distance ahead of the head front and the speed of what is there."""
        front = self.s + self.front_offset
        gap, v_lead = np.inf, 0.0
        ahead = self._static_stops[self._static_stops > front - 0.5]
        if len(ahead):
            gap = float(ahead[0] - front)
        half = 0.5 * self.width + float(self.params["lateral_margin"])
        heading = self.path.interp(self.s)[2]
        cands: list[tuple[np.ndarray, np.ndarray]] = [(ego_box, ego_vel)]
        for o in others:
            b = o.boxes()
            cands.append((b.corners().reshape(-1, 2), b.speed[0]))
        here = self.path.interp(self.s)[:2]
        reach = self.front_offset + _IDM_RANGE
        for corners, vel in cands:
            if np.min(np.hypot(*(corners - here).T)) > reach:
                continue
            s, d = self.path.project(corners, self.s - 5.0, self.s + reach)
            if d.min() >= half or d.max() <= -half or s.max() < front - 0.5:
                continue
            g = float(s.min() - front)
            if g < gap:
                gap = g
                v_lead = float(vel[0] * np.cos(heading) + vel[1] * np.sin(heading))
        return gap, v_lead

    def step(
        self,
        dt: float,
        t: float,
        ego_box: np.ndarray,
        ego_vel: np.ndarray,
        others: list[Agent],
        ego_lane: Polyline,
        ego_s: float,
    ) -> None:
        """Advance by ``dt`` seconds (scenario time ``t`` at the start of the step)."""
        del ego_lane
        if not self.active:
            return
        if not self.started:
            ok_t = self.start_time is None or t >= self.start_time
            ok_s = self.trigger_s is None or ego_s >= self.trigger_s
            if not (ok_t and ok_s):
                return
            self.started = True
        p = self.params
        v0 = self.v0
        if self.pause_at is not None and self.s >= self.pause_at and self._paused < self.pause_for:
            self._paused += dt
            v0 = 0.0
        gap, v_lead = self._gap_ahead(ego_box, ego_vel, others)
        b = float(p["comfort_decel"])
        s0 = float(p["idm_min_gap"]) if self.kind != "crew" else float(p["crew_yield_dist"])
        if v0 <= 0.0:
            acc = -max(b, 2.0 * self.v / max(dt, 1e-3))
        else:
            free = 1.0 - (self.v / v0) ** float(p["idm_exponent"])
            acc = self.a_max * free
            if np.isfinite(gap):
                dv = self.v - v_lead
                s_star = s0 + max(
                    0.0, self.v * float(p["idm_time_headway"]) + self.v * dv / (2 * np.sqrt(self.a_max * b))
                )
                acc -= self.a_max * (s_star / max(gap, 0.05)) ** 2
        acc = float(np.clip(acc, -float(p["max_decel"]), self.a_max))
        v_new = max(0.0, self.v + acc * dt)
        self.s += 0.5 * (self.v + v_new) * dt
        self.v = v_new
        if self.s >= self.path.length - self.front_offset:
            if self.despawn_at_end:
                self.active = False
            else:
                self.s = self.path.length - self.front_offset
                self.v = 0.0


def make_bodies(
    kind: str,
    classes: dict[str, Any],
    colors: dict[str, Any],
    first_id: int,
    carts: int = 0,
    hitch_gap: float = 0.8,
) -> list[Body]:
    """Bodies of an agent of ``kind`` (a train gets a tug head plus ``carts`` carts).

    ``colors`` is ``camera.class_colors`` (camera RGB per class).
    """

    def body(cls: str, offset: float, oid: int) -> Body:
        c = classes[cls]
        return Body(
            offset,
            cls,
            tuple(float(v) for v in c["size"]),
            oid,
            float(c["reflectivity"]),
            tuple(int(v) for v in colors[cls]),
        )

    if kind == "cart_train":
        out = [body("tug", 0.0, first_id)]
        off = 0.0
        prev = classes["tug"]["size"][0]
        for i in range(carts):
            ln = classes["baggage_cart"]["size"][0]
            off += 0.5 * prev + hitch_gap + 0.5 * ln
            prev = ln
            out.append(body("baggage_cart", off, first_id + 1 + i))
        return out
    if kind == "aircraft":  # an aircraft under pushback: one fuselage body
        return [body("aircraft_fuselage", 0.0, first_id)]
    return [body(kind, 0.0, first_id)]


def footprint_of(agent: Agent) -> np.ndarray:
    """Corners ``(B, 4, 2)`` of every body of ``agent``."""
    b = agent.boxes()
    return box_corners(b.xy, b.yaw, b.size[:, 0], b.size[:, 1])
