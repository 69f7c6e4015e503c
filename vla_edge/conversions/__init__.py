"""Message <-> numpy conversions for the runtime core (no rclpy import).

Hand-written because ``sensor_msgs_py`` and ``cv_bridge`` cannot be installed from any
reachable registry (ROS distro packages only). Reading duck-types on message fields, so
rclpy messages and rosbags-deserialized messages go through the same code; building uses
a :class:`vla_edge.msgfactory.MessageFactory`. Public entry points::

    from vla_edge.conversions import pointcloud2_to_xyzi, xyzi_to_pointcloud2
    from vla_edge.conversions import image_to_rgb, compressed_to_rgb, to_rgb
    from vla_edge.conversions import odometry_to_ego_state, EgoStateBuffer
    from vla_edge.conversions import trajectory_to_path, trajectory_to_markers

Image helpers import OpenCV lazily (only for YUV and JPEG/PNG).
"""

from __future__ import annotations

from vla_edge.conversions.image import (
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_compressed,
    rgb_to_image,
    to_rgb,
)
from vla_edge.conversions.odometry import (
    EgoSample,
    EgoStateBuffer,
    OdometryBufferConfig,
    OdometryError,
    OdometryExtrapolationError,
    odometry_to_ego_state,
    quaternion_to_yaw,
    yaw_to_quaternion,
)
from vla_edge.conversions.pointcloud import (
    LAYOUTS,
    FieldSpec,
    PointLayout,
    pointcloud2_to_structured,
    pointcloud2_to_xyzi,
    xyzi_to_pointcloud2,
)
from vla_edge.conversions.trajectory import (
    LAYER_COLORS,
    TrajectoryError,
    box_markers,
    delete_all_marker,
    make_marker,
    marker_array,
    path_to_poses,
    path_to_trajectory,
    path_to_xy,
    polyline_markers,
    poses_to_path,
    text_marker,
    trajectory_to_marker_array,
    trajectory_to_markers,
    trajectory_to_path,
)

__all__ = [
    "LAYER_COLORS",
    "LAYOUTS",
    "EgoSample",
    "EgoStateBuffer",
    "FieldSpec",
    "OdometryBufferConfig",
    "OdometryError",
    "OdometryExtrapolationError",
    "PointLayout",
    "TrajectoryError",
    "box_markers",
    "compressed_to_rgb",
    "delete_all_marker",
    "image_to_rgb",
    "make_marker",
    "marker_array",
    "odometry_to_ego_state",
    "path_to_poses",
    "path_to_trajectory",
    "path_to_xy",
    "pointcloud2_to_structured",
    "pointcloud2_to_xyzi",
    "polyline_markers",
    "poses_to_path",
    "quaternion_to_yaw",
    "rgb_to_compressed",
    "rgb_to_image",
    "text_marker",
    "to_rgb",
    "trajectory_to_marker_array",
    "trajectory_to_markers",
    "trajectory_to_path",
    "xyzi_to_pointcloud2",
    "yaw_to_quaternion",
]
