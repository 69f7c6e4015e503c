"""Listener of the drive graph's outputs (demo, benchmark, tests).

Subscribes to the final trajectory, the decision JSON, ``/diagnostics`` and
``candidate_info`` and keeps what arrived with its wall receipt time, keyed by the frame
stamp, so end-to-end latency (LiDAR publish -> ``/planning/trajectory`` receipt) can be
computed by whoever published the sweep.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
from rclpy.node import Node

from vla_edge.msgfactory import stamp_to_sec
from vla_edge.nodes import messages, qos


class GraphMonitor(Node):
    """Records outputs of the drive graph.

    Args:
        topics: Parsed ``topics.yaml``.
        **node_kwargs: Passed to ``rclpy.node.Node``.
    """

    def __init__(
        self, topics: dict[str, Any], node_name: str = "vla_edge_monitor", **node_kwargs: Any
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from nav_msgs.msg import Path
        from std_msgs.msg import String

        out = topics["outputs"]
        self.lock = threading.Lock()
        self.trajectories: list[dict[str, Any]] = []  # {stamp, rx, poses, n}
        self.first_rx: dict[float, float] = {}  # frame stamp -> first trajectory receipt (wall)
        self.decisions: list[dict[str, Any]] = []
        self.diagnostics: list[dict[str, Any]] = []
        self.infos: list[dict[str, Any]] = []
        self.statuses_by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.sub_traj = self.create_subscription(Path, out["trajectory"], self._on_traj, qos.reliable_qos(50))
        self.sub_dec = self.create_subscription(
            String, out["decision"], self._on_decision, qos.reliable_qos(50)
        )
        self.sub_diag = self.create_subscription(
            DiagnosticArray, out["diagnostics"], self._on_diag, qos.reliable_qos(50)
        )
        self.sub_info = self.create_subscription(
            DiagnosticStatus, out["candidate_info"], self._on_info, qos.reliable_qos(50)
        )

    def _on_traj(self, msg: Any) -> None:
        rx = time.time()
        stamp = round(stamp_to_sec(msg.header.stamp), 6)
        poses = np.array([[p.pose.position.x, p.pose.position.y, p.pose.position.z] for p in msg.poses])
        with self.lock:
            self.trajectories.append(
                {"stamp": stamp, "rx": rx, "poses": poses, "frame_id": msg.header.frame_id}
            )
            self.first_rx.setdefault(stamp, rx)

    def _on_decision(self, msg: Any) -> None:
        d = json.loads(msg.data)
        d["rx"] = time.time()
        with self.lock:
            self.decisions.append(d)

    def _on_diag(self, msg: Any) -> None:
        with self.lock:
            for st in msg.status:
                d = messages.status_dict(st)
                self.diagnostics.append(d)
                self.statuses_by_name[d["name"]].append(d)

    def _on_info(self, msg: Any) -> None:
        with self.lock:
            self.infos.append(messages.status_dict(msg))

    def matched(self, topics: list[str] | None = None) -> bool:
        """True when every output subscription has a matched publisher."""
        subs = [self.sub_traj, self.sub_dec, self.sub_diag, self.sub_info]
        return all(s.get_publisher_count() > 0 for s in subs)

    def latencies_ms(self, published: dict[float, float]) -> np.ndarray:
        """End-to-end latencies (ms) for sweeps published at ``published[stamp]`` (wall s)."""
        with self.lock:
            return np.array(
                [1000.0 * (self.first_rx[s] - t) for s, t in published.items() if s in self.first_rx],
                dtype=float,
            )
