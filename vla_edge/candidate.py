"""The one model-output type, :class:`Candidate`, and its one versioned wire codec.

A backend fills ``trajectories``/``scores``/``bev``; the runner adds the best mode and the
pillar count; the pipeline adds the frame stamp, the timing and, when the model failed or
missed its deadline, ``error``/``deadline_missed`` (then ``trajectory`` is None). The
arbiter and the drive loop read the same object, in process or decoded from the wire.

Wire form (``docs/architecture.md``, "Candidate contract"): the key :data:`KEY` of the
``candidate_info`` DiagnosticStatus holds ``json.dumps(encode(c))``, a JSON object with
``"v": VERSION``. :func:`decode` validates every field and never raises: anything malformed
comes back as a candidate without a trajectory whose ``error`` starts with
:data:`MALFORMED`, which the arbiter counts and reports on ``/diagnostics``. Adding a field
means adding it here (dataclass, :func:`encode`, :func:`decode`) and where it is used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_edge.types import Trajectory, trajectory_from_json, trajectory_to_json

VERSION = 1
KEY = "candidate"  # DiagnosticStatus key carrying the encoded candidate
MALFORMED = "MalformedCandidate"
_MAX_TEXT = 1 << 16  # bytes; a candidate is ~1 kB, anything far bigger is hostile


@dataclass
class Candidate:
    """The student's output for one frame (or for one raw inference, before the runner).

    Attributes:
        stamp: Stamp of the frame it was computed on (s); NaN when unknown.
        trajectory: Best mode (source ``"student"``), ego frame at ``stamp``; None when there
            is no usable candidate (model error, deadline missed, malformed message).
        trajectories: A x T x 3 float32, every mode (x, y, yaw) in the ego frame.
        scores: A mode logits, or None when unknown.
        best_index: Index of ``trajectory`` in ``trajectories`` (-1 unknown).
        timing_ms: Stage times (``pillarize``, ``inference``, ``total``; backends: ``infer``).
        pillar_count: Occupied pillars fed to the model.
        bev: Optional BEV features (Cb x Hb x Wb) when the model exports them.
        error: ``"<Type>: message"`` when there is no candidate because of a failure.
        deadline_missed: The run finished after its deadline (trajectory withheld).
    """

    stamp: float = math.nan
    trajectory: Trajectory | None = None
    trajectories: np.ndarray | None = None
    scores: np.ndarray | None = None
    best_index: int = -1
    timing_ms: dict[str, float] = field(default_factory=dict)
    pillar_count: int = 0
    bev: np.ndarray | None = None
    error: str | None = None
    deadline_missed: bool = False

    @property
    def usable(self) -> bool:
        """A trajectory the arbiter may check (no error, in time)."""
        return self.trajectory is not None and self.error is None and not self.deadline_missed

    @property
    def malformed(self) -> bool:
        """Decoded from a message that failed validation."""
        return bool(self.error and self.error.startswith(MALFORMED))

    def alternatives(self, limit: int, min_probability: float) -> list[Trajectory]:
        """The next-best modes after :attr:`trajectory`, in score order (at most ``limit``).

        Only modes whose softmax probability is at least ``min_probability`` count: a mode the
        model itself finds unlikely is not a plan. Empty when the candidate is unusable or
        carries no modes or scores.
        """
        if limit <= 0 or not self.usable or self.trajectories is None or self.scores is None:
            return []
        assert self.trajectory is not None  # usable
        scores = np.asarray(self.scores, dtype=np.float64).ravel()
        if len(scores) != len(self.trajectories) or len(scores) < 2:
            return []
        prob = np.exp(scores - scores.max())
        prob /= prob.sum()
        best = self.best_index if 0 <= self.best_index < len(scores) else int(np.argmax(scores))
        out = []
        for i in np.argsort(-scores, kind="stable"):
            if int(i) == best:
                continue
            if prob[i] < min_probability or len(out) >= limit:
                break
            t = self.trajectory
            out.append(
                Trajectory(np.asarray(self.trajectories[i], np.float64), t.dt, t.stamp, None, t.source)
            )
        return out

    def withheld(self, **changes: Any) -> Candidate:
        """This result without its trajectory (``error=...`` or ``deadline_missed=True``)."""
        return Candidate(self.stamp, None, None, None, -1, dict(self.timing_ms), self.pillar_count, **changes)


def encode(c: Candidate) -> str:
    """Wire text of ``c`` (JSON, versioned); the arrays travel rounded to 0.1 mm / 1e-5.

    Never raises for a well-typed candidate: non-finite values are clamped (then rejected on
    decode) rather than written as the non-standard ``NaN``.
    """
    scores = None if c.scores is None else np.ravel(np.asarray(c.scores, dtype=np.float64))
    d: dict[str, Any] = {
        "v": VERSION,
        "stamp": float(c.stamp) if math.isfinite(c.stamp) else None,  # None: decode() rejects it
        "trajectory": trajectory_to_json(c.trajectory) if c.usable else None,
        "scores": None if scores is None else np.round(np.nan_to_num(scores, nan=1e9), 5).tolist(),
        "modes": _modes_json(c),
        "best_index": int(c.best_index),
        "timing_ms": {
            str(k): round(float(v), 3) for k, v in c.timing_ms.items() if v is not None and math.isfinite(v)
        },
        "error": c.error,
        "deadline_missed": bool(c.deadline_missed),
    }
    return json.dumps(d)


def decode(text: Any) -> Candidate:
    """Candidate from :func:`encode`'s text; never raises (malformed -> ``error`` set)."""
    try:
        return _decode(text)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        return Candidate(error=f"{MALFORMED}: {type(exc).__name__}: {exc}"[:300])


def _decode(text: Any) -> Candidate:
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise ValueError(f"expected a JSON text of at most {_MAX_TEXT} bytes")
    d = json.loads(text)
    if not isinstance(d, dict):
        raise TypeError("not a JSON object")
    if d.get("v") != VERSION:
        raise ValueError(f"version {d.get('v')!r}, this arbiter reads {VERSION}")
    stamp = float(d["stamp"])
    if not math.isfinite(stamp):
        raise ValueError("stamp is not finite")
    error, missed = d.get("error"), d.get("deadline_missed", False)
    if error is not None and not isinstance(error, str):
        raise TypeError("error must be a string or null")
    if not isinstance(missed, bool):
        raise TypeError("deadline_missed must be a bool")
    timing = d.get("timing_ms") or {}
    if not isinstance(timing, dict):
        raise TypeError("timing_ms must be an object")
    timing = {str(k): float(v) for k, v in timing.items()}
    scores = d.get("scores")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1 or not np.all(np.isfinite(scores)):
            raise ValueError("scores must be a finite 1-D list")
    traj = None
    if d.get("trajectory") is not None and error is None and not missed:
        poses = d["trajectory"].get("poses") if isinstance(d["trajectory"], dict) else None
        if poses is not None and not np.all(np.isfinite(np.asarray(poses, dtype=np.float64))):
            raise ValueError("trajectory has non-finite poses")  # json.loads accepts NaN/Infinity
        traj = trajectory_from_json(d["trajectory"], stamp, "student")
        if traj is None:
            raise ValueError("trajectory is malformed or not finite")
    if traj is None and error is None and not missed:
        raise ValueError("neither a trajectory nor a reason for its absence")
    modes, best = _decode_modes(d, traj, scores)
    return Candidate(stamp, traj, modes, scores, best, timing_ms=timing, error=error, deadline_missed=missed)


def _modes_json(c: Candidate) -> list[Any] | None:
    """Every mode (A x T x 3) of a usable candidate, rounded like the trajectory; else None."""
    if not c.usable or c.trajectories is None:
        return None
    a = np.asarray(c.trajectories, dtype=np.float64)
    return np.round(np.nan_to_num(a, nan=1e9, posinf=1e9, neginf=-1e9), 4).tolist()


def _decode_modes(
    d: dict, traj: Trajectory | None, scores: np.ndarray | None
) -> tuple[np.ndarray | None, int]:
    """Validated ``modes`` and ``best_index`` (older senders send neither: ``(None, -1)``)."""
    raw, best = d.get("modes"), d.get("best_index", -1)
    if raw is None or traj is None:
        return None, -1
    modes = np.asarray(raw, dtype=np.float64)
    if modes.ndim != 3 or modes.shape[2] != 3 or modes.shape[1] != len(traj.poses):
        raise ValueError(f"modes must be A x {len(traj.poses)} x 3, got shape {modes.shape}")
    if not np.all(np.isfinite(modes)):
        raise ValueError("modes have non-finite values")
    if scores is None or len(scores) != len(modes):
        raise ValueError("modes need one score each")
    if not isinstance(best, int) or isinstance(best, bool) or not 0 <= best < len(modes):
        raise ValueError(f"best_index {best!r} is not a mode index")
    return modes, best
