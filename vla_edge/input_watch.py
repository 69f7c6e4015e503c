"""When to tell the operator that the LiDAR is silent (no ROS; the inference node publishes).

A drive graph with no LiDAR sweep plans nothing, and without this watch it would end with
``0 sweeps`` and no word why. :class:`InputWatch` decides, from the sweep times it is told
about and an injected clock, when a loud warning is due: after ``lidar_timeout_s`` with no
sweep since start (or since the last sweep), then every ``repeat_s`` while it stays silent,
and once more (OK) when sweeps come back. Each decision is a ``DiagnosticStatus``-shaped dict
(:func:`vla_edge.diagnostics.status`) that names the topics to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vla_edge.config import require
from vla_edge.diagnostics import ERROR, OK, status
from vla_edge.errors import ConfigError

STATUS_NAME = "vla_edge/input_watch"


@dataclass(frozen=True)
class InputWatchConfig:
    """``input_watch`` section of ``config/drive.yaml``.

    Attributes:
        lidar_timeout_s: No sweep for this long (since start or the last sweep) -> ERROR [s].
        repeat_s: Repeat the ERROR this often while the LiDAR stays silent [s].
    """

    lidar_timeout_s: float
    repeat_s: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> InputWatchConfig:
        """Read ``input_watch`` from the (nested) drive parameters.

        Raises:
            ConfigError: Missing key or a value out of range.
        """
        sec = require(cfg, "input_watch", where="drive.yaml")
        timeout = float(require(sec, "lidar_timeout_s", where="drive.yaml input_watch"))
        repeat = float(require(sec, "repeat_s", where="drive.yaml input_watch"))
        if not 0.1 <= timeout <= 600.0:
            raise ConfigError(
                f"drive.yaml input_watch.lidar_timeout_s must be in [0.1, 600] s, got {timeout}"
            )
        if not 0.1 <= repeat <= 3600.0:
            raise ConfigError(f"drive.yaml input_watch.repeat_s must be in [0.1, 3600] s, got {repeat}")
        return cls(timeout, repeat)


class InputWatch:
    """Decides when a silent LiDAR must be reported.

    Args:
        cfg: Timeouts.
        topics: ``inputs`` mapping of ``topics.yaml`` (the LiDAR and odometry topics are named).
        start: Clock time the graph came up [s].
        hardware_id: ``hardware_id`` of the statuses.
    """

    def __init__(self, cfg: InputWatchConfig, topics: dict[str, Any], start: float, hardware_id: str) -> None:
        self.cfg = cfg
        self.lidar_topic = str(topics["lidar"])
        self.odometry_topic = str(topics.get("odometry", "?"))
        self.hardware_id = hardware_id
        self.start = float(start)
        self.sweeps = 0
        self.last_sweep: float | None = None
        self._last_alarm: float | None = None
        self.alarms = 0

    def lidar(self, now: float) -> None:
        """A LiDAR sweep arrived at clock time ``now``."""
        self.sweeps += 1
        self.last_sweep = float(now)

    def poll(self, now: float, odometry_seen: bool) -> dict[str, Any] | None:
        """The status to publish at ``now``, or None when nothing is due.

        Args:
            now: Clock time [s].
            odometry_seen: Whether any odometry has been buffered (named in the message).
        """
        since = self.start if self.last_sweep is None else self.last_sweep
        silent = now - since
        if silent < self.cfg.lidar_timeout_s:
            if self._last_alarm is not None:  # recovered: say so once
                self._last_alarm = None
                return status(
                    STATUS_NAME,
                    OK,
                    f"LiDAR sweeps arriving again on {self.lidar_topic}",
                    {"lidar_topic": self.lidar_topic, "sweeps": self.sweeps},
                    self.hardware_id,
                )
            return None
        if self._last_alarm is not None and now - self._last_alarm < self.cfg.repeat_s:
            return None
        self._last_alarm = float(now)
        self.alarms += 1
        what = "since start" if self.last_sweep is None else "since the last sweep"
        odom = "odometry is arriving" if odometry_seen else f"no odometry on {self.odometry_topic} either"
        msg = (
            f"NO LIDAR: no PointCloud2 on {self.lidar_topic} for {silent:.1f} s ({what}); "
            "nothing is planned. "
            f"{odom}. Check the driver is running, the topic name/remap (config/topics.yaml) and that the "
            "publisher is reachable (ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE, best-effort QoS)"
        )
        values = {
            "lidar_topic": self.lidar_topic,
            "odometry_topic": self.odometry_topic,
            "silent_s": f"{silent:.3f}",
            "sweeps": self.sweeps,
            "odometry_seen": odometry_seen,
        }
        return status(STATUS_NAME, ERROR, msg, values, self.hardware_id)
