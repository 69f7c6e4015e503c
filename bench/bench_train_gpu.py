"""GPU training throughput of the sparse on-policy path: batched pillarization and train steps.

Prints absolute times (GPU only; skips on a machine without CUDA). Synthetic clouds of
``--points`` points stand in for sweeps; the model is ``--preset`` at ``--batch``.

    python bench/bench_train_gpu.py --batch 256 --points 15000
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256, help="global batch (default 256)")
    ap.add_argument("--points", type=int, default=15000, help="points per synthetic sweep (default 15000)")
    ap.add_argument("--preset", default="tiny", help="model preset (default tiny)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    ap.add_argument("--profile", action="store_true", help="also print the top CUDA kernels of 5 steps")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA: GPU benchmark skipped")
        return 0
    from training.model.anchors import kinematic_anchors
    from training.model.pillars import pillarize_batch
    from training.modelio import build, train_forward
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec

    dev = torch.device("cuda")
    mcfg = load_config("model")
    spec = PillarSpec.from_config(mcfg)
    rng = np.random.default_rng(0)
    B, N = args.batch, args.points
    pts = torch.from_numpy(
        rng.uniform([-40, -40, -2, 0], [40, 40, 2, 255], (B * N, 4)).astype(np.float32)
    ).to(dev)
    off = torch.arange(0, B * N + 1, N, device=dev)
    for _ in range(3):
        pillarize_batch(pts, off, spec)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        f, c, n = pillarize_batch(pts, off, spec)
    torch.cuda.synchronize()
    t_pil = (time.perf_counter() - t0) / 10
    anchors = kinematic_anchors(20, 8, 0.5)
    model = build(args.preset, mcfg, anchors).to(dev)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    batch = {
        "pillar_features": f,
        "pillar_coords": c,
        "pillar_count": n,
        "ego_state": torch.zeros(B, 6, device=dev),
        "reference_path": torch.zeros(B, 16, 2, device=dev),
    }
    tt = torch.randint(0, 50, (B,), device=dev)
    noise = torch.randn(B, 20, 8, 3, device=dev)
    torch.backends.cudnn.benchmark = True

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = train_forward(model, batch, tt, noise)
        loss = out["trajectories"].float().square().mean() + out["scores"].float().square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    t_step = (time.perf_counter() - t0) / args.steps
    if args.profile:  # where a step's GPU time goes (the per-step figure above stays unprofiled)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    print(
        f"{torch.cuda.get_device_name()}: pillarize_batch {B}x{N} pts {1e3 * t_pil:.1f} ms; "
        f"{args.preset} train step (bf16, batch {B}) {1e3 * t_step:.1f} ms; "
        f"{B / (t_pil + t_step):.0f} frames/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
