"""Message <-> numpy conversions for the runtime core (no rclpy import).

Public entry points::

    from vla_edge.conversions import pointcloud2_to_xyzi, xyzi_to_pointcloud2
"""

from __future__ import annotations

from vla_edge.conversions.pointcloud import (
    LAYOUTS,
    FieldSpec,
    PointLayout,
    pointcloud2_to_structured,
    pointcloud2_to_xyzi,
    xyzi_to_pointcloud2,
)

__all__ = [
    "LAYOUTS",
    "FieldSpec",
    "PointLayout",
    "pointcloud2_to_structured",
    "pointcloud2_to_xyzi",
    "xyzi_to_pointcloud2",
]
