"""Rosbag replay validation: lockstep and realtime replay, metrics, regression gate, report.

* :mod:`~vla_edge.replay.lockstep` - frames rebuilt from bags in stamp order, run through
  the arbiter's :class:`~vla_edge.drive_loop.DriveLoop` with a fixed noise seed and a
  simulated clock (no DDS, no drops, same inputs -> same ``metrics.json``);
* realtime replay (the bag played over DDS with ``/clock`` into the live graph) is ROS
  transport and lives in :mod:`vla_edge.nodes.realtime_replay`; it reuses this package's
  records and metrics;
* :mod:`~vla_edge.replay.metrics` - open-loop ADE/FDE, decisions, comfort, latency,
  ground-truth collision/TTC (pure numpy);
* :mod:`~vla_edge.replay.gate` - A vs B comparison and the regression gate;
* :mod:`~vla_edge.replay.report` - one self-contained HTML report plus PNG plots.

Importing this package imports neither rclpy nor torch. See ``docs/replay.md``.
"""

from __future__ import annotations

from vla_edge.errors import VlaEdgeError


class ReplayError(VlaEdgeError):
    """Replay cannot run or compare: bad arguments, unusable bags, incomparable runs."""


__all__ = ["ReplayError"]
