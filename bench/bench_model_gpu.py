"""GPU benchmark of the student presets: torch FP16 + CUDA graphs, batch 1.

Prints per preset (tiny, base, teacher, vanilla = base with 20-step pure-noise diffusion):
parameters, forward FLOPs (``torch.utils.flop_counter.FlopCounterMode``), and the latency of
one CUDA-graph replay (median, p99 over ``--iters``); then the head-only latency of the
truncated (2 steps from t=8) vs vanilla (20 steps from t=999) schedule on the base-sized
head, the ratios teacher/base, teacher/tiny and vanilla/truncated head, and the goals
(base <= 2 ms, head speedup >= 8x, teacher/base >= 5x). Also loads the shipped TorchScript
artefact (``engines/student.ts``) on CUDA in FP16 and compares it with the FP32 eager model.

Skips cleanly (exit 0, message) where torch sees no CUDA device.

Usage::

    python bench/bench_model_gpu.py [--iters 200] [--presets tiny base teacher vanilla]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_BASE_MS = 2.0  # base end-to-end latency goal on the GPU, ms
GOAL_HEAD_SPEEDUP = 8.0  # vanilla-20 head / truncated head
GOAL_TEACHER_RATIO = 5.0  # teacher / base latency


def graph_timer(fn: Callable[[], object], iters: int, warmup: int = 5) -> tuple[float, float]:
    """Capture ``fn`` (static inputs inside) in a CUDA graph; return (median, p99) replay ms."""
    import torch

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        fn()
    for _ in range(warmup):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(iters):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times)), float(np.percentile(times, 99))


def flops_of(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call, counted by FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=200, help="timed CUDA-graph replays per case")
    ap.add_argument("--presets", nargs="+", default=["tiny", "base", "teacher", "vanilla"])
    ap.add_argument("--nchw", action="store_true", help="keep NCHW instead of channels_last for the convs")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("SKIP bench_model_gpu: torch is not installed (pip install .[train])")
        return 0
    if not torch.cuda.is_available():
        print(f"SKIP bench_model_gpu: torch {torch.__version__} sees no CUDA device; run it on a GPU machine")
        return 0
    from training.export import example_inputs
    from training.model.presets import build_model

    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    layout = "NCHW" if args.nchw else "channels_last"
    print(f"device: {torch.cuda.get_device_name(0)}  torch {torch.__version__}")
    print(f"torch FP16 + CUDA graphs, batch 1, {layout}, {args.iters} replays per case")
    rows, lat, heads = [], {}, {}
    for preset in args.presets:
        model = build_model(preset, seed=0)
        inputs = {k: v.to(dev) for k, v in example_inputs(model).items()}
        model = model.to(dev).half().eval()
        if not args.nchw:  # channels_last: ~20% faster cuDNN FP16 convs on Hopper
            model = model.to(memory_format=torch.channels_last)
        inputs = {k: v.half() if v.is_floating_point() else v for k, v in inputs.items()}
        params = sum(p.numel() for p in model.parameters())
        flops = flops_of(lambda m=model, x=inputs: m(x))
        med, p99 = graph_timer(lambda m=model, x=inputs: m(x), args.iters)
        lat[preset] = med
        rows.append((preset, params, flops, med, p99))
        if preset in ("base", "vanilla"):
            with torch.no_grad():
                enc = model.encode(inputs)
            noise = inputs["noise"]
            head_flops = flops_of(lambda m=model, e=enc, z=noise: m.head(z, e, e["bev_value"]))
            hmed, hp99 = graph_timer(lambda m=model, e=enc, z=noise: m.head(z, e, e["bev_value"]), args.iters)
            heads[preset] = (head_flops, hmed, hp99, model.head.timesteps)
        del model
        torch.cuda.empty_cache()

    print(f"\n{'preset':<9}{'params':>12}{'GFLOPs':>10}{'median ms':>11}{'p99 ms':>9}")
    for preset, params, flops, med, p99 in rows:
        print(f"{preset:<9}{params / 1e6:>11.2f}M{flops / 1e9:>10.2f}{med:>11.3f}{p99:>9.3f}")
    if heads:
        print("\nhead only (base size):")
        for name, (hf, hmed, hp99, ts) in heads.items():
            kind = "truncated" if name == "base" else "vanilla"
            print(f"  {kind:<10} steps={len(ts):<3} t={ts[:3]}...  GFLOPs {hf / 1e9:.3f}  "
                  f"median {hmed:.3f} ms  p99 {hp99:.3f} ms")  # fmt: skip
    print("\nratios (same run):")
    if "teacher" in lat and "base" in lat:
        r = lat["teacher"] / lat["base"]
        ok = "PASS" if r >= GOAL_TEACHER_RATIO else "FAIL"
        print(f"  teacher / base latency  = {r:.2f}x  (goal >= {GOAL_TEACHER_RATIO}x: {ok})")
    if "teacher" in lat and "tiny" in lat:
        print(f"  teacher / tiny latency  = {lat['teacher'] / lat['tiny']:.2f}x")
    if "base" in heads and "vanilla" in heads:
        r = heads["vanilla"][1] / heads["base"][1]
        ok = "PASS" if r >= GOAL_HEAD_SPEEDUP else "FAIL"
        print(f"  vanilla-20 / truncated head = {r:.2f}x  (goal >= {GOAL_HEAD_SPEEDUP}x: {ok})")
    if "vanilla" in lat and "base" in lat:
        print(f"  vanilla / base end-to-end = {lat['vanilla'] / lat['base']:.2f}x")
    if "base" in lat:
        ok = lat["base"] <= GOAL_BASE_MS
        print(f"  base latency {lat['base']:.3f} ms (goal <= {GOAL_BASE_MS} ms: {'PASS' if ok else 'FAIL'})")
    check_torchscript(dev)
    return 0


def check_torchscript(dev: object) -> None:
    """Run the shipped TorchScript artefact on CUDA (FP16) against the FP32 eager model."""
    import torch

    from training.export import example_inputs
    from training.model.model import INPUT_NAMES
    from training.model.presets import build_model
    from vla_edge.config import engines_dir

    ts_path = engines_dir() / "student.ts"
    if not ts_path.is_file():
        print(f"\nTorchScript check skipped: {ts_path} not found")
        return
    model = build_model(seed=0)
    inputs = example_inputs(model)
    ts = torch.jit.load(str(ts_path), map_location=dev).eval()
    args32 = [inputs[n].to(dev) for n in INPUT_NAMES]
    args16 = [a.half() if a.is_floating_point() else a for a in args32]
    with torch.no_grad():
        ref = ts(*args32)
        ts16 = ts.half()
        out16 = ts16(*args16)
    err = float((out16[0].float() - ref[0]).abs().max())
    try:
        med, p99 = graph_timer(lambda: ts16(*args16), 200)
        timing = f"CUDA-graph replay median {med:.3f} ms, p99 {p99:.3f} ms"
    except RuntimeError as exc:  # report, do not hide: the torch-CUDA backend relies on capture
        timing = f"CUDA-graph capture FAILED: {str(exc).splitlines()[-1][:200]}"
    print(f"\nTorchScript {ts_path.name} on CUDA: FP16 vs FP32 max |traj diff| = {err:.4f} m; {timing}")


if __name__ == "__main__":
    sys.exit(main())
