"""INT8 post-training quantisation of the exported student: an explicit QDQ ONNX.

Usage::

    vla-edge-train quantize                                  # engines/student.onnx -> student_int8.onnx
    vla-edge-train quantize --scope /model/backbone,/model/bev_proj --method minmax
    vla-edge-train quantize --calib runs/calib.npz           # calibration set of export-calib
    vla-edge-train quantize --sim-scenarios 6 --eval-frames 24

ONNX Runtime's static quantisation (``onnxruntime.quantization.quantize_static``) inserts
QuantizeLinear/DequantizeLinear pairs around the weights and activations of the heavy ops
(``Conv``, ``MatMul``, ``Gemm``) with ranges calibrated on real model inputs; the defaults
(calibration method, scope, per-channel weights, one Q/DQ pair per consumer) are ``quantize``
of ``config/train.yaml``, the flags override them. Both weights and activations are
symmetric signed INT8 (zero point 0): that is what TensorRT's explicit quantisation
requires, so the same file runs on the CPU with ONNX Runtime and builds an INT8 TensorRT
engine (``vla-edge build-engine --onnx engines/student_int8.onnx --precision int8``; no
calibrator needed, the scales are in the graph).

Calibration inputs come from ``--calib`` (the ``.npz`` of ``vla-edge-train export-calib``)
or, by default, from simulated closed-loop drives (expert policy, the runtime's
FrameAssembler and pillarizer), so no dataset is needed. Before writing the manifest the
result is checked on held-out frames (other scenario seeds): best-mode trajectory difference
against FP32 at most ``--max-diff`` metres, else the export is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.backends import onnxruntime_backend as ort_backend
from vla_edge.backends.manifest import load_manifest, manifest_path_for, write_manifest
from vla_edge.config import engines_dir, load_config
from vla_edge.errors import ModelError
from vla_edge.pillarize import PillarSpec

log = logging.getLogger("training.quantize")

#: Ops whose weights and inputs are quantised; the rest (scatter, grid sampling, norms,
#: softmax, the trajectory arithmetic) stays FP32 between DQ and Q nodes. Which of them are
#: quantised is ``quantize.scope`` of train.yaml (node-name prefixes; the BEV backbone):
#: every Conv/MatMul/Gemm moved the best mode by up to 8 m, the pillar feature net (its input
#: holds raw coordinates in metres, 8 bits over +-50 m) 1.4 m (docs/backends.md, INT8).
QUANT_OPS = ("Conv", "MatMul", "Gemm")


class QuantizeError(ModelError):
    """Quantisation failed or its result is too far from FP32."""


def sim_feeds(
    n_scenarios: int, seed: int, seconds: float, every: int, spec: PillarSpec | None = None
) -> list[dict[str, np.ndarray]]:
    """Model inputs of simulated frames (expert drives), every ``every``-th frame.

    Args:
        n_scenarios: Scenarios of the simulator's suite (families cycle).
        seed: Suite seed (calibration and evaluation use different seeds).
        seconds: Length of each drive.
        every: Keep one frame in ``every``.
        spec: The engine's input spec (:func:`engine_input_spec`); default model.yaml's.
    """
    from vla_edge.model_inputs import frame_inputs
    from vla_edge.sim.harness import ExpertPlanner, run_suite

    cfg = load_config("sim")
    spec = spec or PillarSpec.from_config(load_config("model"))
    feeds: list[dict[str, np.ndarray]] = []
    expert = ExpertPlanner(cfg)
    count = [0]

    class Recorder:
        def reset(self, world: Any) -> None:
            expert.reset(world)

        def __call__(self, frame: Any) -> Any:
            if count[0] % every == 0 and len(frame.points):
                feeds.append(frame_inputs(frame, spec, batch=True))  # the runtime's builder (sweeps too)
            count[0] += 1
            return expert(frame)

    run_suite(
        Recorder(), n_scenarios, seconds=seconds, seed=seed, cfg=cfg, render_lidar=True, render_camera=False
    )
    return feeds


def npz_feeds(path: str | Path, limit: int) -> list[dict[str, np.ndarray]]:
    """Model inputs from an ``export-calib`` ``.npz`` (leading frame axis per key)."""
    with np.load(path) as data:
        n = min(limit, len(data["pillar_count"]))
        keys = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path")
        return [{k: np.asarray(data[k][i : i + 1]) for k in keys} for i in range(n)]


def with_noise(feeds: list[dict[str, np.ndarray]], noise: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Add the runtime's fixed diffusion noise (``noise.seed`` of inference.yaml) to each feed."""
    return [{**f, "noise": noise} for f in feeds]


def engine_input_spec(onnx_path: Path) -> PillarSpec:
    """model.yaml's pillar spec with the engine's sweeps (what the runtime feeds this engine)."""
    from vla_edge.inference import engine_spec

    man = load_manifest(manifest_path_for(onnx_path))
    return engine_spec(PillarSpec.from_config(load_config("model")), man.model_config)


def runtime_noise(onnx_path: Path) -> np.ndarray:
    """The noise input the vehicle feeds: standard normal from ``noise.seed``."""
    man = load_manifest(manifest_path_for(onnx_path))
    seed = int(load_config("inference")["noise"]["seed"])
    return np.random.default_rng(seed).standard_normal(man.input("noise").shape, dtype=np.float32)


def quantize(
    fp32: Path,
    out: Path,
    calib: list[dict[str, np.ndarray]],
    method: str,
    per_channel: bool,
    scope: tuple[str, ...],
    dedicated_qdq_pair: bool = True,
) -> list[str]:
    """Write the QDQ model ``out`` from ``fp32`` calibrated on ``calib``; return the nodes quantised.

    Only ``QUANT_OPS`` nodes whose name starts with one of ``scope`` are quantised
    (an empty ``scope`` = all of them). ``dedicated_qdq_pair``: a tensor read by several
    quantised nodes gets one Q/DQ pair per reader (same scale), so each conv is a QDQ unit of
    its own; ORT fuses only such units into integer kernels.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="vla_edge_quant_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference + basic folding first (ORT's recommended pre-processing); the graph
        # keeps its contract tensor names and static shapes.
        quant_pre_process(str(fp32), str(pre), skip_optimization=False, skip_symbolic_shape=False)
        nodes = [
            n.name
            for n in onnx.load(str(pre)).graph.node
            if n.op_type in QUANT_OPS and (not scope or n.name.startswith(scope))
        ]
        if not nodes:
            raise QuantizeError(f"no {QUANT_OPS} node of {fp32} starts with {scope}")
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANT_OPS),
            nodes_to_quantize=nodes,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={
                "ActivationSymmetric": True,  # TensorRT explicit INT8: zero points must be 0
                "WeightSymmetric": True,
                # Conv biases stay FP32: ORT would make them INT32 DequantizeLinear inputs, which
                # TensorRT does not import (the op audit, vla-edge build-engine --audit, says so).
                "QuantizeBias": False,
                # Moving average of per-frame ranges rather than the full min/max: the full range
                # cost resolution and moved the best mode 3x further on real scans (docs/backends.md).
                "CalibMovingAverage": True,
                # One Q/DQ pair per consumer: with one shared Q, ORT's x86 S8->U8 pass skips it and
                # the convs behind a branch stayed FP32 (the ORT session must then keep CSE off,
                # inference.yaml onnxruntime.qdq_disabled_optimizers, or it merges the Qs again).
                "DedicatedQDQPair": dedicated_qdq_pair,
            },
        )
    return nodes


def qdq_disabled_optimizers() -> list[str]:
    """ORT optimizers the runtime skips for INT8 QDQ engines (the runtime's own reading of
    inference.yaml)."""
    return ort_backend.qdq_disabled_optimizers(load_config("inference"))


def ort_session(
    path: Path,
    threads: int,
    qdq: bool,
    optimized_out: Path | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """A CPU session as the runtime opens it (level "all"; QDQ graphs without the skipped rewrites).

    ``optimized_out``: write ORT's optimised graph there; ``profile_prefix``: per-node profiling
    (``enable_profiling``) into files of that prefix.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
    skip = qdq_disabled_optimizers() if qdq else []
    return ort.InferenceSession(
        str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=skip or None
    )


def float_convs(int8: Path, quantized: list[str]) -> list[str]:
    """Quantised nodes that ORT's optimised CPU graph still runs as float ``Conv``.

    A QDQ unit that ORT cannot fuse into an integer kernel costs its Q/DQ on top of the FP32
    op; the optimised graph keeps the names of the nodes it left alone.
    """
    import onnx

    with tempfile.TemporaryDirectory(prefix="vla_edge_quant_") as tmp:
        opt = Path(tmp) / "opt.onnx"
        ort_session(int8, 1, qdq=True, optimized_out=opt)
        left = {n.name for n in onnx.load(str(opt)).graph.node if n.op_type in QUANT_OPS}
    return [n for n in quantized if n in left]


def compare(
    fp32: Path, int8: Path, feeds: list[dict[str, np.ndarray]], threads: int, iters: int
) -> dict[str, Any]:
    """Latency and output difference of ``int8`` against ``fp32`` on ``feeds`` (ORT CPU)."""
    sessions = {"fp32": ort_session(fp32, threads, qdq=False), "int8": ort_session(int8, threads, qdq=True)}
    best_diff, mode_diff, same_best = [], [], 0
    for f in feeds:
        a = sessions["fp32"].run(["trajectories", "scores"], f)
        b = sessions["int8"].run(["trajectories", "scores"], f)
        ia, ib = int(np.argmax(a[1][0])), int(np.argmax(b[1][0]))
        same_best += ia == ib
        # Best mode of each model, as the vehicle would drive it: max pose distance (x, y).
        best_diff.append(float(np.linalg.norm(a[0][0, ia, :, :2] - b[0][0, ib, :, :2], axis=-1).max()))
        mode_diff.append(float(np.linalg.norm(a[0][0, :, :, :2] - b[0][0, :, :, :2], axis=-1).max()))
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, feeds[0])
    for i in range(iters):  # interleaved so background load hits both alike
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds[i % len(feeds)])
            times[k].append(1e3 * (time.perf_counter() - t0))
    p50 = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "eval_frames": len(feeds),
        "best_mode_diff_m_max": float(np.max(best_diff)),
        "best_mode_diff_m_median": float(np.median(best_diff)),
        "all_modes_diff_m_max": float(np.max(mode_diff)),
        "same_best_mode": f"{same_best}/{len(feeds)}",
        "fp32_p50_ms": p50["fp32"],
        "int8_p50_ms": p50["int8"],
        "latency_ratio_p50": p50["int8"] / p50["fp32"],
        "threads": threads,
    }


def run(args: argparse.Namespace) -> int:
    """``vla-edge-train quantize``."""
    fp32 = Path(args.onnx)
    out = Path(args.out) if args.out else fp32.with_name(f"{fp32.stem}_int8.onnx")
    man = load_manifest(manifest_path_for(fp32))
    noise = runtime_noise(fp32)
    spec = engine_input_spec(fp32)
    defaults = load_config("train")["quantize"]
    method = args.method or str(defaults["method"])
    scope = tuple(defaults["scope"]) if args.scope is None else tuple(x for x in args.scope.split(",") if x)
    per_channel = False if args.per_tensor else bool(defaults["per_channel"])
    dedicated = args.dedicated_qdq_pair
    if dedicated is None:
        dedicated = bool(defaults["dedicated_qdq_pair"])
    t0 = time.perf_counter()
    if args.calib:
        calib = npz_feeds(args.calib, args.calib_frames)
        source = f"npz {args.calib}"
    else:
        calib = sim_feeds(args.sim_scenarios, args.seed, args.seconds, args.every, spec)[: args.calib_frames]
        source = f"sim expert drives: {args.sim_scenarios} scenarios, seed {args.seed}, {args.seconds:g} s"
    evals = sim_feeds(max(2, args.sim_scenarios // 2), args.seed + 1, args.seconds, args.every, spec)
    evals = with_noise(evals[: args.eval_frames], noise)
    log.info("calibration: %d frames (%s), evaluation: %d held-out frames", len(calib), source, len(evals))
    if not calib:
        raise QuantizeError("no calibration frames")
    out.parent.mkdir(parents=True, exist_ok=True)
    nodes = quantize(fp32, out, with_noise(calib, noise), method, per_channel, scope, dedicated)
    report = compare(fp32, out, evals, args.threads, args.iters)
    report.update(
        {
            "calibration": {"frames": len(calib), "source": source, "method": method},
            "quantized_ops": list(QUANT_OPS),
            "scope": list(scope),
            "quantized_nodes": len(nodes),
            "ort_float_convs": float_convs(out, nodes),
            "ort_disabled_optimizers": qdq_disabled_optimizers(),
            "per_channel": per_channel,
            "dedicated_qdq_pair": dedicated,
            "format": "QDQ, symmetric int8 weights + activations",
            "source_onnx": fp32.name,
            "source_sha256": man.sha256,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )
    print(json.dumps(report, indent=1))
    if report["best_mode_diff_m_max"] > args.max_diff:
        out.unlink(missing_ok=True)
        raise QuantizeError(
            f"INT8 best-mode trajectory differs from FP32 by {report['best_mode_diff_m_max']:.3f} m "
            f"(> --max-diff {args.max_diff} m) on held-out frames; not written"
        )
    import onnx

    graph = onnx.load(str(out), load_external_data=False)
    write_manifest(
        out,
        inputs=man.inputs,
        outputs=man.outputs,
        model_config=man.model_config,
        anchors=man.anchors,
        weights=man.weights,
        preset=man.preset,
        opset=int(max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))),
        extra={"precision": "int8", "quantization": report},
    )
    log.info("wrote %s and %s", out, manifest_path_for(out))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``quantize`` on the ``vla-edge-train`` subparsers."""
    p = sub.add_parser(
        "quantize",
        help="INT8 QDQ ONNX from the exported student (ONNX Runtime static quantisation)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--onnx", default=str(engines_dir() / "student.onnx"), help="FP32 ONNX (manifest beside it)"
    )
    p.add_argument("--out", default=None, help="output ONNX (default: <stem>_int8.onnx beside the input)")
    p.add_argument(
        "--calib", default=None, help="calibration .npz of export-calib (default: simulated drives)"
    )
    p.add_argument(
        "--calib-frames", type=int, default=64, help="calibration frames used at most (default 64)"
    )
    p.add_argument(
        "--sim-scenarios", type=int, default=6, help="simulated scenarios for calibration (default 6)"
    )
    p.add_argument(
        "--seconds", type=float, default=8.0, help="length of each simulated drive in s (default 8)"
    )
    p.add_argument("--every", type=int, default=4, help="keep every n-th simulated frame (default 4)")
    p.add_argument(
        "--seed", type=int, default=11, help="scenario seed of calibration; evaluation uses seed+1"
    )
    p.add_argument("--eval-frames", type=int, default=24, help="held-out frames for the FP32 comparison")
    p.add_argument(
        "--method",
        choices=("minmax", "percentile"),
        default=None,
        help="activation range calibration (default: quantize.method of train.yaml)",
    )
    p.add_argument(
        "--scope",
        default=None,
        help="comma list of node-name prefixes to quantise ('' = every Conv/MatMul/Gemm; "
        "default: quantize.scope of train.yaml)",
    )
    p.add_argument(
        "--per-tensor", action="store_true", help="per-tensor weight scales (default: quantize.per_channel)"
    )
    p.add_argument(
        "--dedicated-qdq-pair",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one Q/DQ pair per consumer of a tensor (default: quantize.dedicated_qdq_pair)",
    )
    p.add_argument("--max-diff", type=float, default=0.1, help="refuse above this best-mode difference in m")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads for the latency comparison")
    p.add_argument("--iters", type=int, default=40, help="timed runs per model")
    p.set_defaults(func=run)
