"""Bounded-queue rosbag2 MCAP recorder: splits, ring budget, event windows (no rclpy).

See ``docs/recording.md`` for the guarantees and ``config/recorder.yaml`` for the keys.
"""

from __future__ import annotations

from vla_edge.recording.events import EventBook, EventDetector, Trigger, divergence
from vla_edge.recording.recorder import Recorder, RecorderStatus, TopicSpec, topic_specs
from vla_edge.recording.splits import RingBudget, SplitInfo, SplitPolicy

__all__ = [
    "EventBook",
    "EventDetector",
    "Recorder",
    "RecorderStatus",
    "RingBudget",
    "SplitInfo",
    "SplitPolicy",
    "TopicSpec",
    "Trigger",
    "divergence",
    "topic_specs",
]
