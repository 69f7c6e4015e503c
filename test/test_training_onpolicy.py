"""The on-policy (DAgger) loop on CPU: tiny scenarios, a few steps, two iterations, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, requires_torch

pytestmark = [requires_torch, pytest.mark.slow]


def _run(workdir: Path, iterations: int) -> int:
    from training.cli import main

    return main(
        ["onpolicy", "--workdir", str(workdir), "--iterations", str(iterations), "--cpu", "--no-export"]
    )


def test_aggregates_expert_labelled_student_states_and_resumes(
    small_onpolicy_config: Path, tmp_path: Path
) -> None:
    from training.onpolicy.store import SparseFrames

    work = tmp_path / "op"
    assert _run(work, 1) == 0
    it0 = SparseFrames.load(work / "data" / "iter_0.npz")
    assert len(it0) > 0 and it0.expert_drove.all(), "iteration 0: the (perturbed) expert drives"
    mtime0 = (work / "data" / "iter_0.npz").stat().st_mtime_ns
    state0 = json.loads((work / "state.json").read_text())
    assert state0["done"]["0"] == ["collect", "train", "evaluate"]

    assert _run(work, 2) == 0  # resume: iteration 0 is reused, iteration 1 is added
    assert (work / "data" / "iter_0.npz").stat().st_mtime_ns == mtime0
    it1 = SparseFrames.load(work / "data" / "iter_1.npz")
    assert (~it1.expert_drove).any(), "iteration 1 visits states the student drove to"
    assert np.isfinite(it1.gt).all() and np.isfinite(it1.ego).all()
    state = json.loads((work / "state.json").read_text())
    rows = state["rows"]
    assert rows["1"]["train_frames"] > rows["0"]["train_frames"], "the dataset grows by aggregation"
    assert rows["1"]["student_scenarios"] >= 1
    assert (work / "iter1" / "best.pt").is_file() and (work / "results.md").is_file()
    assert "raw pass" in (work / "results.md").read_text()


def test_sparse_batch_equals_runtime_inputs(small_onpolicy_config: Path) -> None:
    """What the trainer sees (GPU path, here on CPU) is what the vehicle's model would see."""
    import torch

    from training.onpolicy.collect import POINT_QUANTUM, quantise_points
    from training.onpolicy.store import SparseFrames, SparseSplitData
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec, pillarize

    spec = PillarSpec.from_config(load_config("model"))
    rng = np.random.default_rng(0)
    clouds = [
        rng.uniform([-20, -20, -2, 0], [20, 20, 2, 255], (n, 4)).astype(np.float32) for n in (3000, 10, 0)
    ]
    q = [quantise_points(c, spec) for c in clouds]
    counts = np.array([len(x) for x in q])
    frames = SparseFrames(
        points=np.concatenate(q), offsets=np.concatenate([[0], np.cumsum(counts)]),
        ego=np.zeros((3, 6), np.float32), path=np.zeros((3, spec.num_path_points, 2), np.float32),
        gt=np.zeros((3, 8, 3), np.float32), scenario=np.arange(3), iteration=np.zeros(3, np.int32),
        expert_drove=np.ones(3, bool),
    )  # fmt: skip
    data = SparseSplitData(frames, spec)
    batch = data.batch(np.array([2, 0, 1]), torch.device("cpu"))
    for b, i in enumerate([2, 0, 1]):
        f, c, n = pillarize(q[i].astype(np.float32) * POINT_QUANTUM, spec)
        assert int(batch["pillar_count"][b]) == n
        np.testing.assert_array_equal(batch["pillar_features"][b].numpy(), f)
        np.testing.assert_array_equal(batch["pillar_coords"][b].numpy(), c)
    assert len(data.subset(np.array([0, 2]))) == 2


def test_promote_refuses_a_worse_engine_and_records_provenance(tmp_path: Path) -> None:
    """A seeded-random student must not replace the shipped one; a first promotion records its figures."""
    from training.cli import main
    from training.export import main as export_main

    cand = tmp_path / "cand"
    assert export_main(["--random-seed", "3", "--out-dir", str(cand), "--no-torchscript", "--no-bev"]) == 0
    engines = tmp_path / "engines"
    engines.mkdir()
    for f in ("student.onnx", "student.json"):
        shutil.copy2(REPO_ROOT / "engines" / f, engines / f)
    shipped = (engines / "student.onnx").read_bytes()
    args = ["promote", str(cand), "--engines", str(engines), "--scenarios", "1", "--seconds", "6"]
    args += ["--seed", "9701", "9702", "--difficulty", "0.3", "--workers", "1"]  # 1 scenario per seed
    assert main(args) == 1, "a random student beat the shipped engine, or promote did not compare"
    assert (engines / "student.onnx").read_bytes() == shipped, "a refused candidate was copied"

    empty = tmp_path / "empty"
    assert main([*args[:3], str(empty), *args[4:]]) == 0  # nothing to beat: promoted
    # forced over an engine with a TorchScript: the candidate has none, so none stays (not a stale one)
    shutil.copy2(REPO_ROOT / "engines" / "student.ts", engines / "student.ts")
    assert main([*args, "--force"]) == 0
    assert (engines / "student.onnx").read_bytes() == (cand / "student.onnx").read_bytes()
    assert not (engines / "student.ts").exists(), "the replaced engine's TorchScript was left behind"
    doc = json.loads((empty / "student.json").read_text())
    rec = doc["promotion"]
    assert rec["heldout"]["seeds"] == [9701, 9702] and rec["heldout"]["scenarios"] == 2
    assert rec["replaced"] is None
    alone = rec["candidate"]["student"]
    assert 0.0 <= alone["score"] <= 1.0 and "raw_pass_fraction" in alone
    assert 0.0 <= rec["candidate"]["stack"]["student_share"] <= 1.0, "the stack row counts who drove"
    assert (empty / "student.onnx").read_bytes() == (cand / "student.onnx").read_bytes()


def test_promotion_needs_a_win_alone_and_in_the_stack() -> None:
    """Better alone but worse in the stack (the slow 2026-12-07 candidate) is refused, and so is a
    stack win bought with a collision; a candidate better in both passes."""
    from training.onpolicy.commands import promotion_verdict

    def res(alone: float, stack: float, coll: int = 0) -> dict[str, dict[str, dict[str, float]]]:
        cand = {"student": {"score": alone, "collision_scenarios": 0}}
        cand["stack"] = {"score": stack, "collision_scenarios": coll}
        cur = {"student": {"score": 0.82, "collision_scenarios": 5}}
        cur["stack"] = {"score": 0.98, "collision_scenarios": 0}
        return {"candidate": cand, "current": cur}

    assert promotion_verdict(res(0.90, 0.915)) == ["stack: score 0.915 does not beat 0.980"]
    assert promotion_verdict(res(0.90, 0.99, coll=1)) == ["stack: 1 collision scenarios against 0"]
    assert promotion_verdict(res(0.80, 0.99)) == ["student: score 0.800 does not beat 0.820"]
    assert promotion_verdict(res(0.90, 0.99)) == []
    assert promotion_verdict({"candidate": res(0.1, 0.1)["candidate"]}) == [], "nothing to beat"


def test_hazard_oversampling_repeats_braking_frames_without_copying_points() -> None:
    """Hard-braking and speeding-up expert frames are sampled extra times through the index order,
    nothing else."""
    import torch

    from training.onpolicy.store import (
        SparseFrames,
        SparseSplitData,
        hazard_mask,
        oversample_order,
        speedup_mask,
    )
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec

    spec = PillarSpec.from_config(load_config("model"))
    v = np.array([10.0, 10.0, 1.0, 10.0])  # m/s: cruise, brake, creep (never a hazard), cruise
    reach = np.array([40.0, 12.0, 1.0, 38.0])  # m the label covers at 4 s
    # creeping at 1 m/s with a 1 m label holds speed; the same frame with 8 m speeds up
    gt = np.zeros((4, 8, 3), np.float32)
    gt[:, -1, 0] = reach
    ego = np.zeros((4, 6), np.float32)
    ego[:, 0] = v / spec.ego_scale[0]
    pts = np.arange(4 * 5 * 4, dtype=np.int16).reshape(-1, 4)
    frames = SparseFrames(
        points=pts, offsets=np.arange(0, 21, 5), ego=ego,
        path=np.zeros((4, spec.num_path_points, 2), np.float32),
        gt=gt, scenario=np.arange(4), iteration=np.zeros(4, np.int32), expert_drove=np.ones(4, bool),
    )  # fmt: skip
    mask = hazard_mask(frames, spec, horizon_s=4.0, ratio=0.7, min_speed=2.0)
    assert mask.tolist() == [False, True, False, False]
    assert speedup_mask(frames, spec, horizon_s=4.0, margin=3.0).tolist() == [False] * 4
    order = oversample_order(mask * 3)
    assert sorted(order.tolist()) == [0, 1, 1, 1, 1, 2, 3]
    data = SparseSplitData(frames, spec, order=order)
    assert len(data) == 7 and data.points.shape[0] == 20, "points were copied"
    b = data.batch(np.array([4, 0]), torch.device("cpu"))  # sample 4 = an extra copy of frame 1
    assert float(b["gt"][0, -1, 0]) == 12.0 and float(b["gt"][1, -1, 0]) == 40.0
    assert len(data.subset(np.array([4, 5]))) == 2
    assert oversample_order(mask * 0).tolist() == [0, 1, 2, 3]
    frames.gt[2, -1, 0] = 8.0  # 1 m/s for 4 s covers 4 m: 8 m means the expert speeds up
    fast = speedup_mask(frames, spec, horizon_s=4.0, margin=3.0)
    assert fast.tolist() == [False, False, True, False]
    assert sorted(oversample_order(mask * 1 + fast * 2).tolist()) == [0, 1, 1, 2, 2, 2, 3]
    with pytest.raises(ValueError, match="outside"):
        SparseSplitData(frames, spec, order=np.array([0, 4]))


def test_multi_sweep_preset_collects_lagged_clouds_and_trains(
    small_onpolicy_config: Path, tmp_path: Path
) -> None:
    """tiny_motion stores each frame's earlier sweep (time-lag column) and trains on 11 features."""
    from training.cli import main
    from training.onpolicy.collect import POINT_QUANTUM
    from training.onpolicy.store import SparseFrames

    work = tmp_path / "motion"
    args = ["onpolicy", "--workdir", str(work), "--iterations", "1", "--cpu", "--no-export"]
    assert main([*args, "--preset", "tiny_motion"]) == 0
    frames = SparseFrames.load(work / "data" / "iter_0.npz")
    assert frames.points.shape[1] == 5
    lags = np.unique(frames.points[:, 4]) * POINT_QUANTUM
    assert lags[0] == 0.0 and np.any(np.abs(lags - 0.3) < 0.051), f"no earlier sweep near 0.3 s: {lags}"
    first = frames.points[frames.offsets[0] : frames.offsets[1], 4]
    assert (first == 0).all(), "a scenario's first frame has no earlier sweep"
    assert (work / "iter0" / "best.pt").is_file()
    with pytest.raises(ValueError, match="point columns"):  # a single-sweep workdir cannot train it
        from training.onpolicy.store import SparseSplitData
        from vla_edge.config import load_config
        from vla_edge.pillarize import PillarSpec

        single = SparseFrames(
            points=frames.points[:, :4], offsets=frames.offsets, ego=frames.ego, path=frames.path,
            gt=frames.gt, scenario=frames.scenario, iteration=frames.iteration,
            expert_drove=frames.expert_drove,
        )  # fmt: skip
        spec = PillarSpec.from_config(load_config("model")).with_sweeps([0.3])
        SparseSplitData(single, spec)


def test_finetune_lr_applies_only_to_iterations_that_start_from_a_checkpoint() -> None:
    import argparse

    from training.onpolicy.commands import onpolicy_config, register
    from training.onpolicy.loop import iteration_lr
    from vla_edge.errors import ConfigError

    assert iteration_lr(1e-3, 2e-4, from_checkpoint=True) == 2e-4
    assert iteration_lr(1e-3, 2e-4, from_checkpoint=False) == 1e-3  # from scratch: train.lr
    assert iteration_lr(1e-3, 0.0, from_checkpoint=True) == 1e-3  # 0 = train.lr
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["onpolicy", "--workdir", "x"]
    assert onpolicy_config(parser.parse_args(base))[0]["onpolicy"]["finetune_lr"] == 0.0
    cfg, _ = onpolicy_config(parser.parse_args([*base, "--finetune-lr", "0.0002"]))
    assert cfg["onpolicy"]["finetune_lr"] == 2e-4
    with pytest.raises(ConfigError, match="finetune-lr"):
        onpolicy_config(parser.parse_args([*base, "--finetune-lr", "-1"]))
