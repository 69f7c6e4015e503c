"""FP16 range check of the shipped student: FP16 weights and activations against FP32.

Runs the TorchScript artefact (``engines/student.ts``, the graph the torch-CUDA backend and,
through the ONNX, TensorRT run in FP16) with ``.half()`` weights and half inputs on the CPU
(no GPU needed), on simulated frames (held-out suite seed), and prints per frame whether
every output is finite, whether the best mode is the same, and the best-mode and all-mode
trajectory differences in metres. An overflow (inf/NaN) or a large difference here is what
an FP16 TensorRT engine would show too.

    python bench/bench_fp16_range.py [--frames 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=8, help="simulated frames (default 8)")
    p.add_argument("--artefact", default=str(ROOT / "engines" / "student.ts"), help="TorchScript file")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch not installed: FP16 range check skipped")
        return 0
    from training.quantize import runtime_noise, sim_feeds
    from vla_edge.backends.base import CONTRACT_INPUTS

    fp32 = torch.jit.load(args.artefact, map_location="cpu").eval()
    fp16 = torch.jit.load(args.artefact, map_location="cpu").eval().half()
    noise = runtime_noise(ROOT / "engines" / "student.onnx")
    feeds = sim_feeds(2, 97, 4.0, 4)[: args.frames]
    worst, bad = 0.0, 0
    print(f"{'frame':>5} {'finite':>6} {'same best':>9} {'best diff m':>11} {'all diff m':>10}")
    for k, f in enumerate(feeds):
        xs = [torch.from_numpy({**f, "noise": noise}[n]) for n in CONTRACT_INPUTS]
        with torch.no_grad():
            a = fp32(*xs)
            b = fp16(*[x.half() if x.is_floating_point() else x for x in xs])
        ta, sa = a[0][0].numpy(), a[1][0].numpy()
        tb, sb = b[0][0].float().numpy(), b[1][0].float().numpy()
        finite = bool(np.isfinite(tb).all() and np.isfinite(sb).all())
        ia, ib = int(sa.argmax()), int(sb.argmax())
        best = float(np.linalg.norm(ta[ia, :, :2] - tb[ib, :, :2], axis=-1).max())
        worst, bad = max(worst, best), bad + (not finite)
        print(f"{k:>5} {finite!s:>6} {ia == ib!s:>9} {best:>11.3f} {float(np.abs(ta - tb).max()):>10.3f}")
    print(
        f"FP16 vs FP32 over {len(feeds)} frames: worst best-mode difference {worst:.3f} m, non-finite {bad}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
