"""Process-group plumbing: one entry point for 1 CPU process or ``torchrun`` DDP on N GPUs/nodes.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT``; without them
the run is a single process. The backend is NCCL on GPU and gloo on CPU.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank.
        world: Number of processes.
        local_rank: Rank on this node (selects the GPU).
        device: The torch device of this process.
    """

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0 (logging, checkpoints, exports)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group with more than one rank is active."""
        return self.world > 1


def setup(force_cpu: bool = False) -> DistInfo:
    """Initialise the process group if launched by ``torchrun`` and pick the device.

    Args:
        force_cpu: Use the CPU (and gloo) even when CUDA is available.

    Returns:
        The process's :class:`DistInfo`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not force_cpu
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        log.info("DDP rank %d/%d on %s (%s)", rank, world, device, backend)
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def teardown() -> None:
    """Destroy the process group if one was created."""
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_all(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def all_reduce_min(value: float, info: DistInfo) -> float:
    """Minimum of ``value`` over ranks (identity on a single process)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return float(t.item())


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (identity on a single process)."""
    if not info.distributed:
        return values
    v = values.detach().clone()
    dist.all_reduce(v, op=dist.ReduceOp.SUM)
    return v / info.world


def barrier(info: DistInfo) -> None:
    """Synchronise ranks (no-op on a single process)."""
    if info.distributed:
        dist.barrier()
