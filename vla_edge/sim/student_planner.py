"""The raw student as a harness planner: its best mode drives, with no arbiter and no fallback.

``vla-edge sim evaluate --planner student`` uses it to score the learned model on its own.
Beside driving, it counts how many raw plans would pass the arbiter's kinematic and comfort
checks *unsmoothed* (the C2 spline through the raw poses that the arbiter uses when
``student_smoothing.enabled`` is false), which is what "smooth by construction" means.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from vla_edge.config import load_config
from vla_edge.planning.arbiter import ArbiterParams, kinematic_checks
from vla_edge.planning.kinematics import smooth_resample
from vla_edge.types import Frame, Trajectory


def raw_plan_failures(traj: Trajectory, v0: float, yaw_rate0: float, params: ArbiterParams) -> list[str]:
    """Names of the kinematic/comfort checks that the raw plan fails (empty: it passes)."""
    if not (np.all(np.isfinite(traj.poses)) and len(traj.poses)):
        return ["student.finite"]
    with np.errstate(all="ignore"):
        fine = smooth_resample(traj, params.dt, v0, yaw_rate0)
        checks = kinematic_checks("student", fine, v0, params)
    return [k for k, v in checks.items() if not v.ok]


class StudentPlanner:
    """``Frame -> Trajectory``: the student's best mode, counted against the arbiter's checks.

    Args:
        runner: A :class:`~vla_edge.inference.StudentRunner` (any backend).
        params: Arbiter parameters (limits of the kinematic and comfort checks).
    """

    def __init__(self, runner: Any, params: ArbiterParams) -> None:
        self.runner = runner
        self.params = params
        self.frames = 0
        self.needs_camera = False  # a camera engine: the harness must render the camera
        self.raw_pass = 0
        self.failed: Counter[str] = Counter()

    @classmethod
    def from_config(cls, drive_cfg: dict[str, Any]) -> StudentPlanner:
        """Runner and arbiter parameters from the merged drive config (as the stack builds them)."""
        from vla_edge.pipeline import load_runner
        from vla_edge.planning.cycle import load_planning_config

        name = str(drive_cfg.get("planning_config") or "")
        planning = load_planning_config(load_config(name, kind="planning") if name else None)
        return cls(load_runner(drive_cfg), ArbiterParams.from_config(planning))

    def __call__(self, frame: Frame) -> Trajectory:
        traj = self.runner.run(frame).trajectory
        fails = raw_plan_failures(traj, float(frame.ego.v), float(frame.ego.yaw_rate), self.params)
        self.frames += 1
        self.raw_pass += not fails
        self.failed.update(fails)
        return traj

    def stats(self) -> dict[str, Any]:
        """``raw_plans``, ``raw_pass_fraction``, the count of each failed check and, for a camera
        engine, ``camera_fallbacks`` (frames run LiDAR-only, by reason code)."""
        out: dict[str, Any] = {
            "raw_plans": self.frames,
            "raw_pass_fraction": self.raw_pass / self.frames if self.frames else float("nan"),
            "raw_failed_checks": dict(self.failed.most_common()),
        }
        if getattr(self.runner, "camera", None) is not None:
            out["camera_fallbacks"] = dict(self.runner.camera_fallbacks)
        return out
