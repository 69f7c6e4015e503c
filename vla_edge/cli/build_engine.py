"""``vla-edge build-engine``: prebuild the TensorRT engine on the vehicle (like Autoware's build_only).

Verifies the ONNX against its manifest, then builds (or validates) the cached engine for
this TensorRT version, GPU and precision so the first drive does not pay the build. Without
TensorRT it exits non-zero and says what was checked.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``build-engine`` subcommand."""
    p = subparsers.add_parser(
        "build-engine",
        help="prebuild/validate the cached TensorRT engine for this GPU",
        description=(
            "Verify ONNX + manifest (sha256), then build the TensorRT engine into the cache "
            "(tensorrt.cache_dir of config/inference.yaml) or confirm the cached one is valid. "
            "Requires TensorRT >= 10, cuda-python or pycuda, and a GPU."
        ),
    )
    p.add_argument("--onnx", default=None, help="exported ONNX (default: `engine` of config/inference.yaml)")
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8", "fp8"),
        default=None,
        help="engine precision (default: tensorrt.precision of config/inference.yaml)",
    )
    p.add_argument("--calib", default=None, help="INT8 calibration set .npz ([N, *shape] array per input)")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid cached engine exists")
    p.add_argument(
        "--audit",
        action="store_true",
        help="only check the ONNX against onnx-tensorrt's supported ops and restrictions (no TensorRT or "
        "GPU needed); exit 1 when an op would not import",
    )
    p.add_argument("--config", default="inference", help="inference config name or YAML path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build or validate the engine; returns the exit code."""
    from vla_edge.backends import tensorrt_backend
    from vla_edge.backends.base import open_model
    from vla_edge.config import load_config, require, resolve_path
    from vla_edge.errors import BackendUnavailableError

    cfg = load_config(args.config, kind="inference")
    onnx = resolve_path(args.onnx or require(cfg, "engine", where="inference.yaml"))
    onnx_path, manifest = open_model(onnx)
    sha = manifest.sha256[:16]
    print(f"model: {onnx_path} (sha256 {sha}..., preset {manifest.preset}, {manifest.weights})")
    if args.audit:
        from vla_edge.backends.trt_audit import audit

        report = audit(onnx_path)
        print(report.text())
        return 0 if report.ok else 1
    try:
        cache, options, _ = tensorrt_backend.make_cache(cfg, onnx_path, manifest, args.precision, args.calib)
    except BackendUnavailableError as exc:
        checked = tensorrt_backend.probe()
        lines = "\n".join(f"  {k}: {v}" for k, v in checked.items())
        raise BackendUnavailableError(
            f"TensorRT is required to build engines and cannot run here.\nchecked:\n{lines}\n{exc}\n"
            "On machines without TensorRT the onnxruntime (or torch_cuda) backend runs the ONNX directly."
        ) from None
    result = cache.get(onnx_path, manifest, options, force=args.force)
    state = f"built ({result.reason})" if result.built else "valid cached engine, nothing to do"
    print(f"engine: {result.path} [{options.precision}, key {result.key.id}]: {state}")
    for event in result.events:
        print(f"  {event}")
    return 0
