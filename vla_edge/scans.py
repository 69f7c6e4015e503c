"""Real LiDAR scan files as N x 4 float32 arrays (no ROS): KITTI/nuScenes ``.bin`` and ``.pcd``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: Mounting preset (calibration.yaml ``mounting_presets``) of the real scans by file-name prefix:
#: each dataset's LiDAR as mounted on its car, so a scan reaches the base frame as recorded.
SCAN_PRESETS = {"nuscenes": "nuscenes_lidar_top", "kitti": "kitti_hdl64e", "hesai": "nebula_hesai_qt64"}


def scan_preset(path: str) -> str:
    """The mounting preset of a real scan file by its name ("" when none is known)."""
    name = Path(path).name.lower()
    return next((p for key, p in SCAN_PRESETS.items() if name.startswith(key)), "")


def load_scan(path: str, n_points: int | None = None, seed: int = 0) -> np.ndarray:
    """A real scan as N x 4 float32 (KITTI ``.bin`` 4 floats, nuScenes ``.bin`` 5 floats, ``.pcd``).

    With ``n_points``, the scan is cut or tiled (with 3 cm jitter, so points are distinct)
    to exactly that many points.
    """
    if path.endswith(".pcd"):
        from vla_edge.conversions.pcd import pcd_to_xyzi, read_pcd

        pts = pcd_to_xyzi(read_pcd(path))
    else:
        raw = np.fromfile(path, dtype=np.float32)
        cols = 5 if "nuscenes" in path else 4
        pts = raw.reshape(-1, cols)[:, :4]
    pts = np.ascontiguousarray(pts, dtype=np.float32)
    return pts if n_points is None else tile_points(pts, n_points, seed)


def tile_points(pts: np.ndarray, n_points: int, seed: int = 0) -> np.ndarray:
    """``pts`` (N x 4) cut or repeated to exactly ``n_points`` rows; copies after the first get
    3 cm of seeded jitter (intensity kept), so the points stay distinct."""
    reps = math.ceil(n_points / len(pts))
    rng = np.random.default_rng(seed)
    tiled = np.concatenate(
        [pts + (rng.normal(0, 0.03, pts.shape) * (i > 0)).astype(np.float32) for i in range(reps)]
    )
    tiled[:, 3] = np.tile(pts[:, 3], reps)
    return np.ascontiguousarray(tiled[:n_points])
