"""DrivePipeline: Frame -> StudentRunner -> PlanningCycle (pure; no rclpy).

The live graph splits the pipeline over two nodes (inference node: :meth:`DrivePipeline.infer`,
arbiter node: :class:`~vla_edge.drive_loop.DriveLoop` over :meth:`DrivePipeline.plan`); lockstep
replay and the simulator drive the same DriveLoop with a simulated clock, so replay results
transfer to the vehicle.

A model failure never propagates: :meth:`infer` returns a :class:`~vla_edge.candidate.Candidate`
without a trajectory and with the error, so the arbiter falls back (student -> Frenet -> e-stop).
The timing policy (when to decide which frame) lives in :mod:`vla_edge.drive_loop`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vla_edge.candidate import Candidate
from vla_edge.config import load_config, require, resolve_path
from vla_edge.errors import ModelError
from vla_edge.types import Frame

if TYPE_CHECKING:
    from vla_edge.inference import StudentRunner
    from vla_edge.planning.cycle import PlanningCycle

log = logging.getLogger(__name__)


class DrivePipeline:
    """The decision pipeline without transport.

    Args:
        runner: A :class:`~vla_edge.inference.StudentRunner`, or None (planner only).
        cycle: A :class:`~vla_edge.planning.cycle.PlanningCycle`, or None (inference only).
        noise_seed: Diffusion noise seed per frame; None = ``noise.seed`` of inference.yaml.
    """

    def __init__(
        self, runner: StudentRunner | None, cycle: PlanningCycle | None, noise_seed: int | None = None
    ) -> None:
        self.runner = runner
        self.cycle = cycle
        self.noise_seed = noise_seed

    @classmethod
    def from_config(
        cls,
        drive_cfg: dict[str, Any],
        *,
        with_runner: bool = True,
        allow_disabled: bool = False,
        with_cycle: bool = True,
        runner: StudentRunner | None = None,
    ) -> DrivePipeline:
        """Build from nested drive parameters (``config/drive.yaml`` values).

        Args:
            drive_cfg: Nested drive parameters (``backend``, ``engine_path``, ``model_config``...).
            with_runner: Load the student (inference node, lockstep replay).
            with_cycle: Build the planning cycle (arbiter node, lockstep replay).
            runner: Use this runner instead of loading one (tests, wrappers).
            allow_disabled: See :func:`load_runner` (the live inference node).
        """
        if with_runner and runner is None:
            runner = load_runner(drive_cfg, allow_disabled=allow_disabled)
        cycle = load_cycle(drive_cfg) if with_cycle else None
        return cls(runner if with_runner else None, cycle)

    def infer(self, frame: Frame, deadline_s: float | None = None, started: float | None = None) -> Candidate:
        """Run the student on ``frame``; never raises for model failures.

        Args:
            frame: The assembled frame.
            deadline_s: Budget in seconds from ``started``; a later result is withheld.
            started: ``time.perf_counter()`` when the frame's processing began (sweep
                receipt); defaults to now.

        Returns:
            The :class:`~vla_edge.candidate.Candidate` (``usable`` only when in time and finite).
        """
        if self.runner is None:
            raise RuntimeError("DrivePipeline built without a StudentRunner; use with_runner=True")
        t0 = time.perf_counter() if started is None else started
        try:
            out = self.runner.run(frame, noise_seed=self.noise_seed)
        except Exception as exc:  # noqa: BLE001 - any model failure must become a fallback, not a crash
            elapsed = 1000.0 * (time.perf_counter() - t0)
            log.warning("student failed on frame %.3f: %s: %s", frame.stamp, type(exc).__name__, exc)
            return Candidate(frame.stamp, timing_ms={"total": elapsed}, error=f"{type(exc).__name__}: {exc}")
        if out.trajectory is None or not out.trajectory.is_finite():  # reported before lateness
            return out.withheld(error="NonFiniteOutput: student trajectory has NaN/Inf")
        if deadline_s is not None and time.perf_counter() - t0 > deadline_s:
            return out.withheld(deadline_missed=True)
        return out

    def prepare(self, frame: Frame, now: float) -> Any:
        """Frame-only planning work (obstacles, tracking, Frenet), run while the model runs.

        Returns:
            The :class:`~vla_edge.planning.cycle.PreparedFrame` to pass to :meth:`plan`.
        """
        if self.cycle is None:
            raise RuntimeError("DrivePipeline built without a PlanningCycle; use with_cycle=True")
        return self.cycle.prepare(frame, now)

    def plan(self, frame: Frame, candidate: Candidate | None, now: float, prepared: Any | None = None) -> Any:
        """Run the planning cycle with the latest candidate (or None) at time ``now`` (s).

        Args:
            frame: The frame to decide.
            candidate: The latest student candidate, or None.
            now: Current time (s).
            prepared: :meth:`prepare` result for ``frame`` (only the arbitration then runs);
                None runs the whole cycle.

        Returns:
            The :class:`~vla_edge.planning.cycle.ArbiterDecision`.
        """
        if self.cycle is None:
            raise RuntimeError("DrivePipeline built without a PlanningCycle; use with_cycle=True")
        if prepared is None or prepared.frame is not frame:
            prepared = self.cycle.prepare(frame, now)
        if candidate is None or not candidate.usable:
            return self.cycle.decide(prepared, None, None, now)
        ap = self.cycle.arbiter.params
        return self.cycle.decide(
            prepared, candidate.trajectory, candidate.stamp, now, student_scores=candidate.scores,
            student_alternatives=candidate.alternatives(ap.alternative_modes, ap.alternative_min_probability),
        )  # fmt: skip


def load_runner(drive_cfg: dict[str, Any], allow_disabled: bool = False) -> Any:
    """Load the StudentRunner named by ``backend``/``engine_path``/``model_config``.

    Args:
        drive_cfg: Nested drive parameters.
        allow_disabled: On a vehicle: a missing, corrupt or tampered engine (any
            :class:`~vla_edge.errors.ModelError`) gives a
            :class:`~vla_edge.inference.DisabledStudent` instead of an exception, so the
            Frenet fallback still drives (the reason goes out as ERROR with every sweep).
            Offline tools keep the exception.
    """
    from vla_edge.inference import DisabledStudent, StudentRunner

    model_cfg = load_config(str(require(drive_cfg, "model_config", where="drive.yaml")), kind="model")
    inf_cfg = load_config(str(require(drive_cfg, "inference_config", where="drive.yaml")), kind="inference")
    backend = str(require(drive_cfg, "backend", where="drive.yaml"))
    backend = backend or str(require(inf_cfg, "backend", where="inference.yaml"))
    try:
        # A camera engine with `camera: none` raises CameraConfigError (a ConfigError): the node
        # refuses to start rather than drive a camera model without its camera.
        camera = str(drive_cfg.get("camera", "none"))
        calib = None
        if camera != "none":
            from vla_edge.calibration import Calibration

            calib_name = str(drive_cfg.get("calibration_config", "calibration"))
            calib = Calibration.from_config(load_config(calib_name, kind="calibration"))
        return StudentRunner.from_config(
            model_cfg, backend, engine_path(drive_cfg), inf_cfg, camera=camera, calibration=calib
        )
    except ModelError as exc:
        if not allow_disabled:
            raise
        log.error(
            "student engine refused (%s: %s); driving on the Frenet fallback only", type(exc).__name__, exc
        )
        return DisabledStudent(f"{type(exc).__name__}: {exc}")


def load_cycle(drive_cfg: dict[str, Any]) -> PlanningCycle:
    """Build the PlanningCycle; ``planning_config`` may name a file with any of the sections
    ``vehicle``/``planner``/``arbiter``/``obstacles`` (the others come from ``config/``)."""
    name = str(require(drive_cfg, "planning_config", where="drive.yaml"))
    from vla_edge.planning.cycle import PlanningCycle

    return PlanningCycle.from_config(load_config(name, kind="planning") if name else None)


def engine_path(drive_cfg: dict[str, Any]) -> Path | None:
    """Student model path (relative = from the package root); None = inference.yaml's ``engine``."""
    path = str(require(drive_cfg, "engine_path", where="drive.yaml"))
    return resolve_path(path) if path else None
