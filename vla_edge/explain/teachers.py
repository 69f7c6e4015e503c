"""Teachers for ``vla-edge explain``: the protocol, the loader and the built-ins.

A teacher looks at one rebuilt :class:`~vla_edge.types.Frame` (exactly what the vehicle
saw) plus what the vehicle did (:class:`TeacherContext`) and returns a
:class:`TeacherOutput`: its own trajectory, a reasoning text and a confidence.

Built in (select with ``--teacher NAME`` or ``teacher:`` in ``config/explain.yaml``):

* ``scene`` — :class:`SceneReasoningTeacher`: the real planning stack (LiDAR obstacles +
  Frenet planner via ``PlanningCycle``) gives the trajectory; the reasoning is generated
  from the scene (nearest obstacle in path, TTC, occupancy zones) and the arbiter's
  reasons. Needs no trained model.
* ``learned`` — :class:`LearnedTeacher`: training's ``teacher`` preset exported to ONNX,
  run with ONNX Runtime through the same :class:`~vla_edge.inference.StudentRunner`
  code as the student; same scene-generated reasoning.

Third-party teachers plug in by import path (``--teacher my_pkg.mod:MyTeacher``) or by an
entry point in the group ``vla_edge.teachers``. :class:`ExternalVLAAdapter` is a
template for a remote camera-based VLA teacher (see ``docs/recording.md``).
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import logging
import math
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vla_edge.config import load_config, require, resolve_path
from vla_edge.errors import ModelError, VlaEdgeError
from vla_edge.types import Frame, Trajectory

LOG = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vla_edge.teachers"


class TeacherError(VlaEdgeError):
    """A teacher cannot be loaded or returned something unusable."""


@dataclass
class TeacherOutput:
    """What a teacher says about one frame.

    Attributes:
        trajectory: Teacher plan in the frame's ego frame (any dt/horizon), or None when
            the teacher only explains.
        reasoning: Human-readable explanation.
        confidence: 0..1, the teacher's own confidence (NaN when it has none).
        extra: JSON-safe details added to the row under ``teacher_extra``.
    """

    trajectory: Trajectory | None
    reasoning: str
    confidence: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TeacherContext:
    """What the vehicle did on this frame (from the log), for the teacher to explain.

    Attributes:
        index: Frame index within the run (0-based).
        bag: Bag the frame came from.
        decision: Logged ``ArbiterDecision.to_dict()``, or None when not logged.
        student: Student trajectory (logged candidate, or recomputed), or None.
        final: Logged final trajectory (after the arbiter), or None.
    """

    index: int
    bag: str
    decision: dict[str, Any] | None = None
    student: Trajectory | None = None
    final: Trajectory | None = None


@runtime_checkable
class Teacher(Protocol):
    """The teacher protocol: one method, called once per frame, in log order.

    Implementations may keep state between frames (frames arrive in order) and must
    raise :class:`TeacherError` (or return a trajectory of None) rather than invent a
    plan. Constructor: ``Teacher(config: dict)`` where ``config`` is
    ``config/explain.yaml`` (``teachers.<name>`` holds the teacher's own keys).
    """

    name: str

    def explain(self, frame: Frame, context: TeacherContext) -> TeacherOutput:
        """Explain one frame."""
        ...


# ------------------------------------------------------------------ scene facts
@dataclass
class SceneFacts:
    """Scene summary a reasoning text is generated from (ego frame, metres, seconds)."""

    n_obstacles: int
    nearest_in_path_m: float | None  # arc length to the nearest obstacle in the corridor
    nearest_in_path_lateral_m: float | None
    nearest_in_path_moving: bool
    ttc_s: float | None  # time to reach it at the current closing speed; None if not closing
    zones: dict[str, int]  # obstacle clusters per zone, e.g. {"front_near": 2}
    ego_speed: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dataclasses.asdict(self)


def _path_frame(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length and unit tangents of a polyline (N x 2)."""
    seg = np.diff(path, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg_len)])
    tangents = seg / np.maximum(seg_len, 1e-9)[:, None]
    return s, tangents


def project_on_path(path: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc length (from the point of the path nearest the ego) and signed lateral offset.

    Args:
        path: N x 2 polyline in the ego frame (N >= 2).
        pts: M x 2 points in the ego frame.

    Returns:
        ``(s, d)``: M arc lengths (negative behind the ego) and M lateral offsets (left +).
    """
    s_nodes, tangents = _path_frame(path)
    a = path[:-1][None]  # 1 x S x 2
    rel = pts[:, None, :] - a  # M x S x 2
    t = np.clip(np.einsum("msk,sk->ms", rel, tangents), 0.0, np.diff(s_nodes)[None])
    foot = a + t[..., None] * tangents[None]
    dist = np.linalg.norm(pts[:, None, :] - foot, axis=2)
    best = np.argmin(dist, axis=1)
    idx = np.arange(len(pts))
    cross = tangents[best, 0] * rel[idx, best, 1] - tangents[best, 1] * rel[idx, best, 0]
    s = s_nodes[best] + t[idx, best]
    ego_s, _ = project_on_path_point(path, s_nodes, tangents)
    return s - ego_s, np.sign(cross) * dist[idx, best]


def project_on_path_point(path: np.ndarray, s_nodes: np.ndarray, tangents: np.ndarray) -> tuple[float, float]:
    """Arc length and distance of the ego origin's foot point on the path."""
    rel = -path[:-1]
    t = np.clip(np.einsum("sk,sk->s", rel, tangents), 0.0, np.diff(s_nodes))
    foot = path[:-1] + t[:, None] * tangents
    dist = np.linalg.norm(foot, axis=1)
    i = int(np.argmin(dist))
    return float(s_nodes[i] + t[i]), float(dist[i])


def scene_facts(frame: Frame, obstacles: Any, corridor_half_width: float, zone_near_m: float) -> SceneFacts:
    """Summarise the obstacles of one frame relative to the reference path.

    Args:
        frame: The rebuilt frame (reference path in the ego frame).
        obstacles: :class:`vla_edge.planning.obstacles.Obstacles` of this sweep.
        corridor_half_width: Half width (m) of the corridor along the path that counts as
            "in path" (the obstacle radius is added).
        zone_near_m: Distance (m) splitting ``near`` from ``far`` zones.
    """
    if obstacles is None:
        return SceneFacts(0, None, None, False, None, {}, float(frame.ego.v))
    cen = np.asarray(obstacles.centroids, dtype=np.float64).reshape(-1, 2)
    radii = np.asarray(obstacles.radii, dtype=np.float64).reshape(-1)
    vel = np.asarray(obstacles.velocities, dtype=np.float64).reshape(-1, 2)
    moving = np.asarray(obstacles.moving, dtype=bool).reshape(-1)
    zones: dict[str, int] = {}
    for x, y in cen:
        side = "front" if x > abs(y) else "rear" if -x > abs(y) else "left" if y > 0 else "right"
        band = "near" if math.hypot(x, y) < zone_near_m else "far"
        zones[f"{side}_{band}"] = zones.get(f"{side}_{band}", 0) + 1
    facts = SceneFacts(len(cen), None, None, False, None, dict(sorted(zones.items())), float(frame.ego.v))
    path = np.asarray(frame.reference_path, dtype=np.float64).reshape(-1, 2)
    if len(cen) == 0 or len(path) < 2:
        return facts
    s, d = project_on_path(path, cen)
    in_path = (s > 0) & (np.abs(d) < corridor_half_width + radii)
    if not in_path.any():
        return facts
    i = int(np.flatnonzero(in_path)[np.argmin(s[in_path])])
    facts.nearest_in_path_m = float(max(s[i] - radii[i], 0.0))
    facts.nearest_in_path_lateral_m = float(d[i])
    facts.nearest_in_path_moving = bool(moving[i])
    closing = float(frame.ego.v) - float(vel[i, 0])  # ego-axis x velocity of the obstacle
    if closing > 0.1:
        facts.ttc_s = facts.nearest_in_path_m / closing
    return facts


def reasoning_text(facts: SceneFacts, decision: dict[str, Any] | None, teacher_plan: str) -> str:
    """Generate the reasoning text from scene facts and the arbiter's logged decision."""
    parts = [f"Ego at {facts.ego_speed:.1f} m/s; {facts.n_obstacles} obstacle clusters"]
    if facts.zones:
        parts[-1] += " (" + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in facts.zones.items()) + ")"
    parts[-1] += "."
    if facts.nearest_in_path_m is None:
        parts.append("Path ahead is clear of obstacles.")
    else:
        kind = "moving" if facts.nearest_in_path_moving else "static"
        side = "left" if (facts.nearest_in_path_lateral_m or 0.0) > 0 else "right"
        lat = abs(facts.nearest_in_path_lateral_m or 0.0)
        txt = (
            f"Nearest {kind} obstacle in path {facts.nearest_in_path_m:.1f} m ahead, "
            f"{lat:.1f} m {side} of the path"
        )
        if facts.ttc_s is not None:
            txt += f", TTC {facts.ttc_s:.1f} s"
        parts.append(txt + ".")
    parts.append(teacher_plan)
    if decision:
        choice = decision.get("choice", "?")
        reasons = [str(r) for r in decision.get("reasons", []) or []]
        parts.append(f"Vehicle chose {choice}" + (f" because {', '.join(reasons)}." if reasons else "."))
    return " ".join(parts)


def plan_summary(traj: Trajectory | None, who: str) -> str:
    """One sentence about a plan: distance covered, lateral offset, end speed."""
    if traj is None:
        return f"{who}: no plan."
    end = traj.poses[-1]
    v_end = (
        float(np.linalg.norm(traj.poses[-1, :2] - traj.poses[-2, :2]) / traj.dt)
        if len(traj.poses) > 1
        else 0.0
    )
    verb = "stop" if v_end < 0.3 else "keep moving"
    return (
        f"{who} plans {end[0]:.1f} m ahead, {end[1]:+.1f} m lateral over {traj.horizon:.1f} s "
        f"and would {verb} (end speed {v_end:.1f} m/s)."
    )


# ------------------------------------------------------------------ built-ins
def _planning_cycle(cfg: dict[str, Any]) -> Any:
    """The vehicle's PlanningCycle, built the way the drive graph builds it."""
    from vla_edge.pipeline import load_cycle

    return load_cycle({"planning_config": require(cfg, "planning_config", where="explain.yaml") or ""})


def _obstacle_summary(obstacles: Any, max_clusters: int = 40) -> dict[str, Any] | None:
    return obstacles.summary(max_clusters) if obstacles is not None else None


class SceneReasoningTeacher:
    """Real planning stack as teacher: obstacles + Frenet through ``PlanningCycle``.

    Its trajectory is what the Frenet planner (with the same obstacle extraction and
    checks as the vehicle) plans on the rebuilt frame with no student candidate; the
    reasoning comes from :func:`scene_facts` and the logged decision.
    """

    name = "scene"

    def __init__(self, config: dict[str, Any]) -> None:
        own = require(config, "teachers", "scene", where="explain.yaml")
        self.corridor = float(require(own, "corridor_half_width_m", where="explain.yaml teachers.scene"))
        self.zone_near = float(require(own, "zone_near_m", where="explain.yaml teachers.scene"))
        self.cycle = _planning_cycle(config)

    def explain(self, frame: Frame, context: TeacherContext) -> TeacherOutput:
        """Plan with Frenet on the frame and describe the scene."""
        dec = self.cycle.step(frame, None, None, frame.stamp)
        traj = dec.frenet  # None when no Frenet plan is feasible: the teacher has no plan then
        facts = scene_facts(frame, dec.obstacles, self.corridor, self.zone_near)
        text = reasoning_text(facts, context.decision, plan_summary(traj, "Frenet teacher"))
        extra = {
            "scene": facts.to_dict(),
            "teacher_choice": dec.choice,
            "teacher_reasons": list(dec.reasons),
            "obstacles": _obstacle_summary(dec.obstacles),
        }
        # Confidence: 1 when the planner's plan passes every arbiter check, else 0.
        return TeacherOutput(traj, text, 1.0 if dec.choice == "frenet" else 0.0, extra)


def teacher_artefact_path(config: dict[str, Any]) -> Path:
    """Resolve ``teachers.learned.artefact`` and fail clearly when it is missing.

    Raises:
        ModelError: Naming the file and the command that produces it.
    """
    own = require(config, "teachers", "learned", where="explain.yaml")
    path = resolve_path(require(own, "artefact", where="explain.yaml teachers.learned"))
    if not path.is_file():
        cmd = require(own, "produce_command", where="explain.yaml teachers.learned")
        raise ModelError(
            f"learned teacher artefact {path} not found. Produce it with:\n  {cmd}\n"
            "(see docs/training.md), set teachers.learned.artefact in config/explain.yaml, "
            "or use --teacher scene (needs no model)."
        )
    return path


class LearnedTeacher:
    """Training's ``teacher`` preset, exported to ONNX, run with ONNX Runtime.

    Uses :class:`~vla_edge.inference.StudentRunner` (same pillarization, inputs and
    manifest checks as the vehicle's student). Reasoning is generated from the LiDAR
    scene (the planning stack's obstacle extraction) and the arbiter's logged reasons.
    """

    name = "learned"

    def __init__(self, config: dict[str, Any]) -> None:
        from vla_edge.inference import StudentRunner

        own = require(config, "teachers", "learned", where="explain.yaml")
        path = teacher_artefact_path(config)
        model_cfg = load_config(require(config, "model_config", where="explain.yaml"), kind="model")
        self.runner = StudentRunner.from_config(
            model_cfg, str(require(own, "backend", where="explain.yaml")), path
        )
        self.seed = int(require(own, "noise_seed", where="explain.yaml teachers.learned"))
        self.corridor = float(
            require(config, "teachers", "scene", "corridor_half_width_m", where="explain.yaml")
        )
        self.zone_near = float(require(config, "teachers", "scene", "zone_near_m", where="explain.yaml"))
        self.cycle = _planning_cycle(config)
        self.manifest = self.runner.backend.manifest

    def explain(self, frame: Frame, context: TeacherContext) -> TeacherOutput:
        """Run the teacher model and describe the scene."""
        out = self.runner.run(frame, noise_seed=self.seed)
        traj = Trajectory(out.trajectory.poses, out.trajectory.dt, frame.stamp, source="teacher")
        scores = np.asarray(out.scores, dtype=np.float64)
        probs = np.exp(scores - scores.max())
        conf = float(probs.max() / probs.sum())
        dec = self.cycle.step(frame, traj, frame.stamp, frame.stamp, scores)
        facts = scene_facts(frame, dec.obstacles, self.corridor, self.zone_near)
        failed = [r for r in dec.reasons if r.startswith("student_")]
        text = reasoning_text(facts, context.decision, plan_summary(traj, "Learned teacher"))
        if failed:
            text += " Teacher plan would fail: " + ", ".join(r.removeprefix("student_") for r in failed) + "."
        extra = {
            "scene": facts.to_dict(),
            "checks_on_teacher": failed,
            "obstacles": _obstacle_summary(dec.obstacles),
        }
        return TeacherOutput(traj, text, conf, extra)


class ExternalVLAAdapter:
    """ADAPTER TEMPLATE for an external camera-based VLA teacher — not a working teacher.

    It shows the contract (``docs/recording.md``, "External VLA teacher"): the request
    carries the camera images (JPEG, base64), the ego state and the reference path; the
    response carries a trajectory and reasoning text. :meth:`build_request` and
    :meth:`parse_response` are real and tested; :meth:`send` is the one method an
    integrator implements (HTTP/gRPC to the model server). Until then :meth:`explain`
    raises :class:`TeacherError` — it never fabricates a result.

    Subclass it, implement :meth:`send`, and select the subclass with
    ``--teacher my_pkg.my_module:MyVLATeacher``.
    """

    name = "external_vla"

    def __init__(self, config: dict[str, Any]) -> None:
        own = (config.get("teachers") or {}).get("external_vla") or {}
        self.jpeg_quality = int(own.get("jpeg_quality", 90))
        self.endpoint = str(own.get("endpoint", ""))

    def build_request(self, frame: Frame, context: TeacherContext) -> dict[str, Any]:
        """JSON-safe request for one frame (schema ``vla_edge.vla_request/1``)."""
        import cv2

        images = {}
        for cam, rgb in frame.images.items():
            ok, enc = cv2.imencode(
                ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
            )
            if not ok:
                raise TeacherError(f"cannot JPEG-encode camera {cam} of frame {frame.stamp}")
            images[cam] = base64.b64encode(enc.tobytes()).decode("ascii")
        e = frame.ego
        return {
            "format": "vla_edge.vla_request/1",
            "stamp": frame.stamp,
            "images_jpeg_b64": images,
            "ego": {"v": e.v, "a": e.a, "yaw_rate": e.yaw_rate},
            "reference_path": np.asarray(frame.reference_path, dtype=float).round(3).tolist(),
            "vehicle_decision": (context.decision or {}).get("choice"),
        }

    def parse_response(self, response: dict[str, Any] | str, stamp: float) -> TeacherOutput:
        """Validate a response (schema ``vla_edge.vla_response/1``) into a TeacherOutput.

        Raises:
            TeacherError: Missing keys, wrong shapes or non-finite values.
        """
        data = json.loads(response) if isinstance(response, str) else response
        try:
            poses = np.asarray(data["trajectory"], dtype=np.float64)
            dt = float(data["dt"])
            reasoning = str(data["reasoning"])
            conf = float(data.get("confidence", float("nan")))
        except (KeyError, TypeError, ValueError) as exc:
            raise TeacherError(
                f"VLA response lacks or mistypes {exc}; expected trajectory, dt, reasoning"
            ) from None
        if poses.ndim != 2 or poses.shape[1] != 3 or len(poses) == 0:
            raise TeacherError(f"VLA trajectory must be T x 3 (x, y, yaw), got {poses.shape}")
        traj = Trajectory(poses, dt, stamp, source="teacher")
        if not traj.is_finite():
            raise TeacherError("VLA trajectory has non-finite values or dt <= 0")
        return TeacherOutput(traj, reasoning, conf)

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send the request to the model server and return its JSON response. IMPLEMENT ME."""
        raise TeacherError(
            "ExternalVLAAdapter is a template: subclass it and implement send() to call your VLA "
            f"server (endpoint {self.endpoint!r}); see docs/recording.md"
        )

    def explain(self, frame: Frame, context: TeacherContext) -> TeacherOutput:
        """Request -> :meth:`send` -> validated output."""
        return self.parse_response(self.send(self.build_request(frame, context)), frame.stamp)


BUILTINS: dict[str, type] = {"scene": SceneReasoningTeacher, "learned": LearnedTeacher}


def load_teacher(spec: str, config: dict[str, Any]) -> Teacher:
    """Instantiate a teacher from a built-in name, ``module:Class`` or an entry point name.

    Raises:
        TeacherError: Unknown name, import failure, or an object without ``explain``.
    """
    cls: Any
    if spec in BUILTINS:
        cls = BUILTINS[spec]
    elif ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            raise TeacherError(f"cannot import teacher {spec!r}: {exc}") from None
    else:
        eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if not eps:
            known = sorted(BUILTINS) + sorted(
                ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
            )
            raise TeacherError(
                f"unknown teacher {spec!r}; use one of {', '.join(known)}, or module:Class, "
                f"or register an entry point in group '{ENTRY_POINT_GROUP}'"
            )
        cls = eps[0].load()
    teacher = cls(config)
    if not callable(getattr(teacher, "explain", None)):
        raise TeacherError(f"teacher {spec!r} has no explain(frame, context) method")
    if not getattr(teacher, "name", None):
        teacher.name = spec
    return teacher
