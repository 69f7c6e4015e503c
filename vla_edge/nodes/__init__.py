"""Thin rclpy adapters of the drive graph (see docs/drive_graph.md).

* :mod:`~vla_edge.nodes.inference_node` - LiDAR sweep -> Frame -> student -> candidate;
* :mod:`~vla_edge.nodes.arbiter_node` - candidate + frame -> PlanningCycle -> final trajectory;
* :mod:`~vla_edge.nodes.recorder_node` - the bounded MCAP recorder (issue 7);
* :mod:`~vla_edge.nodes.graph` - compose them in one process;
* :mod:`~vla_edge.nodes.bag_player` - play a rosbag2 over DDS with ``/clock``.

Importing this package does not import rclpy; each node module does.
"""
