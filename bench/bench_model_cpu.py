"""CPU benchmark of the shipped tiny student: ONNX Runtime vs torch eager, same run.

Runs ``engines/student.onnx`` (the default pillar budget of ``config/model.yaml``) on the
CPU execution provider and the same weights in torch eager mode (rebuilt from the
manifest's preset and seed when the weights are random-seeded, else from ``--checkpoint``),
both with ``--threads`` intra-op threads, on the real KITTI sweep when ``../shared/data``
is there (else the exporter's synthetic sweep). Prints median and p99 latency of
numpy pillarization, ORT and torch, and the torch / ORT ratio measured in the same run.
It also times the network through the runtime backend with the settings of
``config/inference.yaml`` (what the drive graph and ``vla-edge demo`` run), since
``--threads`` (default 2) need not be what the graph uses.

Usage::

    python bench/bench_model_cpu.py [--iters 100] [--threads 2] [--checkpoint runs/x/student.pt]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KITTI = ROOT.parent / "shared" / "data" / "lidar" / "kitti_000008.bin"


def timeit(fn: Callable[[], object], iters: int, warmup: int = 5) -> tuple[float, float]:
    """(median, p99) wall-clock milliseconds of ``fn``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 99))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=100, help="timed runs per case")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for ORT and torch")
    engine = str(ROOT / "engines" / "student.onnx")
    ap.add_argument("--engine", default=engine, help="ONNX file (manifest next to it)")
    ap.add_argument("--checkpoint", default=None, help="checkpoint for the torch side of a trained engine")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from training.export import example_inputs, load_checkpoint
    from training.model.model import INPUT_NAMES
    from training.model.presets import build_model
    from vla_edge.backends.factory import create_backend
    from vla_edge.backends.manifest import load_manifest
    from vla_edge.config import load_config
    from vla_edge.pillarize import ego_state_input, pillarize, reference_path_input

    man = load_manifest(args.engine)
    same_weights = True
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint, man.preset)
    elif man.weights == "random-seeded":
        model = build_model(man.preset, seed=int(man.extra.get("training", {}).get("seed", 0)))
    else:
        # Latency does not depend on the weights: time the same preset with seeded weights
        # (the trained checkpoint is not shipped); only the parity line needs --checkpoint.
        model = build_model(man.preset, seed=0)
        same_weights = False
    spec = model.cfg.spec
    inputs = example_inputs(model)
    if KITTI.is_file():
        points = np.fromfile(KITTI, dtype=np.float32).reshape(-1, 4)
        source = f"KITTI sweep {KITTI.name} ({len(points)} points)"
    else:
        points = None
        source = "synthetic sweep (../shared/data not found)"
    if points is not None:
        feats, coords, count = pillarize(points, spec)
        inputs["pillar_features"] = torch.from_numpy(feats)[None]
        inputs["pillar_coords"] = torch.from_numpy(coords)[None]
        inputs["pillar_count"] = torch.tensor([count], dtype=torch.int32)
        pil = timeit(lambda: pillarize(points, spec), args.iters)
    else:
        pil = (float("nan"), float("nan"))
    path = np.stack([np.linspace(-2, 40, 40), np.zeros(40)], 1)
    ego = np.array([5.0, 0.0, 0.0])
    prep = timeit(lambda: (reference_path_input(path, spec), ego_state_input(ego, spec)), 200)

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.engine, so, providers=["CPUExecutionProvider"])
    feed = {n: inputs[n].numpy() for n in INPUT_NAMES}
    ort_t = timeit(lambda: sess.run(None, feed), args.iters)
    # The same network as the drive graph runs it: the runtime backend with the settings of
    # config/inference.yaml (intra-op threads, spinning, optimisation level, saved graph).
    # `vla-edge demo`'s "model" figure is pillarize + this, under the graph's load.
    inf_cfg = load_config("inference")
    backend = create_backend("onnxruntime", args.engine, inf_cfg)
    backend.load()
    graph_t = timeit(lambda: backend.infer(feed), args.iters)
    graph_threads = inf_cfg["onnxruntime"]["intra_op_threads"]
    backend.close()

    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        torch_t = timeit(lambda: model(inputs), args.iters)
        ref = model(inputs)["trajectories"].numpy()
        diff = float(np.abs(sess.run(["trajectories"], feed)[0] - ref).max()) if same_weights else None

    n_pillars = int(inputs["pillar_count"][0])
    print(f"engine {Path(args.engine).name}: preset {man.preset}, weights {man.weights}, "
          f"P={spec.max_pillars} M={spec.max_points} grid={spec.grid_size}")  # fmt: skip
    print(f"input: {source}, {n_pillars} pillars; threads={args.threads} iters={args.iters}")
    print(f"onnxruntime {ort.__version__}  torch {torch.__version__}")
    print(f"{'stage':<26}{'median ms':>10}{'p99 ms':>10}")
    print(f"{'pillarize (numpy)':<26}{pil[0]:>10.2f}{pil[1]:>10.2f}")
    print(f"{'path + ego inputs':<26}{prep[0]:>10.3f}{prep[1]:>10.3f}")
    print(f"{'onnxruntime CPU':<26}{ort_t[0]:>10.2f}{ort_t[1]:>10.2f}")
    graph_row = f"ORT as the graph ({graph_threads} thr)"
    print(f"{graph_row:<26}{graph_t[0]:>10.2f}{graph_t[1]:>10.2f}")
    print(f"{'torch eager CPU':<26}{torch_t[0]:>10.2f}{torch_t[1]:>10.2f}")
    parity = f"{diff:.2e} m" if diff is not None else "n/a (torch side: same preset, seeded weights)"
    print(f"torch / onnxruntime (median) = {torch_t[0] / ort_t[0]:.2f}x;  pillarize + ORT median = "
          f"{pil[0] + ort_t[0]:.2f} ms;  max |ORT - torch| trajectories = {parity}")  # fmt: skip
    print(f"as the drive graph runs it (config/inference.yaml, {graph_threads} intra-op thread(s)): pillarize"
          f" + ORT median = {pil[0] + graph_t[0]:.2f} ms (the demo's 'model' figure, no load)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
