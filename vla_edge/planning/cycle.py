"""PlanningCycle: obstacles -> tracking -> reference path -> Frenet -> arbiter, per frame.

Contract (``docs/architecture.md``)::

    cycle = PlanningCycle.from_config()          # loads config/{vehicle,planner,arbiter,obstacles}.yaml
    decision = cycle.step(frame, student, student_stamp, now, student_scores=None)
    # or split, as the arbiter node does (frame work while the model runs):
    prepared = cycle.prepare(frame, now)         # obstacles, tracking, reference path, Frenet
    decision = cycle.decide(prepared, student, student_stamp, now, student_scores=None)

The cycle keeps the previous published trajectory (and the ego pose it was expressed in) so
the next cycle can shift it into the new ego frame for the continuity check, for
``hold_previous`` and for the emergency stop's "last safe path". It never raises on bad
sensor data: unusable inputs become reason codes and a degraded choice.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vla_edge.config import load_planning_sections, require
from vla_edge.errors import ConfigError, PlanningError
from vla_edge.planning.arbiter import Arbiter, ArbiterDecision, ArbiterInputs, ArbiterParams
from vla_edge.planning.emergency import stop_profile, straight_stop
from vla_edge.planning.frenet import FrenetParams, FrenetPlanner
from vla_edge.planning.kinematics import reanchor, se2_apply, se2_inverse_apply, shift_trajectory
from vla_edge.planning.obstacles import Footprint, ObstacleParams, Obstacles, extract_obstacles
from vla_edge.planning.prediction import PredictionParams, annotate
from vla_edge.planning.reference_path import ReferencePath, ReferencePathParams
from vla_edge.planning.rules import RulesParams, classify, speed_cap
from vla_edge.planning.tracking import ClusterTracker, TrackingParams
from vla_edge.types import EgoState, Frame, Trajectory

CONFIG_NAMES = ("vehicle", "planner", "arbiter", "obstacles")
log = logging.getLogger(__name__)


def load_planning_config(cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """The four planning sections, each ``cfg`` section deep-merged over ``config/<name>.yaml``.

    Args:
        cfg: Mapping with any of the keys ``vehicle``, ``planner``, ``arbiter``,
            ``obstacles`` (as in the YAML files, partial sections allowed), or None.

    Returns:
        ``{"vehicle": ..., "planner": ..., "arbiter": ..., "obstacles": ...}``, validated.
    """
    sections = {k: v for k, v in (cfg or {}).items() if k in CONFIG_NAMES}
    return load_planning_sections(sections, "planning config")


@dataclass
class PreparedFrame:
    """Student-independent part of a cycle (:meth:`PlanningCycle.prepare`).

    Attributes:
        frame: The frame.
        stamp: Frame stamp used by the cycle (s).
        ego: Sanitised ego state (None only when ``error`` is set).
        ego_ok: False when the ego state was unusable.
        pose: Ego pose in odom ``(x, y, yaw)``, None when the ego state was unusable.
        reasons: Input reason codes (``points_invalid``, ``reference_path_stale``...).
        obstacles: Inflated, tracked obstacles, or None.
        ref: Reference path, or None.
        frenet: The Frenet plan, or None.
        summary: Frenet planner statistics, or None.
        frenet_reason: Why there is no Frenet plan ('' when there is one).
        timing: ``obstacles``, ``reference_path``, ``frenet``, ``prepare`` (ms).
        error: Exception raised by a stage (the decision is then a straight stop).
    """

    frame: Frame
    stamp: float
    ego: EgoState | None = None
    ego_ok: bool = False
    pose: tuple[float, float, float] | None = None
    reasons: list[str] = field(default_factory=list)
    obstacles: Obstacles | None = None
    ref: ReferencePath | None = None
    frenet: Trajectory | None = None
    summary: dict[str, Any] | None = None
    frenet_reason: str = ""
    timing: dict[str, float] = field(default_factory=dict)
    error: Exception | None = None
    speed_cap: tuple[np.ndarray, np.ndarray] | None = None
    zones: dict[str, float] = field(default_factory=dict)


class PlanningCycle:
    """Stateful per-vehicle planning cycle (one instance per arbiter node / replay)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.footprint = Footprint.from_config(cfg)
        self.obstacle_params = ObstacleParams.from_config(cfg)
        self.ref_params = ReferencePathParams.from_config(cfg)
        self.tracker = ClusterTracker(TrackingParams.from_config(cfg))
        self.prediction = PredictionParams.from_config(cfg)
        self.rules = RulesParams.from_config(cfg)
        # "Near the lane" is measured from the ego's lane, whose half width is the corridor's right side.
        self.lane_half = float(require(cfg, "arbiter", "corridor", "right_width", where="arbiter.yaml"))
        self.planner = FrenetPlanner(FrenetParams.from_config(cfg), self.footprint)
        self.arbiter = Arbiter(ArbiterParams.from_config(cfg), self.footprint)
        self.arbiter.rules = self.rules
        if abs(self.planner.params.dt - self.arbiter.params.dt) > 1e-9:
            raise ConfigError("planner.dt must equal arbiter.dt (the published step)")
        self.dt = self.arbiter.params.dt
        self.reset()

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None = None) -> PlanningCycle:
        """Build from a config mapping; sections not given are loaded from ``config/``."""
        return cls(load_planning_config(cfg))

    def reset(self) -> None:
        """Forget previous plans, tracks and hysteresis (e.g. after a replay seek)."""
        self._prev: Trajectory | None = None
        self._prev_pose: tuple[float, float, float] | None = None
        self._prev_origin = 0.0
        self._safe_world: np.ndarray | None = None
        self._history: deque[tuple[float, tuple[float, float, float]]] = deque(maxlen=50)
        self._last_ego: EgoState | None = None
        self._prev_d1: float | None = None
        self.tracker.reset()
        self.arbiter.reset()

    # ------------------------------------------------------------------ helpers
    def _sanitize_ego(self, ego: EgoState, stamp: float) -> tuple[EgoState, bool]:
        p = self.arbiter.params
        ok = ego.is_finite() and abs(ego.v) <= p.max_valid_speed and abs(ego.a) <= p.max_valid_accel
        if ok:
            self._last_ego = ego
            return ego, True
        last = self._last_ego
        v = float(np.clip(last.v, 0.0, p.max_valid_speed)) if last is not None else 0.0
        return EgoState(stamp, 0.0, 0.0, 0.0, v, 0.0, 0.0), False

    def _planning_start(
        self, ego: EgoState, pose: tuple[float, float, float] | None, stamp: float
    ) -> EgoState:
        """Ego state the Frenet plan starts from: the planned acceleration while tracking.

        Starting each plan from the *measured* acceleration closes a loop through the speed
        controller (the ego follows the plan's braking, the next plan starts from that
        braking, ...) that brakes a cruising tug to a stop on an empty road. As in Werling's
        replanning, while the ego tracks the previous (non-emergency) plan within
        ``continuity.max_start_speed_jump`` the start acceleration is the planned one.
        """
        prev = self._prev
        if prev is None or pose is None or prev.speeds is None or len(prev.speeds) < 2:
            return ego
        if self.arbiter.last_choice not in ("student", "frenet", "hold_previous"):
            return ego
        elapsed = stamp - prev.stamp
        times = prev.times
        if not (0.0 <= elapsed <= times[-2]):
            return ego
        speeds = np.asarray(prev.speeds, dtype=np.float64)
        v_plan = float(np.interp(elapsed, times, speeds))
        if not np.isfinite(v_plan) or abs(v_plan - ego.v) > self.arbiter.params.max_start_speed_jump:
            return ego
        accel = np.diff(speeds) / np.diff(times)
        a_plan = float(np.interp(elapsed, 0.5 * (times[:-1] + times[1:]), accel))
        if not np.isfinite(a_plan):
            return ego
        return replace(ego, a=a_plan)

    def _pose_at(self, stamp: float | None) -> tuple[float, float, float] | None:
        if stamp is None or not np.isfinite(stamp):
            return None
        tol = self.arbiter.params.stamp_tolerance
        for st, pose in reversed(self._history):
            if abs(st - stamp) <= tol:
                return pose
        return None

    # ------------------------------------------------------------------ step
    def step(
        self,
        frame: Frame,
        student: Trajectory | None,
        student_stamp: float | None,
        now: float,
        student_scores: np.ndarray | None = None,
        student_alternatives: list[Trajectory] | None = None,
    ) -> ArbiterDecision:
        """Run one planning cycle on ``frame``: :meth:`prepare` then :meth:`decide`.

        Args:
            frame: Assembled frame (points in base_link, ego state, reference path).
            student: Student trajectory (ego frame at ``student.stamp``) or None.
            student_stamp: When the student output was produced (s) or None.
            now: Current time (s) used for staleness and latency.
            student_scores: Optional student mode scores (logits).
            student_alternatives: Next-ranked modes, as for :meth:`decide`.

        Returns:
            The :class:`ArbiterDecision`; its trajectory is always finite.
        """
        prepared = self.prepare(frame, now)
        return self.decide(prepared, student, student_stamp, now, student_scores, student_alternatives)

    def prepare(self, frame: Frame, now: float) -> PreparedFrame:
        """Frame-only work, done when the frame arrives (while the model runs).

        Ego sanity, obstacle extraction and tracking, reference path and the Frenet plan:
        everything that does not depend on the student. Call once per frame, in frame order,
        and pass the result to :meth:`decide` (the tracker advances here).

        Args:
            frame: Assembled frame.
            now: Current time (s); only used when the frame stamp is not finite.

        Returns:
            A :class:`PreparedFrame`; a stage that raised is stored in it and :meth:`decide`
            turns it into a straight emergency stop.
        """
        t_all = time.perf_counter()
        try:
            return self._prepare(frame, now, t_all)
        except Exception as exc:  # last resort: a planning bug must still yield a stop
            log.exception("planning cycle failed in prepare; the decision will be a straight stop")
            return PreparedFrame(frame=frame, stamp=_stamp(frame, now), error=exc)

    def decide(
        self,
        prepared: PreparedFrame,
        student: Trajectory | None,
        student_stamp: float | None,
        now: float,
        student_scores: np.ndarray | None = None,
        student_alternatives: list[Trajectory] | None = None,
    ) -> ArbiterDecision:
        """Student checks and arbitration on a :meth:`prepare` result (a few ms).

        Args:
            prepared: Result of :meth:`prepare` for the frame being decided.
            student: Student trajectory (ego frame at ``student.stamp``) or None.
            student_stamp: When the student output was produced (s) or None.
            now: Current time (s) used for staleness and latency.
            student_scores: Optional student mode scores (logits).
            student_alternatives: The candidate's next-ranked modes, in score order
                (:meth:`~vla_edge.candidate.Candidate.alternatives`), checked when the best fails.

        Returns:
            The :class:`ArbiterDecision`; its trajectory is always finite. ``timing_ms`` has
            the prepare stages, ``decide`` (this call) and ``total`` (prepare + decide).
        """
        t_all = time.perf_counter()
        if prepared.error is not None:
            return self._fail_safe(prepared.frame, now, prepared.error, t_all)
        try:
            return self._decide(
                prepared, student, student_stamp, now, student_scores, t_all, student_alternatives or []
            )
        except Exception as exc:  # last resort: a planning bug must still yield a stop
            log.exception("planning cycle failed; publishing a straight emergency stop")
            return self._fail_safe(prepared.frame, now, exc, t_all)

    def _fail_safe(self, frame: Frame, now: float, exc: Exception, t_all: float) -> ArbiterDecision:
        """Straight jerk-limited stop from the last valid speed, used only if a stage raised."""
        e = self.arbiter.params.emergency
        v0 = self._last_ego.v if self._last_ego is not None else 0.0
        stamp = _stamp(frame, now)
        s, v, _ = stop_profile(v0, 0.0, e)
        self.reset()
        self.arbiter.last_choice = "emergency_stop"
        return ArbiterDecision(
            choice="emergency_stop",
            trajectory=straight_stop(s, v, stamp, e),
            reasons=["internal_error", f"internal_error_{type(exc).__name__}"],
            checks={},
            timing_ms={"total": (time.perf_counter() - t_all) * 1e3},
            stamp=stamp,
        )

    def _prepare(self, frame: Frame, now: float, t_all: float) -> PreparedFrame:
        timing: dict[str, float] = {}
        reasons: list[str] = []
        stamp = _stamp(frame, now)
        if not np.isfinite(frame.stamp):
            reasons.append("frame_stamp_invalid")
        ego, ego_ok = self._sanitize_ego(frame.ego, stamp)
        pose = (float(ego.x), float(ego.y), float(ego.yaw)) if ego_ok else None
        if not ego_ok:
            reasons.append("ego_state_invalid")
        if self._prev is not None and stamp < self._prev.stamp - 1e-6:
            reasons.append("time_jump_reset")  # replay loop or clock reset
            self.reset()

        t = time.perf_counter()
        obstacles = self._obstacles(frame, stamp, pose, reasons)
        timing["obstacles"] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        ref = self._reference(frame, reasons)
        timing["reference_path"] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        cap = None
        zones: dict[str, float] = {}
        if obstacles is not None:  # classes -> predicted occupancy -> inflation (per-class clearance)
            obstacles.classes = classify(obstacles, self.rules)
            annotate(obstacles, ref, self.prediction, self.lane_half)
            obstacles.clearance = dict(self.rules.clearance)
            obstacles.inflate(self.footprint.radius + self.obstacle_params.margin)
        if ref is not None:
            s_max = ref.ego_frenet()[0] + self.rules.zone_speed["service_road"] * self.planner.params.horizon
            cap_s, cap_v, zones = speed_cap(obstacles, ref, self.rules, s_max + 10.0)
            cap = (cap_s, cap_v)
        timing["prediction"] = (time.perf_counter() - t) * 1e3

        t = time.perf_counter()
        frenet = summary = None
        frenet_reason = ""
        if ref is None:
            frenet_reason = "frenet_no_reference_path"
        elif not ego_ok:
            frenet_reason = "frenet_ego_invalid"
        elif obstacles is None:
            frenet_reason = "frenet_no_obstacles"
        else:
            plan_ego = self._planning_start(ego, pose, stamp)
            with np.errstate(all="ignore"):
                result = self.planner.plan(ref, plan_ego, obstacles, stamp, self._prev_d1, cap, self.rules)
            frenet, summary = result.trajectory, result.summary()
            if frenet is None:
                frenet_reason = "frenet_no_feasible_candidate"
        timing["frenet"] = (time.perf_counter() - t) * 1e3
        timing["prepare"] = (time.perf_counter() - t_all) * 1e3
        return PreparedFrame(
            frame=frame,
            stamp=stamp,
            ego=ego,
            ego_ok=ego_ok,
            pose=pose,
            reasons=reasons,
            obstacles=obstacles,
            ref=ref,
            frenet=frenet,
            summary=summary,
            frenet_reason=frenet_reason,
            timing=timing,
            speed_cap=cap,
            zones=zones,
        )

    def _decide(
        self,
        prep: PreparedFrame,
        student: Trajectory | None,
        student_stamp: float | None,
        now: float,
        student_scores: np.ndarray | None,
        t_all: float,
        student_alternatives: list[Trajectory],
    ) -> ArbiterDecision:
        timing = dict(prep.timing)
        stamp, ego, pose = prep.stamp, prep.ego, prep.pose
        reasons = list(prep.reasons)  # a frame may be decided more than once
        assert ego is not None  # set whenever prepare succeeded

        previous = previous_start = previous_age = None
        if self._prev is not None and self._prev_pose is not None and pose is not None:
            shifted = shift_trajectory(self._prev, self._prev_pose, pose, stamp, self.dt)
            if shifted is not None:
                previous_start = shifted[1]
                previous = reanchor(shifted[0], shifted[1], self.arbiter.params.hold_blend_time)
                previous_age = stamp - self._prev_origin
        safe_path = None
        if pose is not None and self._safe_world is not None:
            safe_path = se2_inverse_apply(pose, self._safe_world)

        t = time.perf_counter()
        student_pose = None
        if student is not None and np.isfinite(student.stamp):
            student_pose = self._pose_at(float(student.stamp))
        inp = ArbiterInputs(
            stamp=stamp,
            now=float(now),
            ego=ego,
            student=student,
            student_stamp=student_stamp,
            student_scores=_scores(student_scores),
            student_alternatives=list(student_alternatives),
            student_pose=student_pose,
            frenet=prep.frenet,
            frenet_summary=prep.summary,
            frenet_reason=prep.frenet_reason,
            obstacles=prep.obstacles,
            ref=prep.ref,
            previous=previous,
            previous_start=previous_start,
            previous_age=previous_age,
            last_safe_path=safe_path,
            stale_inputs=set(prep.frame.stale),
            input_reasons=reasons,
            ego_pose_odom=pose,
            ego_valid=prep.ego_ok,
            speed_cap=prep.speed_cap,
        )
        decision = self.arbiter.decide(inp)
        timing["arbiter"] = (time.perf_counter() - t) * 1e3

        if decision.choice != "hold_previous" or self._prev is None:
            self._prev_origin = stamp  # a held plan keeps the age of the plan it holds
        self._prev = decision.trajectory
        self._prev_pose = pose
        summary = prep.summary
        self._prev_d1 = summary["params"].get("d1") if (summary and decision.choice == "frenet") else None
        if pose is not None:
            if not self._history or self._history[-1][0] != stamp:
                self._history.append((stamp, pose))
            if decision.choice != "emergency_stop":
                self._safe_world = se2_apply(pose, decision.trajectory.with_origin()[:, :2])
        else:
            self._safe_world = None
        timing["decide"] = (time.perf_counter() - t_all) * 1e3
        timing["total"] = timing.get("prepare", 0.0) + timing["decide"]
        decision.timing_ms = timing
        return decision

    def _obstacles(
        self, frame: Frame, stamp: float, pose: tuple[float, float, float] | None, reasons: list[str]
    ) -> Obstacles | None:
        if "lidar" in frame.stale:
            # The assembler found the sweep unusable (too few / implausible returns): an
            # empty cloud must never read as "no obstacles" - no plan can be shown safe.
            reasons.append("points_invalid")
            self.tracker.reset()
            return None
        try:
            obstacles = extract_obstacles(frame.points, stamp, self.obstacle_params)
        except (PlanningError, ValueError, TypeError):
            reasons.append("points_invalid")
            self.tracker.reset()
            return None
        if pose is not None:
            self.tracker.update(obstacles, pose)
        else:
            self.tracker.reset()
        return obstacles  # inflated in _prepare once the classes and predictions are known

    def _reference(self, frame: Frame, reasons: list[str]) -> ReferencePath | None:
        if "reference_path" in frame.stale:
            reasons.append("reference_path_stale")
            return None
        try:
            return ReferencePath.from_polyline(frame.reference_path, self.ref_params)
        except (PlanningError, ValueError, TypeError):
            reasons.append("reference_path_invalid")
            return None


def _stamp(frame: Frame, now: float) -> float:
    """The frame stamp, or ``now`` when the stamp is not finite."""
    return float(frame.stamp) if np.isfinite(frame.stamp) else float(now)


def _scores(scores: Any) -> np.ndarray | None:
    """Scores as float64; anything unconvertible becomes NaN so the finite check rejects it."""
    if scores is None:
        return None
    try:
        return np.asarray(scores, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return np.array([np.nan])
