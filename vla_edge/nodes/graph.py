"""Compose the drive graph's node classes in one process (``vla-edge drive``, tests, demo).

``ros2 launch vla_edge drive.launch.py`` starts the same classes as separate processes;
here each node gets a :class:`~rclpy.executors.SingleThreadedExecutor` on a thread of its
own, as each process does under ``ros2 launch``, so the arbiter's deadline timer keeps firing
while the student runs. Not one shared MultiThreadedExecutor: its dispatch loop re-polls the
wait set while a callback group is busy and holds the GIL about as long as the model runs
(docs/profiling.md), which made the in-process graph miss every deadline in realtime replay.

rclpy's ``with rclpy.init():`` does not exist in Humble, so init/shutdown are paired with
try/finally, and KeyboardInterrupt / ExternalShutdownException end the spin cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException

from vla_edge.nodes.params import as_overrides
from vla_edge.nodes.spin import EXECUTOR_THREADS, PROCESS_EXECUTOR, make_executor  # noqa: F401 - re-exported
from vla_edge.nodes.supervisor_link import SUPERVISOR_ENV
from vla_edge.params import unflatten

log = logging.getLogger(__name__)


class DriveGraph:
    """The inference and arbiter nodes (and the recorder when asked), one executor thread each.

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
        self.executors = [make_executor("single", context) for _ in self.nodes]
        for executor, node in zip(self.executors, self.nodes, strict=True):
            executor.add_node(node)
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()
        self._errors: list[BaseException] = []

    def _spin_node(self, executor: Any) -> None:
        """One node's executor until the graph halts; a callback's exception halts the graph."""
        try:
            while executor.context.ok() and not self._halt.is_set():
                executor.spin_once(timeout_sec=0.05)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception as exc:  # noqa: BLE001 - re-raised by spin(), as the one executor's spin did
            self._errors.append(exc)
        finally:
            self._halt.set()

    def spin(self, duration: float | None = None, stop: Callable[[], bool] | None = None) -> None:
        """Spin every node until ``duration`` s pass, ``stop()`` is true or shutdown.

        Raises:
            BaseException: What a node callback raised (the graph is stopped first).
        """
        end = None if duration is None else time.monotonic() + duration
        self._halt.clear()
        self._errors.clear()
        threads = [
            threading.Thread(target=self._spin_node, args=(ex,), name=f"spin-{node.get_name()}", daemon=True)
            for ex, node in zip(self.executors, self.nodes, strict=True)
        ]
        for t in threads:
            t.start()
        try:
            while not self._halt.is_set() and all(ex.context.ok() for ex in self.executors):
                if end is not None and time.monotonic() >= end:
                    break
                if stop is not None and stop():
                    break
                self._halt.wait(0.05)
        except KeyboardInterrupt:
            pass
        finally:
            self._halt.set()
            for t in threads:
                t.join(timeout=10.0)
        if self._errors:
            raise self._errors[0]

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
        for executor in getattr(self, "executors", []):
            executor.shutdown(timeout_sec=2.0)
        self.executors = []
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


#: Node executables of the drive graph, in start order (the recorder only with ``record``).
NODE_MODULES = {
    "inference_node": "vla_edge.nodes.inference_node",
    "arbiter_node": "vla_edge.nodes.arbiter_node",
    "recorder_node": "vla_edge.nodes.recorder_node",
}


def node_commands(
    values: dict[str, Any], params_file: str, record: bool, ros_args: Sequence[str] = ()
) -> dict[str, list[str]]:
    """The command of each node process: what ``ros2 launch`` runs, with one params file.

    ``values`` (written to ``params_file`` by :class:`NodeProcesses`) are complete, so every
    process sees exactly the parameters a one-process ``vla-edge drive`` would.
    """
    names = [n for n in NODE_MODULES if record or n != "recorder_node"]
    return {
        n: [
            sys.executable,
            "-m",
            NODE_MODULES[n],
            "--ros-args",
            "-r",
            f"__node:={n}",
            "--params-file",
            params_file,
        ]
        for n in names
    }


class NodeProcesses:
    """The drive graph as one process per node, as ``ros2 launch`` starts it.

    Each process runs its node on a :data:`PROCESS_EXECUTOR` executor, with its own GIL,
    so the model's process never waits for the arbiter's Python (docs/profiling.md).

    Args:
        values: Flat parameter values (``resolve_overrides``), written to one params file.
        record: Also start the recorder node.
        workdir: Where the params file goes (a temporary folder by default).
        output: File object the children's stdout/stderr go to (None = inherit).
        ros_args: More ROS arguments for every process (e.g. ``["--log-level", "warn"]``).
    """

    def __init__(
        self,
        values: dict[str, Any],
        record: bool = False,
        workdir: str | None = None,
        output: Any = None,
        ros_args: Sequence[str] = (),
    ) -> None:
        import os
        import subprocess
        import tempfile

        import yaml

        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="vla_edge_drive_")
        folder = workdir or self._tmp.name  # type: ignore[union-attr]
        self.params_file = os.path.join(folder, "drive_params.yaml")
        with open(self.params_file, "w", encoding="utf-8") as fh:
            yaml.safe_dump({"/**": {"ros__parameters": unflatten(values)}}, fh, sort_keys=False)
        self.commands = node_commands(values, self.params_file, record, ros_args)
        self.procs: dict[str, subprocess.Popen] = {}
        # The children end with this process even when it is SIGKILLed (supervisor_link.py).
        env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
        try:
            for name, cmd in self.commands.items():
                self.procs[name] = subprocess.Popen(cmd, env=env, stdout=output, stderr=output)
        except BaseException:
            self.stop()
            raise

    def poll(self) -> dict[str, int]:
        """Exit codes of the processes that have ended (empty while all run)."""
        return {n: rc for n, p in self.procs.items() if (rc := p.poll()) is not None}

    def wait(self, duration: float | None = None) -> dict[str, int]:
        """Block until ``duration`` s pass (None = forever) or a process ends; return ``poll()``."""
        end = None if duration is None else time.monotonic() + duration
        while not self.poll() and (end is None or time.monotonic() < end):
            time.sleep(0.1)
        return self.poll()

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """SIGINT every process (as Ctrl-C under ros2 launch), kill stragglers; return exit codes."""
        import signal
        import subprocess

        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        codes: dict[str, int] = {}
        for n, p in self.procs.items():
            try:
                codes[n] = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killed", n, timeout)
                p.kill()
                codes[n] = p.wait(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return codes
