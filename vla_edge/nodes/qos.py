"""QoS profiles of the drive graph (one place, so publishers and subscribers agree).

* Inputs (LiDAR, camera, odometry, reference path) use SensorDataQoS: best effort, keep
  last 5, volatile. A best-effort reader matches both best-effort and reliable writers,
  which avoids the classic "sensor publishes best effort, subscriber never fires" trap.
  A latched (transient-local) reference path is not replayed to a volatile reader; route
  planners republish it periodically.
* Outputs (candidate, final trajectory, decision, diagnostics, markers) are reliable,
  keep last, volatile: a reliable writer serves reliable and best-effort readers alike.
* ``/clock`` (bag player) is reliable keep-last 1, which rclpy's time source (best effort)
  accepts.
"""

from __future__ import annotations

from typing import Any


def sensor_qos(depth: int = 5) -> Any:
    """SensorDataQoS (best effort, volatile) with the given history depth."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def reliable_qos(depth: int = 10) -> Any:
    """Reliable, volatile, keep-last ``depth`` for the graph's outputs."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def clock_qos() -> Any:
    """QoS of the ``/clock`` publisher in the bag player."""
    return reliable_qos(depth=1)


def local_dds_env(domain_id: int | None = None) -> dict[str, str]:
    """Keep DDS on this machine (demo, benchmark): set what the environment leaves unset.

    * ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a ``ROS_DOMAIN_ID``;
    * with Fast DDS, ``FASTDDS_DEFAULT_PROFILES_FILE`` = ``config/fastdds_shm.xml`` (shared
      memory + UDP on 127.0.0.1): without it, best-effort readers lose most multi-fragment
      clouds on loopback.

    Must run before rclpy creates its first participant. Returns what it set.
    """
    import os

    from vla_edge.config import config_dir

    wanted = {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else 10 + os.getpid() % 80),
    }
    profile = config_dir() / "fastdds_shm.xml"
    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") == "rmw_fastrtps_cpp" and profile.is_file():
        wanted["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    done = {}
    for key, value in wanted.items():
        if not os.environ.get(key):
            os.environ[key] = value
            done[key] = value
    return done
