"""Torch pillarization, bit-identical to :func:`vla_edge.pillarize.pillarize`, on any device.

The torch-CUDA backend pillarizes on the GPU with it (``torch_cuda.pillarize_on_gpu``), so a
frame crosses to the GPU as its N x 4 points instead of the P x M x C feature tensor, and the
training loop batches it over sparse clouds (``training.model.pillars`` re-exports it).
torch is imported inside the functions: the vehicle runtime never imports torch unless this
backend is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vla_edge.pillarize import ModelInputError, PillarSpec

if TYPE_CHECKING:
    from torch import Tensor


def pillarize_torch(points: Tensor, spec: PillarSpec) -> tuple[Tensor, Tensor, int]:
    """Torch twin of :func:`vla_edge.pillarize.pillarize` (same rules, float64 arithmetic).

    Args:
        points: N x >=4 tensor (x, y, z, intensity), any float dtype, on any device.
        spec: The pillar spec.

    Returns:
        ``(features [P, M, C] float32, coords [P, 2] int32, count)`` on ``points.device``.
    """
    import torch

    if points.ndim != 2 or points.shape[1] < spec.point_columns:
        raise ModelInputError(
            f"pillarize needs N x {spec.point_columns} points, got shape {tuple(points.shape)}"
        )
    n = torch.full((), points.shape[0], dtype=torch.long, device=points.device)
    feats, coords, count = pillarize_static(points, n, spec)
    return feats, coords, int(count)


def pillarize_static(points: Tensor, n: Tensor, spec: PillarSpec) -> tuple[Tensor, Tensor, Tensor]:
    """One cloud with static shapes and no host synchronisation, so a CUDA graph can hold it.

    Same rules and results as :func:`vla_edge.pillarize.pillarize`, but nothing is compacted:
    rows past ``n`` and dropped points get a sentinel key that sorts last, pillars are the
    runs of equal keys (found by comparing neighbours, not ``unique``), and every tensor is
    sized by the buffer's N, never by the data, so the torch-CUDA backend captures it once
    (``torch_cuda.max_points`` rows) and replays it per frame.

    Only sorts, cumulative sums, binary searches and gathers, no scatter or index_add: with
    ``torch_cuda.deterministic`` torch turns those into sort-based kernels that serialise
    repeated indices, and the padding rows all map to one spare index (H100, 300k-row buffer:
    150 ms a frame instead of under 3). One stable sort of the N keys (as int16 when the grid
    allows); the per-pillar arrays have ``min(N, H * W + 1)`` rows, are compacted by binary
    search of a running count, and the nearest-P cut needs one sort of their distances.

    Args:
        points: ``[N, >=point_columns]`` buffer; only the first ``n`` rows are the cloud.
        n: 0-d int64 tensor on ``points.device``, the number of valid rows.
        spec: The pillar spec.

    Returns:
        ``(features [P, M, C] float32, coords [P, 2] int32, count 0-d int32)``.
    """
    import torch

    dev = points.device
    N = int(points.shape[0])
    P, M = spec.max_pillars, spec.max_points
    H, W = spec.grid_size
    sentinel = H * W  # sorts after every real pillar index
    if N == 0:  # a static shape too: no cloud, no pillars
        C = spec.num_features
        zero = torch.zeros((), dtype=torch.int32, device=dev)
        return torch.zeros((P, M, C), device=dev), torch.zeros((P, 2), dtype=torch.int32, device=dev), zero
    idx = torch.arange(N, device=dev)
    p = points[:, : spec.point_columns].to(torch.float64)
    lo, hi = _device_const(spec.point_cloud_range[:3], dev), _device_const(spec.point_cloud_range[3:], dev)
    valid = (idx < n) & torch.isfinite(p).all(1) & ((p[:, :3] >= lo) & (p[:, :3] < hi)).all(1)
    p = torch.where(valid[:, None], p, torch.zeros_like(p))  # no NaN reaches floor/long
    vx, vy, vz = spec.voxel_size
    col = torch.clamp(torch.floor((p[:, 0] - lo[0]) / vx).long(), 0, W - 1)
    row = torch.clamp(torch.floor((p[:, 1] - lo[1]) / vy).long(), 0, H - 1)
    key = torch.where(valid, row * W + col, torch.full_like(col, sentinel))
    # The narrowest integer that holds the keys: the stable sort's permutation is the same for
    # any key dtype, and a GPU radix sort makes one pass per key byte (int16: 2 instead of 8).
    narrow = torch.int16 if sentinel < 1 << 15 else torch.int32
    key_s, order = torch.sort(key.to(narrow), stable=True)  # pillars in linear order, input order inside
    new = torch.ones(N, dtype=torch.bool, device=dev)
    new[1:] = key_s[1:] != key_s[:-1]
    # At most G groups (runs of equal keys, the sentinel's included), so group arrays have G rows,
    # not N. Group g starts at gstart[g], the first row where the running count of run starts
    # reaches g + 1 (a binary search of the sorted count, not a sort); past the last group: N.
    G = min(N, sentinel + 1)
    gidx = torch.arange(G + 1, device=dev)
    gstart = torch.searchsorted(torch.cumsum(new, 0), gidx + 1)
    gexists = gstart[:G] < N
    gkey = key_s[gstart[:G].clamp(max=N - 1)].long()
    gkey = torch.where(gexists, gkey, torch.full_like(gkey, sentinel))
    greal = gkey < sentinel
    # The nearest P pillars by centre distance; ties keep linear-index order (= group order).
    cx = spec.point_cloud_range[0] + ((gkey % W).to(torch.float64) + 0.5) * vx
    cy = spec.point_cloud_range[1] + ((gkey // W).to(torch.float64) + 0.5) * vy
    d2 = torch.where(greal, cx * cx + cy * cy, torch.full_like(cx, float("inf")))
    if G > P:
        # Rank < P in the stable sort by distance, without the rank: the groups nearer than the
        # P-th smallest distance, then the first of those tied with it, in group order, up to P.
        # One sort of the values instead of two (the inverse permutation); inf = fewer than P.
        thr = torch.sort(d2).values[P - 1]
        nearer = d2 < thr
        tie = d2 == thr
        kept = greal & (nearer | (tie & (torch.cumsum(tie, 0) <= P - nearer.sum())))
    else:
        kept = greal
    # Slot j holds the j-th kept group in linear order (G: empty slot), again by binary search.
    kg = torch.searchsorted(torch.cumsum(kept, 0), torch.arange(1, P + 1, device=dev))
    real = kg < G
    g = kg.clamp(max=G - 1)
    start = gstart[g]
    used = torch.where(real, torch.clamp(gstart[g + 1] - start, max=M), torch.zeros_like(start))
    m = torch.arange(M, device=dev)
    take = m[None, :] < used[:, None]  # [P, M]: the first M points of each kept pillar
    q = p[order[(start[:, None] + m[None, :]).clamp(max=N - 1)]]  # [P, M, point_columns], no N-row copy
    q = torch.where(take[..., None], q, torch.zeros_like(q))
    xyz = q[..., :3]
    mean = xyz.sum(1) / torch.clamp(used, min=1).to(torch.float64)[:, None]
    kl = torch.where(real, gkey[g], torch.zeros_like(g))
    centre = torch.stack(
        [
            lo[0] + ((kl % W).to(torch.float64) + 0.5) * vx,
            lo[1] + ((kl // W).to(torch.float64) + 0.5) * vy,
            torch.full((P,), spec.point_cloud_range[2] + 0.5 * vz, dtype=torch.float64, device=dev),
        ],
        dim=1,
    )
    feat = torch.cat(
        [xyz, q[..., 3:4] / spec.intensity_scale, xyz - mean[:, None], xyz - centre[:, None], q[..., 4:]],
        dim=2,
    )
    features = torch.where(take[..., None], feat, torch.zeros_like(feat)).to(torch.float32)
    coords = torch.where(real[:, None], torch.stack([kl // W, kl % W], 1), torch.zeros_like(kl)[:, None])
    return features, coords.to(torch.int32), real.sum().to(torch.int32)


def _device_const(values: tuple[float, ...], dev: object) -> Tensor:
    """A float64 constant made on the device by fills: no host-to-device copy, which a CUDA
    graph capture refuses."""
    import torch

    return torch.stack([torch.full((), float(v), dtype=torch.float64, device=dev) for v in values])


def pillarize_batch(points: Tensor, offsets: Tensor, spec: PillarSpec) -> tuple[Tensor, Tensor, Tensor]:
    """Pillarize B clouds at once (the training loop does this on the GPU from sparse points).

    Same rules as :func:`vla_edge.pillarize.pillarize`, applied per cloud: pillars are keyed
    by ``cloud * H * W + row * W + col``, so one stable sort groups every cloud's pillars in
    linear-index order and the nearest-``P`` selection ranks inside each cloud.

    Args:
        points: ``[N, >=4]`` points of all clouds, concatenated (``[N, >=5]`` with the time lag
            for multi-sweep specs).
        offsets: ``[B + 1]`` int64, cloud ``b`` is ``points[offsets[b]:offsets[b + 1]]``.
        spec: The pillar spec.

    Returns:
        ``(features [B, P, M, C] float32, coords [B, P, 2] int32, count [B] int32)``.
    """
    import torch

    dev = points.device
    B = int(offsets.shape[0]) - 1
    P, M, C = spec.max_pillars, spec.max_points, spec.num_features
    H, W = spec.grid_size
    features = torch.zeros((B, P, M, C), dtype=torch.float32, device=dev)
    coords = torch.zeros((B, P, 2), dtype=torch.int32, device=dev)
    count = torch.zeros((B,), dtype=torch.int32, device=dev)
    sizes = (offsets[1:] - offsets[:-1]).long()
    cloud = torch.repeat_interleave(torch.arange(B, device=dev), sizes, output_size=int(points.shape[0]))
    p = points[:, : spec.point_columns].to(torch.float64)  # x, y, z, intensity (, time lag)
    lo = torch.tensor(spec.point_cloud_range[:3], dtype=torch.float64, device=dev)
    hi = torch.tensor(spec.point_cloud_range[3:], dtype=torch.float64, device=dev)
    keep = torch.isfinite(p).all(1) & ((p[:, :3] >= lo) & (p[:, :3] < hi)).all(1)
    p, cloud = p[keep], cloud[keep]
    if p.shape[0] == 0:
        return features, coords, count
    vx, vy, vz = spec.voxel_size
    col = torch.clamp(torch.floor((p[:, 0] - lo[0]) / vx).long(), max=W - 1)
    row = torch.clamp(torch.floor((p[:, 1] - lo[1]) / vy).long(), max=H - 1)
    key = cloud * (H * W) + row * W + col

    key_s, order = torch.sort(key, stable=True)
    uniq, group, counts = torch.unique_consecutive(key_s, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts
    g_cloud = uniq // (H * W)
    g_lin = uniq % (H * W)
    # Rank each cloud's pillars by (centre distance, linear index); keep the first P per cloud.
    cx = spec.point_cloud_range[0] + ((g_lin % W).to(torch.float64) + 0.5) * vx
    cy = spec.point_cloud_range[1] + ((g_lin // W).to(torch.float64) + 0.5) * vy
    by_d = torch.sort(cx * cx + cy * cy, stable=True).indices  # ties keep linear-index order
    by_d = by_d[torch.sort(g_cloud[by_d], stable=True).indices]  # then group by cloud
    g_per_cloud = torch.bincount(g_cloud, minlength=B)
    g_first = torch.cumsum(g_per_cloud, 0) - g_per_cloud
    d_rank = torch.empty_like(by_d)
    d_rank[by_d] = torch.arange(by_d.shape[0], device=dev) - g_first[g_cloud[by_d]]
    kept = d_rank < P
    kept_cum = torch.cumsum(kept.long(), 0)
    kept_before_cloud = (kept_cum - kept.long())[g_first.clamp(max=max(0, uniq.shape[0] - 1))]
    slot_of_group = kept_cum - 1 - kept_before_cloud[g_cloud]
    rank = torch.arange(key_s.shape[0], device=dev) - first[group]
    use = kept[group] & (rank < M)
    q = p[order[use]]
    g_use = group[use]
    slot = slot_of_group[g_use]
    rank = rank[use]
    b_use = g_cloud[g_use]

    kg = torch.nonzero(kept).squeeze(1)  # kept groups, cloud-major then linear-index order
    n_pts = torch.clamp(counts[kg], max=M).to(torch.float64)
    flat_slot = torch.zeros(uniq.shape[0], dtype=torch.long, device=dev)
    flat_slot[kg] = torch.arange(kg.shape[0], device=dev)
    sums = torch.zeros((kg.shape[0], 3), dtype=torch.float64, device=dev).index_add_(
        0, flat_slot[g_use], q[:, :3]
    )
    mean = sums / n_pts[:, None]
    kl = g_lin[kg]
    centre = torch.stack(
        [
            lo[0] + ((kl % W).to(torch.float64) + 0.5) * vx,
            lo[1] + ((kl // W).to(torch.float64) + 0.5) * vy,
            torch.full((kg.shape[0],), float(lo[2] + 0.5 * vz), dtype=torch.float64, device=dev),
        ],
        dim=1,
    )
    fs = flat_slot[g_use]
    feat = torch.cat(
        [q[:, :3], q[:, 3:4] / spec.intensity_scale, q[:, :3] - mean[fs], q[:, :3] - centre[fs], q[:, 4:]],
        dim=1,
    )
    features[b_use, slot, rank] = feat.to(torch.float32)
    kb, ks = g_cloud[kg], slot_of_group[kg]
    coords[kb, ks, 0] = (kl // W).to(torch.int32)
    coords[kb, ks, 1] = (kl % W).to(torch.int32)
    count = torch.bincount(kb, minlength=B).to(torch.int32)
    return features, coords, count
