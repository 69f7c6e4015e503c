"""DDP with 2 CPU processes (gloo) takes the same steps as 1 process for a fixed seed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_torch

pytestmark = requires_torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _arrays(n: int = 16, pillars: int = 200) -> dict[str, np.ndarray]:
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec

    spec = PillarSpec.from_config(load_config("model"))
    rng = np.random.default_rng(0)
    P, M, C = spec.max_pillars, spec.max_points, spec.num_features
    H, W = spec.grid_size
    pf = np.zeros((n, P, M, C), np.float16)
    pc = np.zeros((n, P, 2), np.int16)
    for i in range(n):
        pf[i, :pillars] = rng.normal(size=(pillars, M, C))
        lin = np.sort(rng.choice(H * W, pillars, replace=False))
        pc[i, :pillars] = np.column_stack([lin // W, lin % W])
    k = np.arange(1, 9)[None, :, None] * np.array([2.5, 0.0, 0.0])
    gt = (k + rng.normal(scale=0.3, size=(n, 8, 3))).astype(np.float32)
    return {
        "bag": np.array(["b"] * n), "stamp": np.arange(n) * 0.1, "pillar_features": pf, "pillar_coords": pc,
        "pillar_count": np.full(n, pillars, np.int32),
        "ego_state": rng.normal(size=(n, 6)).astype(np.float32),
        "reference_path": rng.normal(size=(n, 16, 2)).astype(np.float32), "gt": gt,
    }  # fmt: skip


def _worker(rank: int, world: int, accum: int, out: str, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    import torch

    torch.set_num_threads(1)
    from training import distributed as dist_utils
    from training.data import SplitData
    from training.distill import LossWeights
    from training.model.anchors import kinematic_anchors
    from training.trainer import RunSpec, train
    from vla_edge.config import load_config

    cfg, mc = load_config("train"), load_config("model")
    mc["presets"]["micro"] = {
        "pfn_channels": 8, "stages": [[8, 1, 2], [16, 1, 2]], "bev_channels": 16, "neck_stride": 4,
        "d_model": 32, "num_heads": 4, "ffn_dim": 64, "decoder_layers": 2, "vanilla": False,
    }  # fmt: skip
    cfg["train"].update(
        batch_size=8, log_every=1, val_every=1000, ckpt_every=1000, warmup_steps=1, val_max_frames=4
    )
    data = SplitData(_arrays())
    info = dist_utils.setup(force_cpu=True)
    w = LossWeights.from_config(cfg["loss"]).gt_only()
    spec = RunSpec(
        "ddp", "micro", Path(out) / f"w{world}_r{rank}", w, 3e-3, 0, 2, grad_accum=accum, force_cpu=True
    )
    train(spec, data, data.subset(np.arange(4)), kinematic_anchors(20, 8, 0.5), cfg, mc, info)
    dist_utils.teardown()


def _params(path: Path) -> dict:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    return {k: v.float() for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def test_two_gloo_processes_match_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, 1, str(tmp_path), _free_port()), nprocs=2, join=True)
    _worker(0, 1, 2, str(tmp_path), _free_port())  # same global batch, 2 micro-batches accumulated
    two, one = _params(tmp_path / "w2_r0" / "last.pt"), _params(tmp_path / "w1_r0" / "last.pt")
    ck = __import__("torch").load(tmp_path / "w1_r0" / "last.pt", weights_only=False)
    assert ck["step"] == 4  # 16 frames / batch 8 x 2 epochs
    diff = max(float((two[k] - one[k]).abs().max()) for k in one)
    assert diff < 1e-5
    # and training really moved the weights (the comparison is not between two untouched inits)
    from training.model.anchors import kinematic_anchors
    from training.modelio import build
    from vla_edge.config import load_config

    mc = load_config("model")
    mc["presets"]["micro"] = {
        "pfn_channels": 8, "stages": [[8, 1, 2], [16, 1, 2]], "bev_channels": 16, "neck_stride": 4,
        "d_model": 32, "num_heads": 4, "ffn_dim": 64, "decoder_layers": 2, "vanilla": False,
    }  # fmt: skip
    init = build("micro", mc, kinematic_anchors(20, 8, 0.5)).state_dict()
    moved = max(float((one[k] - init[k].float()).abs().max()) for k in one)
    assert moved > 1e-3


def test_batch_must_split_evenly(tmp_path):
    from training import distributed as dist_utils
    from training.data import SplitData
    from training.distill import LossWeights
    from training.trainer import RunSpec, TrainingError, train
    from vla_edge.config import load_config

    cfg = load_config("train")
    cfg["train"]["batch_size"] = 7
    w = LossWeights.from_config(cfg["loss"]).gt_only()
    spec = RunSpec("bad", "tiny", tmp_path, w, 1e-3, 0, 1, grad_accum=2, force_cpu=True)
    info = dist_utils.setup(force_cpu=True)
    with pytest.raises(TrainingError, match="split evenly"):
        train(
            spec,
            SplitData(_arrays(8)),
            SplitData(_arrays(8)),
            np.zeros((20, 8, 3)),
            cfg,
            load_config("model"),
            info,
        )
    cfg["train"]["batch_size"] = 16
    with pytest.raises(TrainingError, match="fewer than one batch"):
        train(
            RunSpec("bad", "tiny", tmp_path, w, 1e-3, 0, 1, force_cpu=True),
            SplitData(_arrays(8)), SplitData(_arrays(8)), np.zeros((20, 8, 3)), cfg, load_config("model"),
            info,
        )  # fmt: skip
