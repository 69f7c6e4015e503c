"""Anchor trajectories: k-means over training trajectories, or a seeded kinematic sweep.

The shipped (untrained) model uses :func:`kinematic_anchors`; the training session fits
real anchors with :func:`kmeans_anchors` on the dataset's expert trajectories and stores
them in the checkpoint (``head.anchors``) and so in the engine manifest.
"""

from __future__ import annotations

import numpy as np


def kmeans_anchors(trajs: np.ndarray, k: int, iters: int = 50, seed: int = 0) -> np.ndarray:
    """Cluster trajectories into ``k`` anchors (k-means++ init, Lloyd iterations).

    Args:
        trajs: N x T x 3 (x, y, yaw) trajectories, metres/radians.
        k: Number of anchors (A).
        iters: Lloyd iterations.
        seed: RNG seed for the k-means++ initialisation.

    Returns:
        k x T x 3 float32 cluster centres, sorted by final x (then y) for a stable order.

    Raises:
        ValueError: If there are fewer trajectories than anchors or the shape is wrong.
    """
    x = np.asarray(trajs, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"trajectories must be N x T x 3, got {x.shape}")
    if len(x) < k:
        raise ValueError(f"need at least k={k} trajectories for k-means, got {len(x)}")
    flat = x.reshape(len(x), -1)
    rng = np.random.default_rng(seed)
    centres = [flat[rng.integers(len(flat))]]
    for _ in range(1, k):
        d2 = np.min(((flat[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        probs = d2 / d2.sum() if d2.sum() > 0 else np.full(len(flat), 1.0 / len(flat))
        centres.append(flat[rng.choice(len(flat), p=probs)])
    c = np.array(centres)
    for _ in range(iters):
        label = np.argmin(((flat[:, None] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([flat[label == j].mean(0) if np.any(label == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    c = c.reshape(k, x.shape[1], 3)
    order = np.lexsort((c[:, -1, 1], c[:, -1, 0]))
    return c[order].astype(np.float32)


def kinematic_anchors(num_anchors: int, num_poses: int, dt: float, seed: int = 0) -> np.ndarray:
    """Plausible placeholder anchors from a seeded sweep of unicycle motions.

    Samples initial speeds (0-20 m/s), accelerations (-3..2 m/s^2) and yaw rates
    (|w| <= 0.4 rad/s), integrates ``num_poses`` steps of ``dt`` and k-means them.

    Returns:
        ``num_anchors x num_poses x 3`` float32 (x, y, yaw).
    """
    rng = np.random.default_rng(seed)
    n = 2000
    v0 = rng.uniform(0.0, 20.0, n)
    acc = rng.uniform(-3.0, 2.0, n)
    w = rng.uniform(-0.4, 0.4, n) * np.exp(-v0 / 15.0)  # sharp turns only at low speed
    sub = 10  # integration substeps per pose
    h = dt / sub
    x = np.zeros(n)
    y = np.zeros(n)
    yaw = np.zeros(n)
    v = v0.copy()
    out = np.zeros((n, num_poses, 3))
    for i in range(num_poses * sub):
        x += v * np.cos(yaw) * h
        y += v * np.sin(yaw) * h
        yaw += w * h
        v = np.maximum(v + acc * h, 0.0)
        if (i + 1) % sub == 0:
            out[:, (i + 1) // sub - 1] = np.stack([x, y, yaw], axis=1)
    return kmeans_anchors(out, num_anchors, seed=seed)
