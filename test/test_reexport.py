"""`vla-edge-train reexport`: same weights, new graph; provenance kept, other weights refused."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from conftest import REPO_ROOT, requires_torch

pytestmark = requires_torch


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checkpoint(tmp_path, seed: int):
    import torch

    from training.model.presets import build_model

    model = build_model("tiny", seed=seed)
    ckpt = tmp_path / f"seed{seed}.pt"
    torch.save({"preset": "tiny", "model": model.state_dict(), "training": {"run": f"s{seed}"}}, ckpt)
    return model, ckpt


def test_reexport_keeps_provenance_and_refuses_other_weights(tmp_path) -> None:
    from training.export import export
    from training.reexport import ReexportError, reexport

    model, ckpt = _checkpoint(tmp_path, 7)
    eng = tmp_path / "engines"
    export(model, eng, "student", "trained", torchscript=False, training_info={"run": "s7"})
    man_path = eng / "student.json"
    man = json.loads(man_path.read_text())
    man["promotion"] = {"heldout": {"seed": 1}, "forced": False}  # what `promote` adds
    man_path.write_text(json.dumps(man))

    _, other = _checkpoint(tmp_path, 8)
    before = _sha(eng / "student.onnx"), _sha(man_path)
    with pytest.raises(ReexportError, match="does not reproduce"):
        reexport(other, eng, reason="wrong weights")
    assert (_sha(eng / "student.onnx"), _sha(man_path)) == before  # nothing replaced

    out = reexport(ckpt, eng, reason="graph change")
    assert max(out["difference"].values()) < 1e-4
    new = json.loads(man_path.read_text())
    assert new["promotion"] == man["promotion"] and new["training"] == {"run": "s7"}
    assert new["sha256"] == _sha(eng / "student.onnx")
    (entry,) = new["reexports"]
    assert entry["reason"] == "graph change" and entry["previous_sha256"] == man["sha256"]
    assert not (eng / "student.ts").exists()  # only the artefacts that were installed

    with pytest.raises(ReexportError, match="no installed engine"):
        reexport(ckpt, tmp_path / "empty", reason="x")


def test_shipped_engine_is_its_committed_checkpoint(tmp_path) -> None:
    """The shipped engine re-exports from training/checkpoints/onpolicy_tiny.pt with the same
    outputs: the checkpoint that later runs resume from is the engine's own weights."""
    from training.reexport import reexport

    eng = tmp_path / "engines"
    eng.mkdir()
    for f in ("student.onnx", "student.json"):
        shutil.copy(REPO_ROOT / "engines" / f, eng / f)
    out = reexport(REPO_ROOT / "training" / "checkpoints" / "onpolicy_tiny.pt", eng, reason="test")
    assert max(out["difference"].values()) < 1e-4
