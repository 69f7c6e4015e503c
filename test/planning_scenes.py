"""Synthetic LiDAR scenes for the planning tests: real point sets (ground + boxes), not mocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_edge.planning import PlanningCycle, load_planning_config
from vla_edge.types import EgoState, Frame, Trajectory

KITTI_SENSOR_HEIGHT = 1.73  # m, HDL-64E above the road in KITTI (velodyne frame -> base_link z)


def ground(rng: np.random.Generator, n: int = 12000, x=(-10.0, 60.0), y=(-20.0, 20.0)) -> np.ndarray:
    """Flat ground returns with 2 cm noise, N x 4."""
    return np.stack(
        [rng.uniform(*x, n), rng.uniform(*y, n), rng.normal(0.0, 0.02, n), rng.uniform(0, 1, n)], axis=1
    )


def box(
    rng: np.random.Generator, cx: float, cy: float, sx: float, sy: float, h: float, n: int = 1500
) -> np.ndarray:
    """Points on the surface of an axis-aligned box standing on the ground, N x 4."""
    face = rng.integers(0, 5, n)
    u, v = rng.uniform(-0.5, 0.5, n), rng.uniform(0, 1, n)
    x = np.where(face == 0, -0.5, np.where(face == 1, 0.5, u))
    y = np.where(face == 2, -0.5, np.where(face == 3, 0.5, np.where(face < 2, u, rng.uniform(-0.5, 0.5, n))))
    z = np.where(face == 4, 1.0, v)
    return np.stack([cx + sx * x, cy + sy * y, h * z, np.ones(n)], axis=1)


def cloud(*parts: np.ndarray) -> np.ndarray:
    """Concatenate point sets into a float32 N x 4 cloud."""
    return np.vstack(parts).astype(np.float32)


def straight_path(x0: float = -5.0, x1: float = 80.0, n: int = 60, y: float = 0.0) -> np.ndarray:
    """Straight reference path along x (ego frame)."""
    return np.stack([np.linspace(x0, x1, n), np.full(n, y)], axis=1)


def student_straight(v: float, stamp: float, lateral: float = 0.0) -> Trajectory:
    """Constant-speed student plan (8 x 0.5 s), optionally offset to the side by ``lateral``."""
    t = 0.5 * np.arange(1, 9)
    y = lateral * np.clip(t / 2.0, 0, 1) ** 2
    return Trajectory(np.stack([v * t, y, np.zeros_like(t)], axis=1), 0.5, stamp, None, "student")


def frame_at(
    stamp: float,
    points: np.ndarray,
    v: float,
    x: float = 0.0,
    path: np.ndarray | None = None,
    stale: set[str] | None = None,
) -> Frame:
    """Frame of an ego driving along +x in the odom frame at position ``x``."""
    path = straight_path() if path is None else path
    ego = EgoState(stamp, x, 0.0, 0.0, v, 0.0, 0.0)
    return Frame(stamp, points, ego, path, stale=set(stale or ()))


def cycle(**overrides: dict) -> PlanningCycle:
    """PlanningCycle from config/ with optional section overrides (deep-merged one level)."""
    cfg = load_planning_config()
    for section, values in overrides.items():
        for key, val in values.items():
            if isinstance(val, dict):
                cfg[section][key] = {**cfg[section][key], **val}
            else:
                cfg[section][key] = val
    return PlanningCycle.from_config(cfg)


def kitti_points(shared_data: Path) -> np.ndarray:
    """The real KITTI scan moved into base_link (z = 0 on the road)."""
    pts = np.fromfile(shared_data / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4).copy()
    pts[:, 2] += KITTI_SENSOR_HEIGHT
    return pts
