"""Shallow-pi layer reduction and progressive-distillation config handling."""

from __future__ import annotations

import pytest
from conftest import requires_torch

pytestmark = requires_torch


def test_layer_reduction_copies_kept_teacher_layers():
    import torch

    from training.layer_reduction import derive_preset, reduce_state
    from training.model import build_model
    from vla_edge.config import load_config

    mc = load_config("model")
    keep = {"head.layers": [1], "backbone.stages.1": [0, 2]}
    cfg, name = derive_preset(mc, "tiny", keep)
    assert name == "tiny_shallow"
    assert cfg["presets"][name]["decoder_layers"] == 1 and cfg["presets"][name]["stages"][1][1] == 2
    assert "tiny_shallow" not in mc["presets"]  # the loaded config is not modified
    teacher = build_model("tiny", mc, seed=3)
    student = build_model(name, cfg, seed=5)
    state, counts = reduce_state(teacher.state_dict(), student, keep)
    assert counts["skipped"] == 0 and counts["copied"] == len(student.state_dict())
    student.load_state_dict(state)
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["head.layers.0.ffn.0.weight"], t["head.layers.1.ffn.0.weight"])
    assert torch.equal(s["backbone.stages.1.1.0.weight"], t["backbone.stages.1.2.0.weight"])
    assert torch.equal(s["pfn.linear.weight"], t["pfn.linear.weight"])
    n_t = sum(p.numel() for p in teacher.parameters())
    assert sum(p.numel() for p in student.parameters()) < n_t


def test_layer_reduction_rejects_bad_maps():
    from training.layer_reduction import derive_preset
    from vla_edge.config import load_config
    from vla_edge.errors import ConfigError

    mc = load_config("model")
    with pytest.raises(ConfigError, match="decoder layers"):
        derive_preset(mc, "tiny", {"head.layers": [0, 5]})
    with pytest.raises(ConfigError, match="unknown prefix"):
        derive_preset(mc, "tiny", {"neck.layers": [0]})
    with pytest.raises(ConfigError, match="start with 0"):
        derive_preset(mc, "tiny", {"backbone.stages.0": [1]})


def test_progressive_needs_two_stages(tmp_path):
    from training.progressive import run_progressive
    from vla_edge.config import load_config
    from vla_edge.errors import ConfigError

    cfg = load_config("train")
    cfg["progressive"]["stages"] = ["teacher"]
    with pytest.raises(ConfigError, match="at least two"):
        run_progressive(
            tmp_path, tmp_path / "out", tmp_path / "t.pt", cfg, load_config("model"), force_cpu=True
        )
