"""Closed-loop stepping shared by the bag generator and the harness.

Every ``frame_dt`` a policy looks at the world and returns a :class:`~vla_edge.sim.ego.Plan`
(or None: brake); between policy calls the :class:`~vla_edge.sim.ego.PathFollower` tracks
the plan at ``physics_dt``. The log keeps the ego state of every physics step and a
snapshot of the agents at every frame, so sensors can be rendered afterwards and the
expert's ground-truth future can be read from what really happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.sim.ego import PathFollower, Plan
from vla_edge.sim.world import Boxes, SimError, World


@dataclass
class FrameRecord:
    """What one frame saw and decided.

    Attributes:
        step: Physics step index of the frame.
        t: Scenario time (s).
        agents: Snapshot of the agent boxes.
        info: Whatever the policy returned besides the plan (e.g. the expert's reasoning).
    """

    step: int
    t: float
    agents: Boxes
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RolloutLog:
    """Everything a rollout produced.

    Attributes:
        t: ``(S,)`` scenario times of the physics steps (state *after* step i-1; t[0] = 0).
        ego: ``(S, 6)`` x, y, yaw, v, a, yaw_rate per step.
        ego_s: ``(S,)`` arc length of the ego along the lane.
        frames: One record per frame.
        collisions: ``(t, id, class, ego_speed)`` for the first contact with each object.
        offroad: ``(S,)`` True where the footprint left drivable ground.
    """

    t: np.ndarray
    ego: np.ndarray
    ego_s: np.ndarray
    frames: list[FrameRecord]
    collisions: list[tuple[float, int, str, float]]
    offroad: np.ndarray


Policy = Callable[[World], tuple[Plan | None, dict[str, Any]]]


def run_closed_loop(
    world: World,
    policy: Policy,
    seconds: float,
    cfg: dict[str, Any],
    *,
    check_collisions: bool = True,
    on_frame: Callable[[World, FrameRecord], None] | None = None,
) -> RolloutLog:
    """Step ``world`` for ``seconds`` with ``policy`` called every frame.

    Args:
        world: The scenario (modified in place).
        policy: ``world -> (plan or None, info)``.
        seconds: Duration.
        cfg: The whole ``sim`` config.
        check_collisions: Check ego-object contact every physics step.
        on_frame: Called after each frame's policy call.

    Raises:
        SimError: ``frame_dt`` is not a multiple of ``physics_dt``.
    """
    tc = cfg["time"]
    dt = float(tc["physics_dt"])
    ratio = float(tc["frame_dt"]) / dt
    per_frame = round(ratio)
    if abs(ratio - per_frame) > 1e-6 or per_frame < 1:
        raise SimError(f"time.frame_dt must be a multiple of time.physics_dt, got {tc['frame_dt']} / {dt}")
    n_steps = round(seconds / dt)
    follower = PathFollower(cfg["controller"], world.ego.wheelbase)
    ts = np.zeros(n_steps + 1)
    ego = np.zeros((n_steps + 1, 6))
    ego_s = np.zeros(n_steps + 1)
    offroad = np.zeros(n_steps + 1, dtype=bool)
    frames: list[FrameRecord] = []
    collisions: list[tuple[float, int, str, float]] = []
    seen: set[int] = set()
    plan: Plan | None = None

    def record(i: int) -> None:
        e = world.ego
        ts[i] = world.t
        ego[i] = (e.x, e.y, e.yaw, e.v, e.a, e.yaw_rate)
        ego_s[i] = world.ego_s()
        offroad[i] = not world.drivable_ok()
        if check_collisions:
            for oid, cls in world.collisions():
                if oid not in seen:
                    seen.add(oid)
                    collisions.append((world.t, oid, cls, e.v))

    record(0)
    for i in range(n_steps):
        if i % per_frame == 0:
            plan, info = policy(world)
            rec = FrameRecord(i, world.t, world.agent_boxes(), info)
            frames.append(rec)
            if on_frame is not None:
                on_frame(world, rec)
        accel, steer = follower.command(world.ego, plan, world.t)
        world.step(dt, accel, steer)
        record(i + 1)
    return RolloutLog(ts, ego, ego_s, frames, collisions, offroad)


def expert_policy(expert: Any) -> Policy:
    """Wrap an :class:`~vla_edge.sim.expert.Expert` as a rollout policy."""

    def policy(world: World) -> tuple[Plan | None, dict[str, Any]]:
        dec = expert.plan(world)
        return dec.plan, {
            "reasoning": dec.reasoning,
            "action": dec.action,
            "cause": dec.cause,
            "cause_id": dec.cause_id,
            "cause_dist": dec.cause_dist,
            "safe": dec.safe,
            "target_speed": dec.target_speed,
        }

    return policy
