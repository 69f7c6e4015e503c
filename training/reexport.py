"""Re-export an installed engine from its own checkpoint after a change to the exported graph.

``vla-edge-train promote`` replaces an engine with *new weights* that score higher. This command
is for the other case: the weights stay, and only the graph that carries them changes (an
export-only rewrite such as the folded pillar net). It

1. exports ``--checkpoint`` into a temporary folder with ``training.export`` (same checks:
   ``onnx.checker``, ONNX Runtime vs torch parity, TorchScript parity and its FP16 error);
2. runs the installed ONNX and the new one on the same inputs (synthetic sweeps, fixed noise) and
   refuses unless every output agrees within ``--atol``: a checkpoint that is not the engine's
   own weights, or a rewrite that changes the result, never lands;
3. keeps the installed manifest's provenance (``training``, ``promotion``) and appends a
   ``reexports`` entry (date, reason, git commit, checkpoint, output difference), then replaces
   ``<name>.onnx``, ``.ts`` and ``.json`` in ``--engines``.

Derived files (``student_int8.onnx`` of ``vla-edge-train quantize``, TensorRT plans) are built
from the FP32 ONNX: rebuild them after a re-export.

    vla-edge-train reexport training/checkpoints/onpolicy_tiny.pt --reason "folded pillar net"
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.config import engines_dir
from vla_edge.errors import ModelError
from vla_edge.fsutil import atomic_path

log = logging.getLogger("training.reexport")

#: Manifest keys that describe where the weights came from; a re-export keeps them.
PROVENANCE_KEYS = ("training", "promotion")


class ReexportError(ModelError):
    """The new export does not reproduce the installed engine, or an input is missing."""


def output_difference(old_onnx: Path, new_onnx: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Largest absolute difference per output of two ONNX files over ``feeds`` (CPU, FP32)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    cpu = ["CPUExecutionProvider"]
    sessions = [ort.InferenceSession(str(p), so, providers=cpu) for p in (old_onnx, new_onnx)]
    names = [o.name for o in sessions[0].get_outputs()]
    if names != [o.name for o in sessions[1].get_outputs()]:
        raise ReexportError(f"{new_onnx} has outputs {[o.name for o in sessions[1].get_outputs()]}, "
                            f"the installed engine {names}: not the same contract")  # fmt: skip
    diff = dict.fromkeys(names, 0.0)
    for feed in feeds:
        old, new = (s.run(names, feed) for s in sessions)
        for n, a, b in zip(names, old, new):
            diff[n] = max(diff[n], float(np.abs(a - b).max()))
    return diff


def reexport(
    checkpoint: str | Path,
    engines: str | Path | None = None,
    name: str = "student",
    reason: str = "",
    atol: float = 1e-3,
    probes: int = 4,
) -> dict[str, Any]:
    """Re-export ``checkpoint`` over ``<engines>/<name>`` if it reproduces the installed engine.

    Returns:
        ``{"onnx", "difference", "manifest"}``.

    Raises:
        ReexportError: The installed engine is missing, or an output differs by more than ``atol``.
    """
    import torch

    from training.export import example_inputs, export, load_checkpoint, set_hold_stop
    from training.onpolicy.loop import git_commit

    eng = Path(engines) if engines is not None else engines_dir()
    old_onnx, old_json = eng / f"{name}.onnx", eng / f"{name}.json"
    if not old_onnx.is_file() or not old_json.is_file():
        raise ReexportError(f"no installed engine {old_onnx} with its manifest: use `vla-edge-train promote`")
    old = json.loads(old_json.read_text())
    model, _ = load_checkpoint(checkpoint, old.get("preset"))
    hold = (old.get("model_config") or {}).get("smoothing", {}).get("hold_stop")
    if hold is not None and bool(hold) != bool(model.cfg.smoothing.get("hold_stop", False)):
        set_hold_stop(model, bool(hold))  # the installed engine's output layer, not the checkpoint's
    with tempfile.TemporaryDirectory(prefix="vla_edge_reexport_") as tmp:
        summary = export(
            model, tmp, name, weights=str(old.get("weights", "trained")),
            torchscript=(eng / f"{name}.ts").exists(), training_info=old.get("training"),
        )  # fmt: skip
        new_onnx = Path(summary["onnx"])
        feeds = []
        for seed in range(probes):
            with torch.no_grad():
                feeds.append({k: v.numpy() for k, v in example_inputs(model, seed).items()})
        diff = output_difference(old_onnx, new_onnx, feeds)
        if max(diff.values()) > atol:
            raise ReexportError(
                f"{checkpoint} exported does not reproduce {old_onnx} (largest output differences "
                f"{diff}, allowed {atol}): not the engine's weights, or the graph change alters the "
                "result; promote new weights with `vla-edge-train promote` instead"
            )
        manifest = json.loads(Path(summary["manifest"]).read_text())
        for key in PROVENANCE_KEYS:
            if key in old:
                manifest[key] = old[key]
        entry = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "reason": reason,
            "git_commit": git_commit(),
            "checkpoint": str(checkpoint),
            "previous_sha256": old.get("sha256"),
            "max_abs_output_difference": diff,
        }
        manifest["reexports"] = [*old.get("reexports", []), entry]
        for suffix in (".onnx", ".ts"):
            src = Path(tmp) / f"{name}{suffix}"
            if src.exists():
                with atomic_path(eng / src.name, mode=0o644) as dst:
                    shutil.copyfile(src, dst)
        with atomic_path(old_json, mode=0o644) as dst:
            dst.write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("re-exported %s from %s; largest output differences %s", old_onnx, checkpoint, diff)
    return {"onnx": str(old_onnx), "difference": diff, "manifest": str(old_json)}


def add_parser(sub: Any) -> None:
    """Register ``reexport`` on the ``vla-edge-train`` subparsers."""
    p = sub.add_parser(
        "reexport",
        help="re-export an installed engine from its own checkpoint after an export-only graph change",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint", help="the engine's trainer checkpoint, e.g. training/checkpoints/onpolicy_tiny.pt"
    )
    p.add_argument("--engines", default=None, help="engines directory (default: the package's engines/)")
    p.add_argument("--name", default="student", help="engine file stem (default: student)")
    p.add_argument("--reason", required=True, help="why, recorded in the manifest's reexports list")
    p.add_argument(
        "--atol", type=float, default=1e-3,
        help="largest output difference allowed against the installed engine (default 1e-3)",
    )  # fmt: skip
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = reexport(args.checkpoint, args.engines, args.name, args.reason, args.atol)
    except ModelError as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(out, indent=1))
    return 0
