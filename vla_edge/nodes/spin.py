"""Console-script entry of one node class (``ros2 run vla_edge arbiter_node``, ``ros2 launch``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from vla_edge.errors import VlaEdgeError
from vla_edge.nodes.supervisor_link import link_to_supervisor

log = logging.getLogger(__name__)

#: Executor threads: LiDAR/odom callbacks, inference, arbiter candidates + loop timer, recorder.
EXECUTOR_THREADS = 6

#: Executor of a node that has a process to itself (``ros2 launch``, ``vla-edge drive --processes N``).
#: Single-threaded: py-spy showed rclpy's MultiThreadedExecutor dispatch loop re-polling the
#: wait set while a callback group is busy, holding the GIL and a core about as long as the
#: model ran (docs/profiling.md); a lone node gains nothing from its worker threads.
PROCESS_EXECUTOR = "single"


def make_executor(kind: str, context: Any | None = None) -> Any:
    """``"single"`` -> SingleThreadedExecutor, ``"multi"`` -> MultiThreadedExecutor(EXECUTOR_THREADS)."""
    from rclpy.executors import SingleThreadedExecutor

    if kind == "single":
        return SingleThreadedExecutor(context=context)
    if kind == "multi":
        return MultiThreadedExecutor(num_threads=EXECUTOR_THREADS, context=context)
    raise ValueError(f"executor kind {kind!r} not in ('single', 'multi')")


def spin_nodes(
    node_classes: Sequence[type], args: list[str] | None = None, executor_kind: str = PROCESS_EXECUTOR
) -> int:
    """Run node classes on one executor until Ctrl-C (console scripts, one process per node).

    ``args`` are the ROS arguments (``--ros-args --params-file ...``) that ``ros2 launch``
    passes; rclpy reads parameter overrides from them. ``executor_kind`` is
    :data:`PROCESS_EXECUTOR` unless a caller knows better (see :func:`make_executor`).
    """
    if link_to_supervisor() is False:
        log.error("the vla-edge drive that started %s has exited; not starting", node_classes)
        return 1
    rclpy.init(args=args)
    nodes: list[Any] = []
    executor = None
    try:
        nodes = [cls() for cls in node_classes]
        executor = make_executor(executor_kind)
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except VlaEdgeError as exc:  # bad config / model: say what to fix, no traceback
        log.error("%s: %s", ", ".join(c.__name__ for c in node_classes), exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        for node in nodes:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
