"""Compose the drive graph's node classes in one process (``vla-edge drive``, tests, demo).

``ros2 launch vla_edge drive.launch.py`` starts the same classes as separate processes;
here they share one :class:`~rclpy.executors.MultiThreadedExecutor`, whose threads serve the
nodes' callback groups so the arbiter's deadline timer keeps firing while the student runs.

rclpy's ``with rclpy.init():`` does not exist in Humble, so init/shutdown are paired with
try/finally, and KeyboardInterrupt / ExternalShutdownException end the spin cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from vla_edge.nodes.params import as_overrides
from vla_edge.nodes.spin import EXECUTOR_THREADS

log = logging.getLogger(__name__)


class DriveGraph:
    """The inference and arbiter nodes (and the recorder when asked) on one executor.

    Args:
        values: Flat parameter values (``resolve_overrides``) given to every node.
        record: Also compose the recorder node.
        context: rclpy context (tests use their own); the default context otherwise.
        runner: StudentRunner for the inference node (tests inject wrapped backends).
        share_frames: Let the arbiter use the frames the inference node assembles instead of
            converting every sweep again (in-process only; see docs/drive_graph.md).
    """

    def __init__(
        self,
        values: dict[str, Any],
        record: bool = False,
        context: Any | None = None,
        runner: Any | None = None,
        share_frames: bool = False,
    ) -> None:
        from vla_edge.nodes.arbiter_node import ArbiterNode
        from vla_edge.nodes.inference_node import InferenceNode

        overrides = as_overrides(values)
        common: dict[str, Any] = {"parameter_overrides": overrides}
        if context is not None:
            common["context"] = context
        self.nodes: list[Any] = []
        try:
            self.arbiter = ArbiterNode(external_frames=share_frames, **common)
            self.nodes.append(self.arbiter)
            sink = self.arbiter.offer_frame if share_frames else None
            handoff = self.arbiter.offer_candidate if share_frames else None
            self.inference = InferenceNode(runner=runner, frame_sink=sink, candidate_sink=handoff, **common)
            self.nodes.append(self.inference)
            if record:
                from vla_edge.nodes.recorder_node import RecorderNode

                self.nodes.append(RecorderNode(node_name="recorder_node", **common))
        except BaseException:
            self.destroy()
            raise
        self.executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=context)
        for node in self.nodes:
            self.executor.add_node(node)
        self._thread: threading.Thread | None = None

    def spin(self, duration: float | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Spin in this thread until ``duration`` s pass, ``stop()`` is true or shutdown."""
        end = None if duration is None else time.monotonic() + duration
        try:
            while self.executor.context.ok():
                if end is not None and time.monotonic() >= end:
                    break
                if stop is not None and stop():
                    break
                self.executor.spin_once(timeout_sec=0.05)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass

    def start(self) -> DriveGraph:
        """Spin in a background thread (tests, demo); stop with :meth:`stop`."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.spin, kwargs={"stop": self._stop.is_set}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background spin and destroy the nodes."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10.0)
            self._thread = None
        self.destroy()

    def destroy(self) -> None:
        """Destroy every node (idempotent)."""
        if getattr(self, "executor", None) is not None:
            self.executor.shutdown(timeout_sec=2.0)
            self.executor = None
        for node in self.nodes:
            try:
                node.destroy_node()
            except Exception:
                log.debug("destroy_node failed", exc_info=True)
        self.nodes = []


@contextlib.contextmanager
def ros_session(args: list[str] | None = None) -> Iterator[None]:
    """``rclpy.init`` ... ``rclpy.shutdown`` for the CLI (rclpy stays inside ``nodes/``)."""
    rclpy.init(args=args)
    try:
        yield
    finally:
        if rclpy.ok():
            rclpy.shutdown()


def helper_executor(*nodes: Any) -> Any:
    """A SingleThreadedExecutor serving helper nodes (monitor, player) of the CLI and tests."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    return executor


def spin_in_thread(executor: Any, stop: threading.Event, timeout_sec: float = 0.05) -> threading.Thread:
    """Spin ``executor`` in a daemon thread until ``stop`` is set (helpers, demo, bench)."""

    def loop() -> None:
        while not stop.is_set() and executor.context.ok():
            try:
                executor.spin_once(timeout_sec=timeout_sec)
            except (KeyboardInterrupt, ExternalShutdownException):
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread
