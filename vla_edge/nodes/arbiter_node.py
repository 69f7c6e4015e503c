"""Arbiter node: moves frames and candidates into a :class:`~vla_edge.drive_loop.DriveLoop`
and publishes what it decides. Every timing rule (deadline, watchdog, superseded frames,
cycle, monotonic stamps) lives in the loop, tested without ROS.

Frames: by default the node assembles its own (LiDAR, odometry, reference path, SensorDataQoS),
so under ``ros2 launch`` it keeps planning when the inference process is frozen or dead. When
composed with the inference node in one process (``vla-edge drive``), ``external_frames=True``
takes that node's frames (:meth:`ArbiterNode.offer_frame`) and results
(:meth:`ArbiterNode.offer_candidate`) in process instead, and ``candidate_info`` is not
subscribed. Candidates over DDS are decoded by :func:`vla_edge.candidate.decode`; a malformed
one is counted and reported on ``/diagnostics``, never raised.

Callback groups: ``sensors`` (frame assembly), ``candidates`` (decode + offer) and ``loop``
(the watchdog timer and a guard condition woken by every offer; the only place that ticks the
loop, so decisions never run in another node's thread). Outputs: ``trajectory`` (reliable),
``decision`` (JSON), ``diagnostics``, ``markers``. A non-finite trajectory is never published.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from vla_edge import candidate as cand_codec
from vla_edge.candidate import Candidate
from vla_edge.config import load_config
from vla_edge.diagnostics import (
    ERROR,
    Thresholds,
    decision_status,
    error_status,
    inputs_status,
    status,
    time_jump_status,
    timing_status,
)
from vla_edge.drive_loop import DriveLoop, LoopDecision
from vla_edge.nodes import messages, qos
from vla_edge.nodes.frames import FrameSource
from vla_edge.nodes.params import declare_drive_parameters, node_topics
from vla_edge.pipeline import DrivePipeline


class ArbiterNode(Node):
    """Decides the final trajectory every cycle, with or without a student candidate.

    Args:
        external_frames: Frames and candidates come in process (:meth:`offer_frame`,
            :meth:`offer_candidate`), not from the LiDAR / ``candidate_info`` topics.
        **node_kwargs: Passed to ``rclpy.node.Node``.
    """

    def __init__(self, external_frames: bool = False, **node_kwargs: Any) -> None:
        super().__init__(node_kwargs.pop("node_name", "arbiter_node"), **node_kwargs)
        self.cfg = declare_drive_parameters(self)
        self.th = Thresholds.from_config(self.cfg)
        topics = node_topics(load_config(self.cfg["topics_config"]))
        self.loop = DriveLoop.from_config(self.cfg, DrivePipeline.from_config(self.cfg, with_runner=False))
        arb = self.cfg["arbiter"]
        self.markers_on = bool(arb["markers"])
        self.markers_period_s = float(arb["markers_period_ms"]) / 1000.0
        self.markers_max_obstacles = int(arb["markers_max_obstacles"])
        self._last_markers = self._last_waiting = -np.inf
        self.decisions: list[dict[str, Any]] = []  # bounded log for the demo / tests
        self.stats = {"cycles": 0, "by_choice": {}, "unpublished_invalid": 0, "watchdog": 0}

        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from nav_msgs.msg import Path
        from std_msgs.msg import String
        from visualization_msgs.msg import MarkerArray

        self.frames = FrameSource(
            self,
            self.cfg,
            topics,
            group=MutuallyExclusiveCallbackGroup(),
            lidar=not external_frames,
            on_frame=self.offer_frame,
            inputs=not external_frames,
        )
        out = topics["outputs"]
        self.pub_traj = self.create_publisher(Path, out["trajectory"], qos.reliable_qos())
        self.pub_decision = self.create_publisher(String, out["decision"], qos.reliable_qos())
        self.pub_diag = self.create_publisher(DiagnosticArray, out["diagnostics"], qos.reliable_qos())
        self.pub_markers = self.create_publisher(MarkerArray, out["markers"], qos.reliable_qos(depth=2))
        if not external_frames:
            self.create_subscription(
                DiagnosticStatus,
                out["candidate_info"],
                self._on_info,
                qos.reliable_qos(),
                callback_group=MutuallyExclusiveCallbackGroup(),
            )
        loop_group = MutuallyExclusiveCallbackGroup()
        period_s = float(arb["watchdog_period_ms"]) / 1000.0
        self.timer = self.create_timer(period_s, self._tick, callback_group=loop_group)
        self._wakeup = self.create_guard_condition(self._tick, callback_group=loop_group)
        self.get_logger().info(
            f"arbiter ready: deadline={1000 * self.loop.deadline_s:.0f} ms, "
            f"cycle={1000 * self.loop.cycle_period_s:.0f} ms, "
            f"frames={'shared in-process' if external_frames else 'own subscription'}"
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # -- inputs: convert, offer, wake the loop --------------------------------------------
    def offer_frame(self, frame: Any, conversion_ms: float | None = None, missed: int = 0) -> None:
        """A newly assembled frame (own LiDAR callback or the inference node's)."""
        self.loop.offer_frame(frame, self._now(), conversion_ms, missed)
        self._wakeup.trigger()

    def offer_candidate(self, candidate: Candidate) -> str | None:
        """In-process hand-off (shared mode): the inference node's result, usable or not.

        Returns why the loop refused it (None: taken)."""
        why = self.loop.offer_candidate(candidate, self._now())
        self._wakeup.trigger()
        return why

    def _on_info(self, msg: Any) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        cand = cand_codec.decode(values.get(cand_codec.KEY))
        why = self.offer_candidate(cand)  # the loop counts a malformed / future one and ignores it
        if why:  # any publisher on the domain may send anything: report, go on
            st = error_status("candidate", why, None, self.th)
            st["values"]["count"] = str(
                self.loop.stats["malformed_candidates"] + self.loop.stats["future_candidates"]
            )
            self._publish_status(st, self._now())
            self.get_logger().warning(f"candidate_info: {why}", throttle_duration_sec=2.0)

    # -- loop -----------------------------------------------------------------------------
    def _tick(self) -> None:
        now = self._now()
        if not self.loop.has_frame:
            self._report_waiting(now)
            return
        for _ in range(3):  # a superseded frame, then the newest one, each with a fresh time
            decided = self.loop.tick(self._now())
            for d in decided:
                self._publish(d)
            if not decided:
                return

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

    def _publish(self, d: LoopDecision) -> None:
        from std_msgs.msg import String

        frame, cand, decision, now = d.slot.frame, d.candidate, d.decision, d.now
        if d.time_jump_s is not None:  # the loop started over: say so before the decision
            jump = time_jump_status(d.time_jump_s, self.loop.time_jump_s, frame.stamp, self.th)
            self._publish_status(jump, now)
            self.get_logger().warning(f"clock jumped back {d.time_jump_s:.3f} s: drive loop reset")
        if decision is None:  # the cycle raised (PlanningCycle already turns stage errors into stops)
            self._publish_status(error_status("arbiter", d.error or "", frame.stamp, self.th), now)
            self.get_logger().error(f"planning cycle failed: {d.error}")
            return
        if not decision.trajectory.is_finite():  # never publish an invalid trajectory
            self.stats["unpublished_invalid"] += 1
            self._publish_status(
                error_status("arbiter", "non-finite final trajectory withheld", frame.stamp, self.th), now
            )
            return
        # The trajectory goes out first; the records below are for people and the recorder.
        self.pub_traj.publish(self.frames.path_msg(decision.trajectory))
        rec = decision.to_dict()
        rec.update(
            trigger=d.trigger,
            frame_stamp=frame.stamp,
            candidate_stamp=None if cand is None else cand.stamp,
            now=now,
            frame_rx=d.slot.rx,
        )
        self.pub_decision.publish(String(data=json.dumps(rec, default=_json_default)))
        self.stats["cycles"] += 1
        self.stats["watchdog"] += d.trigger in ("watchdog", "superseded")
        by = self.stats["by_choice"]
        by[decision.choice] = by.get(decision.choice, 0) + 1
        self.decisions.append(
            {"choice": decision.choice, "reasons": list(decision.reasons), "stamp": frame.stamp}
        )
        del self.decisions[:-1000]

        timing = cand.timing_ms if cand is not None and cand.stamp == frame.stamp else {}
        stages = {
            "conversion": d.slot.conversion_ms,
            "pillarization": timing.get("pillarize"),
            "inference": timing.get("inference"),
            "arbiter": d.arbiter_ms,  # after the candidate: decide (+ prepare if not done ahead)
        }
        ages = {k: float(v) for k, v in frame.ages.items()}
        ages["lidar"] = now - frame.stamp
        if cand is not None:
            ages["candidate"] = now - cand.stamp
        statuses = [
            decision_status(rec, self.th),
            timing_status(stages, timing.get("inference"), self.th),
            inputs_status(ages, frame.stale, self.loop.drops.ratio, self.th),
        ]
        self.pub_diag.publish(messages.array_msg(statuses, now))
        if self.markers_on and now - self._last_markers >= self.markers_period_s:
            self._last_markers = now
            self.pub_markers.publish(
                self.frames.markers_msg(frame, cand, decision, max_obstacles=self.markers_max_obstacles)
            )

    def _publish_status(self, status: dict[str, Any], now: float) -> None:
        self.pub_diag.publish(messages.array_msg([status], now))


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
    from vla_edge.nodes.spin import spin_nodes

    return spin_nodes([ArbiterNode], args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
