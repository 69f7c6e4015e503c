"""Console-script entry of one node class (``ros2 run vla_edge arbiter_node``, ``ros2 launch``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from vla_edge.errors import VlaEdgeError

log = logging.getLogger(__name__)

#: Executor threads: LiDAR/odom callbacks, inference, arbiter candidates + loop timer, recorder.
EXECUTOR_THREADS = 6


def spin_nodes(node_classes: Sequence[type], args: list[str] | None = None) -> int:
    """Run node classes on a MultiThreadedExecutor until Ctrl-C (console scripts).

    ``args`` are the ROS arguments (``--ros-args --params-file ...``) that ``ros2 launch``
    passes; rclpy reads parameter overrides from them.
    """
    rclpy.init(args=args)
    nodes: list[Any] = []
    executor = None
    try:
        nodes = [cls() for cls in node_classes]
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
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
