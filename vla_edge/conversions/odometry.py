"""``nav_msgs/Odometry`` -> :class:`EgoState`, and a time-bounded buffer that interpolates it.

The LiDAR sweep drives everything, so the ego state is needed *at the LiDAR stamp*;
odometry arrives at its own rate (50-100 Hz), out of order now and then, sometimes twice
with one stamp. :class:`EgoStateBuffer` keeps a bounded window of states sorted by stamp
and answers "what was the ego at t?":

* inside the window: linear interpolation of x, y, v, yaw_rate, yaw along the shortest
  angle; acceleration is a finite difference of the interpolated speed over
  ``accel_window_s``;
* up to ``max_extrapolation_s`` beyond either end: constant speed and yaw rate;
* farther: **refused**. :meth:`EgoStateBuffer.sample` then returns the nearest stored
  state held (not moved) with ``refused=True`` so the frame marks odometry stale;
  :meth:`EgoStateBuffer.at` raises :class:`OdometryExtrapolationError` instead.

Parameters come from the ``odometry`` section of ``config/frame.yaml``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from vla_edge.config import require
from vla_edge.errors import ConversionError, FrameError
from vla_edge.msgfactory import stamp_to_sec
from vla_edge.types import EgoState


class OdometryError(ConversionError):
    """An Odometry message has non-finite values or a degenerate quaternion."""


class OdometryExtrapolationError(FrameError):
    """The requested stamp is too far outside the buffered odometry (or none was received)."""


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about z, radians in [-pi, pi]) of a quaternion; need not be unit."""
    # Scaled by the largest component first so huge (1e200) components cannot overflow to
    # inf/NaN; w^2 + x^2 - y^2 - z^2 instead of 1 - 2(y^2 + z^2): exact for non-unit ones too.
    m = max(abs(x), abs(y), abs(z), abs(w))
    if m > 0.0 and math.isfinite(m):
        x, y, z, w = x / m, y / m, z / m, w / m
    return math.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion ``(x, y, z, w)`` of a pure rotation about z."""
    return 0.0, 0.0, math.sin(0.5 * yaw), math.cos(0.5 * yaw)


def wrap_angle(a: float) -> float:
    """Wrap an angle to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def odometry_to_ego_state(msg: Any) -> EgoState:
    """Convert a ``nav_msgs/Odometry`` (rclpy or rosbags) to an :class:`EgoState`.

    Position and yaw come from ``pose.pose`` (odom/map frame); speed is the forward
    component ``twist.twist.linear.x`` and yaw rate ``twist.twist.angular.z`` (the twist is
    in ``child_frame_id``, i.e. the vehicle, per REP 105). Acceleration is not in Odometry;
    it is left 0 here and estimated by :class:`EgoStateBuffer`.

    Raises:
        OdometryError: A used value is NaN/Inf or the orientation quaternion is zero.
    """
    p = msg.pose.pose.position
    q = msg.pose.pose.orientation
    tw = msg.twist.twist
    vals = [p.x, p.y, q.x, q.y, q.z, q.w, tw.linear.x, tw.angular.z]
    if not all(math.isfinite(float(v)) for v in vals):
        raise OdometryError(
            f"Odometry at {stamp_to_sec(msg.header.stamp):.3f} has non-finite values "
            f"(position {p.x}, {p.y}; quaternion {q.x}, {q.y}, {q.z}, {q.w}; v {tw.linear.x}; "
            f"yaw_rate {tw.angular.z}); check the localization source"
        )
    if q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w < 1e-12:
        raise OdometryError(
            "Odometry orientation quaternion is all zeros; the localization output is invalid"
        )
    return EgoState(
        stamp=stamp_to_sec(msg.header.stamp),
        x=float(p.x),
        y=float(p.y),
        yaw=quaternion_to_yaw(float(q.x), float(q.y), float(q.z), float(q.w)),
        v=float(tw.linear.x),
        a=0.0,
        yaw_rate=float(tw.angular.z),
    )


@dataclass(frozen=True)
class EgoSample:
    """Answer of :meth:`EgoStateBuffer.sample`.

    Attributes:
        state: Ego state at the requested stamp (held at the nearest sample if refused).
        age: Seconds from the newest odometry at or before the stamp to the stamp; for a
            stamp before the whole buffer, the gap to its first sample. ``inf`` if empty.
        mode: ``"interpolated"``, ``"extrapolated"``, ``"held"`` (refused) or ``"empty"``.
    """

    state: EgoState | None
    age: float
    mode: str

    @property
    def refused(self) -> bool:
        """True when the stamp was too far from the data to move the state to it."""
        return self.mode in ("held", "empty")


@dataclass(frozen=True)
class OdometryBufferConfig:
    """``odometry`` section of ``config/frame.yaml`` (see the file for units)."""

    buffer_span_s: float
    max_samples: int
    max_extrapolation_s: float
    accel_window_s: float
    backward_jump_samples: int
    quaternion_norm_tolerance: float
    max_yaw_rate: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> OdometryBufferConfig:
        """Read from the whole ``frame.yaml`` mapping."""
        from vla_edge.config_schema._base import validate
        from vla_edge.config_schema.frame import Odometry

        sec = require(cfg, "odometry", where="frame.yaml")
        validate(Odometry, sec, "frame.yaml", prefix="odometry")  # names key and allowed range
        return cls(
            buffer_span_s=float(sec["buffer_span_s"]),
            max_samples=int(sec["max_samples"]),
            max_extrapolation_s=float(sec["max_extrapolation_s"]),
            accel_window_s=float(sec["accel_window_s"]),
            backward_jump_samples=int(sec["backward_jump_samples"]),
            quaternion_norm_tolerance=float(sec["quaternion_norm_tolerance"]),
            max_yaw_rate=float(sec["max_yaw_rate"]),
        )


class EgoStateBuffer:
    """Time-bounded, stamp-sorted odometry history with interpolation to any stamp.

    * Out-of-order states are inserted at their place; a duplicate stamp replaces the
      stored state (the newest message wins) and is counted in ``duplicates``.
    * States older than ``newest - buffer_span_s`` are dropped (``dropped_old``); after
      ``backward_jump_samples`` such states in a row the clock is taken to have jumped
      back (bag loop, simulator restart) and the buffer restarts from them.
    * At most ``max_samples`` states are kept (oldest evicted first).
    """

    def __init__(self, cfg: OdometryBufferConfig) -> None:
        self.cfg = cfg
        self._t: list[float] = []
        self._s: list[EgoState] = []
        self.duplicates = 0
        self.dropped_old = 0
        self.resets = 0
        self._old_in_row = 0

    def __len__(self) -> int:
        return len(self._t)

    @property
    def newest_stamp(self) -> float | None:
        """Stamp of the newest stored state, or None when empty."""
        return self._t[-1] if self._t else None

    def clear(self) -> None:
        """Forget every state (counters are kept)."""
        self._t.clear()
        self._s.clear()
        self._old_in_row = 0

    def add_odometry(self, msg: Any) -> EgoState:
        """Convert and add one Odometry message; returns the converted state.

        Raises:
            OdometryError: Non-finite values, a quaternion whose norm is not 1 within
                ``quaternion_norm_tolerance``, or ``|yaw rate| > max_yaw_rate``.
        """
        state = odometry_to_ego_state(msg)
        q = msg.pose.pose.orientation
        qs = [float(q.x), float(q.y), float(q.z), float(q.w)]
        m = max(abs(c) for c in qs)
        norm = m * math.sqrt(sum((c / m) ** 2 for c in qs))  # scaled: 1e200 does not overflow
        if abs(norm - 1.0) > self.cfg.quaternion_norm_tolerance:
            raise OdometryError(
                f"Odometry at {state.stamp:.3f}: orientation quaternion norm {norm:.6g} is not 1 "
                f"(frame.yaml odometry.quaternion_norm_tolerance {self.cfg.quaternion_norm_tolerance}); "
                "the localization output is invalid"
            )
        if abs(state.yaw_rate) > self.cfg.max_yaw_rate:
            raise OdometryError(
                f"Odometry at {state.stamp:.3f}: yaw rate {state.yaw_rate:.6g} rad/s exceeds "
                f"frame.yaml odometry.max_yaw_rate {self.cfg.max_yaw_rate} rad/s; implausible, ignored"
            )
        self.add(state)
        return state

    def add(self, state: EgoState) -> None:
        """Insert one state (see the class docstring for ordering rules)."""
        t = float(state.stamp)
        if not math.isfinite(t):
            raise OdometryError(f"Odometry stamp {t} is not finite")
        if self._t and t < self._t[-1] - self.cfg.buffer_span_s:
            self._old_in_row += 1
            if self._old_in_row < self.cfg.backward_jump_samples:
                self.dropped_old += 1
                return
            self.clear()
            self.resets += 1
        self._old_in_row = 0
        i = bisect.bisect_left(self._t, t)
        if i < len(self._t) and self._t[i] == t:
            self._s[i] = state
            self.duplicates += 1
            return
        self._t.insert(i, t)
        self._s.insert(i, state)
        cut = bisect.bisect_left(self._t, self._t[-1] - self.cfg.buffer_span_s)
        cut = max(cut, len(self._t) - self.cfg.max_samples)
        if cut > 0:
            del self._t[:cut]
            del self._s[:cut]

    # ------------------------------------------------------------------ queries

    def _speed_at(self, t: float) -> float:
        """Speed at t inside the window (clamped to its ends)."""
        ts = self._t
        if t <= ts[0]:
            return self._s[0].v
        if t >= ts[-1]:
            return self._s[-1].v
        i = bisect.bisect_right(ts, t)
        a, b = self._s[i - 1], self._s[i]
        f = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
        return a.v + f * (b.v - a.v)

    def _accel(self, t: float) -> float:
        ts = self._t
        t1 = min(max(t, ts[0]), ts[-1])
        t0 = max(t1 - self.cfg.accel_window_s, ts[0])
        if t1 - t0 <= 1e-9:
            return 0.0
        return (self._speed_at(t1) - self._speed_at(t0)) / (t1 - t0)

    def sample(self, stamp: float) -> EgoSample:
        """Ego state at ``stamp`` with its age and how it was obtained (never raises)."""
        ts = self._t
        if not ts:
            return EgoSample(None, math.inf, "empty")
        i = bisect.bisect_right(ts, stamp)  # ts[i-1] <= stamp < ts[i]
        age = stamp - ts[i - 1] if i > 0 else ts[0] - stamp
        acc = self._accel(stamp)
        if 0 < i < len(ts):
            a, b = self._s[i - 1], self._s[i]
            f = (stamp - ts[i - 1]) / (ts[i] - ts[i - 1])
            st = EgoState(
                stamp=stamp,
                x=a.x + f * (b.x - a.x),
                y=a.y + f * (b.y - a.y),
                yaw=wrap_angle(a.yaw + f * wrap_angle(b.yaw - a.yaw)),
                v=a.v + f * (b.v - a.v),
                a=acc,
                yaw_rate=a.yaw_rate + f * (b.yaw_rate - a.yaw_rate),
            )
            return EgoSample(st, age, "interpolated")
        ref = self._s[-1] if i == len(ts) else self._s[0]
        dt = stamp - ref.stamp
        if dt == 0.0:
            return EgoSample(
                EgoState(stamp, ref.x, ref.y, ref.yaw, ref.v, acc, ref.yaw_rate), age, "interpolated"
            )
        if abs(dt) > self.cfg.max_extrapolation_s:
            held = EgoState(stamp, ref.x, ref.y, ref.yaw, ref.v, acc, ref.yaw_rate)
            return EgoSample(held, age, "held")
        # Constant speed and yaw rate; heading at mid-interval for the position step.
        mid = ref.yaw + 0.5 * ref.yaw_rate * dt
        st = EgoState(
            stamp=stamp,
            x=ref.x + ref.v * math.cos(mid) * dt,
            y=ref.y + ref.v * math.sin(mid) * dt,
            yaw=wrap_angle(ref.yaw + ref.yaw_rate * dt),
            v=ref.v,
            a=acc,
            yaw_rate=ref.yaw_rate,
        )
        return EgoSample(st, age, "extrapolated")

    def at(self, stamp: float) -> EgoState:
        """Like :meth:`sample` but strict.

        Raises:
            OdometryExtrapolationError: No odometry yet, or ``stamp`` is more than
                ``max_extrapolation_s`` outside the buffered window.
        """
        s = self.sample(stamp)
        if s.mode == "empty":
            raise OdometryExtrapolationError("no odometry received yet; check the localization topic")
        if s.refused or s.state is None:
            lo, hi = self._t[0], self._t[-1]
            raise OdometryExtrapolationError(
                f"stamp {stamp:.3f} is outside the odometry window [{lo:.3f}, {hi:.3f}] by more than "
                f"max_extrapolation_s={self.cfg.max_extrapolation_s} s; odometry is late or stamps disagree"
            )
        return s.state
