"""LiDAR obstacles: ground removal, occupancy, clusters, inflation, tracking; real KITTI scan."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from planning_scenes import box, cloud, ground, kitti_points

from vla_edge.errors import PlanningError
from vla_edge.planning import ClusterTracker, Footprint, ObstacleParams, TrackingParams, extract_obstacles
from vla_edge.planning.cycle import load_planning_config
from vla_edge.planning.obstacles import connected_components, dilate


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_planning_config()


@pytest.fixture(scope="module")
def params(cfg) -> ObstacleParams:
    return ObstacleParams.from_config(cfg)


def _inflated(points, params, cfg, stamp=0.0):
    ob = extract_obstacles(points, stamp, params)
    fp = Footprint.from_config(cfg)
    ob.inflate(fp.radius + params.margin)
    return ob


def test_box_on_ground_is_one_cluster_and_ground_is_removed(params, cfg):
    rng = np.random.default_rng(1)
    g = ground(rng)
    b = box(rng, 15.0, 2.0, 1.5, 1.0, 1.2)
    ob = _inflated(cloud(g, b), params, cfg)
    assert ob.n_clusters == 1
    np.testing.assert_allclose(ob.centroids[0], [15.0, 2.0], atol=0.3)
    # Ground returns are not obstacles: only box points (minus its lowest rim) survive.
    assert ob.counts["obstacle"] <= len(b)
    assert ob.counts["obstacle"] > 0.7 * len(b)
    ext = ob.extents[0]
    assert ext[0] < 14.4 and ext[2] > 15.6 and ext[1] < 1.6 and ext[3] > 2.4
    # Inflation covers the footprint radius + margin around the box, not much more.
    r = ob.inflation_radius
    assert ob.occupied_at(np.array([15.0 + 0.75 + r - 0.25]), np.array([2.0]))[0]
    assert not ob.occupied_at(np.array([15.0 + 0.75 + r + 0.45]), np.array([2.0]))[0]
    assert not ob.occupied_at(np.array([5.0]), np.array([0.0]))[0]


def test_box_top_without_ground_below_still_counts(params, cfg):
    rng = np.random.default_rng(2)
    top = np.stack(
        [rng.uniform(18, 22, 3000), rng.uniform(-2, 2, 3000), np.full(3000, 1.5), np.zeros(3000)], 1
    )
    ob = _inflated(cloud(ground(rng), top), params, cfg)
    assert ob.counts["obstacle"] == 3000
    assert ob.occupied_at(np.array([20.0]), np.array([0.0]))[0]


def test_overhead_self_and_far_points_are_ignored(params, cfg):
    rng = np.random.default_rng(3)
    wing = np.stack(
        [rng.uniform(10, 20, 2000), rng.uniform(-5, 5, 2000), np.full(2000, 4.0), np.zeros(2000)], 1
    )
    body = np.stack(
        [rng.uniform(0, 2, 500), rng.uniform(-0.5, 0.5, 500), rng.uniform(0.3, 1.5, 500), np.zeros(500)], 1
    )
    far = box(rng, 200.0, 0.0, 2.0, 2.0, 2.0)
    ob = _inflated(cloud(ground(rng), wing, body, far), params, cfg)
    assert ob.n_clusters == 0
    assert not ob.inflated.any()


def test_two_boxes_two_clusters_l_shape_one(params, cfg):
    rng = np.random.default_rng(4)
    ob = _inflated(cloud(ground(rng), box(rng, 10, -4, 1, 1, 1), box(rng, 10, 4, 1, 1, 1)), params, cfg)
    assert ob.n_clusters == 2
    leg1 = box(rng, 20, 0, 6, 0.6, 1.0, 3000)
    leg2 = box(rng, 22.7, 3, 0.6, 6, 1.0, 3000)
    ob = _inflated(cloud(ground(rng), leg1, leg2), params, cfg)
    assert ob.n_clusters == 1


def _flood_fill_count(grid: np.ndarray) -> int:
    seen = np.zeros_like(grid)
    n = 0
    h, w = grid.shape
    for sy, sx in zip(*np.nonzero(grid)):
        if seen[sy, sx]:
            continue
        n += 1
        queue = deque([(sy, sx)])
        seen[sy, sx] = True
        while queue:
            y, x = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and grid[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        queue.append((yy, xx))
    return n


@pytest.mark.parametrize("seed", range(6))
def test_connected_components_match_flood_fill(seed):
    rng = np.random.default_rng(seed)
    grid = rng.random((40, 57)) < rng.uniform(0.05, 0.5)
    labels = connected_components(grid)
    assert (labels >= 0).sum() == grid.sum()
    assert labels.max() + 1 == _flood_fill_count(grid)
    # 8-neighbours always share a label.
    a, b = labels[:, :-1], labels[:, 1:]
    both = (a >= 0) & (b >= 0)
    assert np.all(a[both] == b[both])
    a, b = labels[:-1, :-1], labels[1:, 1:]
    both = (a >= 0) & (b >= 0)
    assert np.all(a[both] == b[both])


def test_dilate_matches_disc():
    g = np.zeros((21, 21), dtype=bool)
    g[10, 10] = True
    d = dilate(g, 3.0)
    yy, xx = np.mgrid[0:21, 0:21]
    np.testing.assert_array_equal(d, (yy - 10) ** 2 + (xx - 10) ** 2 <= 9)


@pytest.mark.parametrize("density", [0.002, 0.05, 0.4])
@pytest.mark.parametrize("radius", [0.5, 1.0, 2.5, 6.0, 6.5])
def test_dilate_equals_brute_force_disc_on_sparse_and_dense_grids(density, radius):
    # Sparse grids take the stamping path, dense ones the row-span path: both exact.
    g = np.random.default_rng(int(radius * 10)).random((60, 50)) < density
    r = int(np.ceil(radius))
    ref = np.zeros_like(g)
    for y, x in zip(*np.nonzero(g)):
        for oy in range(-r, r + 1):
            for ox in range(-r, r + 1):
                if oy * oy + ox * ox <= radius * radius and 0 <= y + oy < 60 and 0 <= x + ox < 50:
                    ref[y + oy, x + ox] = True
    np.testing.assert_array_equal(dilate(g, radius), ref)


@pytest.mark.parametrize("bad", [np.zeros((10, 2)), np.zeros(12), np.zeros((2, 3, 4))])
def test_bad_cloud_shape_raises(params, bad):
    with pytest.raises(PlanningError, match="N x 3"):
        extract_obstacles(bad, 0.0, params)


def test_nan_points_are_ignored(params, cfg):
    rng = np.random.default_rng(5)
    pts = cloud(ground(rng), box(rng, 12, 0, 1, 1, 1))
    pts[::7, 2] = np.nan
    pts[::11, 0] = np.inf
    ob = _inflated(pts, params, cfg)
    assert ob.n_clusters == 1


def test_tracking_moving_box_with_moving_ego(params, cfg):
    tracker = ClusterTracker(TrackingParams.from_config(cfg))
    rng = np.random.default_rng(6)
    ego_v, box_v = 2.0, np.array([0.0, 3.0])  # box crosses left-to-right... in odom: +y at 3 m/s
    for k in range(5):
        t = 0.1 * k
        ego_x = ego_v * t
        box_world = np.array([20.0, -6.0]) + box_v * t
        b = box(rng, box_world[0] - ego_x, box_world[1], 1.2, 1.2, 1.5)
        static = box(rng, 15.0 - ego_x, 6.0, 1.2, 1.2, 1.5)
        ob = extract_obstacles(cloud(ground(rng), b, static), t, params)
        tracker.update(ob, (ego_x, 0.0, 0.0))
    mov = int(np.argmin(np.abs(ob.centroids[:, 1] - box_world[1])))
    sta = 1 - mov
    np.testing.assert_allclose(ob.velocities[mov], box_v, atol=0.5)
    assert ob.moving[mov]
    assert np.hypot(*ob.velocities[sta]) < 0.5
    assert not ob.moving[sta]
    # Moving clusters leave the static grid and are predicted instead.
    ob.inflate(Footprint.from_config(cfg).radius + params.margin)
    assert not ob.occupied_at(ob.centroids[mov : mov + 1, 0], ob.centroids[mov : mov + 1, 1])[0]
    assert ob.occupied_at(ob.centroids[sta : sta + 1, 0], ob.centroids[sta : sta + 1, 1])[0]


def test_tracking_resets_after_gap(params, cfg):
    tracker = ClusterTracker(TrackingParams.from_config(cfg))
    rng = np.random.default_rng(7)
    for t in (0.0, 5.0):  # longer than max_dt: no velocity from a stale association
        ob = extract_obstacles(cloud(ground(rng), box(rng, 10 + t, 0, 1, 1, 1)), t, params)
        tracker.update(ob, (0.0, 0.0, 0.0))
    assert np.allclose(ob.velocities, 0.0)
    assert not ob.moving.any()


def test_real_kitti_scan(shared_data, params, cfg):
    pts = kitti_points(shared_data)
    ob = _inflated(pts, params, cfg)  # its time: bench/bench_planning.py (obstacles stage)
    roi, obst = ob.counts["roi"], ob.counts["obstacle"]
    # A street scene: a real share of ground returns removed, many separate objects found.
    assert 0.15 * roi < roi - obst < 0.9 * roi
    assert 5 <= ob.n_clusters <= 2000
    assert np.all(np.isfinite(ob.centroids)) and np.all(ob.radii > 0)
    # Points low on the road near the car are ground: the cells right in front are free.
    assert not ob.occupied[(ob.occupied.shape[0] // 2), int((4.0 - ob.origin[0]) / ob.resolution)]
