"""Runtime (numpy) pillarization and model-input helpers: rules, truncation, bad input."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from vla_edge.config import load_config
from vla_edge.errors import ConfigError, VlaEdgeError
from vla_edge.pillarize import (
    FEATURE_NAMES,
    ModelInputError,
    PillarSpec,
    ego_state_input,
    pillarize,
    reference_path_input,
)
from vla_edge.types import EgoState


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_config("model")


@pytest.fixture(scope="module")
def spec(cfg: dict) -> PillarSpec:
    return PillarSpec.from_config(cfg)


def _kitti(shared_data) -> np.ndarray:
    return np.fromfile(shared_data / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4)


def test_spec_from_config_matches_yaml(cfg: dict, spec: PillarSpec) -> None:
    p = cfg["pillars"]
    assert spec.max_pillars == p["max_pillars"] and spec.max_points == p["max_points_per_pillar"]
    x0, y0, _, x1, y1, _ = p["point_cloud_range"]
    assert spec.grid_size == (round((y1 - y0) / p["voxel_size"][1]), round((x1 - x0) / p["voxel_size"][0]))
    assert spec.num_features == len(p["point_features"]) == 10


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("pillars", "point_features"), ["x", "y", "z"], "point_features"),
        (("pillars", "point_cloud_range"), [0, 0, 0, -1, 1, 1], "max must exceed"),
        (("pillars", "voxel_size"), [0.0, 0.5, 6.0], "voxel sizes"),
        (("pillars", "max_pillars"), 0, "max_pillars"),
        (("inputs", "reference_path", "spacing"), -1.0, "spacing"),
    ],
)
def test_spec_rejects_bad_config(cfg: dict, path: tuple, value: object, match: str) -> None:
    bad = copy.deepcopy(cfg)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=match):
        PillarSpec.from_config(bad)


def test_spec_missing_key_names_it(cfg: dict) -> None:
    bad = copy.deepcopy(cfg)
    del bad["pillars"]["max_pillars"]
    with pytest.raises(ConfigError, match=r"pillars\.max_pillars"):
        PillarSpec.from_config(bad)


@pytest.fixture(params=["committed_hesai", "kitti"])
def real_points(request: pytest.FixtureRequest) -> np.ndarray:
    """The committed Hesai scan always; KITTI when fetched (skips with the fetch hint otherwise)."""
    if request.param == "kitti":
        return _kitti(request.getfixturevalue("shared_data"))
    return request.getfixturevalue("committed_scan")


def test_real_scan_shapes_and_determinism(real_points: np.ndarray, spec: PillarSpec) -> None:
    pts = real_points
    f, c, n = pillarize(pts, spec)
    assert f.shape == (spec.max_pillars, spec.max_points, spec.num_features) and f.dtype == np.float32
    assert c.shape == (spec.max_pillars, 2) and c.dtype == np.int32
    assert 0 < n <= spec.max_pillars
    assert not f[n:].any() and not c[n:].any()
    lin = c[:n, 0].astype(np.int64) * spec.grid_size[1] + c[:n, 1]
    assert np.all(np.diff(lin) > 0), "pillars must be ordered by linear index, no duplicates"
    f2, c2, n2 = pillarize(pts.copy(), spec)
    assert n2 == n and np.array_equal(f, f2) and np.array_equal(c, c2)


def test_features_by_hand(spec: PillarSpec) -> None:
    # three points in one pillar (cell containing (10.1, 5.2)), one in another
    pts = np.array(
        [[10.1, 5.2, 0.5, 0.2], [10.3, 5.4, -0.5, 0.4], [-20.0, 1.0, 1.0, 1.0], [10.2, 5.3, 0.0, 0.6]],
        dtype=np.float32,
    )
    f, c, n = pillarize(pts, spec)
    assert n == 2
    vx, vy, vz = spec.voxel_size
    x0, y0, z0 = spec.point_cloud_range[:3]
    row, col = int((5.2 - y0) // vy), int((10.1 - x0) // vx)
    slot = [tuple(c[i]) for i in range(n)].index((row, col))
    p = pts[[0, 1, 3]].astype(np.float64)
    mean = p[:, :3].mean(0)
    centre = np.array([x0 + (col + 0.5) * vx, y0 + (row + 0.5) * vy, z0 + 0.5 * vz])
    want = np.concatenate([p[:, :3], p[:, 3:4] / spec.intensity_scale, p[:, :3] - mean, p[:, :3] - centre], 1)
    np.testing.assert_allclose(f[slot, :3], want.astype(np.float32), rtol=0, atol=1e-6)
    assert not f[slot, 3:].any(), "points beyond the pillar's count are zero"
    assert list(FEATURE_NAMES[:4]) == ["x", "y", "z", "intensity"]


def test_first_m_points_in_input_order(spec: PillarSpec) -> None:
    m = spec.max_points
    pts = np.zeros((m + 5, 4), dtype=np.float32)
    pts[:, 0] = 5.1 + 0.001 * np.arange(m + 5)
    pts[:, 1] = 3.1
    f, _, n = pillarize(pts, spec)
    assert n == 1
    np.testing.assert_array_equal(f[0, :, 0], pts[:m, 0])
    mean_x = pts[:m, 0].astype(np.float64).mean()
    np.testing.assert_allclose(f[0, :, 4], (pts[:m, 0] - mean_x).astype(np.float32), atol=1e-7)


def test_range_filter_and_nonfinite_rows(spec: PillarSpec) -> None:
    x1 = spec.point_cloud_range[3]
    pts = np.array(
        [[1.0, 1.0, 0.0, 0.1], [x1, 0.0, 0.0, 0.1], [1.0, np.nan, 0.0, 0.1], [2.0, 2.0, 99.0, 0.1]],
        dtype=np.float32,
    )
    _, _, n = pillarize(pts, spec)
    assert n == 1, "max edge is exclusive; NaN rows and out-of-range z are dropped"


def test_truncation_keeps_nearest_pillars(spec: PillarSpec) -> None:
    small = dataclasses.replace(spec, max_pillars=3)
    xs = np.array([30.0, 1.0, 20.0, 2.0, -3.0, 10.0], dtype=np.float32)
    pts = np.stack([xs, np.full(6, 0.1), np.zeros(6), np.ones(6)], 1).astype(np.float32)
    f, c, n = pillarize(pts, small)
    assert n == 3
    kept_x = sorted(float(f[i, 0, 0]) for i in range(n))
    assert kept_x == [-3.0, 1.0, 2.0]
    assert np.all(np.diff(c[:, 1]) > 0), "kept pillars are ordered by linear index"


def test_empty_cloud_and_extra_columns(spec: PillarSpec) -> None:
    f, c, n = pillarize(np.zeros((0, 4), dtype=np.float32), spec)
    assert n == 0 and not f.any() and not c.any()
    pts5 = np.array([[1.0, 1.0, 0.0, 0.5, 99.0]], dtype=np.float32)
    assert pillarize(pts5, spec)[2] == 1


@pytest.mark.parametrize("bad", [np.zeros((5, 3)), np.zeros(12), np.zeros((2, 2, 4))])
def test_bad_points_shape_raises(spec: PillarSpec, bad: np.ndarray) -> None:
    with pytest.raises(ModelInputError, match="N x 4"):
        pillarize(bad, spec)
    assert issubclass(ModelInputError, VlaEdgeError)


def test_reference_path_straight_with_extrapolation(spec: PillarSpec) -> None:
    path = np.array([[-3.0, 1.0], [0.0, 1.0], [5.0, 1.0]])
    out = reference_path_input(path, spec)
    k, ds = spec.num_path_points, spec.path_spacing
    assert out.shape == (k, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], ds * np.arange(k), atol=1e-5)
    np.testing.assert_allclose(out[:, 1], 1.0, atol=1e-6)


def test_reference_path_starts_at_projection_and_follows_corner(spec: PillarSpec) -> None:
    path = np.array([[-2.0, -0.5], [4.0, -0.5], [4.0, 50.0]])  # ahead, then a left turn
    out = reference_path_input(path, spec)
    np.testing.assert_allclose(out[0], [0.0, -0.5], atol=1e-6)
    arc = np.hypot(*np.diff(out, axis=0).T)
    assert np.all(arc <= spec.path_spacing + 1e-5)
    assert out[-1, 0] == pytest.approx(4.0) and out[-1, 1] > 20.0


def test_reference_path_degenerate_inputs(spec: PillarSpec) -> None:
    one = reference_path_input(np.array([[3.0, 2.0]]), spec)
    np.testing.assert_allclose(one[:, 1], 2.0)
    np.testing.assert_allclose(np.diff(one[:, 0]), spec.path_spacing, atol=1e-5)
    dup = reference_path_input(np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [np.nan, 3.0]]), spec)
    assert np.all(np.isfinite(dup))
    for bad, match in [
        (np.zeros((0, 2)), "no finite"),
        (np.full((3, 2), np.nan), "no finite"),
        (np.zeros(4), "M x 2"),
    ]:
        with pytest.raises(ModelInputError, match=match):
            reference_path_input(bad, spec)


def test_ego_state_input(spec: PillarSpec) -> None:
    ego = EgoState(stamp=1.0, x=5.0, y=6.0, yaw=0.3, v=10.0, a=-1.5, yaw_rate=0.25)
    out = ego_state_input(ego, spec)
    assert out.shape == (6,) and out.dtype == np.float32
    np.testing.assert_allclose(
        out[:3], [10.0 / spec.ego_scale[0], -1.5 / spec.ego_scale[1], 0.25 / spec.ego_scale[2]]
    )
    assert not out[3:].any()
    clipped = ego_state_input(np.array([1e6, 0.0, 0.0]), spec)
    assert clipped[0] == pytest.approx(spec.ego_clip)
    with pytest.raises(ModelInputError, match="non-finite"):
        ego_state_input(np.array([np.nan, 0.0, 0.0]), spec)
    with pytest.raises(ModelInputError, match="v, a, yaw_rate"):
        ego_state_input(np.zeros(4), spec)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_range_filter_is_the_float64_comparison(dtype: type) -> None:
    """Bounds that float32 cannot hold (-40.05, 3.1) and points on and next to them: the
    column-wise filter keeps exactly the rows the float64 comparison keeps."""
    from vla_edge.pillarize import _in_range

    pcr = (-40.05, -40.0, -3.0, 40.0, 40.1, 3.1)
    edges = []
    for b in pcr:
        b32 = np.float32(b)
        edges += [
            b,
            float(b32),
            float(np.nextafter(b32, np.float32(-np.inf))),
            float(np.nextafter(b32, np.float32(np.inf))),
        ]
    rng = np.random.default_rng(1)
    pts = rng.choice(np.array([*edges, 0.0, np.nan, np.inf]), size=(5000, 5)).astype(dtype)
    p64 = pts.astype(np.float64)
    lo, hi = np.array(pcr[:3]), np.array(pcr[3:])
    want = np.all(np.isfinite(p64), axis=1) & np.all((p64[:, :3] >= lo) & (p64[:, :3] < hi), axis=1)
    got = _in_range(pts, pcr)
    assert 0 < want.sum() < len(want)
    assert np.array_equal(got, want)
