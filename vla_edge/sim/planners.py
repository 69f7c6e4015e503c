"""Harness planners by name: expert, straight, student (raw), stack and frenet (the drive loop).

``vla-edge sim evaluate --planner`` and the safety suite build their planners here.
"""

from __future__ import annotations

from typing import Any


def make_planner(
    kind: str,
    sim_cfg: dict[str, Any],
    config: str | None = None,
    engine: str | None = None,
    backend: str | None = None,
) -> tuple[Any, dict[str, int]]:
    """The planner callable of ``kind`` (``vla-edge sim evaluate --planner``) and a counter of
    arbiter choices.

    ``student`` returns a :class:`~vla_edge.sim.student_planner.StudentPlanner` (its ``stats()``
    go into the output beside the scores).
    """
    import numpy as np

    from vla_edge.types import Frame, Trajectory

    choices: dict[str, int] = {}
    if kind == "expert":
        from vla_edge.sim.harness import ExpertPlanner

        return ExpertPlanner(sim_cfg), choices
    if kind == "straight":
        v = float(sim_cfg["expert"]["cruise_speed"])

        def straight(frame: Frame) -> Trajectory:
            t = 0.5 * np.arange(1, 9)
            return Trajectory(np.stack([v * t, 0 * t, 0 * t], 1), 0.5, frame.stamp, np.full(8, v), "straight")

        return straight, choices
    from vla_edge.drive_loop import DriveLoop
    from vla_edge.params import resolve_overrides, unflatten
    from vla_edge.pipeline import DrivePipeline

    values = resolve_overrides(config, {"engine_path": engine, "backend": backend})
    if kind == "student":
        from vla_edge.sim.student_planner import StudentPlanner

        return StudentPlanner.from_config(unflatten(dict(values))), choices
    cfg = unflatten(dict(values))
    # The arbiter node's drive loop on the simulated clock (frenet: the same loop, no student).
    loop = DriveLoop.from_config(cfg, DrivePipeline.from_config(cfg, with_runner=kind == "stack"))

    refusals: dict[str, int] = {}

    def stack(frame: Frame) -> Trajectory:
        _, step = loop.step(frame)
        if step is None or step.decision is None:
            raise RuntimeError(f"drive loop gave no decision for frame {frame.stamp:.3f}")
        dec = step.decision
        choices[dec.choice] = choices.get(dec.choice, 0) + 1
        if kind == "stack" and dec.choice != "student":  # why the student did not drive this frame
            for r in dec.reasons:
                if r.startswith("student_"):
                    refusals[r] = refusals.get(r, 0) + 1
        return dec.trajectory

    stack.reset = lambda world: loop.reset()  # type: ignore[attr-defined]  # each scenario starts clean
    if kind == "stack":
        stack.stats = lambda: {"student_refusals": dict(sorted(refusals.items(), key=lambda kv: -kv[1]))}  # type: ignore[attr-defined]
    return stack, choices
