"""Torch pillarization is bit-identical to the runtime numpy one; BEV scatter places pillars."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import requires_torch

from vla_edge.config import load_config
from vla_edge.pillarize import PillarSpec, pillarize

pytestmark = requires_torch


@pytest.fixture(scope="module")
def spec() -> PillarSpec:
    return PillarSpec.from_config(load_config("model"))


def _both(points: np.ndarray, spec: PillarSpec) -> None:
    import torch

    from training.model.pillars import pillarize_torch

    f, c, n = pillarize(points, spec)
    tf, tc, tn = pillarize_torch(torch.from_numpy(points), spec)
    assert tn == n
    assert tf.dtype == torch.float32 and tc.dtype == torch.int32
    assert np.array_equal(tf.numpy(), f), "features must be bit-identical"
    assert np.array_equal(tc.numpy(), c)


def test_identical_on_real_kitti_scan(shared_data, spec: PillarSpec) -> None:
    pts = np.fromfile(shared_data / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4)
    assert pts.shape == (17238, 4)
    _both(pts, spec)


def test_identical_on_committed_hesai_scan(committed_scan: np.ndarray, spec: PillarSpec) -> None:
    assert committed_scan.shape == (34158, 4)
    _both(committed_scan, spec)


def test_identical_with_truncation_and_junk(shared_data, spec: PillarSpec) -> None:
    pts = np.fromfile(shared_data / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4)
    pts = pts.copy()
    pts[::97, 1] = np.nan  # non-finite rows are dropped by both
    _both(pts, dataclasses.replace(spec, max_pillars=300, max_points=4))


def test_scatter_places_valid_pillars_only() -> None:
    import torch

    from training.model.pillars import scatter_to_bev

    feats = torch.arange(1, 13, dtype=torch.float32).reshape(1, 4, 3)
    coords = torch.tensor([[[0, 1], [2, 3], [1, 0], [9, 9]]], dtype=torch.int32)
    count = torch.tensor([3], dtype=torch.int32)
    bev = scatter_to_bev(feats, coords, count, torch.arange(4), (3, 4))
    assert bev.shape == (1, 3, 3, 4)
    assert torch.equal(bev[0, :, 0, 1], feats[0, 0]) and torch.equal(bev[0, :, 2, 3], feats[0, 1])
    assert torch.equal(bev[0, :, 1, 0], feats[0, 2])
    assert float(bev.sum()) == float(feats[0, :3].sum()), "slots >= count never land on the grid"


def test_batch_matches_numpy_per_cloud(shared_data, spec: PillarSpec) -> None:
    """The batched GPU-path pillarizer equals the runtime on every cloud (empty and truncated too)."""
    import torch

    from training.model.pillars import pillarize_batch

    pts = np.fromfile(shared_data / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4)
    rng = np.random.default_rng(3)
    clouds = [pts, np.zeros((0, 4), np.float32), pts[rng.permutation(len(pts))[:5000]], pts[::3].copy()]
    clouds[3][::50, 0] = np.inf
    small = dataclasses.replace(spec, max_pillars=500, max_points=5)
    for sp in (spec, small):
        offsets = torch.tensor(np.cumsum([0] + [len(c) for c in clouds]), dtype=torch.long)
        f, c, n = pillarize_batch(torch.from_numpy(np.concatenate(clouds)), offsets, sp)
        for b, cl in enumerate(clouds):
            rf, rc, rn = pillarize(cl, sp)
            assert int(n[b]) == rn
            assert np.array_equal(f[b].numpy(), rf), f"cloud {b}: features must be bit-identical"
            assert np.array_equal(c[b].numpy(), rc)


def _static(buf: np.ndarray, n: int, spec: PillarSpec) -> tuple[np.ndarray, np.ndarray, int]:
    import torch

    from vla_edge.backends.torch_pillarize import pillarize_static

    f, c, k = pillarize_static(torch.from_numpy(buf), torch.tensor(n), spec)
    assert f.shape == (spec.max_pillars, spec.max_points, spec.num_features)
    assert c.shape == (spec.max_pillars, 2)
    return f.numpy(), c.numpy(), int(k)


@pytest.mark.parametrize("case", ["padded", "empty", "all_out_of_range", "few_slots", "multi_sweep"])
def test_static_buffer_matches_numpy(committed_scan: np.ndarray, spec: PillarSpec, case: str) -> None:
    """The capture-friendly pillarizer reads only the first n rows of a fixed buffer; the tail
    (in-range points and NaN alike) must change nothing."""
    rng = np.random.default_rng(4)
    pts, sp = committed_scan.copy(), spec
    if case == "empty":
        pts = pts[:0]
    elif case == "all_out_of_range":
        pts[:, 0] += 500.0
    elif case == "few_slots":
        sp = dataclasses.replace(spec, max_pillars=200, max_points=3)
    elif case == "multi_sweep":
        sp = spec.with_sweeps((0.3,), 0.05)
        pts = np.concatenate([pts, rng.choice([0.0, 0.3], size=(len(pts), 1)).astype(np.float32)], 1)
    tail = rng.uniform(-20, 20, size=(777, pts.shape[1])).astype(np.float32)  # in range: must be ignored
    tail[::5, 0] = np.nan
    buf = np.concatenate([pts, tail])
    f, c, n = pillarize(pts, sp)
    tf, tc, tn = _static(buf, len(pts), sp)
    assert tn == n
    assert np.array_equal(tf, f), "features must be bit-identical"
    assert np.array_equal(tc, c)


def test_static_buffer_matches_numpy_in_deterministic_mode(
    committed_scan: np.ndarray, spec: PillarSpec
) -> None:
    """``torch_cuda.deterministic`` turns on torch's deterministic algorithms before capture;
    the pillarizer must run (and agree) under them, with fewer buffer rows than pillar slots."""
    import torch

    sp = dataclasses.replace(spec, max_pillars=len(committed_scan) + 50)  # N < P: empty slots pad
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        tf, tc, tn = _static(committed_scan.copy(), len(committed_scan), sp)
    finally:
        torch.use_deterministic_algorithms(before)
    f, c, n = pillarize(committed_scan, sp)
    assert tn == n and np.array_equal(tf, f) and np.array_equal(tc, c)


@pytest.mark.parametrize("max_pillars", [1, 3, 4, 7, 64, 1000])
def test_static_nearest_cut_through_ties_matches_numpy(spec: PillarSpec, max_pillars: int) -> None:
    """The nearest-P selection cuts through groups of pillars at the same centre distance (the
    grid is symmetric about the ego origin): the tied pillars kept are the first in linear
    order, as in numpy, also with fewer buffer rows than grid cells and an empty buffer."""
    rng = np.random.default_rng(max_pillars)
    sp = dataclasses.replace(spec, max_pillars=max_pillars, max_points=3)
    # 1-4 points at every pillar centre of a 12 x 12 block around the origin (rings of 4 and 8
    # pillars tied in distance), in shuffled order, plus out-of-range and NaN rows
    cx = (np.arange(-6, 6) + 0.5) * spec.voxel_size[0]
    cy = (np.arange(-6, 6) + 0.5) * spec.voxel_size[1]
    centres = np.array([(x, y) for x in cx for y in cy])
    xy = np.repeat(centres, rng.integers(1, 5, len(centres)), axis=0)
    xy += rng.uniform(-0.2, 0.2, xy.shape)
    pts = np.concatenate([xy, rng.uniform(-1, 1, (len(xy), 1)), rng.uniform(0, 255, (len(xy), 1))], 1)
    pts = np.concatenate([pts, [[500.0, 0, 0, 1], [np.nan, 0, 0, 1]]]).astype(np.float32)
    pts = pts[rng.permutation(len(pts))]
    for cloud in (pts, pts[:5], pts[:0]):
        f, c, n = pillarize(cloud, sp)
        tf, tc, tn = _static(np.concatenate([cloud, np.ones((3, 4), np.float32)]), len(cloud), sp)
        assert tn == n and np.array_equal(tf, f) and np.array_equal(tc, c)
    tf, tc, tn = _static(pts[:0], 0, sp)  # a buffer with no rows at all
    assert tn == 0 and not tf.any() and not tc.any()
