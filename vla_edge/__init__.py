"""vla_edge: on-vehicle learned planner with a safety arbiter.

The runtime package never imports torch or ``training``; core modules import no rclpy.
"""

__version__ = "0.1.0"
