"""Pillar net forward + backward: the dense form (eval, export) against the packed training form.

Side by side in one process on the CPU (or CUDA with ``--device cuda``); prints the ratio.
Both take the same ``[B, P, M, C]`` batch with ``--occupancy`` of its point slots filled, as a
training batch from the on-policy store is (about a fifth of 4 096 x 16 slots).

    python bench/bench_pillar_net.py --batch 8 --occupancy 0.2
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8, help="frames per batch (default 8)")
    ap.add_argument("--occupancy", type=float, default=0.2, help="share of point slots filled (default 0.2)")
    ap.add_argument("--iters", type=int, default=5, help="timed forward+backward passes (default 5)")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = ap.parse_args()
    import torch

    from training.model.config import ModelConfig
    from training.model.pillars import PillarFeatureNet

    cfg = ModelConfig.from_config(preset="tiny")
    dev = torch.device(args.device)
    torch.manual_seed(0)
    net = PillarFeatureNet(cfg.spec.num_features, cfg.net.pfn_channels).to(dev)
    shape = (args.batch, cfg.spec.max_pillars, cfg.spec.max_points)
    feats = torch.randn(*shape, cfg.spec.num_features, device=dev)
    feats *= (torch.rand(*shape, 1, device=dev) < args.occupancy).float()

    def timed(train: bool) -> float:
        net.train(train)
        for _ in range(2):  # warm-up
            net(feats).sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            net(feats).sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / args.iters

    dense, packed = timed(False), timed(True)
    print(
        f"pillar net fwd+bwd, batch {args.batch}, {shape[1]}x{shape[2]} slots, occupancy {args.occupancy}, "
        f"{dev.type}: dense {1e3 * dense:.1f} ms, packed {1e3 * packed:.1f} ms, "
        f"packed / dense {packed / dense:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
