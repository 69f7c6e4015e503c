"""LiDAR and camera geometry: returns land on objects where the objects are."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.calibration import Calibration
from vla_edge.config import load_config
from vla_edge.sim.camera import Camera
from vla_edge.sim.lidar import Lidar
from vla_edge.sim.scenarios import ScenarioSpec, make_scenario
from vla_edge.sim.world import Boxes, SimError

CFG = load_config("sim")
CALIB = Calibration.from_config(load_config("calibration"))


def _boxes(spec: list[tuple[float, float, float, float, float, float, float, int]]) -> Boxes:
    """Boxes from (x, y, yaw, l, w, h, z0, id)."""
    a = np.array(spec, dtype=np.float64)
    n = len(a)
    return Boxes(
        a[:, :2],
        a[:, 2],
        a[:, 3:6],
        a[:, 6],
        np.array(["tug"] * n, dtype=object),
        a[:, 7].astype(np.int64),
        np.full(n, 0.5),
        np.full((n, 3), 200, np.uint8),
        np.zeros(n, bool),
        np.zeros((n, 2)),
    )


def _inside(pts_w: np.ndarray, box: tuple, tol: float) -> np.ndarray:
    x, y, yaw, ln, w, h, z0, _ = box
    c, s = np.cos(yaw), np.sin(yaw)
    dx, dy = pts_w[:, 0] - x, pts_w[:, 1] - y
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    return (
        (np.abs(lx) <= ln / 2 + tol)
        & (np.abs(ly) <= w / 2 + tol)
        & (pts_w[:, 2] >= z0 - tol)
        & (pts_w[:, 2] <= z0 + h + tol)
    )


@pytest.fixture(scope="module")
def world():  # a real scenario's ground raster, objects replaced per test
    return make_scenario(ScenarioSpec("empty_road", 5, 0.0), CFG, 5.0)


@pytest.mark.parametrize("preset", ["32x1024", "128x2048"])
def test_returns_land_on_the_boxes(world, preset: str) -> None:
    lidar = Lidar(CFG["lidar"], CALIB, preset)
    pose = np.array([20.0, -1.75, 0.3])
    c, s = np.cos(pose[2]), np.sin(pose[2])

    def ahead(fwd: float, left: float) -> tuple[float, float]:
        return pose[0] + c * fwd - s * left, pose[1] + s * fwd + c * left

    specs = [
        (*ahead(15.0, 0.0), 0.3, 3.0, 1.6, 1.7, 0.0, 101),  # tug ahead, skewed
        (*ahead(-12.0, 4.0), -1.0, 9.0, 2.5, 3.2, 0.0, 102),  # fuel truck behind-left
        (*ahead(6.0, -5.0), 0.0, 0.4, 0.4, 0.7, 0.0, 103),  # cone right
        (*ahead(30.0, 8.0), 0.0, 5.0, 30.0, 0.8, 2.8, 104),  # a wing floating above ground
    ]
    boxes = _boxes(specs)
    scan = lidar.scan(pose, boxes, world.ground, np.random.default_rng(1), organized=False)
    assert scan.points.dtype == np.float32 and scan.points.shape[1] == 4
    assert scan.ring.max() == lidar.beams - 1
    base = CALIB.transform_points(scan.points, lidar.frame_id)
    pts_w = np.column_stack(
        [pose[0] + c * base[:, 0] - s * base[:, 1], pose[1] + s * base[:, 0] + c * base[:, 1], base[:, 2]]
    )
    tol = 4 * CFG["lidar"]["range_noise"] + 0.02
    for spec in specs:
        mine = scan.hit_id == spec[-1]
        assert mine.sum() >= 3, f"no returns on box {spec[-1]}"
        assert _inside(pts_w[mine], spec, tol).all(), f"returns of box {spec[-1]} outside it"
    on_ground = scan.hit_id == 0
    assert np.abs(pts_w[on_ground, 2]).max() < tol
    # No ground return hides inside a box.
    for spec in specs[:3]:
        assert not _inside(pts_w[on_ground], spec, -0.1).any()
    # Intensity follows reflectivity: cones (0.9) brighter than asphalt (0.12) nearby.
    assert scan.points[on_ground & (np.hypot(base[:, 0], base[:, 1]) < 8), 3].mean() < 60


def test_occlusion_and_organized_layout(world) -> None:
    lidar = Lidar(CFG["lidar"], CALIB)
    pose = np.array([20.0, -1.75, 0.0])
    near = (pose[0] + 10.0, pose[1], 0.0, 2.0, 3.0, 3.0, 0.0, 1)
    far = (pose[0] + 20.0, pose[1], 0.0, 2.0, 1.0, 1.5, 0.0, 2)  # fully behind the near one
    scan = lidar.scan(pose, _boxes([near, far]), world.ground, np.random.default_rng(2), organized=True)
    assert scan.organized and len(scan.points) == lidar.beams * lidar.columns
    assert (scan.hit_id == 1).sum() > 20
    assert (scan.hit_id == 2).sum() == 0
    no_ret = scan.hit_id < 0
    assert np.isnan(scan.points[no_ret]).all() and np.isfinite(scan.points[~no_ret]).all()


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(SimError, match="preset"):
        Lidar(CFG["lidar"], CALIB, "64x512")


def test_camera_draws_objects_where_they_project(world) -> None:
    cam = Camera(CFG["camera"], CALIB)
    pose = np.array([20.0, -1.75, 0.0])
    img_empty = cam.render(pose, Boxes.empty(), world.ground)
    box = (pose[0] + 12.0, pose[1], 0.0, 3.0, 3.0, 3.0, 0.0, 1)
    img = cam.render(pose, _boxes([box]), world.ground)
    assert img.shape == (CFG["camera"]["height"], CFG["camera"]["width"], 3) and img.dtype == np.uint8
    # The box centre projects to the image centre column (camera on the ego axis).
    r, t = cam.world_to_cam(pose)
    p = r @ np.array([box[0], box[1], 1.5]) + t
    u, v = (cam.K @ p)[:2] / p[2]
    ui, vi = int(u), int(v)
    assert abs(ui - cam.w / 2) < 5
    assert not np.array_equal(img[vi, ui], img_empty[vi, ui])
    assert np.array_equal(img[2, 2], np.array(CFG["camera"]["sky_color"], np.uint8))
    # A box behind the camera changes nothing.
    behind = (pose[0] - 10.0, pose[1], 0.0, 3.0, 3.0, 3.0, 0.0, 2)
    assert np.array_equal(cam.render(pose, _boxes([behind]), world.ground), img_empty)


def test_sensor_intensity_unit_round_trips_to_the_students_scale(world) -> None:
    """A LiDAR calibrated as a 0..1 sensor (intensity_scale 255): the simulator publishes 0..1,
    the runtime's cloud_to_base brings it back to the 0..255 the student learnt."""
    import copy

    from vla_edge.frame_assembly import FrameAssembler
    from vla_edge.types import EgoState

    cfg = copy.deepcopy(load_config("calibration"))
    cfg["sensors"]["lidar"]["intensity_scale"] = 255.0
    unit = Calibration.from_config(cfg)
    pose = np.array([20.0, -1.75, 0.0])
    boxes = _boxes([(pose[0] + 12.0, pose[1], 0.0, 3.0, 1.6, 1.7, 0.0, 1)])
    ref = Lidar(CFG["lidar"], CALIB).scan(
        pose, boxes, world.ground, np.random.default_rng(3), organized=False
    )
    got = Lidar(CFG["lidar"], unit).scan(pose, boxes, world.ground, np.random.default_rng(3), organized=False)
    assert ref.points[:, 3].max() > 50 and got.points[:, 3].max() <= 1.0
    np.testing.assert_allclose(got.points[:, 3] * 255.0, ref.points[:, 3], rtol=1e-5, atol=1e-4)
    frame_id = unit.sensor_frame("lidar")
    base = unit.cloud_to_base(got.points, frame_id)
    np.testing.assert_allclose(base, CALIB.cloud_to_base(ref.points, frame_id), rtol=1e-5, atol=1e-4)
    asm = FrameAssembler(load_config("frame"), unit)  # the vehicle's path applies the same scale
    asm.add_ego_state(EgoState(10.0, 0.0, 0.0, 0.0, 0.0), "odom")
    pts = asm.make_frame_from_points(10.0, got.points, frame_id).points
    np.testing.assert_allclose(pts[:, 3], unit.cloud_to_base(got.points, frame_id)[:, 3], rtol=1e-6)
