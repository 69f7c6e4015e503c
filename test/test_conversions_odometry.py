"""Odometry -> EgoState and the interpolating EgoStateBuffer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import HAVE_RCLPY
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_edge.config import load_config
from vla_edge.conversions.odometry import (
    EgoStateBuffer,
    OdometryBufferConfig,
    OdometryError,
    OdometryExtrapolationError,
    odometry_to_ego_state,
    quaternion_to_yaw,
    wrap_angle,
    yaw_to_quaternion,
)
from vla_edge.errors import ConfigError
from vla_edge.msgfactory import RclpyFactory, RosbagsFactory
from vla_edge.types import EgoState

FACTORIES = ["rosbags", *(["rclpy"] if HAVE_RCLPY else [])]
ODOM = "nav_msgs/msg/Odometry"


@pytest.fixture(params=FACTORIES)
def factory(request):
    return RosbagsFactory() if request.param == "rosbags" else RclpyFactory()


def make_odom(factory, t, x, y, yaw, v, yaw_rate=0.0, frame="odom", quat=None):
    """A full nav_msgs/Odometry (every field given, as rosbags needs)."""
    qx, qy, qz, qw = quat if quat is not None else yaw_to_quaternion(yaw)
    vec = lambda a, b, c: factory.make("geometry_msgs/msg/Vector3", x=a, y=b, z=c)  # noqa: E731
    pose = factory.make(
        "geometry_msgs/msg/Pose",
        position=factory.make("geometry_msgs/msg/Point", x=x, y=y, z=0.0),
        orientation=factory.make("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw),
    )
    twist = factory.make("geometry_msgs/msg/Twist", linear=vec(v, 0.0, 0.0), angular=vec(0.0, 0.0, yaw_rate))
    return factory.make(
        ODOM,
        header=factory.header(t, frame),
        child_frame_id="base_link",
        pose=factory.make("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=np.zeros(36)),
        twist=factory.make("geometry_msgs/msg/TwistWithCovariance", twist=twist, covariance=np.zeros(36)),
    )


@pytest.fixture
def cfg():
    return OdometryBufferConfig.from_config(load_config("frame"))


def _cfg(**over):
    base = OdometryBufferConfig.from_config(load_config("frame"))
    return OdometryBufferConfig(**{**base.__dict__, **over})


def test_config_from_yaml(cfg):
    assert cfg.buffer_span_s > 0 and cfg.max_extrapolation_s > 0 and cfg.max_samples > 0
    partial = {"odometry": {"buffer_span_s": 1, "max_samples": 1, "max_extrapolation_s": 1}}
    with pytest.raises(ConfigError, match=r"frame\.yaml: missing key 'odometry\.accel_window_s'"):
        OdometryBufferConfig.from_config(partial)


# ------------------------------------------------------------------ conversion


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.5, math.pi - 1e-6, -math.pi + 1e-6])
def test_odometry_to_ego_state(factory, yaw):
    st_ = odometry_to_ego_state(make_odom(factory, 12.25, 3.0, -4.0, yaw, 7.5, 0.3))
    assert st_.stamp == pytest.approx(12.25)
    assert (st_.x, st_.y, st_.v, st_.yaw_rate, st_.a) == (3.0, -4.0, 7.5, 0.3, 0.0)
    assert wrap_angle(st_.yaw - yaw) == pytest.approx(0.0, abs=1e-9)


def test_non_unit_quaternion_and_cdr(factory):
    qx, qy, qz, qw = (2 * c for c in yaw_to_quaternion(1.0))
    msg = make_odom(factory, 1.0, 0, 0, 0, 1.0, quat=(qx, qy, qz, qw))
    assert odometry_to_ego_state(msg).yaw == pytest.approx(1.0)
    if isinstance(factory, RosbagsFactory):
        ts = factory.typestore
        back = ts.deserialize_cdr(ts.serialize_cdr(msg, ODOM), ODOM)
        assert odometry_to_ego_state(back) == odometry_to_ego_state(msg)


def test_bad_odometry(factory):
    with pytest.raises(OdometryError, match="non-finite values"):
        odometry_to_ego_state(make_odom(factory, 1.0, float("nan"), 0, 0, 1.0))
    with pytest.raises(OdometryError, match="non-finite values"):
        odometry_to_ego_state(make_odom(factory, 1.0, 0, 0, 0, float("inf")))
    with pytest.raises(OdometryError, match="quaternion is all zeros"):
        odometry_to_ego_state(make_odom(factory, 1.0, 0, 0, 0, 1.0, quat=(0.0, 0.0, 0.0, 0.0)))


def test_yaw_quaternion_roundtrip():
    for yaw in np.linspace(-3.1, 3.1, 13):
        assert quaternion_to_yaw(*yaw_to_quaternion(yaw)) == pytest.approx(yaw)


# ------------------------------------------------------------------ buffer


def _straight(buf, t0=0.0, n=11, dt=0.02, v=10.0):
    for k in range(n):
        t = t0 + k * dt
        buf.add(EgoState(t, v * t, 1.0, 0.0, v))


def test_interpolation_and_age(cfg):
    buf = EgoStateBuffer(cfg)
    buf.add(EgoState(1.0, 0.0, 0.0, 0.0, 10.0, yaw_rate=0.1))
    buf.add(EgoState(1.1, 1.0, 2.0, 0.2, 12.0, yaw_rate=0.3))
    s = buf.sample(1.025)
    assert s.mode == "interpolated" and not s.refused
    assert s.age == pytest.approx(0.025)
    e = s.state
    assert (e.x, e.y, e.yaw, e.v, e.yaw_rate) == pytest.approx((0.25, 0.5, 0.05, 10.5, 0.15))
    assert e.stamp == 1.025


def test_yaw_interpolates_along_shortest_angle(cfg):
    buf = EgoStateBuffer(cfg)
    buf.add(EgoState(0.0, 0, 0, math.pi - 0.1, 1.0))
    buf.add(EgoState(0.1, 0, 0, -math.pi + 0.1, 1.0))
    yaw = buf.at(0.05).yaw
    assert abs(abs(yaw) - math.pi) < 1e-9  # through +-pi, not through 0
    assert buf.at(0.075).yaw == pytest.approx(-math.pi + 0.05)


def test_acceleration_by_finite_difference(cfg):
    buf = EgoStateBuffer(cfg)
    for k in range(30):
        t = 0.02 * k
        buf.add(EgoState(t, 0.0, 0.0, 0.0, 5.0 + 2.0 * t))
    assert buf.at(0.4).a == pytest.approx(2.0)
    assert buf.at(0.0).a == 0.0  # no history before the first sample
    single = EgoStateBuffer(cfg)
    single.add(EgoState(0.0, 0.0, 0.0, 0.0, 5.0))
    assert single.at(0.05).a == 0.0


def test_out_of_order_equals_sorted(cfg):
    states = [EgoState(0.01 * k, math.sin(k), math.cos(k), 0.1 * k, k) for k in range(50)]
    a, b = EgoStateBuffer(cfg), EgoStateBuffer(cfg)
    for s in states:
        a.add(s)
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(states)):
        b.add(states[i])
    for t in np.linspace(0.0, 0.49, 37):
        assert a.at(t) == b.at(t)


def test_duplicate_stamp_newest_wins(cfg):
    buf = EgoStateBuffer(cfg)
    buf.add(EgoState(1.0, 0.0, 0.0, 0.0, 1.0))
    buf.add(EgoState(1.0, 5.0, 0.0, 0.0, 1.0))
    assert len(buf) == 1 and buf.duplicates == 1
    assert buf.at(1.0).x == 5.0


def test_bounded_by_span_and_count():
    buf = EgoStateBuffer(_cfg(buffer_span_s=1.0, max_samples=1000))
    _straight(buf, n=300, dt=0.01)  # 3 s of data
    assert buf.newest_stamp == pytest.approx(2.99)
    assert buf._t[0] >= buf.newest_stamp - 1.0 - 1e-9
    capped = EgoStateBuffer(_cfg(buffer_span_s=100.0, max_samples=10))
    _straight(capped, n=50)
    assert len(capped) == 10


def test_old_straggler_dropped_then_backward_jump_resets():
    buf = EgoStateBuffer(_cfg(buffer_span_s=1.0, backward_jump_samples=3))
    _straight(buf, t0=100.0, n=10)
    buf.add(EgoState(50.0, 0, 0, 0, 0))  # one very late straggler: ignored
    assert buf.dropped_old == 1 and buf.newest_stamp > 100
    buf.add(EgoState(50.02, 0, 0, 0, 0))
    buf.add(EgoState(50.04, 7.0, 0, 0, 0))  # third in a row: the clock jumped back (bag loop)
    assert buf.resets == 1 and len(buf) == 1 and buf.newest_stamp == 50.04
    buf.add(EgoState(50.06, 8.0, 0, 0, 0))
    assert buf.at(50.05).x == pytest.approx(7.5)


def test_forward_extrapolation_constant_turn(cfg):
    buf = EgoStateBuffer(cfg)
    v, w = 10.0, 0.5
    buf.add(EgoState(0.0, 0.0, 0.0, 0.0, v, yaw_rate=w))
    dt = 0.1
    assert dt <= cfg.max_extrapolation_s
    s = buf.sample(dt)
    assert s.mode == "extrapolated" and s.age == pytest.approx(dt)
    # Exact circular arc for comparison.
    r = v / w
    x_true, y_true = r * math.sin(w * dt), r * (1 - math.cos(w * dt))
    assert s.state.x == pytest.approx(x_true, abs=1e-3) and s.state.y == pytest.approx(y_true, abs=1e-3)
    assert s.state.yaw == pytest.approx(w * dt)
    back = buf.sample(-0.05)  # before the first sample: extrapolated backwards
    assert back.mode == "extrapolated" and back.state.x == pytest.approx(-0.5, abs=1e-3)


def test_far_extrapolation_refused(cfg):
    buf = EgoStateBuffer(cfg)
    _straight(buf, n=5)
    last = buf.newest_stamp
    far = last + cfg.max_extrapolation_s + 0.05
    s = buf.sample(far)
    assert s.mode == "held" and s.refused
    assert s.state.x == pytest.approx(10.0 * last)  # held, not moved
    assert s.age == pytest.approx(far - last)
    with pytest.raises(
        OdometryExtrapolationError, match=r"outside the odometry window .* max_extrapolation_s"
    ):
        buf.at(far)
    with pytest.raises(OdometryExtrapolationError, match="outside the odometry window"):
        buf.at(-1.0)


def test_empty_buffer(cfg):
    buf = EgoStateBuffer(cfg)
    s = buf.sample(1.0)
    assert s.mode == "empty" and s.state is None and s.age == math.inf and s.refused
    with pytest.raises(OdometryExtrapolationError, match="no odometry received yet"):
        buf.at(1.0)
    with pytest.raises(OdometryError, match="not finite"):
        buf.add(EgoState(float("nan"), 0, 0, 0, 0))


def test_add_odometry_message(factory, cfg):
    buf = EgoStateBuffer(cfg)
    buf.add_odometry(make_odom(factory, 5.0, 1.0, 2.0, 0.0, 3.0))
    buf.add_odometry(make_odom(factory, 5.1, 2.0, 2.0, 0.0, 3.0))
    assert buf.at(5.05).x == pytest.approx(1.5)


@settings(max_examples=40, deadline=None)
@given(
    yaws=st.lists(st.floats(-math.pi, math.pi), min_size=2, max_size=8),
    f=st.floats(0.0, 1.0),
)
def test_property_interpolated_yaw_between_neighbours(yaws, f):
    buf = EgoStateBuffer(OdometryBufferConfig(2.0, 100, 0.1, 0.2, 3, 0.05, 10.0))
    for k, y in enumerate(yaws):
        buf.add(EgoState(0.1 * k, 0, 0, y, 1.0))
    k = len(yaws) - 2
    t = 0.1 * (k + f)
    yaw = buf.at(t).yaw
    a, b = yaws[k], yaws[k + 1]
    d = wrap_angle(b - a)
    # the result lies on the short arc from a to b, at fraction f
    assert abs(wrap_angle(yaw - (a + f * d))) < 1e-6
    assert -math.pi <= yaw < math.pi
