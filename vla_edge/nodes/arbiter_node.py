"""Arbiter node: latest candidate + latest frame -> PlanningCycle -> /planning/trajectory.

Where the Frame comes from: the arbiter assembles its own (it subscribes to the same
LiDAR, odometry and reference path with SensorDataQoS), so it works with DDS only when the
nodes run as separate processes (``ros2 launch``) and keeps planning when the inference
node is dead. The price is a second PointCloud2 conversion per sweep. When both nodes are
composed in one process (``vla-edge drive``), ``external_frames=True`` makes the arbiter use
the frames the inference node assembles (:meth:`ArbiterNode.offer_frame`) and take its
results directly (:meth:`ArbiterNode.offer_candidate`) instead.

Callback groups (all mutually exclusive, served by a MultiThreadedExecutor):

* ``sensors``: odometry, reference path, LiDAR -> frame assembly;
* ``candidates``: ``candidate_trajectory`` (Path) and ``candidate_info`` (DiagnosticStatus);
* ``deadline``: the watchdog timer and a guard condition woken by new frames and by
  in-process candidates (so decisions never run in another node's callback thread).

When a frame arrives the frame-only half of the cycle (obstacles, tracking, Frenet:
``PlanningCycle.prepare``) runs at once in the deadline group, while the model runs; the
candidate then only waits for the student checks and arbitration (``decide``, a few ms).
A cycle runs as soon as the candidate of the newest frame arrives (or the inference node
reports it has none), else when ``arbiter.deadline_ms`` after the sweep have passed (the
watchdog: it then plans with the latest older candidate, which the cycle judges by age, or
none), when a newer sweep supersedes it, and at least every ``arbiter.cycle_period_ms`` on
the latest frame even without new sweeps. A cycle lock serialises the triggers.
Outputs: ``/planning/trajectory`` (reliable), ``/vla_edge/decision`` (JSON), ``/diagnostics``,
``/vla_edge/markers``.
A decision whose trajectory is not finite is never published.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from vla_edge.config import load_config
from vla_edge.conversions.trajectory import path_to_trajectory
from vla_edge.diagnostics import (
    ERROR,
    DropCounter,
    Thresholds,
    decision_status,
    error_status,
    inputs_status,
    status,
    timing_status,
)
from vla_edge.errors import ConversionError
from vla_edge.nodes import messages, qos
from vla_edge.nodes.frames import FrameSource
from vla_edge.nodes.params import declare_drive_parameters
from vla_edge.pipeline import Candidate, DrivePipeline
from vla_edge.types import Frame

_INFO_KEEP = 16  # candidate_info entries kept to pair scores/timing with candidates


class ArbiterNode(Node):
    """Decides the final trajectory every cycle, with or without a student candidate.

    Args:
        external_frames: Do not subscribe to the LiDAR; frames come via :meth:`offer_frame`.
        **node_kwargs: Passed to ``rclpy.node.Node``.
    """

    def __init__(self, external_frames: bool = False, **node_kwargs: Any) -> None:
        super().__init__(node_kwargs.pop("node_name", "arbiter_node"), **node_kwargs)
        self.cfg = declare_drive_parameters(self)
        self.th = Thresholds.from_config(self.cfg)
        topics = load_config(self.cfg["topics_config"])
        self.pipeline = DrivePipeline.from_config(self.cfg, with_runner=False)
        arb = self.cfg["arbiter"]
        self.deadline_s = float(arb["deadline_ms"]) / 1000.0
        self.cycle_period_s = float(arb["cycle_period_ms"]) / 1000.0
        self.prepare_ahead = bool(arb["prepare_ahead"])
        self.markers_on = bool(arb["markers"])
        self.markers_period_s = float(arb["markers_period_ms"]) / 1000.0
        self.markers_max_obstacles = int(arb["markers_max_obstacles"])
        self._last_markers = -np.inf

        self._lock = threading.RLock()  # slots: frame, candidate, infos, planned stamp
        self._cycle_lock = threading.Lock()  # PlanningCycle state (prepare / decide); after _lock
        self._frame: Frame | None = None
        self._frame_rx = 0.0  # node-clock time (s) the frame arrived
        self._frame_conversion_ms: float | None = None
        self._superseded: tuple[Frame, float, float | None] | None = None  # (frame, rx, conversion)
        self._planned_stamp: float | None = None
        self._prepared: Any = None  # PlanningCycle.prepare() of the newest frame (while the model runs)
        self._last_plan = -np.inf
        self._last_waiting = -np.inf
        self._candidate: Candidate | None = None
        self._infos: OrderedDict[float, dict[str, Any]] = OrderedDict()
        self._no_candidate: set[float] = set()
        self.drops = DropCounter(int(self.th.window))
        self.decisions: list[dict[str, Any]] = []  # bounded log for the demo / tests
        self.stats = {"cycles": 0, "by_choice": {}, "unpublished_invalid": 0, "watchdog": 0}

        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from nav_msgs.msg import Path
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        sensors = MutuallyExclusiveCallbackGroup()
        self.frames = FrameSource(
            self,
            self.cfg,
            topics,
            group=sensors,
            lidar=not external_frames,
            on_frame=self.offer_frame,
            inputs=not external_frames,
        )
        out = topics["outputs"]
        self.pub_traj = self.create_publisher(Path, out["trajectory"], qos.reliable_qos())
        self.pub_decision = self.create_publisher(String, out["decision"], qos.reliable_qos())
        self.pub_diag = self.create_publisher(DiagnosticArray, out["diagnostics"], qos.reliable_qos())
        self.pub_markers = self.create_publisher(MarkerArray, out["markers"], qos.reliable_qos(depth=2))
        candidates = MutuallyExclusiveCallbackGroup()
        self.create_subscription(
            Path,
            out["candidate_trajectory"],
            self._on_candidate,
            qos.reliable_qos(),
            callback_group=candidates,
        )
        self.create_subscription(
            DiagnosticStatus,
            out["candidate_info"],
            self._on_info,
            qos.reliable_qos(),
            callback_group=candidates,
        )
        deadline_group = MutuallyExclusiveCallbackGroup()
        self.timer = self.create_timer(
            float(arb["watchdog_period_ms"]) / 1000.0, self._on_timer, callback_group=deadline_group
        )
        self._wakeup = self.create_guard_condition(self._on_wakeup, callback_group=deadline_group)
        self.get_logger().info(
            f"arbiter ready: deadline={1000 * self.deadline_s:.0f} ms, "
            f"cycle={1000 * self.cycle_period_s:.0f} ms, "
            f"frames={'shared in-process' if external_frames else 'own subscription'}"
        )

    # -- inputs ---------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def offer_frame(self, frame: Frame, conversion_ms: float | None = None, missed: int = 0) -> None:
        """Take a newly assembled frame (own LiDAR callback or the inference node's).

        A previous frame that is still undecided (its candidate and its deadline both still
        pending) is decided right away (guard condition, deadline group) without waiting
        longer: every sweep gets a plan within one sweep period even when the timer runs late.
        """
        with self._lock:
            if self._frame is not None and self._planned_stamp != self._frame.stamp:
                # Overload: a still-pending older frame is dropped (only the newest waits).
                if self._superseded is not None:
                    missed += 1
                self._superseded = (self._frame, self._frame_rx, self._frame_conversion_ms)
            for _ in range(missed):
                self.drops.record(True)
            self.drops.record(False)
            self._frame = frame
            self._frame_rx = self._now()
            self._frame_conversion_ms = conversion_ms
        # Decide in the arbiter's own (deadline) group, not in the caller's thread, which
        # may be the inference node's sensor callback.
        self._wakeup.trigger()

    def _on_wakeup(self) -> None:
        with self._lock:
            pending, self._superseded = self._superseded, None
            if pending is not None and self._planned_stamp != pending[0].stamp:
                self._plan("superseded", slot=pending)
        self._prepare_newest()  # outside the slot lock: candidates can still be taken meanwhile
        with self._lock:
            trigger = self._ready_trigger()
        if trigger:
            self._plan(trigger)

    def _prepare_newest(self) -> None:
        """Obstacles, tracking and Frenet of the newest frame, before its candidate arrives.

        Runs in the deadline group right after the frame arrives, in parallel with the model
        (ONNX Runtime releases the GIL), so a cycle triggered by the candidate only runs the
        student checks and the arbitration (``PlanningCycle.decide``). Holds only the cycle
        lock, so candidates and frames are still accepted meanwhile. Off with
        ``arbiter.prepare_ahead: false`` (then the whole cycle runs after the candidate).
        """
        if not self.prepare_ahead:
            return
        with self._lock:
            frame = self._frame
            if frame is None or self._planned_stamp == frame.stamp:
                return
            if self._prepared is not None and self._prepared.frame is frame:
                return
        with self._cycle_lock:
            if self._prepared is not None and self._prepared.frame is frame:
                return
            try:
                # Stored under the cycle lock, which _plan() holds while it reads it.
                self._prepared = self.pipeline.prepare(frame, self._now())
            except Exception as exc:  # noqa: BLE001 - a planner bug must not kill the node
                self.get_logger().error(f"planning prepare failed: {type(exc).__name__}: {exc}")

    def _ready_trigger(self) -> str:
        """``candidate``/``no_candidate`` when the newest undecided frame can be decided, else ''."""
        frame = self._frame
        if frame is None or self._planned_stamp == frame.stamp or not self._candidate_ready(frame.stamp):
            return ""
        return "no_candidate" if round(frame.stamp, 6) in self._no_candidate else "candidate"

    def _candidate_ready(self, stamp: float) -> bool:
        cand = self._candidate
        return (cand is not None and abs(cand.stamp - stamp) < 1e-6) or round(stamp, 6) in self._no_candidate

    def _on_candidate(self, msg: Any) -> None:
        try:
            traj = path_to_trajectory(msg, source="student")
        except ConversionError as exc:
            self._publish_status(error_status("candidate", exc, None, self.th), self._now())
            return
        info = self._infos.get(round(traj.stamp, 6), {})
        scores = info.get("scores")
        cand = Candidate(
            traj, traj.stamp, None if scores is None else np.asarray(scores), info.get("timing", {})
        )
        with self._lock:
            if self._candidate is None or cand.stamp >= self._candidate.stamp:
                self._candidate = cand
            trigger = self._ready_trigger()
        if trigger:
            self._plan(trigger)

    def offer_candidate(self, candidate: Candidate | None, status: dict[str, Any]) -> None:
        """In-process hand-off (shared mode): the inference node's result without DDS.

        The same result also arrives over DDS; whichever comes first triggers the cycle.
        """
        stamp = self._take_info(status)
        if stamp is None:
            return
        if candidate is not None:
            with self._lock:
                if self._candidate is None or candidate.stamp >= self._candidate.stamp:
                    self._candidate = candidate
        self._wakeup.trigger()

    def _on_info(self, msg: Any) -> None:
        stamp = self._take_info(messages.status_dict(msg))
        if stamp is None:
            return
        with self._lock:
            ready = (
                stamp in self._no_candidate
                and self._frame is not None
                and abs(self._frame.stamp - stamp) < 1e-6
                and self._planned_stamp != self._frame.stamp
            )
        if ready:
            self._plan("no_candidate")

    def _take_info(self, st: dict[str, Any]) -> float | None:
        """Keep scores/timing of a ``candidate_info`` status; note sweeps without candidate."""
        values = st["values"]
        try:
            stamp = round(float(values["stamp"]), 6)
        except (KeyError, ValueError):
            return None
        timing = {k[:-3]: float(v) for k, v in values.items() if k.endswith("_ms") and _is_float(v)}
        scores = json.loads(values["scores"]) if "scores" in values else None
        with self._lock:
            self._infos[stamp] = {"scores": scores, "timing": timing, "status": st}
            while len(self._infos) > _INFO_KEEP:
                self._infos.popitem(last=False)
            failed = st["name"] == "vla_edge/input_error" or values.get("deadline_missed") == "True"
            if failed:
                self._no_candidate.add(stamp)
                if len(self._no_candidate) > _INFO_KEEP:
                    self._no_candidate.discard(min(self._no_candidate))
        return stamp

    def _on_timer(self) -> None:
        now = self._now()
        with self._lock:
            if self._frame is None:
                self._report_waiting(now)
                return
            if self._planned_stamp != self._frame.stamp:
                due = now - self._frame_rx >= self.deadline_s
                trigger = "watchdog"
            else:
                due = now - self._last_plan >= self.cycle_period_s
                trigger = "cycle"
        if due:
            self._plan(trigger)

    def _report_waiting(self, now: float) -> None:
        """No frame yet: nothing to plan on; say so on /diagnostics once per second."""
        if now - self._last_waiting < 1.0:
            return
        self._last_waiting = now
        st = status(
            "vla_edge/inputs",
            ERROR,
            "no LiDAR frame yet: no trajectory is published (check the LiDAR topic, odometry, calibration)",
            {"stale": ["lidar"]},
            self.th.hardware_id,
        )
        self._publish_status(st, now)

    # -- cycle ----------------------------------------------------------------------------
    def _plan(self, trigger: str, slot: tuple[Frame, float, float | None] | None = None) -> None:
        """Run one cycle on the newest frame (or ``slot``) with the latest candidate, publish."""
        with self._lock:
            if slot is None:
                if self._frame is None:
                    return
                slot = (self._frame, self._frame_rx, self._frame_conversion_ms)
            frame = slot[0]
            if trigger in ("candidate", "no_candidate") and self._planned_stamp == frame.stamp:
                return  # already planned this frame (e.g. by the watchdog)
            cand = self._candidate
            now = self._now()
            t0 = time.perf_counter()
            try:
                # plan() re-prepares when the prepared frame is not this one.
                with self._cycle_lock:
                    decision = self.pipeline.plan(frame, cand, now, prepared=self._prepared)
            except Exception as exc:  # noqa: BLE001 - a planner bug must not kill the node
                self._publish_status(error_status("arbiter", exc, frame.stamp, self.th), now)
                self.get_logger().error(f"planning cycle failed: {type(exc).__name__}: {exc}")
                self._planned_stamp, self._last_plan = frame.stamp, now
                return
            arbiter_ms = 1000.0 * (time.perf_counter() - t0)
            self._planned_stamp, self._last_plan = frame.stamp, now
            if trigger in ("watchdog", "superseded"):
                self.stats["watchdog"] += 1
            self._publish(slot, cand, decision, now, arbiter_ms, trigger)

    def _publish(
        self,
        slot: tuple[Frame, float, float | None],
        cand: Candidate | None,
        decision: Any,
        now: float,
        arbiter_ms: float,
        trigger: str,
    ) -> None:
        from std_msgs.msg import String

        frame, frame_rx, conversion_ms = slot
        if not decision.trajectory.is_finite():  # never publish an invalid trajectory
            self.stats["unpublished_invalid"] += 1
            self._publish_status(
                error_status("arbiter", "non-finite final trajectory withheld", frame.stamp, self.th), now
            )
            return
        # The trajectory goes out first; the records below are for people and the recorder.
        self.pub_traj.publish(self.frames.path_msg(decision.trajectory))
        d = decision.to_dict()
        d["trigger"] = trigger
        d["frame_stamp"] = frame.stamp
        d["candidate_stamp"] = None if cand is None else cand.stamp
        d["now"] = now
        d["frame_rx"] = frame_rx
        self.pub_decision.publish(String(data=json.dumps(d, default=_json_default)))
        self.stats["cycles"] += 1
        by = self.stats["by_choice"]
        by[decision.choice] = by.get(decision.choice, 0) + 1
        self.decisions.append(
            {"choice": decision.choice, "reasons": list(decision.reasons), "stamp": frame.stamp}
        )
        del self.decisions[:-1000]

        info = (
            self._infos.get(round(frame.stamp, 6), {})
            if cand is not None and cand.stamp == frame.stamp
            else {}
        )
        timing = info.get("timing", {})
        stages = {
            "conversion": conversion_ms,
            "pillarization": timing.get("pillarize"),
            "inference": timing.get("inference"),
            "arbiter": arbiter_ms,  # after the candidate: decide (+ prepare if not done ahead)
        }
        statuses = [
            decision_status(d, self.th),
            timing_status(stages, timing.get("inference"), self.th),
            inputs_status(self._ages(frame, cand, now), frame.stale, self._drop_ratio(info), self.th),
        ]
        self.pub_diag.publish(messages.array_msg(statuses, now))
        if self.markers_on and now - self._last_markers >= self.markers_period_s:
            self._last_markers = now
            self.pub_markers.publish(
                self.frames.markers_msg(frame, cand, decision, max_obstacles=self.markers_max_obstacles)
            )

    def _ages(self, frame: Frame, cand: Candidate | None, now: float) -> dict[str, float]:
        ages = {k: float(v) for k, v in frame.ages.items()}
        ages["lidar"] = now - frame.stamp
        if cand is not None:
            ages["candidate"] = now - cand.stamp
        return ages

    def _drop_ratio(self, info: dict[str, Any]) -> float:
        status = info.get("status")
        if status is not None and _is_float(status["values"].get("frame_drop_ratio", "")):
            return max(self.drops.ratio, float(status["values"]["frame_drop_ratio"]))
        return self.drops.ratio

    def _publish_status(self, status: dict[str, Any], now: float) -> None:
        self.pub_diag.publish(messages.array_msg([status], now))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set):
        return sorted(obj)
    return str(obj)


def main(args: list[str] | None = None) -> int:
    """Console script ``arbiter_node`` (``ros2 run vla_edge arbiter_node``)."""
    from vla_edge.nodes.graph import spin_nodes

    return spin_nodes([ArbiterNode], args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
