"""Safety arbiter: student | frenet | hold_previous | emergency_stop, with hysteresis.

Each cycle the arbiter measures every check of every candidate (value, threshold, ok) and
picks, in this order:

1. ``student`` when all student checks pass *and* hysteresis allows it: after any cycle not
   on the student, ``student_good_cycles`` consecutive passing cycles are needed;
2. ``frenet`` when the Frenet plan passes its checks;
3. ``hold_previous`` when the previous published plan (shifted into the current frame,
   ego offset blended out) is young, not an emergency stop, held fewer than ``max_cycles``
   times in a row, and passes its checks against the *current* obstacles;
4. ``emergency_stop``: jerk-limited stop along the last safe path (straight ahead if that
   path cannot be followed within the limits).

After an emergency stop, a non-emergency plan must pass ``release_emergency_cycles`` cycles
in a row before the stop is released. The published trajectory is always finite, starts at
the ego with the ego's speed, and is within the kinematic limits (the emergency stop is
re-checked and replaced by a straight stop when its path would violate them).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vla_edge.config import at, build, load_planning_sections
from vla_edge.planning import checks as ck
from vla_edge.planning.emergency import EmergencyParams, emergency_stop, stop_profile, straight_stop
from vla_edge.planning.kinematics import reanchor, shift_trajectory, smooth_resample, trajectory_profile
from vla_edge.planning.obstacles import Footprint, Obstacles
from vla_edge.planning.reference_path import ReferencePath
from vla_edge.planning.retime import retime_along_path
from vla_edge.planning.rules import RulesParams, allowed_speed
from vla_edge.planning.smoothing import SmoothingParams, hold_at_stop, smooth_student
from vla_edge.types import EgoState, Trajectory, trajectory_to_json

CHOICES = ("student", "frenet", "emergency_stop", "hold_previous")


@dataclass
class CheckResult:
    """One measured check: ``ok`` is the comparison of ``value`` with ``threshold``.

    Attributes:
        value: Measured value (finite; unbounded values are clamped to ``checks.BIG``).
        threshold: Limit it was compared with.
        ok: Whether the check passed.
        index: Index of the offending pose (-1 when not pose-specific).
    """

    value: float
    threshold: float
    ok: bool
    index: int = -1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "value": ck.finite_value(self.value),
            "threshold": ck.finite_value(self.threshold),
            "ok": bool(self.ok),
            "index": int(self.index),
        }


def at_most(m: ck.Measured, threshold: float) -> CheckResult:
    """Check passing when the value is <= threshold."""
    v = ck.finite_value(m[0])
    return CheckResult(v, float(threshold), bool(v <= threshold), int(m[1]))


def at_least(m: ck.Measured, threshold: float) -> CheckResult:
    """Check passing when the value is >= threshold."""
    v = ck.finite_value(m[0])
    return CheckResult(v, float(threshold), bool(v >= threshold), int(m[1]))


@dataclass
class ArbiterDecision:
    """Result of one planning cycle (contract in ``docs/architecture.md``).

    Attributes:
        choice: ``"student" | "frenet" | "emergency_stop" | "hold_previous"``.
        trajectory: Published trajectory (finite, dt from config, ego frame at ``stamp``).
        reasons: Machine codes explaining the choice (failed checks, hysteresis, ...).
        checks: ``"<candidate>.<check>" -> CheckResult``.
        timing_ms: Milliseconds per stage.
        frenet: The Frenet plan of this cycle (None when none was feasible or planned).
        obstacles: Obstacles of this cycle (for markers and metrics).
        stamp: Frame stamp the decision belongs to.
        state: Hysteresis and hold counters after this decision.
        frenet_summary: Candidate statistics of the Frenet planner.
    """

    choice: str
    trajectory: Trajectory
    reasons: list[str]
    checks: dict[str, CheckResult]
    timing_ms: dict[str, float] = field(default_factory=dict)
    frenet: Trajectory | None = None
    obstacles: Obstacles | None = None
    stamp: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)
    frenet_summary: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (finite floats, lists) of the whole decision."""
        return {
            "stamp": ck.finite_value(self.stamp),
            "choice": self.choice,
            "reasons": list(self.reasons),
            "checks": {k: v.to_dict() for k, v in self.checks.items()},
            "timing_ms": {k: ck.finite_value(v) for k, v in self.timing_ms.items()},
            "trajectory": trajectory_to_json(self.trajectory),
            "frenet": trajectory_to_json(self.frenet),
            "frenet_summary": self.frenet_summary,
            "obstacles": self.obstacles.summary() if self.obstacles is not None else None,
            "state": {k: (ck.finite_value(v) if isinstance(v, float) else v) for k, v in self.state.items()},
        }


@dataclass(frozen=True)
class ArbiterParams:
    """Parameters from ``arbiter.yaml`` (and vehicle speed/steering limits), by YAML key path."""

    dt: float = at("arbiter.dt")
    max_lat_accel: float = at("arbiter.limits.max_lat_accel")
    max_lon_accel: float = at("arbiter.limits.max_lon_accel")
    min_lon_accel: float = at("arbiter.limits.min_lon_accel")
    max_jerk: float = at("arbiter.limits.max_jerk")
    max_yaw_rate: float = at("arbiter.limits.max_yaw_rate")
    max_speed: float = at("vehicle.max_speed")
    speed_margin: float = at("arbiter.limits.speed_margin")
    min_speed: float = at("arbiter.limits.min_speed")
    max_heading_error: float = at("arbiter.limits.max_heading_error")
    min_speed_for_curvature: float = at("arbiter.limits.min_speed_for_curvature")
    student_max_age: float = at("arbiter.timing.student_max_age")
    frame_deadline: float = at("arbiter.timing.frame_deadline")
    stamp_tolerance: float = at("arbiter.timing.stamp_tolerance")
    critical_inputs: tuple[str, ...] = at("arbiter.timing.critical_inputs")
    min_horizon: float = at("arbiter.student.min_horizon")
    max_horizon: float = at("arbiter.student.max_horizon")
    min_dt: float = at("arbiter.student.min_dt")
    max_dt: float = at("arbiter.student.max_dt")
    min_confidence: float = at("arbiter.student.min_confidence")
    alternative_modes: int = at("arbiter.student.alternative_modes")
    alternative_min_probability: float = at("arbiter.student.alternative_min_probability")
    speed_rule_retime: bool = at("arbiter.student.speed_rule_retime")
    max_lateral_deviation: float = at("arbiter.corridor.max_lateral_deviation")
    ttc_min: float = at("arbiter.collision.ttc_min")
    ttc_buffer: float = at("arbiter.collision.ttc_buffer")
    continuity_window: float = at("arbiter.continuity.window")
    max_position_jump: float = at("arbiter.continuity.max_position_jump")
    max_start_speed_jump: float = at("arbiter.continuity.max_start_speed_jump")
    max_start_offset: float = at("arbiter.continuity.max_start_offset")
    student_good_cycles: int = at("arbiter.hysteresis.student_good_cycles")
    trust_student_at_start: bool = at("arbiter.hysteresis.trust_student_at_start")
    release_emergency_cycles: int = at("arbiter.hysteresis.release_emergency_cycles")
    progress_min_ratio: float = at("arbiter.progress.min_ratio")
    progress_min_frenet: float = at("arbiter.progress.min_frenet_m")
    progress_alternative_min_ratio: float = at("arbiter.progress.alternative_min_ratio")
    hold_max_age: float = at("arbiter.hold_previous.max_age")
    hold_max_cycles: int = at("arbiter.hold_previous.max_cycles")
    hold_min_horizon: float = at("arbiter.hold_previous.min_horizon")
    hold_blend_time: float = at("arbiter.hold_previous.blend_time")
    max_valid_speed: float = at("arbiter.ego.max_valid_speed")
    max_valid_accel: float = at("arbiter.ego.max_valid_accel")
    # derived from several keys / other parameter classes (see from_config)
    max_curvature: float
    corridor: ck.Corridor
    emergency: EmergencyParams
    smoothing: SmoothingParams

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ArbiterParams:
        """Build from the planning config (``arbiter`` and ``vehicle`` sections, validated)."""
        cfg = load_planning_sections({k: cfg[k] for k in ("arbiter", "vehicle") if k in (cfg or {})})
        v = cfg["vehicle"]
        return build(
            cls,
            cfg,
            "planning config",
            max_curvature=float(np.tan(v["max_steer"]) / v["wheelbase"]),
            corridor=ck.Corridor.from_config(cfg),
            emergency=EmergencyParams.from_config(cfg),
            smoothing=SmoothingParams.from_config(cfg),
        )


@dataclass
class ArbiterInputs:
    """Everything one arbitration needs, already in the ego frame at ``stamp``.

    Attributes:
        stamp: Frame stamp (s).
        now: Wall/sim time of the decision (s).
        ego: Sanitised ego state at ``stamp``.
        student: Raw student trajectory (its own frame/stamp) or None.
        student_stamp: Time the student output was produced (s) or None.
        student_scores: Mode scores or None.
        student_alternatives: Next-ranked modes of the same candidate (same frame and stamp as
            ``student``), in score order; checked one by one when ``student`` fails a check.
        student_pose: Ego pose (odom) at ``student.stamp`` when known, else None.
        frenet: Frenet plan of this cycle or None.
        frenet_summary: Planner statistics.
        frenet_reason: Why no Frenet plan exists ("" when it exists).
        obstacles: Inflated obstacles or None.
        ref: Reference path or None.
        previous: Previous published plan shifted into this frame and re-anchored, or None.
        previous_start: Where the previous plan wanted the ego to be now (x, y, yaw) or None.
        previous_age: Time since the previous plan was *made* (s; held plans keep their
            original stamp), or None.
        last_safe_path: ``[P, 2]`` path of the last non-emergency published plan (ego frame).
        ego_pose_odom: Ego (x, y, yaw) in the odom frame at ``stamp`` (to rebase old plans).
        ego_valid: False when the frame's ego state was unusable (NaN, implausible).
        stale_inputs: Names of inputs the frame flags as stale.
        input_reasons: Reason codes from input sanitation (ego state, reference path...).
        speed_cap: Airside-rule speed cap ``(s grid, v)`` along ``ref`` (``rules.speed_cap``).
    """

    stamp: float
    now: float
    ego: EgoState
    student: Trajectory | None = None
    student_stamp: float | None = None
    student_scores: np.ndarray | None = None
    student_alternatives: list[Trajectory] = field(default_factory=list)
    student_pose: tuple[float, float, float] | None = None
    frenet: Trajectory | None = None
    frenet_summary: dict[str, Any] | None = None
    frenet_reason: str = ""
    obstacles: Obstacles | None = None
    ref: ReferencePath | None = None
    previous: Trajectory | None = None
    previous_start: np.ndarray | None = None
    previous_age: float | None = None
    last_safe_path: np.ndarray | None = None
    stale_inputs: set[str] = field(default_factory=set)
    input_reasons: list[str] = field(default_factory=list)
    ego_pose_odom: tuple[float, float, float] | None = None
    ego_valid: bool = True
    speed_cap: tuple[np.ndarray, np.ndarray] | None = None


def kinematic_checks(name: str, traj: Trajectory, v0: float, p: ArbiterParams) -> dict[str, CheckResult]:
    """Kinematic and comfort checks of one (finite) plan at ego speed ``v0``.

    The same checks run on every candidate in :meth:`Arbiter.decide`; ``vla-edge sim
    evaluate --planner student`` uses them alone to count raw student plans that pass.
    """
    prof = trajectory_profile(traj, p.min_speed_for_curvature)
    kin = ck.kinematics(prof)
    return {
        f"{name}.max_speed": at_most(kin["max_speed"], max(p.max_speed, v0) + p.speed_margin),
        f"{name}.min_speed": at_least(kin["min_speed"], p.min_speed),
        f"{name}.lon_accel_max": at_most(kin["max_lon_accel"], p.max_lon_accel),
        f"{name}.lon_accel_min": at_least(kin["min_lon_accel"], p.min_lon_accel),
        f"{name}.jerk": at_most(kin["jerk"], p.max_jerk),
        f"{name}.lat_accel": at_most(kin["lat_accel"], p.max_lat_accel),
        f"{name}.yaw_rate": at_most(kin["yaw_rate"], p.max_yaw_rate),
        f"{name}.curvature": at_most(kin["curvature"], p.max_curvature),
        f"{name}.heading_error": at_most(kin["heading_error"], p.max_heading_error),
        f"{name}.start_speed": at_most(ck.start_speed_jump(prof, v0), p.max_start_speed_jump),
    }


class Arbiter:
    """Stateful arbiter (hysteresis and hold counters live here)."""

    def __init__(self, params: ArbiterParams, footprint: Footprint) -> None:
        self.params = params
        self.footprint = footprint
        self.last_choice: str | None = None
        self.student_streak = 0
        self.release_streak = 0
        self.hold_count = 0
        self.rules: RulesParams | None = None  # set by PlanningCycle: enables the speed_rule check

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Arbiter:
        """Build from the merged config."""
        return cls(ArbiterParams.from_config(cfg), Footprint.from_config(cfg))

    def reset(self) -> None:
        """Forget hysteresis state (next cycle behaves like the first)."""
        self.last_choice = None
        self.student_streak = self.release_streak = self.hold_count = 0

    # ------------------------------------------------------------------ candidate checks
    def _age(self, age: float, limit: float) -> CheckResult:
        """Age check; a stamp from the future (beyond the stamp tolerance) is a clock fault."""
        v = ck.finite_value(age)
        return CheckResult(v, float(limit), bool(-self.params.stamp_tolerance <= v <= limit))

    def _n_stale(self, inp: ArbiterInputs) -> float:
        """Number of stale inputs that plans depend on (``timing.critical_inputs``)."""
        return float(len(set(inp.stale_inputs) & set(self.params.critical_inputs)))

    def _plan_checks(
        self,
        name: str,
        traj: Trajectory,
        inp: ArbiterInputs,
        out: dict[str, CheckResult],
        min_horizon: float,
        corridor: bool,
        continuity: bool,
    ) -> None:
        p = self.params
        out[f"{name}.finite"] = at_most(ck.nonfinite_count(traj.poses, traj.speeds), 0)
        if out[f"{name}.finite"].value > 0:
            return
        out[f"{name}.horizon"] = at_least((traj.horizon, -1), min_horizon)
        out.update(kinematic_checks(name, traj, float(inp.ego.v), p))
        if inp.obstacles is None:  # no usable LiDAR: a plan cannot be shown collision-free
            out[f"{name}.collision"] = CheckResult(ck.BIG, 0.0, False)
        else:
            coll, ttc = ck.collision_and_ttc(traj, inp.obstacles, self.footprint, p.ttc_buffer)
            out[f"{name}.collision"] = at_most(coll, 0)
            out[f"{name}.ttc"] = at_least(ttc, min(p.ttc_min, traj.horizon))
        if corridor:
            if inp.ref is None:
                out[f"{name}.lateral_deviation"] = CheckResult(ck.BIG, p.max_lateral_deviation, False)
                out[f"{name}.corridor"] = CheckResult(ck.BIG, p.corridor.tolerance, False)
            else:
                dev = ck.lateral_deviation(traj, inp.ref)
                out[f"{name}.lateral_deviation"] = at_most(dev, p.max_lateral_deviation)
                edge = ck.corridor_check(traj, inp.ref, p.corridor)
                out[f"{name}.corridor"] = at_most(edge, p.corridor.tolerance)
        if name == "student" and self.rules is not None and inp.speed_cap is not None and inp.ref is not None:
            # Airside speed rules: over the cap only while braking towards it (rules.py); the
            # Frenet planner filters its candidates with the same rule.
            s_pose, _ = inp.ref.project_trajectory(traj.poses[:, :2])
            prof = trajectory_profile(traj, p.min_speed_for_curvature)
            v = prof.speed[: len(s_pose)]
            lim = allowed_speed(
                *inp.speed_cap, s_pose[: len(v)], traj.times[: len(v)], float(inp.ego.v), self.rules
            )
            over = v - lim
            out[f"{name}.speed_rule"] = at_most(ck.max_of(over) if over.size else (0.0, -1), 0.0)
        if continuity:
            out[f"{name}.continuity"] = at_most(
                ck.continuity(traj, inp.previous, p.continuity_window), p.max_position_jump
            )

    def _student(
        self, inp: ArbiterInputs, out: dict[str, CheckResult], reasons: list[str]
    ) -> Trajectory | None:
        p = self.params
        raw = inp.student
        if raw is None:
            reasons.append("student_missing")
            return None
        out["student.finite_input"] = at_most(
            ck.nonfinite_count(raw.poses, raw.speeds, inp.student_scores, np.array([raw.dt, raw.stamp])), 0
        )
        age = (inp.now - inp.student_stamp) if inp.student_stamp is not None else ck.BIG
        out["student.age"] = self._age(age, p.student_max_age)
        out["student.frame_latency"] = self._age(inp.now - inp.stamp, p.frame_deadline)
        out["student.stale_inputs"] = at_most((self._n_stale(inp), -1), 0)
        out["student.ego_valid"] = CheckResult(0.0 if inp.ego_valid else 1.0, 0.0, inp.ego_valid)
        out["student.confidence"] = at_least(ck.softmax_confidence(inp.student_scores), p.min_confidence)
        if not out["student.finite_input"].ok:
            return None
        dt_ok = p.min_dt <= raw.dt <= p.max_dt
        out["student.dt"] = CheckResult(
            ck.finite_value(raw.dt), p.min_dt if raw.dt < p.min_dt else p.max_dt, dt_ok
        )
        out["student.max_horizon"] = at_most((raw.dt * len(raw.poses), -1), p.max_horizon)
        if not dt_ok or not out["student.max_horizon"].ok or len(raw.poses) == 0:
            return None
        same = abs(raw.stamp - inp.stamp) <= p.stamp_tolerance
        out["student.frame_known"] = CheckResult(
            0.0 if same or inp.student_pose else 1.0, 0.0, bool(same or inp.student_pose is not None)
        )
        if not out["student.frame_known"].ok:
            return None
        traj = raw
        if not same:  # produced on an older frame: move it into this one
            traj = _rebase(raw, inp.student_pose, inp, p.hold_blend_time)
            if traj is None:
                out["student.frame_known"] = CheckResult(1.0, 0.0, False)
                return None
        v0, w0 = float(inp.ego.v), float(inp.ego.yaw_rate)
        try:
            with np.errstate(all="ignore"):
                if p.smoothing.enabled:  # fit, then check and publish the fit (docs/safety.md)
                    a0 = float(np.clip(inp.ego.a, p.min_lon_accel, p.max_lon_accel))
                    lat0 = float(np.clip(v0 * w0, -p.max_lat_accel, p.max_lat_accel))
                    traj, res, i = smooth_student(traj, p.dt, v0, a0, lat0, p.smoothing)
                    out["student.smoothing_residual"] = at_most((res, i), p.smoothing.max_residual_m)
                    if p.smoothing.stop_hold_max_m > 0:
                        traj, _ = hold_at_stop(traj, p.smoothing.stop_hold_max_m)
                else:
                    traj = smooth_resample(traj, p.dt, v0, w0)
        except (np.linalg.LinAlgError, ValueError):
            out["student.finite"] = CheckResult(1.0, 0.0, False)
            return None
        traj.source = "student"
        with np.errstate(all="ignore"):
            self._plan_checks("student", traj, inp, out, p.min_horizon, corridor=True, continuity=True)
            if p.speed_rule_retime and _only_failure(out, "student.speed_rule"):
                traj = self._retimed(traj, inp, out, reasons)
        return traj

    def _retimed(
        self, traj: Trajectory, inp: ArbiterInputs, out: dict[str, CheckResult], reasons: list[str]
    ) -> Trajectory:
        """The student's plan slowed to the speed rule along its own path, if that passes every
        check (``student.speed_retimed``: by how much the plan was over); else ``traj`` unchanged."""
        if self.rules is None or inp.speed_cap is None or inp.ref is None:  # no rule was checked
            return traj
        cap_s, cap_v = inp.speed_cap
        ref = inp.ref

        def cap_of_xy(xy: np.ndarray) -> np.ndarray:
            return np.interp(ref.project_trajectory(xy)[0], cap_s, cap_v)

        slowed = retime_along_path(traj, float(inp.ego.v), cap_of_xy, self.rules.rule_decel)
        if slowed is None:
            return traj
        trial: dict[str, CheckResult] = {}
        p = self.params
        self._plan_checks("student", slowed, inp, trial, p.min_horizon, corridor=True, continuity=True)
        if not all(v.ok for v in trial.values()):
            return traj
        over = out["student.speed_rule"]
        out.update(trial)
        out["student.speed_retimed"] = CheckResult(over.value, over.threshold, True, over.index)
        reasons.append("student_speed_retimed")
        slowed.source = "student"
        return slowed

    # ------------------------------------------------------------------ decision
    def decide(self, inp: ArbiterInputs) -> ArbiterDecision:
        """Check every candidate and pick the published trajectory (see module docstring)."""
        p = self.params
        out: dict[str, CheckResult] = {}
        reasons = list(inp.input_reasons)
        student = self._student(inp, out, reasons)
        s_ok = student is not None and all(v.ok for k, v in out.items() if k.startswith("student."))
        f_ok = False
        if inp.frenet is not None:
            out["frenet.frame_latency"] = self._age(inp.now - inp.stamp, p.frame_deadline)
            out["frenet.stale_inputs"] = at_most((self._n_stale(inp), -1), 0)
            with np.errstate(all="ignore"):
                self._plan_checks(
                    "frenet", inp.frenet, inp, out, p.min_horizon, corridor=True, continuity=True
                )
            f_ok = all(v.ok for k, v in out.items() if k.startswith("frenet."))
        else:
            reasons.append(inp.frenet_reason or "frenet_unavailable")
        if s_ok and f_ok and student is not None:
            s_ok = self._progress(student, inp, out, p.progress_min_ratio)
        if not s_ok and student is not None and inp.student_alternatives and _plan_level_failure(out):
            alt = self._alternative(inp, out, f_ok, reasons)
            if alt is not None:
                student, s_ok = alt, True
        for k, v in out.items():
            if not v.ok:
                reasons.append(k.replace(".", "_"))

        self.student_streak = self.student_streak + 1 if s_ok else 0
        self.release_streak = self.release_streak + 1 if (s_ok or f_ok) else 0
        prev = self.last_choice
        student_allowed = s_ok and (
            prev == "student"
            or self.student_streak >= p.student_good_cycles
            or (prev is None and p.trust_student_at_start)
        )
        if s_ok and not student_allowed:
            reasons.append("student_hysteresis_wait")
        latched = prev == "emergency_stop" and self.release_streak < p.release_emergency_cycles
        if latched and (s_ok or f_ok):
            reasons.append("emergency_latched")

        choice, traj = "", None
        if not latched and student_allowed:
            choice, traj = "student", student
        elif not latched and f_ok:
            choice, traj = "frenet", inp.frenet
        elif not latched and prev != "emergency_stop":
            held = self._hold(inp, out)
            if held is not None:
                choice, traj = "hold_previous", held
                reasons.append("hold_previous")
        if traj is None:
            choice = "emergency_stop"
            traj = self._emergency(inp, out, reasons)
            if not latched:
                reasons.append("emergency_no_safe_plan")
        self.hold_count = self.hold_count + 1 if choice == "hold_previous" else 0
        self.last_choice = choice
        state = {
            "student_streak": int(self.student_streak),
            "student_good_cycles": int(p.student_good_cycles),
            "release_streak": int(self.release_streak),
            "hold_count": int(self.hold_count),
            "previous_choice": prev or "",
        }
        return ArbiterDecision(
            choice=choice,
            trajectory=traj,
            reasons=list(dict.fromkeys(reasons)),
            checks=out,
            frenet=inp.frenet,
            obstacles=inp.obstacles,
            stamp=inp.stamp,
            state=state,
            frenet_summary=inp.frenet_summary,
        )

    def _progress(
        self, student: Trajectory, inp: ArbiterInputs, out: dict[str, CheckResult], min_ratio: float
    ) -> bool:
        """Both plans pass every check: a student that stalls where the fallback would drive on
        (e.g. waiting behind a blocked lane) gives way to the fallback."""
        p = self.params
        ratio = ck.progress_ratio(student, inp.frenet, p.progress_min_frenet) if inp.frenet else None
        if ratio is None:
            return True
        out["student.progress"] = at_least(ratio, min_ratio)
        return out["student.progress"].ok

    def _alternative(
        self, inp: ArbiterInputs, out: dict[str, CheckResult], f_ok: bool, reasons: list[str]
    ) -> Trajectory | None:
        """The first next-ranked mode that passes every student check (same checks), or None.

        On success the best mode's failed checks become ``best_mode_*`` reasons and ``out``'s
        ``student.*`` entries describe the published mode (``student.mode_rank`` = its rank).
        """
        for rank, mode in enumerate(inp.student_alternatives[: self.params.alternative_modes], start=1):
            alt_out: dict[str, CheckResult] = {}
            traj = self._student(replace(inp, student=mode), alt_out, [])
            ok = traj is not None and all(v.ok for v in alt_out.values())
            if ok and f_ok and traj is not None:
                # A slower mode displaces a usable fallback only if it keeps nearly its pace
                # (tuning seed 9200: at the best mode's 0.6, blocked_lane lost 0.015 to waiting modes).
                ok = self._progress(traj, inp, alt_out, self.params.progress_alternative_min_ratio)
            if not ok or traj is None:
                continue
            for k in [k for k in out if k.startswith("student.")]:
                if not out[k].ok:
                    reasons.append("best_mode_" + k.replace(".", "_"))
                del out[k]
            out.update(alt_out)
            out["student.mode_rank"] = CheckResult(float(rank), float(self.params.alternative_modes), True)
            reasons.append("student_alternative_mode")
            return traj
        return None

    def _hold(self, inp: ArbiterInputs, out: dict[str, CheckResult]) -> Trajectory | None:
        p = self.params
        if inp.previous is None or inp.previous_age is None or inp.previous_start is None:
            return None
        out["hold.age"] = at_most((inp.previous_age, -1), p.hold_max_age)
        out["hold.count"] = at_most((float(self.hold_count), -1), p.hold_max_cycles - 1)
        out["hold.start_offset"] = at_most(ck.start_offset(inp.previous_start), p.max_start_offset)
        with np.errstate(all="ignore"):
            self._plan_checks(
                "hold", inp.previous, inp, out, p.hold_min_horizon, corridor=False, continuity=False
            )
        if all(v.ok for k, v in out.items() if k.startswith("hold.")):
            held = Trajectory(inp.previous.poses.copy(), inp.previous.dt, inp.stamp, inp.previous.speeds,
                              inp.previous.source)  # fmt: skip
            return held
        return None

    def _emergency(self, inp: ArbiterInputs, out: dict[str, CheckResult], reasons: list[str]) -> Trajectory:
        p = self.params
        e = p.emergency
        v0 = float(inp.ego.v) if np.isfinite(inp.ego.v) else 0.0
        a0 = float(inp.ego.a) if np.isfinite(inp.ego.a) else 0.0
        traj = emergency_stop(inp.last_safe_path, v0, a0, inp.stamp, e)
        if not self._admissible(traj, v0):
            reasons.append("emergency_straight_fallback")
            s, v, _ = stop_profile(v0, a0, e)
            traj = straight_stop(s, v, inp.stamp, e)
        prof = trajectory_profile(traj, p.min_speed_for_curvature)
        kin = ck.kinematics(prof)
        out["emergency.lon_accel_min"] = at_least(kin["min_lon_accel"], p.min_lon_accel)
        out["emergency.jerk"] = at_most(kin["jerk"], p.max_jerk)
        out["emergency.lat_accel"] = at_most(kin["lat_accel"], p.max_lat_accel)
        out["emergency.yaw_rate"] = at_most(kin["yaw_rate"], p.max_yaw_rate)
        return traj

    def _admissible(self, traj: Trajectory, v0: float) -> bool:
        """Finite and within the kinematic limits (speed limit excepted: it only slows down)."""
        p = self.params
        if not traj.is_finite():
            return False
        prof = trajectory_profile(traj, p.min_speed_for_curvature)
        kin = ck.kinematics(prof)
        return (
            kin["min_lon_accel"][0] >= p.min_lon_accel
            and kin["max_lon_accel"][0] <= p.max_lon_accel
            and kin["jerk"][0] <= p.max_jerk
            and kin["lat_accel"][0] <= p.max_lat_accel
            and kin["yaw_rate"][0] <= p.max_yaw_rate
            and kin["curvature"][0] <= p.max_curvature
            and ck.start_speed_jump(prof, v0)[0] <= p.max_start_speed_jump
        )


#: Student checks that hold for every mode of a candidate alike (its age, frame, inputs,
#: confidence): when one of them fails, no other mode can pass either.
_FRAME_LEVEL_CHECKS = frozenset(
    f"student.{c}"
    for c in ("finite_input", "age", "frame_latency", "stale_inputs", "ego_valid", "confidence", "dt",
              "max_horizon", "frame_known")
)  # fmt: skip


def _only_failure(out: dict[str, CheckResult], name: str) -> bool:
    """``name`` failed and every other check of its candidate passed."""
    prefix = name.split(".")[0] + "."
    failed = [k for k, v in out.items() if k.startswith(prefix) and not v.ok]
    return failed == [name]


def _plan_level_failure(out: dict[str, CheckResult]) -> bool:
    """The best mode failed only checks of its own plan (kinematics, collision, corridor...)."""
    failed = {k for k, v in out.items() if k.startswith("student.") and not v.ok}
    return bool(failed) and not (failed & _FRAME_LEVEL_CHECKS)


def _rebase(
    raw: Trajectory, pose_from: tuple[float, float, float] | None, inp: ArbiterInputs, blend_time: float
) -> Trajectory | None:
    """Move a student plan made on an older frame into the current one (offset blended out)."""
    if pose_from is None or inp.ego_pose_odom is None:
        return None
    shifted = shift_trajectory(raw, pose_from, inp.ego_pose_odom, inp.stamp, raw.dt)
    if shifted is None:
        return None
    return reanchor(shifted[0], shifted[1], blend_time)
