"""ReferencePath: smoothing, curvature, Cartesian <-> Frenet on straight, sharp and hairpin routes."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.errors import PlanningError
from vla_edge.planning import ReferencePath, ReferencePathParams, load_planning_config


@pytest.fixture(scope="module")
def params() -> ReferencePathParams:
    return ReferencePathParams.from_config(load_planning_config())


def test_straight_round_trip(params):
    ref = ReferencePath.from_polyline(np.array([[-2.0, 1.0], [50.0, 1.0]]), params)
    s = np.array([0.0, 10.0, 33.3, 49.0])
    d = np.array([0.5, -2.0, 1.0, 0.0])
    x, y = ref.to_cartesian(s, d)
    np.testing.assert_allclose(x, s - 2.0, atol=1e-9)
    np.testing.assert_allclose(y, 1.0 + d, atol=1e-9)
    s2, d2 = ref.to_frenet(np.stack([x, y], 1))
    np.testing.assert_allclose(s2, s, atol=1e-9)
    np.testing.assert_allclose(d2, d, atol=1e-9)
    assert np.allclose(ref.kappa, 0.0)


def test_extrapolates_beyond_both_ends(params):
    ref = ReferencePath.from_polyline(np.array([[0.0, 0.0], [10.0, 0.0]]), params)
    far = params.extend_front + 15.0  # past the straight extension too
    s, d = ref.to_frenet(np.array([[10.0 + far, 2.0], [-params.extend_back - 5.0, -1.0]]))
    np.testing.assert_allclose(s, [10.0 + far, -params.extend_back - 5.0], atol=1e-6)
    np.testing.assert_allclose(d, [2.0, -1.0], atol=1e-6)
    x, y = ref.to_cartesian(np.array([10.0 + far]), np.array([2.0]))
    np.testing.assert_allclose([x[0], y[0]], [10.0 + far, 2.0], atol=1e-6)


def test_sharp_corner_curvature_is_bounded_and_peaks_at_corner(params):
    ref = ReferencePath.from_polyline(np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0]]), params)
    assert np.all(np.isfinite(ref.kappa))
    assert np.abs(ref.kappa).max() <= params.max_curvature + 1e-9
    corner = ref.s[np.argmax(np.abs(ref.kappa))]
    assert abs(corner - 20.0) < 2.0
    assert ref.kappa[np.argmax(np.abs(ref.kappa))] > 0  # left turn
    # Heading goes from 0 to +90 degrees, smoothly (no step > 0.5 rad between samples).
    assert abs(ref.theta[ref.s < 5][-1]) < 1e-6
    assert abs(ref.theta[(ref.s > 30) & (ref.s < 40)][0] - np.pi / 2) < 1e-3
    assert np.abs(np.diff(ref.theta)).max() < 0.5


def test_round_trip_near_sharp_corner_with_hints(params):
    ref = ReferencePath.from_polyline(np.array([[0.0, 0.0], [20.0, 0.0], [20.0, 20.0]]), params)
    s = np.linspace(15.0, 25.0, 21)
    d = np.full_like(s, 0.3)
    x, y = ref.to_cartesian(s, d)
    s2, d2 = ref.to_frenet(np.stack([x, y], 1), s_hint=s)
    np.testing.assert_allclose(s2, s, atol=0.05)
    np.testing.assert_allclose(d2, d, atol=0.02)


def test_hairpin_projection_stays_on_own_leg(params):
    # Out along +x, U-turn of 4 m width, back along -x: the legs are 4 m apart.
    out = np.stack([np.linspace(-5, 30, 36), np.zeros(36)], 1)
    arc = np.stack([30 + 2 * np.sin(np.linspace(0, np.pi, 20)), 2 - 2 * np.cos(np.linspace(0, np.pi, 20))], 1)
    back = np.stack([np.linspace(30, -5, 36), np.full(36, 4.0)], 1)
    ref = ReferencePath.from_polyline(np.vstack([out, arc[1:-1], back]), params)
    # A trajectory that drifts 2.5 m left on the outbound leg is nearer the return leg
    # (1.5 m) than its own (2.5 m) at the end; the driven-distance hint keeps it on its leg.
    xs = np.linspace(1, 24, 24)
    traj = np.stack([xs, np.linspace(0.1, 2.5, 24)], 1)
    s, d = ref.project_trajectory(traj)
    np.testing.assert_allclose(d, traj[:, 1], atol=0.05)
    assert np.all(s < 31.0)
    # A global nearest search would have jumped: prove the scene is a real trap.
    _, d_global = ref.to_frenet(traj[-1:])
    assert abs(d_global[0]) < 2.0


def test_ego_projection_prefers_aligned_leg(params):
    back = np.stack([np.linspace(40, -5, 46), np.full(46, 1.0)], 1)  # opposite direction, 1 m away
    fwd = np.stack([np.linspace(-5, 40, 46), np.full(46, -1.5)], 1)  # our leg, 1.5 m away
    arc_t = np.linspace(np.pi / 2, -np.pi / 2, 15)
    arc = np.stack([-5 - 1.25 * np.cos(arc_t), -0.25 + 1.25 * np.sin(arc_t)], 1)
    ref = ReferencePath.from_polyline(np.vstack([back, arc[1:-1], fwd]), params)
    _s0, d0 = ref.ego_frenet()
    assert d0 == pytest.approx(1.5, abs=0.05)


def test_nan_rows_and_duplicates_are_dropped(params):
    pts = np.array([[0.0, 0.0], [np.nan, 1.0], [5.0, 0.0], [5.0, 0.0], [10.0, 0.0]])
    ref = ReferencePath.from_polyline(pts, params)
    assert ref.length == pytest.approx(10.0)


@pytest.mark.parametrize(
    "pts",
    [
        np.zeros((0, 2)),
        np.array([[1.0, 2.0]]),
        np.array([[np.nan, 0.0], [np.inf, 1.0]]),
        np.zeros((3, 3, 2)),
        np.array([[1.0, 1.0], [1.0, 1.0]]),
    ],
)
def test_unusable_polyline_raises_planning_error(params, pts):
    with pytest.raises(PlanningError, match="reference path"):
        ReferencePath.from_polyline(pts, params)
