"""Thin rclpy adapters of the drive graph (see docs/drive_graph.md).

* :mod:`~vla_edge.nodes.inference_node` - LiDAR sweep -> Frame -> student -> candidate;
* :mod:`~vla_edge.nodes.arbiter_node` - candidate + frame -> PlanningCycle -> final trajectory;
* :mod:`~vla_edge.nodes.recorder_node` - the bounded MCAP recorder (issue 7);
* :mod:`~vla_edge.nodes.graph` - compose them in one process (``vla-edge drive``);
* :mod:`~vla_edge.nodes.bag_player` - play a rosbag2 over DDS with ``/clock``;
* :mod:`~vla_edge.nodes.feeder`, :mod:`~vla_edge.nodes.monitor` - publish live-like inputs /
  listen to the outputs (demo, benchmark, tests, replay);
* helpers: :mod:`~vla_edge.nodes.frames` (frame input side), :mod:`~vla_edge.nodes.params`
  (``config/drive.yaml`` as ROS parameters), :mod:`~vla_edge.nodes.qos`,
  :mod:`~vla_edge.nodes.messages`.

Importing this package (and the helpers) does not import rclpy; node modules do.
"""

from vla_edge.blas_threads import limit_blas_threads

limit_blas_threads()  # before any node module imports numpy (vla_edge/blas_threads.py says why)
