"""Export the student to ONNX (+ TorchScript for the torch-CUDA backend) with its manifest.

Usage::

    python -m training.export --preset tiny --random-seed 0            # placeholder weights
    python -m training.export --checkpoint runs/x/student.pt --out-dir engines

Writes ``<out-dir>/<name>.onnx`` (opset >= 17, static shapes, batch 1, the contract tensor
names), ``<name>.ts`` (TorchScript trace of the same graph, FP32 weights; the torch-CUDA
backend casts to FP16) and ``<name>.json`` (manifest via
``vla_edge.backends.manifest.write_manifest``). Before writing the manifest the exporter
checks ``onnx.checker`` and ONNX Runtime vs torch parity (max abs error <= ``--atol``, FP32)
on a deterministic synthetic sweep and fixed noise, and refuses to finish otherwise.

Checkpoint format (written by the trainer): ``torch.save({"preset": str, "model":
state_dict, "model_cfg": parsed model.yaml (optional), "training": {...}}, path)``; a bare
state dict also loads (``--preset`` then names the preset). The anchors travel inside the
state dict (``head.anchors``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.model.model import OUTPUT_NAMES, ExportWrapper, StudentModel
from training.model.presets import PRESETS, build_model
from vla_edge.camera_input import CameraSpec, image_tensor
from vla_edge.config import engines_dir, load_config
from vla_edge.errors import ConfigError, ModelError
from vla_edge.fsutil import atomic_path
from vla_edge.model_inputs import model_inputs

log = logging.getLogger("training.export")

OPSET = 17
MAX_ONNX_BYTES = 16 * 1024 * 1024  # shipped engines stay small enough for git
_ONNX_DTYPES = {1: "float32", 10: "float16", 6: "int32", 7: "int64", 3: "int8", 2: "uint8", 9: "bool"}


class ExportError(ModelError):
    """The export failed a check (parity, checker, size) or got a bad checkpoint."""


def load_checkpoint(path: str | os.PathLike[str], preset: str | None) -> tuple[StudentModel, dict[str, Any]]:
    """Build the model of the checkpoint's preset and load its weights.

    Returns:
        ``(model in eval mode, training info dict)``.

    Raises:
        ExportError: If the file is unreadable or does not fit the preset.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise ExportError(f"cannot read checkpoint {path}: {exc}") from None
    state = ckpt.get("model", ckpt.get("state_dict", ckpt)) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ExportError(f"checkpoint {path} holds no state dict (expected {{'model': state_dict}})")
    name = preset or (ckpt.get("preset") if isinstance(ckpt.get("preset"), str) else None)
    # the trainer stores the model.yaml it trained with (it may define derived presets)
    model_cfg = ckpt.get("model_cfg") if isinstance(ckpt.get("model_cfg"), dict) else None
    try:
        model = build_model(name, model_cfg)
    except ConfigError as exc:
        raise ExportError(f"checkpoint {path}: {exc}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ExportError(f"checkpoint {path} does not match preset '{model.cfg.preset}': {exc}") from None
    info = ckpt.get("training", {}) if isinstance(ckpt.get("training", {}), dict) else {}
    return model.eval(), dict(info)


def set_hold_stop(model: StudentModel, on: bool) -> None:
    """Switch the output layer's stop hold (a fixed layer, so a trained checkpoint can take it);
    the manifest's model config records the setting."""
    if on and not model.cfg.smoothing.get("enabled", False):
        raise ExportError("--hold-stop on needs the smooth output layer (model.yaml smoothing.enabled)")
    model.cfg = dataclasses.replace(model.cfg, smoothing={**model.cfg.smoothing, "hold_stop": on})
    model.head.smooth.hold_stop = on
    log.info("output layer stop hold %s", "on" if on else "off")


def example_inputs(model: StudentModel, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic batch-1 inputs: a synthetic sweep (ground ring + boxes), a curved path, noise."""
    cfg = model.cfg
    rng = np.random.default_rng(seed)
    ang = rng.uniform(-np.pi, np.pi, 20000)
    rad = rng.uniform(2.0, 45.0, 20000)
    pts = np.stack(
        [rad * np.cos(ang), rad * np.sin(ang), rng.normal(-1.7, 0.05, 20000), rng.uniform(0, 1, 20000)], 1
    )
    boxes = rng.uniform([-30, -30, -1.7, 0], [30, 30, 0.3, 1], (3000, 4))
    s = np.linspace(0.0, 40.0, 30)
    cloud = np.vstack([pts, boxes]).astype(np.float32)
    if cfg.spec.sweep_lags:  # multi-sweep: the boxes again, moved, as the earlier sweep (time-lag column)
        now = np.hstack([cloud, np.zeros((len(cloud), 1), np.float32)])
        lag = float(cfg.spec.sweep_lags[0])
        moved = boxes + np.array([0.8, 0.3, 0.0, 0.0])
        before = np.hstack([moved, np.full((len(boxes), 1), lag)]).astype(np.float32)
        cloud = np.vstack([now, before])
    inputs = model_inputs(cfg.spec, cloud, np.stack([s, 0.004 * s**2], 1), batch=True)
    gen = torch.Generator().manual_seed(seed)
    out = {k: torch.from_numpy(v) for k, v in inputs.items()}
    out["ego_state"] = torch.tensor([[0.8, 0.1, 0.05, 0.0, 0.0, 0.0]])  # already normalised
    out["noise"] = torch.randn((1, cfg.num_anchors, cfg.num_poses, 3), generator=gen)
    if model.camera is not None:  # a smooth synthetic picture through the runtime's preprocessing
        cam = camera_spec(model)
        h, w = (int(v) for v in model.camera.source_size.tolist())
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], -1)
        img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
        out["image"] = torch.from_numpy(image_tensor(img, cam, (h, w)))[None]
        out["camera_valid"] = torch.ones((1, 1))
    return out


def camera_spec(model: StudentModel) -> CameraSpec:
    """The runtime's :class:`~vla_edge.camera_input.CameraSpec` of a camera model."""
    cam = model.cfg.net.camera
    if cam is None:
        raise ExportError(f"preset '{model.cfg.preset}' has no camera branch")
    return CameraSpec(cam.name, cam.image_size[0], cam.image_size[1], cam.mean, cam.std)


def camera_block(model: StudentModel) -> dict[str, Any]:
    """The manifest's ``camera`` block: input names, preprocessing and the lift's geometry."""
    assert model.camera is not None
    cam = model.cfg.net.camera
    assert cam is not None
    return {
        **camera_spec(model).to_dict(),
        "inputs": ["image", "camera_valid"],
        "geometry": model.camera.geometry_dict(),
        "lift": {"depth_bins": cam.depth_bins, "depth_range": list(cam.depth_range), "stride": cam.stride},
        "config_key": "drive.yaml camera (raw | compressed)",
    }


def simplify_onnx(path: Path) -> str:
    """Constant-fold and simplify the exported graph in place with onnxslim, when installed.

    With static shapes, ``Shape -> Gather -> Slice`` chains fold to constants, which leaves
    TensorRT fewer shape tensors and INT64 tensors (``vla-edge build-engine --audit`` counts
    them). The parity check that follows runs on the simplified graph. Returns what was done.
    """
    import onnx

    try:
        import onnxslim
    except ImportError:
        reason = "skipped: onnxslim not installed (pip install onnxslim)"
        log.info("ONNX simplification %s", reason)
        return reason
    before = len(onnx.load(str(path)).graph.node)
    slim = onnxslim.slim(str(path))
    onnx.save(slim, str(path))
    return f"onnxslim {getattr(onnxslim, '__version__', '?')}: {before} -> {len(slim.graph.node)} nodes"


def _tensor_specs(values: Any) -> list[dict[str, Any]]:
    out = []
    for v in values:
        tt = v.type.tensor_type
        out.append(
            {
                "name": v.name,
                "shape": [int(d.dim_value) for d in tt.shape.dim],
                "dtype": _ONNX_DTYPES.get(tt.elem_type, str(tt.elem_type)),
            }
        )
    return out


def refuse_shipped_engine(out_dir: Path, name: str) -> None:
    """An export never replaces the shipped student: that is `promote`'s job, which checks it is better.

    Raises:
        ModelError: ``out_dir`` is the package's engines/ and ``name`` is the shipped ``student``.
    """
    if name == "student" and out_dir.resolve() == engines_dir().resolve():
        raise ModelError(
            f"refusing to export over the shipped engine in {engines_dir()}: export to a run folder "
            "(--out-dir runs/<name>) and copy it in with `vla-edge-train promote <folder>`, which "
            "replaces the engine only when the held-out closed-loop score is better (or --force)"
        )


def default_export_dir(checkpoint: str | os.PathLike[str] | None, seed: int | None = None) -> Path:
    """Where an export goes when no --out-dir is given: beside its checkpoint, never engines/."""
    if checkpoint is not None:
        return Path(checkpoint).resolve().parent / "export"
    return Path("runs") / f"export-random-{seed}"


def torchscript_fp16_error(ts: Any, args: tuple[torch.Tensor, ...], ref_traj: torch.Tensor) -> float:
    """Run a TorchScript artefact as the torch-CUDA backend's ``half`` mode does (``.half()``
    plus half float inputs; here on the CPU) and return its max trajectory difference in metres.

    A trace records no cast for ``.float()`` on a buffer that was FP32 while tracing, so a
    graph can run in FP32 and fail once halved; the backend would then fall back to autocast
    silently, at about twice the GPU time (measured on an H200: 1.93 vs 1.04 ms).

    Raises:
        ExportError: If the halved artefact does not run.
    """
    half = ts.half()  # ts is a fresh load: halving it in place touches no other copy
    args16 = tuple(a.half() if a.is_floating_point() else a for a in args)
    try:
        with torch.no_grad():
            out16 = half(*args16)
    except RuntimeError as exc:
        raise ExportError(
            f"the TorchScript artefact fails in FP16 ({str(exc).splitlines()[-1][:200]}): cast buffers with "
            "type_as() on a traced tensor, not .float()"
        ) from exc
    return float((out16[0].float() - ref_traj).abs().max())


def export(
    model: StudentModel,
    out_dir: str | os.PathLike[str],
    name: str = "student",
    weights: str = "random-seeded",
    with_bev: bool = True,
    torchscript: bool = True,
    atol: float = 1e-4,
    training_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export, verify and write the manifest.

    Returns:
        Summary: paths, sizes, parity errors per output, sha256.

    Raises:
        ExportError: If ``onnx.checker`` fails, parity exceeds ``atol`` or the file is too big.
    """
    import onnx
    import onnxruntime as ort

    from vla_edge.backends.manifest import write_manifest

    out = Path(out_dir)
    refuse_shipped_engine(out, name)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"
    wrapper = ExportWrapper(model.eval(), with_bev=with_bev).eval()
    inputs = example_inputs(model)
    input_names = wrapper.input_names()
    args = tuple(inputs[n] for n in input_names)
    out_names = list(OUTPUT_NAMES if with_bev else OUTPUT_NAMES[:2])
    # published (0644: mkstemp makes 0600) only when every check below passes
    with atomic_path(onnx_path, mode=0o644) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: python-constant timesteps are intended
            torch.onnx.export(
                wrapper, args, str(tmp), input_names=list(input_names), output_names=out_names,
                opset_version=OPSET, dynamo=False, do_constant_folding=True,
            )  # fmt: skip
        wrapper.eval()  # export restores the previous mode; keep BatchNorm in eval
        simplified = simplify_onnx(tmp)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        size = tmp.stat().st_size
        if size > MAX_ONNX_BYTES:
            raise ExportError(f"{onnx_path} would be {size / 2**20:.1f} MiB > 16 MiB; ship a smaller preset")
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = sess.run(out_names, {n: inputs[n].numpy() for n in input_names})
        with torch.no_grad():
            ref = wrapper(*args)
        parity = {n: float(np.abs(g - r.numpy()).max()) for n, g, r in zip(out_names, got, ref)}
        if max(parity.values()) > atol:
            raise ExportError(f"ONNX Runtime differs from torch by {parity} (> {atol}); not exporting")

    extra: dict[str, Any] = {
        "training": training_info or {},
        "export": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "parity_max_abs": parity,
            "simplified": simplified,
        },
    }
    if model.camera is not None:
        extra["camera"] = camera_block(model)
    if torchscript:
        ts_path = out / f"{name}.ts"
        with atomic_path(ts_path, mode=0o644) as ts_tmp:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(wrapper, args, check_trace=False)
                traced.save(str(ts_tmp))
            reloaded = torch.jit.load(str(ts_tmp))
            with torch.no_grad():
                ts_err = max(float((a - b).abs().max()) for a, b in zip(reloaded(*args), ref))
            if ts_err > atol:
                raise ExportError(f"TorchScript differs from eager by {ts_err} (> {atol})")
            fp16_err = torchscript_fp16_error(reloaded, args, ref[0])
        extra["torchscript"] = {
            "file": ts_path.name,
            "sha256": hashlib.sha256(ts_path.read_bytes()).hexdigest(),
            "fp16_max_abs_traj_m": round(fp16_err, 4),
        }
    manifest = write_manifest(
        onnx_path,
        inputs=_tensor_specs(proto.graph.input),
        outputs=_tensor_specs(proto.graph.output),
        model_config=model.cfg.to_dict(),
        anchors=model.head.anchors.detach().cpu().numpy().round(4),
        weights=weights,
        preset=model.cfg.preset,
        opset=OPSET,
        extra=extra,
    )
    manifest.chmod(0o644)
    return {"onnx": str(onnx_path), "manifest": str(manifest), "bytes": size, "parity": parity, **extra}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``python -m training.export --help``)."""
    ap = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="trainer checkpoint (.pt) with {'preset', 'model', 'training'}")
    src.add_argument("--random-seed", type=int, help="export seeded random weights (manifest says so)")
    ap.add_argument(
        "--preset", choices=PRESETS, help="size preset (default: the checkpoint's, else model.yaml's)"
    )
    ap.add_argument(
        "--out-dir",
        default=None,
        help="output directory (default: export/ beside the checkpoint, runs/export-random-<seed> for "
        "--random-seed; never the shipped engines/: use `vla-edge-train promote`)",
    )
    ap.add_argument("--name", default="student", help="file stem: <name>.onnx/.ts/.json (default: student)")
    ap.add_argument("--no-bev", action="store_true", help="leave out the optional bev_features output")
    ap.add_argument("--no-torchscript", action="store_true", help="skip the TorchScript artefact")
    ap.add_argument("--atol", type=float, default=1e-4, help="max |ONNX Runtime - torch| allowed (FP32)")
    ap.add_argument(
        "--hold-stop",
        choices=("on", "off"),
        help="the output layer's stop hold (model.yaml smoothing.hold_stop, no weights of its own; "
        "default: the checkpoint's setting)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.checkpoint:
            model, info = load_checkpoint(args.checkpoint, args.preset)
            weights = "trained"
            if args.hold_stop:
                set_hold_stop(model, args.hold_stop == "on")
        else:
            preset = args.preset or str(load_config("model")["default_preset"])
            model, info, weights = (
                build_model(preset, seed=args.random_seed),
                {"seed": args.random_seed},
                "random-seeded",
            )
            info["anchors"] = "kinematic placeholder (seeded sweep + k-means), not fitted on data"
        out_dir = args.out_dir or default_export_dir(args.checkpoint, args.random_seed)
        summary = export(
            model, out_dir, args.name, weights, not args.no_bev, not args.no_torchscript, args.atol, info
        )
    except ModelError as exc:
        log.error("%s", exc)
        return 1
    log.info("wrote %s (%.2f MiB) and %s; parity %s", summary["onnx"], summary["bytes"] / 2**20,
             summary["manifest"], summary["parity"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
