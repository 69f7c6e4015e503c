"""On-policy training of the camera student (issue 18): images collected, trained, exported, driven.

Real simulator (camera + LiDAR), real ``tiny_cam`` on the CPU, a CPU-sized loop (2 scenarios x 3 s,
a few steps); the exported engine drives the simulator's student planner with the camera.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import requires_torch

pytestmark = [requires_torch, pytest.mark.slow]

SPEC_KW = {"family": "empty_road", "seed": 4242, "difficulty": 0.3}


def _job(camera: bool):
    from training.onpolicy.collect import CollectJob, preset_camera
    from vla_edge.config import load_config
    from vla_edge.sim.scenarios import ScenarioSpec

    oc = load_config("train")["onpolicy"]
    oc.update(seconds=3.0, stride=3)
    cam = preset_camera(load_config("model"), "tiny_cam") if camera else None
    return CollectJob(ScenarioSpec(**SPEC_KW), 0, "expert", oc, camera=cam)


def test_tiny_cam_onpolicy_collects_images_trains_exports_and_drives(
    small_onpolicy_config: Path, tmp_path: Path
) -> None:
    import torch

    from training.cli import main
    from training.evaluate import closed_loop
    from training.onpolicy.store import SparseFrames
    from vla_edge.cli import main as vla_main
    from vla_edge.config import load_config
    from vla_edge.sim.planners import make_planner
    from vla_edge.sim.scenarios import ScenarioSpec

    work = tmp_path / "op"
    argv = ["onpolicy", "--workdir", str(work), "--preset", "tiny_cam", "--iterations", "1", "--cpu"]
    assert main(argv) == 0
    frames = SparseFrames.load(work / "data" / "iter_0.npz")
    assert frames.images is not None and frames.images.shape == (len(frames), 96, 160, 3)
    assert frames.images.dtype == np.uint8 and frames.images.std() > 10, "a rendered scene, not zeros"
    assert (frames.camera_reason == 0).all(), "every simulated frame has its image"
    assert frames.stop_line_m is not None and frames.stop_line_m.shape == (len(frames),)
    assert not np.isnan(frames.stop_line_m).any(), "every collected camera frame has the stop-line label"
    row = json.loads((work / "state.json").read_text())["rows"]["0"]
    assert 0.0 <= row["val_stop_line_acc"] <= 1.0, "the trainer reports the head's val accuracy"
    assert "val stop-line acc" in (work / "results.md").read_text()

    ck = torch.load(work / "iter0" / "best.pt", map_location="cpu", weights_only=False)
    assert ck["preset"] == "tiny_cam"
    n = load_config("model")["presets"]["tiny"]["bev_channels"]
    fuse = ck["model"]["fuse.0.weight"]
    assert fuse[:, n:].abs().sum() > 0, "the fuse's camera columns (zero at build) got gradients"
    # the loop's (and evaluate's) closed loop renders the camera for a camera checkpoint
    cl = closed_loop(
        {"s": str(work / "iter0" / "best.pt")}, [ScenarioSpec("stop_line", 9800001, 0.3)],
        load_config("model"), True, 1, 1.0,
    )["s"]  # fmt: skip
    assert cl["raw_pass_fraction"] is not None and cl["camera_fallback_frames"] == 0

    onnx = work / "export" / "student.onnx"
    assert onnx.is_file() and "camera" in (work / "export" / "student.json").read_text()
    # `vla-edge sim evaluate --planner student --engine <camera engine>` renders the camera itself
    out = tmp_path / "eval.json"
    argv = ["sim", "evaluate", "--planner", "student", "--engine", str(onnx), "--backend", "onnxruntime"]
    argv += ["--family", "stop_line", "--scenarios", "1", "--seconds", "1", "--seed", "9800", "--no-progress"]
    assert vla_main([*argv, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["raw_plans"] > 0 and doc["camera_fallbacks"] == {}, "the camera engine saw the rendered camera"
    planner, _ = make_planner("student", load_config("sim"), None, str(onnx), "onnxruntime")
    assert planner.needs_camera and planner.runner.camera is not None


def test_stack_suite_and_promote_configure_a_camera_engine(tmp_path: Path) -> None:
    """A camera engine with `camera: none` is refused; every closed loop sets camera raw and renders it."""
    from training.export import export
    from training.model.presets import build_model
    from training.onpolicy.commands import _eval_engine
    from vla_edge.config import load_config
    from vla_edge.sim.harness import run_suite
    from vla_edge.sim.planners import make_planner
    from vla_edge.sim.scenarios import ScenarioSpec
    from vla_edge.sim.suite import RecordingPlanner

    export(build_model("tiny_cam", seed=3), tmp_path, "student", "random-seeded", torchscript=False)
    onnx = str(tmp_path / "student.onnx")
    stack, choices = make_planner("stack", load_config("sim"), None, onnx, "onnxruntime")
    assert stack.needs_camera
    run_suite(stack, [ScenarioSpec("stop_line", 9800002, 0.3)], seconds=1.0, render_camera=True)
    assert sum(choices.values()) > 0
    assert RecordingPlanner("stack", None, onnx, "onnxruntime", load_config("sim")).needs_camera
    tiny, _ = make_planner("student", load_config("sim"), None, None, "onnxruntime")
    assert not tiny.needs_camera, "the shipped LiDAR-only engine is unchanged"
    # promote's closed loop configures the camera the same way
    _, _, raw = _eval_engine(("student", onnx, [ScenarioSpec("empty_road", 9701, 0.3)], 1.0))
    assert raw["raw_plans"] > 0 and raw["camera_fallbacks"] == {}


def test_model_planner_feeds_the_camera(small_onpolicy_config: Path) -> None:
    """The loop's closed-loop evaluation renders the camera for a camera checkpoint."""
    import torch

    from training import modelio
    from training.evaluate import ModelPlanner
    from training.model.presets import build_model
    from vla_edge.sim.harness import run_suite
    from vla_edge.sim.scenarios import ScenarioSpec

    model = build_model("tiny_cam", seed=1)
    mp = ModelPlanner(model, torch.device("cpu"), float(model.cfg.dt))
    assert mp.needs_camera
    run_suite(mp, [ScenarioSpec(**SPEC_KW)], seconds=1.0, render_camera=True)
    assert mp.raw_plans > 0 and not mp.camera_fallbacks
    run_suite(mp, [ScenarioSpec(**SPEC_KW)], seconds=1.0, render_camera=False)
    assert mp.camera_fallbacks.get("missing", 0) > 0, "without the camera it counts the fallback"
    tiny = ModelPlanner(build_model("tiny", seed=1), torch.device("cpu"), 0.5)
    assert not tiny.needs_camera and tiny.camera is None
    assert modelio.CAMERA_KEYS == ("image", "camera_valid")


def test_collected_stop_line_label_is_the_distance_to_the_line(small_onpolicy_config: Path) -> None:
    """A stop_line scenario: each stored frame carries the true distance from the ego front to the line."""
    from training.onpolicy.collect import CollectJob, preset_camera, run_job
    from vla_edge.config import load_config
    from vla_edge.sim.scenarios import ScenarioSpec, make_scenario

    oc = load_config("train")["onpolicy"]
    oc.update(seconds=3.0, stride=3)
    spec = ScenarioSpec("stop_line", 4243, 1.0)
    cam = preset_camera(load_config("model"), "tiny_cam")
    res = run_job(CollectJob(spec, 0, "expert", oc, camera=cam))
    d = res["arrays"]["stop_line_m"]
    assert len(d) == res["stats"]["frames"] >= 5 and np.isfinite(d).all()
    world = make_scenario(spec, load_config("sim"), 3.0)  # the scenario as frame 0 saw it
    want = world.stop_lines[0].s - world.ego_s() - world.ego.front_offset
    assert d[0] == pytest.approx(want, abs=1e-3)
    assert (np.diff(d) < 0).all(), "the ego drives towards the line"


def test_batches_are_the_runtime_tensor_with_dropout_at_the_configured_rate(
    small_onpolicy_config: Path,
) -> None:
    import torch

    from training.onpolicy.collect import run_job
    from training.onpolicy.store import SparseFrames, SparseSplitData
    from vla_edge.calibration import Calibration
    from vla_edge.camera_input import frame_image_input
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec
    from vla_edge.sim.harness import FrameBuilder
    from vla_edge.sim.scenarios import ScenarioSpec, make_scenario

    job = _job(camera=True)
    res = run_job(job)
    frames = SparseFrames.from_jobs([res], 0)
    spec = PillarSpec.from_config(load_config("model"))
    cam = job.camera

    # the stored image of frame 0 normalised per batch == the runtime's image tensor of that frame
    sim_cfg = load_config("sim")
    calib = Calibration.from_config(load_config("calibration"))
    world = make_scenario(ScenarioSpec(**SPEC_KW), sim_cfg, 3.0)
    frame = FrameBuilder(sim_cfg, calib, lidar=False, camera=True).build(world, 0)
    ref, valid, reason = frame_image_input(frame, cam, (360, 640))
    assert reason == "ok" and valid == 1.0
    data = SparseSplitData(frames, spec, camera=cam)
    b0 = data.batch(np.array([0]), torch.device("cpu"))
    np.testing.assert_array_equal(b0["image"][0].numpy(), ref)
    assert b0["camera_valid"].tolist() == [[1.0]]

    # one frame with a bad camera (reason != ok): always LiDAR-only; the others dropped at 0.15
    frames.camera_reason[1] = 4  # "corrupt"
    data = SparseSplitData(frames, spec, camera=cam, camera_dropout=0.15, seed=3)
    idx = np.arange(len(frames))
    drops, total = 0, 0
    for _ in range(150):
        b = data.batch(idx, torch.device("cpu"))
        v = b["camera_valid"][:, 0]
        assert v[1] == 0.0
        zero = (b["image"].flatten(1) == 0).all(1)
        assert torch.equal(zero, v == 0), "camera_valid 0 <=> zero image (the runtime's fallback)"
        ok = np.arange(len(frames)) != 1
        drops += int((v[ok] == 0).sum())
        total += int(ok.sum())
    rate = drops / total
    assert abs(rate - 0.15) < 0.03, f"dropout rate {rate:.3f}, configured 0.15 ({total} samples)"
    assert (
        SparseSplitData(frames, spec, camera=cam)
        .batch(idx, torch.device("cpu"))["camera_valid"][np.arange(len(frames)) != 1]
        .all()
    ), "no dropout configured, no dropout (validation)"


def test_lidar_only_path_stores_no_images(small_onpolicy_config: Path, tmp_path: Path) -> None:
    from training.modelio import MissingImagesError
    from training.onpolicy.collect import run_job
    from training.onpolicy.store import SparseFrames, SparseSplitData
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec

    tiny, cam = run_job(_job(camera=False)), run_job(_job(camera=True))
    assert set(tiny["arrays"]) == {"points", "counts", "ego", "path", "gt", "t", "expert_drove"}
    assert set(cam["arrays"]) - set(tiny["arrays"]) == {"images", "camera_reason", "stop_line_m"}
    assert np.isinf(cam["arrays"]["stop_line_m"]).all(), "empty_road: no stop line, class none"
    for k, v in tiny["arrays"].items():  # rendering the camera changes nothing else
        np.testing.assert_array_equal(v, cam["arrays"][k], err_msg=k)
    f = SparseFrames.from_jobs([tiny], 0)
    assert f.images is None and f.camera_reason is None
    f.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as z:
        assert sorted(z.files) == sorted(
            ["format", "points", "offsets", "ego", "path", "gt", "scenario", "iteration", "expert_drove"]
        )
    again = SparseFrames.load(tmp_path / "t.npz")
    assert again.images is None and again.digest() == f.digest()
    spec = PillarSpec.from_config(load_config("model"))
    from training.onpolicy.collect import preset_camera

    with pytest.raises(MissingImagesError, match="no images"):
        SparseSplitData(f, spec, camera=preset_camera(load_config("model"), "tiny_cam"))
    with pytest.raises(MissingImagesError, match="new --workdir"):
        SparseFrames.concat([f, SparseFrames.from_jobs([cam], 1)])
    assert "image" not in SparseSplitData(f, spec).batch(np.arange(len(f)), __import__("torch").device("cpu"))


def test_families_override_is_validated(small_onpolicy_config: Path) -> None:
    import argparse

    from training.onpolicy.commands import onpolicy_config, register
    from vla_edge.errors import ConfigError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["onpolicy", "--workdir", "x", "--preset", "tiny_cam", "--families", "stop_line"]
    )
    cfg, _ = onpolicy_config(args)
    assert cfg["onpolicy"]["families"] == ["stop_line"]
    default = onpolicy_config(parser.parse_args(["onpolicy", "--workdir", "x"]))[0]
    assert "stop_line" not in default["onpolicy"]["families"], "the LiDAR default stays without stop_line"
    with pytest.raises(ConfigError, match="stop_lines"):
        onpolicy_config(parser.parse_args(["onpolicy", "--workdir", "x", "--families", "stop_lines"]))


def test_sim_evaluate_workers_merge_camera_fallbacks() -> None:
    from vla_edge.cli.sim import merge_raw

    parts = [
        {"raw_plans": 2, "raw_pass_fraction": 1.0, "raw_failed_checks": {}, "camera_fallbacks": {"stale": 1}},
        {"raw_plans": 2, "raw_pass_fraction": 0.5, "raw_failed_checks": {}, "camera_fallbacks": {"stale": 2}},
    ]
    assert merge_raw(parts)["camera_fallbacks"] == {"stale": 3}
    assert "camera_fallbacks" not in merge_raw([{"raw_plans": 1, "raw_pass_fraction": 1.0}])
