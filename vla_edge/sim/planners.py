"""Harness planners by name: expert, straight, student (raw), stack and frenet (the drive loop).

``vla-edge sim evaluate --planner`` and the safety suite build their planners here.
"""

from __future__ import annotations

from typing import Any


def engine_takes_camera(drive_cfg: dict[str, Any]) -> bool:
    """True when the drive config's student engine declares a camera input (manifest ``image``).

    The engine is ``engine_path`` of the drive config, else ``engine`` of inference.yaml. A
    missing or broken manifest answers False here; loading the runner reports it properly.
    """
    from vla_edge.config import load_config, resolve_path
    from vla_edge.errors import VlaEdgeError
    from vla_edge.inference import engine_declares_camera
    from vla_edge.pipeline import engine_path

    try:
        path = engine_path(drive_cfg)
        if path is None:
            name = str(drive_cfg.get("inference_config") or "inference")
            path = resolve_path(str(load_config(name, kind="inference")["engine"]))
        return engine_declares_camera(path)
    except (VlaEdgeError, OSError, KeyError):
        return False


def loop_decision(loop: Any, frame: Any) -> Any:
    """The drive loop's decision on ``frame`` in lockstep (simulated clock: every frame is decided).

    Raises:
        RuntimeError: The loop refused the frame (a harness bug: stamps must move forward).
    """
    _, step = loop.step(frame)
    if step is None or step.decision is None:
        raise RuntimeError(f"drive loop gave no decision for frame {frame.stamp:.3f}")
    return step.decision


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
    go into the output beside the scores). ``student`` and ``stack`` with a camera engine
    (``tiny_cam``) and ``camera: none`` in the drive config get ``camera: raw`` (the harness
    hands decoded RGB images over) and the planner's ``needs_camera`` is True: the caller must
    render the camera (``run_suite(render_camera=True)``). A LiDAR-only engine is unchanged.
    """
    import numpy as np

    from vla_edge.types import Frame, Trajectory

    choices: dict[str, int] = {}
    if kind in ("expert", "expert_view"):
        from vla_edge.config import load_config
        from vla_edge.pillarize import PillarSpec
        from vla_edge.sim.harness import ExpertPlanner
        from vla_edge.sim.label_view import LabelView

        view = None
        if kind == "expert_view":
            view = LabelView.from_spec(PillarSpec.from_config(load_config("model")))
        return ExpertPlanner(sim_cfg, view), choices
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
    cfg = unflatten(dict(values))
    needs_camera = kind in ("student", "stack") and engine_takes_camera(cfg)
    if needs_camera and str(cfg.get("camera", "none")) == "none":
        cfg["camera"] = "raw"
    if kind == "student":
        from vla_edge.sim.student_planner import StudentPlanner

        sp = StudentPlanner.from_config(cfg)
        sp.needs_camera = needs_camera
        return sp, choices
    # The arbiter node's drive loop on the simulated clock (frenet: the same loop, no student).
    loop = DriveLoop.from_config(cfg, DrivePipeline.from_config(cfg, with_runner=kind == "stack"))

    refusals: dict[str, int] = {}

    def stack(frame: Frame) -> Trajectory:
        dec = loop_decision(loop, frame)
        choices[dec.choice] = choices.get(dec.choice, 0) + 1
        if kind == "stack" and dec.choice != "student":  # why the student did not drive this frame
            for r in dec.reasons:
                if r.startswith("student_"):
                    refusals[r] = refusals.get(r, 0) + 1
        return dec.trajectory

    stack.needs_camera = needs_camera  # type: ignore[attr-defined]
    stack.reset = lambda world: loop.reset()  # type: ignore[attr-defined]  # each scenario starts clean
    if kind == "stack":
        stack.stats = lambda: {"student_refusals": dict(sorted(refusals.items(), key=lambda kv: -kv[1]))}  # type: ignore[attr-defined]
    return stack, choices
