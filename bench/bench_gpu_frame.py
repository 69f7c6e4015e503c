"""GPU per-frame time of the student as the drive loop runs it, against the bare graph replay.

For each cloud size (a real nuScenes sweep tiled to N points) it runs
``StudentRunner.run(frame)`` with the torch-CUDA backend, as the inference node and the
closed-loop simulator call it, in these modes side by side (interleaved, same process):

* ``cpu-pillars``: numpy pillarization on the CPU, P x M x C features copied to the GPU;
* ``gpu-pillars``: ``torch_cuda.pillarize_on_gpu`` with the default two graphs - the N x 4
  points are uploaded, one captured graph per point bucket pillarizes them while the host builds
  the other inputs, then the model's graph runs (``vla_edge/backends/gpu_pillars.py``; the
  "pillar" column is host time only: copy and upload of the points);
* ``gpu-fused``: ``torch_cuda.fuse_graphs`` - one graph per bucket holds the pillarization and
  the model ("fused graph"; the other inputs are built and uploaded before it starts);
* ``gpu+bev``: gpu-pillars, also copying the model's BEV output back (``torch_cuda.fetch_bev``);

and times the model's own CUDA-graph replay alone (static inputs, what ``bench_model_gpu.py``
reports). Printed: median / p99 per-frame ms, replay ms, and the ratio per-frame / replay
(goal <= 1.5); per cloud size also the floors beside it: the fused graph's replay alone (points
already uploaded) and a pillarization-only graph alone (copy, upload, replay, wait), and (unless
``--no-profile``) a torch.profiler table of the pillarization's kernels by op (GPU time per
frame, eager run of the same ops the graph holds), so the run shows where the time goes.

Before timing it checks, and exits 1 otherwise, that GPU pillarization is bit-identical to
the numpy pillarizer on every scan and that both modes give identical trajectories.
Skips cleanly (exit 0) without torch or a CUDA device.

    python bench/bench_gpu_frame.py [--iters 200] [--points 32768,210000] [--json out.json]
        [--no-profile]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SCANS = Path(os.environ.get("VLA_EDGE_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lidar"
GOAL_RATIO = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=200, help="timed frames per mode and size (default 200)")
    p.add_argument("--points", default="32768,210000", help="cloud sizes (default 32768,210000)")
    p.add_argument("--engine", default=None, help="student ONNX (default: engine of inference.yaml)")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument(
        "--no-profile", action="store_true", help="skip the torch.profiler table of the pillarization"
    )
    return p.parse_args(argv)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _sync(torch: object) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _wall_ms(torch: object, fn: object, iters: int) -> list[float]:
    """Wall time of ``fn()`` to a finished GPU, per call (ms)."""
    out = []
    for _ in range(iters):
        _sync(torch)
        t0 = time.perf_counter()
        fn()
        _sync(torch)
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def profile_ops(torch: object, fn: object, iters: int = 20, top: int = 14) -> tuple[list[str], dict]:
    """torch.profiler of ``fn()``: self GPU time per aten op per call (CPU time without CUDA).

    Returns the printable lines and ``{"ops": {name: us}, "total_us", "kernels"}`` per call.
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    fn()
    _sync(torch)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(iters):
            fn()
        _sync(torch)

    def self_us(e: object) -> float:
        if not cuda:
            return float(e.self_cpu_time_total)
        for name in ("self_device_time_total", "self_cuda_time_total"):  # renamed in torch 2.4
            if hasattr(e, name):
                return float(getattr(e, name))
        return 0.0

    ops = {}
    for e in prof.key_averages():
        if e.key.startswith("aten::") and self_us(e) > 0:
            ops[e.key] = (self_us(e) / iters, e.count / iters)
    kernels = 0
    if cuda:
        on_gpu = [e for e in prof.events() if str(getattr(e, "device_type", "")).endswith("CUDA")]
        kernels = len(on_gpu) // iters
    total = sum(us for us, _ in ops.values())
    what = "GPU" if cuda else "CPU"
    lines = [f"  {what} time per call {total:.0f} us" + (f" in {kernels} kernels" if cuda else "")]
    lines.append(f"  {'op':<34} {'us/call':>9} {'share':>6} {'calls':>6}")
    for name, (us, calls) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"  {name:<34} {us:>9.1f} {100 * us / max(total, 1e-9):>5.1f}% {calls:>6.1f}")
    summary = {"ops": {k: v[0] for k, v in ops.items()}, "total_us": total, "kernels": kernels}
    return lines, summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch not installed: GPU frame benchmark skipped")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device: GPU frame benchmark skipped")
        return 0
    from vla_edge.backends.gpu_pillars import PILLAR_INPUTS, GpuPillarizer
    from vla_edge.backends.torch_pillarize import pillarize_torch
    from vla_edge.config import load_config
    from vla_edge.inference import StudentRunner
    from vla_edge.pillarize import PillarSpec, pillarize
    from vla_edge.scans import load_scan, tile_points
    from vla_edge.types import EgoState, Frame

    model_cfg = load_config("model")
    spec = PillarSpec.from_config(model_cfg)
    scans = sorted(SCANS.iterdir()) if SCANS.is_dir() else []
    if scans:
        clouds = {p.name: load_scan(str(p)) for p in scans}
        big = next((p for p in scans if "nuscenes" in p.name), scans[-1])
        source = f"real scans of {SCANS}"
    else:  # device hosts may not carry ../shared/data: a seeded synthetic cloud instead
        rng = np.random.default_rng(0)
        synth = rng.uniform([-60, -60, -2, 0], [60, 60, 3, 255], (60000, 4)).astype(np.float32)
        clouds, big, source = {"synthetic": synth}, None, f"a seeded synthetic cloud ({SCANS} not found)"
    print(f"clouds: {source}")

    # 1. Parity: GPU pillars == numpy pillars, bit for bit, on every real scan.
    for name, pts in clouds.items():
        f_np, c_np, n_np = pillarize(pts, spec)
        f_t, c_t, n_t = pillarize_torch(torch.from_numpy(pts).cuda(), spec)
        same = (
            n_np == n_t
            and np.array_equal(f_np, f_t.cpu().numpy())
            and np.array_equal(c_np, c_t.cpu().numpy())
        )
        print(f"parity {name}: {n_np} pillars, GPU == numpy: {same}")
        if not same:
            print("MISMATCH: GPU pillarization differs from vla_edge.pillarize", file=sys.stderr)
            return 1

    runners = {}
    # gpu-pillars: two graphs (pillarization, then the model; config default), gpu-fused: one
    # graph per bucket holding both (torch_cuda.fuse_graphs), timed side by side
    modes = (
        ("cpu-pillars", False, False, False),
        ("gpu-pillars", True, False, False),
        ("gpu-fused", True, False, True),
        ("gpu+bev", True, True, False),
    )
    for mode, on_gpu, bev, fuse in modes:
        inf = load_config("inference")
        inf["torch_cuda"]["pillarize_on_gpu"] = on_gpu
        inf["torch_cuda"]["fetch_bev"] = bev
        inf["torch_cuda"]["fuse_graphs"] = fuse
        runners[mode] = StudentRunner.from_config(model_cfg, "torch_cuda", args.engine, inf)
    path = np.stack([np.linspace(-2.0, 40.0, 40), np.zeros(40)], 1)
    ego = EgoState(0.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0)
    results = []
    try:
        dev = runners["gpu-fused"].backend
        fz = dev._pillarizer
        why = fz.fused_error or fz.capture_error or "off"
        print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, mode {dev.mode}, "
              f"CUDA graph {'on' if dev._graph is not None else 'off'}, pillarization + model in one "
              f"graph per bucket: {'yes' if fz.fused else f'NO ({why})'}")  # fmt: skip
        # A pillarization-only graph (own target buffers, same dtypes) for the floor and profile.
        bufs = dev._input_buffers()
        alone_pz = GpuPillarizer(
            torch, torch.device("cuda", dev.device_index), dev._pillarizer.spec, dev.max_points,
            {k: torch.zeros_like(bufs[k]) for k in PILLAR_INPUTS}, dev.use_graphs,
        )  # fmt: skip
        profiles = {}
        for n in [int(x) for x in args.points.split(",") if x]:
            pts = load_scan(str(big), n) if big is not None else tile_points(clouds["synthetic"], n)
            frame = Frame(stamp=0.0, points=pts, ego=ego, reference_path=path)
            outs = {m: r.run(frame) for m, r in runners.items()}
            ref = outs["cpu-pillars"].trajectories
            d = max(float(np.abs(ref - o.trajectories).max()) for o in outs.values())
            if d > 0.0:
                print(
                    f"MISMATCH at {n} points: trajectories differ by {d:.2e} m between modes", file=sys.stderr
                )
                return 1
            times: dict[str, list[float]] = {m: [] for m in runners}
            pil: dict[str, list[float]] = {m: [] for m in runners}
            for _ in range(5):
                for r in runners.values():
                    r.run(frame)
            for _ in range(args.iters):  # interleaved: any drift hits both modes alike
                for m, r in runners.items():
                    t0 = time.perf_counter()
                    out = r.run(frame)
                    times[m].append(1e3 * (time.perf_counter() - t0))
                    pil[m].append(out.timing_ms["pillarize"])
            be = runners["gpu-pillars"].backend
            with torch.no_grad():
                if be._graph is not None:
                    replay = _wall_ms(torch, be._graph.replay, args.iters)
                else:
                    replay = _wall_ms(torch, partial(be._forward, be._static_in), args.iters)
                rep = float(np.median(replay))
                # the fused graph alone (points already uploaded): pillarization + model on the GPU
                bucket = dev._pillarizer.stage(pts)
                fused = _pct(_wall_ms(torch, partial(dev._pillarizer.launch, bucket), args.iters), 50)
                # a pillarization-only graph alone, copy and upload to finished graph
                alone = _pct(_wall_ms(torch, partial(alone_pz, pts), args.iters), 50)
            f50, u50 = _pct(times["gpu-pillars"], 50), _pct(times["gpu-fused"], 50)
            print(
                f"{n} points: frame p50 two graphs {f50:.2f} ms / fused {u50:.2f} ms, model replay "
                f"{rep:.2f} ms, ratio {f50 / rep:.2f} / {u50 / rep:.2f} (goal <= {GOAL_RATIO}); fused "
                f"graph replay alone {fused:.2f} ms "
                f"(bucket {dev._pillarizer.sizes[bucket] if bucket >= 0 else 'oversize'} rows); "
                f"pillarization graph alone (copy, upload, graph, wait) {alone:.2f} ms"
            )
            if not args.no_profile:
                i = alone_pz.stage(pts)
                rows = alone_pz._buffers[i] if i >= 0 else alone_pz._big
                n_t = alone_pz._n if i >= 0 else torch.full((), n, dtype=torch.long, device=rows.device)
                with torch.no_grad():
                    lines, profiles[n] = profile_ops(torch, partial(alone_pz._write, rows, n_t), iters=20)
                print(f"{n} points: pillarization kernels by op (torch.profiler, eager, {len(rows)} rows):")
                print("\n".join(lines))
            for m in runners:
                row = {
                    "points": n,
                    "mode": m,
                    "frame_p50_ms": _pct(times[m], 50),
                    "frame_p99_ms": _pct(times[m], 99),
                    "pillarize_p50_ms": _pct(pil[m], 50),
                    "replay_p50_ms": rep,
                    "ratio_frame_replay_p50": _pct(times[m], 50) / rep,
                    "fused_graph": bool(getattr(runners[m].backend._pillarizer, "fused", False)),
                    "fused_replay_alone_p50_ms": fused,
                    "gpu_pillarize_alone_p50_ms": alone,
                }
                if n in profiles:
                    row["pillarize_profile"] = profiles[n]
                results.append(row)
    finally:
        for r in runners.values():
            r.close()
    head = ("points", "mode", "frame p50", "frame p99", "pillar p50", "replay", "ratio")
    print(" ".join(f"{h:>10}" for h in head))
    for r in results:
        keys = ("frame_p50_ms", "frame_p99_ms", "pillarize_p50_ms", "replay_p50_ms", "ratio_frame_replay_p50")
        print(f"{r['points']:>10} {r['mode']:>10} " + " ".join(f"{r[k]:>10.2f}" for k in keys))
    print(f"ms; ratio = per-frame p50 / CUDA-graph replay p50 (goal <= {GOAL_RATIO})")
    try:
        import onnxruntime as ort

        eps = ort.get_available_providers()
        has = "CUDAExecutionProvider" in eps
        print(
            f"onnxruntime {ort.__version__} providers {eps}: " + ("CUDA EP present" if has else "no CUDA EP")
        )
    except ImportError:
        print("onnxruntime not installed")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
