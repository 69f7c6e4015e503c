"""``config/inference.yaml``: backend choice, engine cache, per-backend settings."""

from __future__ import annotations

from typing import Literal

from vla_edge.config_schema._base import Count, Index, NonNegInt, Section, irng

Backend = Literal["auto", "onnxruntime", "tensorrt", "torch_cuda"]


class Noise(Section):
    seed: NonNegInt


class OnnxRuntime(Section):
    intra_op_threads: NonNegInt
    inter_op_threads: Count
    graph_optimization: Literal["disable", "basic", "extended", "all"]
    providers: list[Literal["tensorrt", "cuda", "cpu"]]
    trt_fp16: bool
    allow_spinning: bool
    save_optimized: bool
    qdq_disabled_optimizers: list[str]


class TrtCalibration(Section):
    file: str
    max_samples: Count


class TensorRT(Section):
    precision: Literal["fp32", "fp16", "int8", "fp8"]
    workspace_mb: Count
    builder_optimization_level: irng(ge=0, le=5)
    device: Index
    cache_dir: str
    fallback_cache_dir: str
    prune_stale: bool
    calibration: TrtCalibration


class TorchCuda(Section):
    artefact: str
    precision: Literal["fp16", "fp32"]
    cuda_graphs: bool
    jit_optimize: bool
    deterministic: bool
    device: Index
    pillarize_on_gpu: bool
    max_points: irng(ge=1, le=5_000_000)
    fuse_graphs: bool
    fetch_bev: bool


class InferenceFile(Section):
    backend: Backend
    engine: str
    warmup_runs: NonNegInt
    fallback_to_onnxruntime: bool
    noise: Noise
    onnxruntime: OnnxRuntime
    tensorrt: TensorRT
    torch_cuda: TorchCuda
