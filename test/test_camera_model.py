"""Camera student (issue 18): image input, lift, export + manifest, runtime refusal and fallback.

Real parts only: a randomly initialised ``tiny_cam`` exported on the CPU (ONNX checker +
ONNX Runtime), images rendered by the simulator's pinhole camera, the shipped LiDAR-only engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, requires_torch

from vla_edge.calibration import Calibration
from vla_edge.camera_input import (
    CameraSpec,
    ImageCorruptError,
    ImageMissingError,
    ImageSizeError,
    camera_geometry,
    frame_image_input,
    image_tensor,
)
from vla_edge.config import load_config
from vla_edge.errors import ConfigError, ManifestError
from vla_edge.pillarize import ModelInputError
from vla_edge.types import EgoState, Frame

CALIB = Calibration.from_config(load_config("calibration"))
SPEC = CameraSpec("camera_front", 96, 160, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIM = load_config("sim")


@pytest.fixture(scope="module")
def sim_image() -> np.ndarray:
    """A real simulator frame: the empty-road scene with a tug 12 m ahead."""
    from vla_edge.sim.camera import Camera
    from vla_edge.sim.scenarios import ScenarioSpec, make_scenario

    world = make_scenario(ScenarioSpec("empty_road", 5, 0.0), SIM, 5.0)
    cam = Camera(SIM["camera"], CALIB)
    return cam.render(np.array([20.0, -1.75, 0.0]), world.boxes(), world.ground)


def _frame(images: dict | None = None, stale: set | None = None) -> Frame:
    rng = np.random.default_rng(0)
    ang = rng.uniform(-np.pi, np.pi, 6000)
    rad = rng.uniform(3.0, 35.0, 6000)
    pts = np.stack(
        [rad * np.cos(ang), rad * np.sin(ang), rng.normal(-1.7, 0.05, 6000), rng.uniform(0, 1, 6000)], 1
    )
    box = rng.uniform([10, -1, -1.7, 0], [12, 1, 0.5, 1], (400, 4))
    s = np.linspace(0.0, 40.0, 30)
    return Frame(
        stamp=1.0,
        points=np.vstack([pts, box]).astype(np.float32),
        ego=EgoState(1.0, 0.0, 0.0, 0.0, 5.0),
        reference_path=np.stack([s, 0.002 * s**2], 1),
        images=dict(images or {}),
        stale=set(stale or ()),
    )


# ---------------------------------------------------------------- camera_input (no torch)


def test_image_tensor_resizes_and_normalises(sim_image) -> None:
    out = image_tensor(sim_image, SPEC, (360, 640))
    assert out.shape == (3, 96, 160) and out.dtype == np.float32 and out.flags.c_contiguous
    flat = np.full((360, 640, 3), (255, 0, 128), np.uint8)
    got = image_tensor(flat, SPEC)
    want = (np.array([1.0, 0.0, 128 / 255]) - np.array(SPEC.mean)) / np.array(SPEC.std)
    assert np.allclose(got.reshape(3, -1), want[:, None], atol=1e-5)
    # the top rows of the sim frame are sky: their colour, normalised, lands in the top rows
    sky = (np.array(SIM["camera"]["sky_color"]) / 255 - np.array(SPEC.mean)) / np.array(SPEC.std)
    assert np.allclose(out[:, 0, 0], sky, atol=1e-5)


@pytest.mark.parametrize(
    ("image", "error"),
    [
        (None, ImageMissingError),
        ([[1, 2, 3]], ImageCorruptError),
        (np.zeros((360, 640), np.uint8), ImageCorruptError),
        (np.zeros((360, 640, 4), np.uint8), ImageCorruptError),
        (np.zeros((360, 640, 3), np.float32), ImageCorruptError),
        (np.zeros((0, 640, 3), np.uint8), ImageCorruptError),
        (np.zeros((480, 640, 3), np.uint8), ImageSizeError),
    ],
)
def test_image_tensor_typed_errors(image, error) -> None:
    with pytest.raises(error) as info:
        image_tensor(image, SPEC, (360, 640))
    assert isinstance(info.value, ModelInputError)


def test_geometry_is_the_sim_cameras() -> None:
    from vla_edge.sim.camera import Camera

    cam = Camera(SIM["camera"], CALIB)
    geo = camera_geometry(CALIB, SPEC)
    assert (geo.source.width, geo.source.height) == (cam.w, cam.h)
    assert np.allclose(geo.source.matrix(), cam.K)
    assert np.allclose(geo.intrinsics.matrix(), np.diag([160 / 640, 96 / 360, 1.0]) @ cam.K)
    assert np.allclose(geo.cam_to_base[:3, :3], cam.rot) and np.allclose(geo.cam_to_base[:3, 3], cam.trans)


@pytest.mark.parametrize(
    ("images", "stale", "reason"),
    [
        ({}, set(), "missing"),
        ({}, {"camera_front"}, "undecodable"),
        ({"camera_front": np.zeros((360, 640, 3), np.uint8)}, {"camera_front"}, "stale"),
        ({"camera_front": np.zeros((360, 640, 3), np.float64)}, set(), "corrupt"),
        ({"camera_front": np.zeros((100, 100, 3), np.uint8)}, set(), "wrong_size"),
    ],
)
def test_bad_camera_gives_zero_image_and_reason(images, stale, reason) -> None:
    img, valid, why = frame_image_input(_frame(images, stale), SPEC, (360, 640))
    assert why == reason and valid == 0.0 and img.shape == (3, 96, 160) and not img.any()


# ---------------------------------------------------------------- model, export, runtime (torch)


def test_lift_puts_a_point_where_it_is() -> None:
    pytest.importorskip("torch")
    from training.model.camera import bev_cells, lift_matrix
    from training.model.config import ModelConfig

    mc = ModelConfig.from_config(None, "tiny_cam")
    cam, spec = mc.net.camera, mc.spec
    geo = camera_geometry(CALIB, SPEC)
    lift = lift_matrix(geo, cam, spec, mc.net.neck_stride)
    hb, wb, cx, cy = bev_cells(spec, mc.net.neck_stride)
    w_feat = cam.image_size[1] // cam.stride
    assert lift.shape == (cam.depth_bins * w_feat, hb * wb)
    covered = lift.sum(0) > 0
    assert np.allclose(lift.sum(0)[covered], 1.0, atol=1e-5)  # a mean over what covers a cell
    base_to_cam = np.linalg.inv(geo.cam_to_base)
    edges = np.linspace(*cam.depth_range, cam.depth_bins + 1)
    for x, y in [(20.0, 5.0), (20.0, -5.0), (8.0, 0.5), (35.0, 10.0)]:
        p = base_to_cam @ np.array([x, y, geo.cam_to_base[2, 3], 1.0])
        u = geo.intrinsics.fx * p[0] / p[2] + geo.intrinsics.cx
        col, d = int(u // cam.stride), int(np.searchsorted(edges, p[2]) - 1)
        cell = int((y - spec.point_cloud_range[1]) // cy) * wb + int((x - spec.point_cloud_range[0]) // cx)
        assert lift[d * w_feat + col, cell] > 0, (x, y)
        mirror = int((-y - spec.point_cloud_range[1]) // cy) * wb + int((x - spec.point_cloud_range[0]) // cx)
        if abs(y) > 3:  # left and right are not swapped
            assert lift[d * w_feat + col, mirror] == 0, (x, y)
    behind = [int((0.0 - spec.point_cloud_range[1]) // cy) * wb + c for c in range(int(38 // cx))]
    assert not covered[behind].any(), "cells behind the camera get nothing"


def _camera_weights_as_if_trained(model) -> None:
    """A fresh tiny_cam's fuse ignores the camera (zero columns, see StudentModel); give those
    columns seeded values as training would, so that the image reaches the plan."""
    import torch

    n = model.cfg.net.bev_channels
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        w = model.fuse[0].weight
        w[:, n:] = 0.2 * torch.randn(w[:, n:].shape, generator=gen)


@pytest.fixture(scope="module")
def cam_engine(tmp_path_factory):
    pytest.importorskip("torch")
    from training.export import export
    from training.model.presets import build_model

    model = build_model("tiny_cam", seed=3)
    _camera_weights_as_if_trained(model)
    out = tmp_path_factory.mktemp("cam_engine")
    summary = export(model, out, "student_cam", "random-seeded", torchscript=False, training_info={"seed": 3})
    return model, out / "student_cam.onnx", summary


@requires_torch
def test_export_declares_the_camera(cam_engine) -> None:
    import onnx

    _, onnx_path, summary = cam_engine
    names = [i.name for i in onnx.load(str(onnx_path)).graph.input]
    assert names[-2:] == ["image", "camera_valid"]
    man = json.loads(onnx_path.with_suffix(".json").read_text())
    shapes = {i["name"]: i["shape"] for i in man["inputs"]}
    assert shapes["image"] == [1, 3, 96, 160] and shapes["camera_valid"] == [1, 1]
    block = man["camera"]
    assert block["name"] == "camera_front" and block["image_size"] == [96, 160]
    assert block["mean"] == list(SPEC.mean) and block["std"] == list(SPEC.std)
    assert block["geometry"]["source_size"] == [360, 640]
    assert max(summary["parity"].values()) <= 1e-4 and summary["bytes"] <= 16 * 2**20


@requires_torch
def test_onnxruntime_matches_torch_and_the_gate_works(cam_engine, sim_image) -> None:
    import onnxruntime as ort
    import torch

    from vla_edge.model_inputs import frame_inputs

    model, onnx_path, _ = cam_engine
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = frame_inputs(_frame({"camera_front": sim_image}), model.cfg.spec, batch=True, camera=SPEC)
    feed["noise"] = np.random.default_rng(1).standard_normal((1, 20, 8, 3)).astype(np.float32)
    assert feed["camera_valid"].tolist() == [[1.0]]
    outs = ["trajectories", "scores", "bev_features"]

    def both(f):
        got = sess.run(outs, f)
        with torch.no_grad():
            ref = model({k: torch.from_numpy(v) for k, v in f.items()})
        for name, g in zip(outs, got):
            assert np.abs(g - ref[name].numpy()).max() <= 1e-4, name
        return got

    seen = both(feed)
    other = both({**feed, "image": np.ascontiguousarray(feed["image"][:, :, ::-1])})  # mirrored picture
    assert np.abs(seen[2] - other[2]).max() > 1e-4, "the image must matter"
    off = {**feed, "camera_valid": np.zeros((1, 1), np.float32)}
    blind_a = both(off)
    blind_b = both({**off, "image": np.zeros_like(feed["image"])})
    assert all(np.array_equal(a, b) for a, b in zip(blind_a, blind_b)), "camera_valid = 0 ignores the image"


@requires_torch
def test_runner_builds_the_image_through_camera_input(cam_engine, sim_image) -> None:
    from vla_edge.inference import StudentRunner

    _, onnx_path, _ = cam_engine
    with StudentRunner.from_config(load_config("model"), "onnxruntime", onnx_path, camera="raw") as runner:
        assert runner.camera == SPEC
        frame = _frame({"camera_front": sim_image})
        feed, _ = runner.inputs(frame)
        assert np.array_equal(feed["image"][0], image_tensor(sim_image, SPEC, (360, 640)))
        assert feed["camera_valid"].tolist() == [[1.0]] and runner.camera_reason == "ok"
        seen = runner.run(frame)
        assert seen.trajectory is not None and np.isfinite(seen.trajectories).all()
        assert runner.camera_fallbacks == {}

        # stale, corrupt, missing: LiDAR-only (camera_valid 0), counted per reason, same plan
        blind = runner.run(_frame({}))
        assert runner.camera_reason == "missing"
        stale = runner.run(_frame({"camera_front": sim_image}, {"camera_front"}))
        corrupt = runner.run(_frame({"camera_front": sim_image.astype(np.float32)}))
        wrong = runner.run(_frame({"camera_front": sim_image[::2, ::2]}))
        assert runner.camera_fallbacks == {"missing": 1, "stale": 1, "corrupt": 1, "wrong_size": 1}
        for c in (stale, corrupt, wrong):
            assert np.array_equal(c.trajectories, blind.trajectories)
        assert not np.array_equal(seen.bev, blind.bev)
        runner.run(frame)
        assert runner.camera_reason == "ok" and sum(runner.camera_fallbacks.values()) == 4


@requires_torch
def test_camera_engine_refuses_camera_none(cam_engine) -> None:
    from vla_edge.inference import CameraConfigError, StudentRunner
    from vla_edge.pipeline import load_runner

    _, onnx_path, _ = cam_engine
    with pytest.raises(CameraConfigError, match=r"camera: raw.*drive\.yaml") as info:
        StudentRunner.from_config(load_config("model"), "onnxruntime", onnx_path)
    assert isinstance(info.value, ConfigError) and "camera_front" in str(info.value)
    # the drive graph: not turned into a disabled student (which would drive on); it refuses
    drive = {
        "model_config": "model", "inference_config": "inference", "backend": "onnxruntime",
        "engine_path": str(onnx_path), "camera": "none", "calibration_config": "calibration",
    }  # fmt: skip
    with pytest.raises(CameraConfigError):
        load_runner(drive, allow_disabled=True)
    runner = load_runner({**drive, "camera": "compressed"}, allow_disabled=True)
    try:
        assert runner.camera == SPEC
    finally:
        runner.close()


@requires_torch
def test_camera_engine_refuses_another_calibration(cam_engine, tmp_path: Path) -> None:
    import copy

    from vla_edge.inference import StudentRunner

    _, onnx_path, _ = cam_engine
    cfg = copy.deepcopy(load_config("calibration"))
    cfg["sensors"]["camera_front"]["xyz"] = [1.6, 0.0, 2.5]
    with pytest.raises(ManifestError, match=r"cam_to_base.*sensors\.camera_front"):
        StudentRunner.from_config(
            load_config("model"),
            "onnxruntime",
            onnx_path,
            camera="raw",
            calibration=Calibration.from_config(cfg),
        )
    cfg = copy.deepcopy(load_config("calibration"))
    cfg["sensors"]["camera_front"]["intrinsics"]["fx"] = 400.0
    with pytest.raises(ManifestError, match="source_K"):
        StudentRunner.from_config(
            load_config("model"),
            "onnxruntime",
            onnx_path,
            camera="raw",
            calibration=Calibration.from_config(cfg),
        )


def test_shipped_lidar_engine_loads_and_runs_unchanged(sim_image) -> None:
    from vla_edge.inference import StudentRunner

    engine = REPO_ROOT / "engines" / "student.onnx"
    man = json.loads(engine.with_suffix(".json").read_text())
    assert "camera" not in man and "image" not in [i["name"] for i in man["inputs"]]
    for camera in ("none", "raw"):  # a LiDAR-only engine ignores a configured camera
        with StudentRunner.from_config(load_config("model"), "onnxruntime", engine, camera=camera) as runner:
            assert runner.camera is None
            feed, _ = runner.inputs(_frame({"camera_front": sim_image}))
            assert "image" not in feed and "camera_valid" not in feed
            cand = runner.run(_frame({"camera_front": sim_image}))
            assert cand.trajectory is not None and runner.camera_fallbacks == {}


@requires_torch
def test_lidar_only_checkpoint_still_loads() -> None:
    from training.export import load_checkpoint

    ckpt = REPO_ROOT / "training" / "checkpoints" / "onpolicy_tiny.pt"
    if not ckpt.is_file():
        pytest.skip(f"{ckpt} not present")
    model, _ = load_checkpoint(ckpt, None)
    assert model.cfg.preset == "tiny" and model.camera is None


@requires_torch
def test_camera_preset_trains_only_with_images(sim_image) -> None:
    import torch

    from training import modelio
    from training.export import example_inputs
    from training.model.presets import build_model

    model = build_model("tiny_cam", seed=0).train()
    batch = {k: v.expand(2, *v.shape[1:]).contiguous() for k, v in example_inputs(model).items()}
    t = torch.tensor([3, 7])
    noise = torch.randn(2, 20, 8, 3)
    lidar_only = {k: v for k, v in batch.items() if k not in modelio.CAMERA_KEYS}
    with pytest.raises(modelio.MissingImagesError, match="tiny_cam"):
        modelio.train_forward(model, lidar_only, t, noise)
    batch["image"] = torch.from_numpy(image_tensor(sim_image, SPEC))[None].expand(2, -1, -1, -1).contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    n = model.cfg.net.bev_channels
    for step in range(2):
        opt.zero_grad()
        out = modelio.train_forward(model, batch, t, noise)
        out["trajectories"].abs().mean().backward()
        enc = model.camera.encoder.layers[0][0].weight.grad
        if step == 0:  # zero-initialised camera columns of the fuse learn first ...
            assert model.fuse[0].weight.grad[:, n:].abs().sum() > 0
            assert enc is None or not enc.any()
        opt.step()
    assert enc is not None and enc.abs().sum() > 0, "... then the image encoder gets a gradient"


@requires_torch
def test_lidar_checkpoint_warm_starts_the_camera_preset(sim_image) -> None:
    """tiny weights loaded into tiny_cam (strict=False, as the trainer's init_from) plan as tiny."""
    import torch

    from training.export import example_inputs
    from training.model.presets import build_model

    tiny = build_model("tiny", seed=5)
    cam = build_model("tiny_cam", seed=6)
    result = cam.load_state_dict(tiny.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith(("camera.", "fuse.")) for k in result.missing_keys)
    inputs = example_inputs(cam)
    inputs["image"] = torch.from_numpy(image_tensor(sim_image, SPEC))[None]
    with torch.no_grad():
        a = tiny({k: v for k, v in inputs.items() if k not in ("image", "camera_valid")})
        b = cam(inputs)
    assert torch.allclose(a["trajectories"], b["trajectories"], atol=1e-3)
    assert torch.allclose(a["bev_features"], b["bev_features"], rtol=1e-4, atol=1e-5)
