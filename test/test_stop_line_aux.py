"""The camera student's stop-line auxiliary target (issue 18): label, store, head, export.

Real parts only: the simulator's ``stop_line`` scenario driven by the privileged expert, the
on-policy store on disk, a seeded ``tiny_cam`` and its ONNX export on the CPU.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_torch

from vla_edge.config import load_config
from vla_edge.sim.expert import Expert
from vla_edge.sim.rollout import run_closed_loop
from vla_edge.sim.scenarios import ScenarioSpec, make_scenario
from vla_edge.sim.world import StopLine

SIM = load_config("sim")
BINS = tuple(load_config("model")["presets"]["tiny_cam"]["camera"]["stop_line_bins"])


@pytest.fixture(scope="module")
def drive() -> dict:
    """The expert through a stop_line scenario with a second line 30 m after the first."""
    world = make_scenario(ScenarioSpec("stop_line", 7, 1.0), SIM, 30.0)
    first = world.stop_lines[0]
    second = StopLine(first.s + 30.0, 1.0, first.zone, first.stop_speed)
    world.stop_lines.append(second)
    expert = Expert(SIM)
    rec: list[tuple] = []

    def policy(w):
        dec = expert.plan(w)
        front = w.ego_s() + w.ego.front_offset
        rec.append((expert.stop_line_distance(w), front, first.cleared, second.cleared, dec))
        return dec.plan, {}

    run_closed_loop(world, policy, 30.0, SIM)
    return {"world": world, "first": first, "second": second, "rec": rec}


def test_label_is_the_line_the_expert_stops_for_then_the_next_then_none(drive: dict) -> None:
    first, second, rec = drive["first"], drive["second"], drive["rec"]
    assert drive["world"].stop_line_violations() == 0 and first.cleared and second.cleared
    d = np.array([r[0] for r in rec])
    front = np.array([r[1] for r in rec])
    c1 = np.array([r[2] for r in rec])
    c2 = np.array([r[3] for r in rec])
    before, between, after = ~c1, c1 & ~c2, c2
    assert before.any() and between.any() and after.any()
    # before the first line is held for its dwell: the distance from the ego front to it
    np.testing.assert_allclose(d[before], np.maximum(first.s - front[before], 0.0), atol=1e-9)
    assert d[0] > 30.0 and (np.diff(d[before]) <= 1e-9).all()
    # held there: the next line that still applies (30 m on), not "none"
    np.testing.assert_allclose(d[between], second.s - front[between], atol=1e-9)
    assert d[between][0] > 29.0
    # both held: none
    assert np.isinf(d[after]).all()
    # the expert's own stop-line reasoning measures exactly the label
    said = [(r[0], r[4].cause_dist) for r in rec if r[4].cause == "stop_line"]
    assert len(said) > 20 and all(a == b for a, b in said)


def test_label_is_none_without_a_stop_line() -> None:
    world = make_scenario(ScenarioSpec("empty_road", 7, 0.5), SIM, 5.0)
    assert Expert(SIM).stop_line_distance(world) == float("inf")


@requires_torch
def test_label_classes_over_the_configured_bins(drive: dict) -> None:
    from training.onpolicy.store import stop_line_classes

    assert BINS == (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0)
    d = np.array([0.0, 4.99, 5.0, 12.0, 39.9, 40.0, 250.0, np.inf, np.nan], np.float32)
    assert stop_line_classes(d, BINS, len(d)).tolist() == [0, 0, 1, 2, 7, 8, 8, 8, -1]
    assert stop_line_classes(None, BINS, 3).tolist() == [-1, -1, -1], "not stored: unknown"
    rec = drive["rec"]
    cls = stop_line_classes(np.array([r[0] for r in rec]), BINS, len(rec))
    d0 = rec[0][0]
    assert cls[0] == int(d0 // 5.0), "the right bin before the line"
    held = [i for i, r in enumerate(rec) if r[4].action == "hold"]
    assert held and (cls[held[: len(held) // 3]] == 0).all(), "holding at the line: the nearest bin"
    assert cls[-1] == len(BINS), "after holding at both lines: none"


# ------------------------------------------------------------------------------ store


def _frames(n: int, images: bool, stop_line_m: np.ndarray | None, seed: int = 0):
    from training.onpolicy.store import SparseFrames

    rng = np.random.default_rng(seed)
    k = load_config("model")["inputs"]["reference_path"]["num_points"]
    return SparseFrames(
        points=rng.integers(-1500, 1500, (5 * n, 4)).astype(np.int16),
        offsets=np.arange(0, 5 * n + 1, 5, dtype=np.int64),
        ego=np.zeros((n, 6), np.float32),
        path=np.zeros((n, k, 2), np.float32),
        gt=rng.normal(size=(n, 8, 3)).astype(np.float32),
        scenario=np.arange(n, dtype=np.int64),
        iteration=np.zeros(n, np.int32),
        expert_drove=np.ones(n, bool),
        images=rng.integers(0, 255, (n, 96, 160, 3), dtype=np.uint8) if images else None,
        camera_reason=np.zeros(n, np.uint8) if images else None,
        stop_line_m=stop_line_m,
    )


@requires_torch
def test_store_round_trip_and_an_old_store_without_the_label(tmp_path: Path) -> None:
    import torch

    from training.onpolicy.collect import preset_camera
    from training.onpolicy.store import SparseFrames, SparseSplitData
    from vla_edge.pillarize import PillarSpec

    spec = PillarSpec.from_config(load_config("model"))
    cam = preset_camera(load_config("model"), "tiny_cam")
    new = _frames(4, True, np.array([3.0, 37.0, np.inf, 12.0], np.float32))
    new.camera_reason[3] = 4  # a corrupt image: nothing to read the line from
    new.save(tmp_path / "new.npz")
    back = SparseFrames.load(tmp_path / "new.npz")
    np.testing.assert_array_equal(back.stop_line_m, new.stop_line_m)
    assert back.digest() == new.digest()
    np.testing.assert_array_equal(back.subset(np.array([2, 0])).stop_line_m, [np.inf, 3.0])

    old = _frames(3, True, None, seed=1)  # a camera store written before the label existed
    old.save(tmp_path / "old.npz")
    with np.load(tmp_path / "old.npz") as z:
        assert "stop_line_m" not in z.files
    old = SparseFrames.load(tmp_path / "old.npz")
    assert old.stop_line_m is None and old.subset(np.array([0])).stop_line_m is None
    both = SparseFrames.concat([old, back])
    assert np.isnan(both.stop_line_m[:3]).all(), "old frames are unknown, not 'none'"
    np.testing.assert_array_equal(both.stop_line_m[3:], new.stop_line_m)

    dev = torch.device("cpu")
    data = SparseSplitData(both, spec, camera=cam, stop_line_bins=BINS)
    b = data.batch(np.arange(len(both)), dev)
    assert b["stop_line"].dtype == torch.int64
    assert b["stop_line"].tolist() == [-1, -1, -1, 0, 7, 8, -1]
    assert data.subset(np.array([4, 0])).batch(np.arange(2), dev)["stop_line"].tolist() == [7, -1]
    only_old = SparseSplitData(old, spec, camera=cam, stop_line_bins=BINS).batch(np.arange(3), dev)
    assert only_old["stop_line"].tolist() == [-1, -1, -1]
    dropped = SparseSplitData(both, spec, camera=cam, camera_dropout=1.0, stop_line_bins=BINS)
    assert (dropped.batch(np.arange(len(both)), dev)["stop_line"] == -1).all(), "no image, no target"
    assert "stop_line" not in SparseSplitData(both, spec, camera=cam).batch(np.arange(2), dev)
    lidar = _frames(2, False, None)
    assert "stop_line" not in SparseSplitData(lidar, spec, stop_line_bins=BINS).batch(np.arange(2), dev)


# ------------------------------------------------------------------------------ head and export


def _without_bins(model_cfg: dict) -> dict:
    """model.yaml as it was before the stop-line head (no camera.stop_line_bins)."""
    cfg = copy.deepcopy(model_cfg)
    del cfg["presets"]["tiny_cam"]["camera"]["stop_line_bins"]
    return cfg


@requires_torch
def test_head_is_training_only_and_checkpoints_without_it_load(tmp_path: Path) -> None:
    import torch

    from training import modelio
    from training.export import example_inputs, load_checkpoint
    from training.model.presets import build_model
    from training.trainer import widen_point_features

    cam = build_model("tiny_cam", seed=3).train()
    assert cam.has_stop_line_head and cam.camera.stop_line_head.out_features == len(BINS) + 1
    assert not build_model("tiny", seed=3).has_stop_line_head
    batch = {k: v.expand(2, *v.shape[1:]).contiguous() for k, v in example_inputs(cam).items()}
    t, noise = torch.tensor([1, 4]), torch.randn(2, 20, 8, 3)
    out = modelio.train_forward(cam, batch, t, noise)
    assert out["stop_line_logits"].shape == (2, len(BINS) + 1)
    out["stop_line_logits"].logsumexp(1).sum().backward()
    assert cam.camera.encoder.layers[0][0].weight.grad.abs().sum() > 0, "a signal for the image encoder"
    with torch.no_grad():
        assert "stop_line_logits" not in cam.eval()(batch)

    # a tiny_cam checkpoint from before the head: its own model_cfg builds it without the head ...
    old_cfg = _without_bins(load_config("model"))
    old = build_model("tiny_cam", old_cfg, seed=3)
    assert not old.has_stop_line_head
    path = tmp_path / "old.pt"
    torch.save({"model": old.state_dict(), "preset": "tiny_cam", "model_cfg": old_cfg}, path)
    loaded, _ = load_checkpoint(path, None)
    assert not loaded.has_stop_line_head
    # ... and starts the head's model as the trainer's --init does (strict=False): only the head is new
    res = cam.load_state_dict(widen_point_features(old.state_dict(), cam.state_dict()), strict=False)
    assert not res.unexpected_keys
    assert sorted(res.missing_keys) == ["camera.stop_line_head.bias", "camera.stop_line_head.weight"]


@requires_torch
def test_tiny_cam_export_is_unchanged_by_the_head(tmp_path: Path) -> None:
    """Same seed with and without the head: the same ONNX bytes and manifest inputs/outputs."""
    import json

    from training.export import export
    from training.model.presets import build_model

    with_head = build_model("tiny_cam", seed=3)
    without = build_model("tiny_cam", _without_bins(load_config("model")), seed=3)
    assert with_head.has_stop_line_head and not without.has_stop_line_head
    for name, model in (("a", with_head), ("b", without)):
        export(model, tmp_path / name, "student", "random-seeded", torchscript=False)
    a, b = (json.loads((tmp_path / n / "student.json").read_text()) for n in "ab")
    assert (a["inputs"], a["outputs"]) == (b["inputs"], b["outputs"])
    assert [i["name"] for i in a["outputs"]] == ["trajectories", "scores", "bev_features"]
    assert [i["name"] for i in a["inputs"]][-2:] == ["image", "camera_valid"]
    assert (tmp_path / "a" / "student.onnx").read_bytes() == (tmp_path / "b" / "student.onnx").read_bytes()
    assert with_head.has_stop_line_head, "the export left the trained model's head in place"
