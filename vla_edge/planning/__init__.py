"""Safety layer: reference path, LiDAR obstacles, Frenet fallback, checks, arbiter, emergency stop.

Pure numpy (no rclpy, no torch). Entry point: :class:`PlanningCycle`; see ``docs/safety.md``.
"""

from __future__ import annotations

from vla_edge.planning.arbiter import (
    CHOICES,
    Arbiter,
    ArbiterDecision,
    ArbiterInputs,
    ArbiterParams,
    CheckResult,
)
from vla_edge.planning.cycle import PlanningCycle, PreparedFrame, load_planning_config
from vla_edge.planning.emergency import EmergencyParams, emergency_stop
from vla_edge.planning.frenet import FrenetParams, FrenetPlanner, FrenetResult
from vla_edge.planning.obstacles import Footprint, ObstacleParams, Obstacles, extract_obstacles
from vla_edge.planning.reference_path import ReferencePath, ReferencePathParams
from vla_edge.planning.tracking import ClusterTracker, TrackingParams

__all__ = [
    "CHOICES",
    "Arbiter",
    "ArbiterDecision",
    "ArbiterInputs",
    "ArbiterParams",
    "CheckResult",
    "ClusterTracker",
    "EmergencyParams",
    "Footprint",
    "FrenetParams",
    "FrenetPlanner",
    "FrenetResult",
    "ObstacleParams",
    "Obstacles",
    "PlanningCycle",
    "PreparedFrame",
    "ReferencePath",
    "ReferencePathParams",
    "TrackingParams",
    "emergency_stop",
    "extract_obstacles",
    "load_planning_config",
]
