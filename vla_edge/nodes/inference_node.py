"""Inference node: LiDAR sweep -> Frame -> student -> candidate trajectory.

Callbacks (MultiThreadedExecutor):

* ``sensors`` group (mutually exclusive): odometry, reference path, camera go into the
  :class:`~vla_edge.frame_assembly.FrameAssembler` buffers; a LiDAR sweep is assembled into
  a Frame right away (handed to ``frame_sink`` when composed with the arbiter), put into a
  one-slot mailbox (a frame overwritten before the model took it counts as dropped) and
  the guard condition is triggered.
* ``inference`` group (mutually exclusive): the guard-condition callback takes the newest
  frame, runs the student against ``inference.deadline_ms`` and publishes, in this order,
  ``candidate_info`` (DiagnosticStatus: the encoded :class:`~vla_edge.candidate.Candidate`
  under key ``candidate``, plus readable scores, timing, ages) and ``candidate_trajectory``
  (nav_msgs/Path, best mode, ``base_link`` at the sweep stamp, for RViz and the recorder).

Bad input (malformed cloud, frame that cannot be assembled) skips the frame; a model
exception or a missed deadline withholds the candidate. Both publish an ERROR/WARN status
on ``candidate_info`` (so the arbiter falls back at once instead of waiting for its
deadline) and on ``/diagnostics``; the node keeps running.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from vla_edge import candidate
from vla_edge.config import load_config
from vla_edge.diagnostics import DropCounter, SweepGaps, Thresholds, candidate_status, error_status
from vla_edge.errors import VlaEdgeError
from vla_edge.input_watch import InputWatch, InputWatchConfig
from vla_edge.msgfactory import RclpyFactory, stamp_to_sec
from vla_edge.nodes import messages, qos
from vla_edge.nodes.frames import FrameSource
from vla_edge.nodes.params import declare_drive_parameters, node_topics
from vla_edge.pipeline import DrivePipeline


class SweepMailbox:
    """One-slot, thread-safe holder of the newest unprocessed sweep (its frame)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: tuple[Any, float] | None = None

    def put(self, msg: Any, received: float) -> bool:
        """Store ``msg``; return True when an unprocessed sweep was overwritten (dropped)."""
        with self._lock:
            dropped = self._item is not None
            self._item = (msg, received)
        return dropped

    def take(self) -> tuple[Any, float] | None:
        """Remove and return ``(msg, perf_counter at receipt)``, or None."""
        with self._lock:
            item, self._item = self._item, None
        return item


class InferenceNode(Node):
    """Runs the student on each LiDAR sweep and publishes the candidate.

    Args:
        runner: A ready StudentRunner (tests wrap the real backend); loaded from the
            parameters when None.
        frame_sink: Optional ``frame_sink(frame, conversion_ms)`` for every assembled frame
            (in-process sharing with the arbiter).
        candidate_sink: Optional ``candidate_sink(candidate)`` for every result, usable or not
            (in-process hand-off; the result is published over DDS as well).
        **node_kwargs: Passed to ``rclpy.node.Node`` (``context``, ``parameter_overrides``,
            ``namespace``...).
    """

    def __init__(
        self,
        runner: Any | None = None,
        frame_sink: Any | None = None,
        candidate_sink: Any | None = None,
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_kwargs.pop("node_name", "inference_node"), **node_kwargs)
        self.cfg = declare_drive_parameters(self)
        self.th = Thresholds.from_config(self.cfg)
        topics = node_topics(load_config(self.cfg["topics_config"]))
        # A bad engine disables the student only: the graph still drives on the fallback.
        self.pipeline = DrivePipeline.from_config(
            self.cfg, with_cycle=False, runner=runner, allow_disabled=True
        )
        disabled = getattr(self.pipeline.runner, "reason", None)
        if disabled:
            self.get_logger().error(f"student disabled, Frenet fallback only: {disabled}")
        self._owns_runner = runner is None
        self.deadline_s = float(self.cfg["inference"]["deadline_ms"]) / 1000.0
        self.frames = FrameSource(self, self.cfg, topics, group=MutuallyExclusiveCallbackGroup(), lidar=False)
        self.frame_sink = frame_sink
        self.candidate_sink = candidate_sink
        self.factory = RclpyFactory()
        self.drops = DropCounter(int(self.th.window))
        self.gaps = SweepGaps()
        self.stats = {"sweeps": 0, "candidates": 0, "skipped": 0, "model_errors": 0, "deadline_missed": 0}
        self._mailbox = SweepMailbox()

        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from nav_msgs.msg import Path
        from sensor_msgs.msg import PointCloud2

        out = topics["outputs"]
        self.pub_candidate = self.create_publisher(Path, out["candidate_trajectory"], qos.reliable_qos())
        self.pub_info = self.create_publisher(DiagnosticStatus, out["candidate_info"], qos.reliable_qos())
        self.pub_diag = self.create_publisher(DiagnosticArray, out["diagnostics"], qos.reliable_qos())
        infer_group = MutuallyExclusiveCallbackGroup()
        self._guard = self.create_guard_condition(self._process, callback_group=infer_group)
        self.create_subscription(
            PointCloud2,
            topics["inputs"]["lidar"],
            self._on_lidar,
            # Depth 1: a sweep the node cannot take in time is replaced by the newer one in
            # the DDS queue (never processed late); SweepGaps counts such sweeps as dropped.
            qos.sensor_qos(depth=1),
            callback_group=self.frames.group,
        )
        # A silent LiDAR is reported loudly (log + /diagnostics); InputWatch decides when.
        self.watch = InputWatch(
            InputWatchConfig.from_config(self.cfg), topics["inputs"], self._now(), self.th.hardware_id
        )
        self.create_timer(0.5, self._watch_inputs, callback_group=self.frames.group)
        self.get_logger().info(
            f"inference node ready: backend={getattr(self.pipeline.runner.backend, 'name', '?')} "
            f"engine={getattr(self.pipeline.runner.backend, 'onnx_path', '?')} "
            f"deadline={1000 * self.deadline_s:.0f} ms"
        )

    def destroy_node(self) -> None:
        """Release the model (when this node loaded it), then the node."""
        pipeline = getattr(self, "pipeline", None)  # absent when construction failed
        if getattr(self, "_owns_runner", False) and pipeline is not None and pipeline.runner is not None:
            pipeline.runner.close()
        super().destroy_node()

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _watch_inputs(self) -> None:
        """Publish the InputWatch decision, if one is due (sensor group: no race with _on_lidar)."""
        st = self.watch.poll(self._now(), odometry_seen=len(self.frames.assembler.odometry) > 0)
        if st is None:
            return
        self.pub_diag.publish(messages.array_msg([st], self._now()))
        if st["level"] > 0:
            self.get_logger().error(st["message"])
        else:
            self.get_logger().info(st["message"])

    def _on_lidar(self, msg: Any) -> None:
        """Assemble at once (sensor group), hand the frame on, queue it for the model."""
        received = time.perf_counter()
        self.stats["sweeps"] += 1
        self.watch.lidar(self._now())
        stamp = stamp_to_sec(msg.header.stamp)
        for _ in range(self.gaps.missed(stamp)):
            self.drops.record(True)
        try:
            frame = self.frames.assemble(msg)
        except VlaEdgeError as exc:
            self._skip("frame_assembly", exc, stamp)
            return
        conversion_ms = 1000.0 * (time.perf_counter() - received)
        if self.frame_sink is not None:  # the arbiter gets the frame even while the model is busy
            self.frame_sink(frame, conversion_ms)
        if self._mailbox.put((frame, conversion_ms), received):
            self.drops.record(True)
        self._guard.trigger()

    def _process(self) -> None:
        """Run the student on the newest queued frame (inference group)."""
        item = self._mailbox.take()
        if item is None:
            return
        (frame, conversion_ms), received = item
        self.drops.record(False)
        stamp = frame.stamp
        result = self.pipeline.infer(frame, deadline_s=self.deadline_s, started=received)
        result.timing_ms["conversion"] = conversion_ms
        result.timing_ms["e2e"] = 1000.0 * (time.perf_counter() - received)
        if result.error is not None:
            self.stats["model_errors"] += 1
            self._skip("inference", result.error, stamp, result)
            return
        if result.deadline_missed:
            self.stats["deadline_missed"] += 1
        info = candidate_status(
            stamp,
            result.scores,
            result.timing_ms,
            frame.ages,
            frame.stale,
            self.drops.ratio,
            self.th,
            deadline_missed=result.deadline_missed,
            camera=getattr(self.pipeline.runner, "camera_reason", ""),
        )
        info["values"][candidate.KEY] = candidate.encode(result)
        self._hand_off(result, info)
        if result.usable:
            self.pub_candidate.publish(self.frames.path_msg(result.trajectory))
            self.stats["candidates"] += 1
        self.pub_diag.publish(messages.array_msg([info], stamp))

    def _hand_off(self, result: candidate.Candidate, info: dict[str, Any]) -> None:
        """``candidate_info`` over DDS (arbiter in another process, recorder, monitors), and
        to the composed arbiter in process (it then does not subscribe)."""
        self.pub_info.publish(messages.status_msg(info))
        if self.candidate_sink is not None:
            self.candidate_sink(result)

    def _skip(self, stage: str, error: Any, stamp: float, result: candidate.Candidate | None = None) -> None:
        """Publish why a frame has no candidate; the arbiter plans without one at once."""
        self.stats["skipped"] += 1
        st = error_status(stage, error, stamp, self.th)
        if result is None:
            result = candidate.Candidate(stamp, error=f"{type(error).__name__}: {error}")
        st["values"].update({f"{k}_ms": f"{v:.3f}" for k, v in result.timing_ms.items()})
        st["values"][candidate.KEY] = candidate.encode(result)
        self._hand_off(result, st)
        self.pub_diag.publish(messages.array_msg([st], stamp))
        self.get_logger().warning(st["message"], throttle_duration_sec=2.0)


def main(args: list[str] | None = None) -> int:
    """Console script ``inference_node`` (``ros2 run vla_edge inference_node``)."""
    from vla_edge.nodes.spin import spin_nodes

    return spin_nodes([InferenceNode], args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
