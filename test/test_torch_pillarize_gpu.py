"""GPU pillarization for the torch-CUDA backend (``torch_cuda.pillarize_on_gpu``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COMMITTED_SCAN, real_scan_paths

from vla_edge.scans import load_scan

REPO = Path(__file__).resolve().parents[1]


def test_module_imports_without_torch() -> None:
    """The vehicle runtime may import the module; torch loads only when a function runs."""
    code = (
        "import sys, vla_edge.backends.torch_pillarize, vla_edge.inference; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def _cuda() -> object:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch


def test_gpu_pillars_are_the_numpy_pillars() -> None:
    torch = _cuda()
    from vla_edge.backends.torch_pillarize import pillarize_torch
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec, pillarize

    spec = PillarSpec.from_config(load_config("model"))
    for scan in real_scan_paths():  # the committed Hesai scan (+ KITTI/nuScenes where fetched)
        pts = load_scan(str(scan))
        f, c, n = pillarize(pts, spec)
        ft, ct, nt = pillarize_torch(torch.from_numpy(pts).cuda(), spec)
        assert nt == n
        np.testing.assert_array_equal(ft.cpu().numpy(), f)
        np.testing.assert_array_equal(ct.cpu().numpy(), c)


@pytest.mark.parametrize("fuse", [False, True])
def test_runner_gives_the_same_plan_with_gpu_pillars(fuse: bool) -> None:
    """Both GPU layouts (``torch_cuda.fuse_graphs``: two graphs, or one per bucket holding
    pillarization and model) plan exactly as the CPU pillars."""
    _cuda()
    from vla_edge.config import load_config
    from vla_edge.inference import StudentRunner
    from vla_edge.types import EgoState, Frame

    model_cfg = load_config("model")
    path = np.stack([np.linspace(-2.0, 40.0, 40), np.zeros(40)], 1)
    pts = load_scan(str(COMMITTED_SCAN))
    # the second frame's ego speed differs: the fused graph must read this frame's inputs
    frames = [Frame(1.0, pts, EgoState(1.0, 0.0, 0.0, 0.0, v, 0.0, 0.0), path) for v in (4.0, 8.0)]
    outs = {}
    for on_gpu in (False, True):
        inf = load_config("inference")
        inf["torch_cuda"]["pillarize_on_gpu"] = on_gpu
        inf["torch_cuda"]["fuse_graphs"] = fuse
        with StudentRunner.from_config(model_cfg, "torch_cuda", None, inf) as runner:
            assert runner.backend.pillarize_on_device is on_gpu
            if on_gpu:
                pz = runner.backend._pillarizer
                assert pz.captured, pz.capture_error or runner.backend.capture_error
                assert pz.fused is fuse, pz.fused_error
            outs[on_gpu] = [runner.run(f) for f in frames]
    for gpu, cpu in zip(outs[True], outs[False]):
        assert gpu.pillar_count == cpu.pillar_count > 0
        np.testing.assert_array_equal(gpu.trajectories, cpu.trajectories)
        assert gpu.timing_ms["pillarize"] > 0
    assert not np.array_equal(outs[True][0].trajectories, outs[True][1].trajectories)


def test_runner_fetches_the_bev_only_when_asked() -> None:
    """``torch_cuda.fetch_bev``: off, the BEV stays on the GPU and the plans are unchanged; a
    frame whose inputs fail after its points were launched leaves no trace in the next one."""
    _cuda()
    from vla_edge.config import load_config
    from vla_edge.inference import StudentRunner
    from vla_edge.pillarize import ModelInputError
    from vla_edge.types import EgoState, Frame

    path = np.stack([np.linspace(-2.0, 40.0, 40), np.zeros(40)], 1)
    frame = Frame(1.0, load_scan(str(COMMITTED_SCAN)), EgoState(1.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0), path)
    outs = {}
    for fetch in (False, True):
        inf = load_config("inference")
        inf["torch_cuda"]["fetch_bev"] = fetch
        with StudentRunner.from_config(load_config("model"), "torch_cuda", None, inf) as runner:
            outs[fetch] = runner.run(frame)
            bad = Frame(2.0, frame.points, frame.ego, np.full((40, 2), np.nan))
            with pytest.raises(ModelInputError):
                runner.run(bad)
            again = runner.run(frame)
            np.testing.assert_array_equal(again.trajectories, outs[fetch].trajectories)
            assert again.pillar_count == outs[fetch].pillar_count > 0
    assert outs[False].bev is None
    assert outs[True].bev is not None and outs[True].bev.shape == (128, 40, 40)
    assert np.isfinite(outs[True].bev).all()
    np.testing.assert_array_equal(outs[True].trajectories, outs[False].trajectories)


def _pillarizer_case(
    torch: object, device: str, spec: object, max_points: int, dtype: object, tail: object = None
) -> tuple:
    from vla_edge.backends.gpu_pillars import GpuPillarizer

    P, M, C = spec.max_pillars, spec.max_points, spec.num_features
    targets = {
        "pillar_features": torch.zeros((1, P, M, C), dtype=dtype, device=device),
        "pillar_coords": torch.zeros((1, P, 2), dtype=torch.int32, device=device),
        "pillar_count": torch.zeros((1,), dtype=torch.int32, device=device),
    }
    pz = GpuPillarizer(
        torch, torch.device(device), spec, max_points, targets, use_graph=True,
        tail=None if tail is None else (lambda: tail(targets)),
    )  # fmt: skip
    return pz, targets


def _check_targets(targets: dict, pts: np.ndarray, spec: object, dtype: object) -> None:
    from vla_edge.pillarize import pillarize

    f, c, n = pillarize(pts, spec)
    assert int(targets["pillar_count"][0]) == n
    np.testing.assert_array_equal(targets["pillar_features"][0].cpu().numpy(), f.astype(dtype))
    np.testing.assert_array_equal(targets["pillar_coords"][0].cpu().numpy(), c)


def test_pillarizer_buffers_on_cpu(committed_scan: np.ndarray) -> None:
    """The fixed point buffer (CPU device: no graph): a smaller cloud after a larger one leaves
    no stale rows, a cloud over max_points takes the eager path, and features land in the
    model's dtype."""
    torch = pytest.importorskip("torch")
    from vla_edge.backends.gpu_pillars import SMALLEST_BUCKET, bucket_sizes
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec

    assert bucket_sizes(300000) == [32768, 65536, 131072, 262144, 300000]
    assert bucket_sizes(32768) == [32768] and bucket_sizes(1000) == [1000]
    spec = PillarSpec.from_config(load_config("model"))
    pz, targets = _pillarizer_case(torch, "cpu", spec, 20000, torch.float16)
    assert not pz.captured
    for pts in (committed_scan[:20000], committed_scan[:5000], committed_scan):  # last: oversize
        pz(pts)
        _check_targets(targets, pts, spec, np.float16)
    # Three buckets: a cloud goes through the smallest buffer that holds it, stale rows ignored.
    big = np.concatenate([committed_scan, committed_scan + np.float32([0.01, 0.0, 0.0, 0.0])])
    assert len(big) > SMALLEST_BUCKET
    pz, targets = _pillarizer_case(torch, "cpu", spec, len(big), torch.float32)
    assert pz.sizes == [SMALLEST_BUCKET, 2 * SMALLEST_BUCKET, len(big)]
    for pts in (big, big[:1000], big[: SMALLEST_BUCKET + 1], big[:SMALLEST_BUCKET]):
        pz(pts)
        _check_targets(targets, pts, spec, np.float32)


def test_pillarizer_graph_on_gpu() -> None:
    """Captured once, replayed per cloud: the same pillars as numpy, scan after scan."""
    torch = _cuda()
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec

    spec = PillarSpec.from_config(load_config("model"))
    pz, targets = _pillarizer_case(torch, "cuda", spec, 300000, torch.float32)
    assert pz.captured, pz.capture_error
    for scan in real_scan_paths():  # the committed Hesai scan (+ KITTI/nuScenes where fetched)
        pts = load_scan(str(scan))
        pz(pts)
        torch.cuda.synchronize()
        _check_targets(targets, pts, spec, np.float32)


def test_fused_graph_runs_the_tail_after_the_pillars_on_gpu(committed_scan: np.ndarray) -> None:
    """With a tail (the backend passes the model forward) each bucket's one graph pillarizes and
    then runs it on the fresh pillars; an oversize cloud is pillarized eagerly and returns None."""
    torch = _cuda()
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec, pillarize

    spec = PillarSpec.from_config(load_config("model"))
    tail = lambda tg: [tg["pillar_coords"] + 1, tg["pillar_count"] * 2]  # noqa: E731 - exact, integer
    pz, targets = _pillarizer_case(torch, "cuda", spec, 2 * len(committed_scan), torch.float16, tail)
    assert pz.fused, pz.fused_error or pz.capture_error
    big = np.concatenate([committed_scan, committed_scan + np.float32([0.01, 0.0, 0.0, 0.0])])
    for pts in (committed_scan, committed_scan[:3000], big, committed_scan[::2]):
        outs = pz(pts)
        torch.cuda.synchronize()
        _check_targets(targets, pts, spec, np.float16)
        _, c, n = pillarize(pts, spec)
        np.testing.assert_array_equal(outs[0][0].cpu().numpy(), c + 1)
        assert int(outs[1][0]) == 2 * n
    pz, targets = _pillarizer_case(torch, "cuda", spec, 3000, torch.float32, tail)
    assert pz(committed_scan) is None  # above max_points: eager, the caller runs the model
    torch.cuda.synchronize()
    _check_targets(targets, committed_scan, spec, np.float32)
