"""What the camera shows and the LiDAR cannot: class colours and shapes, painted stop lines.

Real simulator throughout: scenario worlds, the OpenCV camera, the LiDAR ray caster, the
privileged expert and the harness scorer.
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.calibration import Calibration
from vla_edge.config import load_config
from vla_edge.sim.camera import Camera
from vla_edge.sim.expert import Expert
from vla_edge.sim.harness import ExpertPlanner, FrameBuilder, run_scenario
from vla_edge.sim.lidar import Lidar
from vla_edge.sim.planners import make_planner
from vla_edge.sim.rollout import expert_policy, run_closed_loop
from vla_edge.sim.scenarios import (
    ALL_FAMILIES,
    CAMERA_FAMILIES,
    FAMILIES,
    SUITE_FAMILIES,
    ScenarioSpec,
    _Builder,
    make_scenario,
)
from vla_edge.sim.world import Boxes, build_ground

CFG = load_config("sim")
CALIB = Calibration.from_config(load_config("calibration"))
COLORS = CFG["camera"]["class_colors"]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def _pixel(cam: Camera, pose: np.ndarray, xyz: np.ndarray) -> tuple[int, int]:
    r, t = cam.world_to_cam(pose)
    p = r @ np.asarray(xyz, np.float64) + t
    assert p[2] > 1.0
    u, v = (cam.K @ p)[:2] / p[2]
    assert 0 <= u < cam.w and 0 <= v < cam.h
    return int(v), int(u)


@pytest.fixture(scope="module")
def world():
    return make_scenario(ScenarioSpec("stop_line", 7, 0.0), CFG, 20.0)


def test_stop_line_is_a_camera_family_outside_the_default_and_safety_lists() -> None:
    assert CAMERA_FAMILIES == ("stop_line",) and "stop_line" in ALL_FAMILIES
    assert "stop_line" not in FAMILIES and "stop_line" not in SUITE_FAMILIES
    assert "stop_line" not in CFG["scenario"]["families"]
    # Other families have no stop line and keep SLC = 1.
    assert make_scenario(ScenarioSpec("empty_road", 7, 0.5), CFG, 5.0).stop_lines == []


def test_classes_have_their_colour_and_crew_wear_hi_vis(world) -> None:
    cam = Camera(CFG["camera"], CALIB)
    s0 = world.stop_lines[0].s - 30.0
    x, y, yaw = world.lane.interp(s0)
    pose = np.array([x, y, yaw])
    fwd = np.array([np.cos(yaw), np.sin(yaw)])
    left = np.array([-fwd[1], fwd[0]])
    b = _Builder(CFG)  # boxes carry camera.class_colors
    crew_xy = pose[:2] + fwd * 9.0 + left * 0.8
    cone_xy = pose[:2] + fwd * 7.0 - left * 1.2
    tug_xy = pose[:2] + fwd * 16.0 + left * 4.0
    b.add_box("crew", *crew_xy, yaw + np.pi)
    b.add_box("cone", *cone_xy, yaw)
    b.add_box("tug", *tug_xy, yaw + np.pi)
    boxes = b.static()
    assert np.array_equal(boxes.color[0], COLORS["crew"])
    img = cam.render(pose, boxes, world.ground)
    empty = cam.render(pose, Boxes.empty(), world.ground)
    h = CFG["classes"]["crew"]["size"][2]
    vest = img[_pixel(cam, pose, [*crew_xy, 0.55 * h])]  # the vest below the reflective band
    band = img[_pixel(cam, pose, [*crew_xy, 0.655 * h])]
    legs = img[_pixel(cam, pose, [*crew_xy, 0.25 * h])]
    assert _cos(vest, COLORS["crew"]) > 0.995 and vest[1] > 80, vest
    assert _cos(band, CFG["camera"]["detail_colors"]["reflective"]) > 0.995 and band.min() > 100, band
    assert _cos(legs, CFG["camera"]["detail_colors"]["crew_legs"]) > 0.99 and legs.max() < 90, legs
    assert not np.array_equal(vest, empty[_pixel(cam, pose, [*crew_xy, 0.55 * h])])
    cone = img[_pixel(cam, pose, [*cone_xy, 0.2])]
    tug = img[_pixel(cam, pose, [*tug_xy, 0.4 * CFG["classes"]["tug"]["size"][2]])]
    assert _cos(cone, COLORS["cone"]) > 0.995, cone
    assert _cos(tug, COLORS["tug"]) > 0.995, tug
    # Hi-vis crew and orange cones are told apart by colour.
    assert _cos(COLORS["crew"], COLORS["cone"]) < 0.95
    # Stand markings: every parked aircraft gets camera-only apron paint off the road.
    stand = make_scenario(ScenarioSpec("stand_approach", 4, 0.5), CFG, 10.0)
    paint = np.all(stand.ground.rgb == np.array(CFG["camera"]["ground_colors"]["stand_paint"]), axis=-1)
    assert paint.sum() > 200 and not (paint & stand.ground.drivable).any()


def test_stop_line_is_painted_for_the_camera_and_invisible_to_the_lidar(world) -> None:
    line = world.stop_lines[0]
    plain = build_ground(CFG, world.route, world.road_half_width, world.crossings, world.zones)
    g = world.ground
    assert np.array_equal(g.reflectivity, plain.reflectivity)
    assert np.array_equal(g.drivable, plain.drivable) and np.array_equal(g.nogo, plain.nogo)
    assert not np.array_equal(g.rgb, plain.rgb)
    x, y, yaw = world.lane.interp(line.s - 9.0)
    pose = np.array([x, y, yaw])
    # LiDAR: the same point cloud with and without the paint.
    lidar = Lidar(CFG["lidar"], CALIB)
    a = lidar.scan(pose, world.boxes(), g, np.random.default_rng(3), organized=True)
    b = lidar.scan(pose, world.boxes(), plain, np.random.default_rng(3), organized=True)
    assert np.array_equal(a.points, b.points, equal_nan=True)
    # Camera: the line's paint colour where the line projects, asphalt without it.
    cam = Camera(CFG["camera"], CALIB)
    lx, ly, _ = world.lane.interp(line.s)
    rc = _pixel(cam, pose, [lx, ly, 0.0])
    painted = cam.render(pose, Boxes.empty(), g)[rc]
    bare = cam.render(pose, Boxes.empty(), plain)[rc]
    want = np.array(CFG["camera"]["ground_colors"]["stop_line"])
    assert np.abs(painted.astype(int) - want).max() < 25, painted
    assert np.abs(bare.astype(int) - np.array(CFG["camera"]["ground_colors"]["asphalt"])).max() < 10


def test_wear_grows_with_difficulty() -> None:
    want = np.array(CFG["camera"]["ground_colors"]["stop_line"])
    easy = make_scenario(ScenarioSpec("stop_line", 7, 0.0), CFG, 10.0)
    hard = make_scenario(ScenarioSpec("stop_line", 7, 1.0), CFG, 10.0)
    assert hard.info["stop_line_wear"] > easy.info["stop_line_wear"] == 0.0
    assert hard.info["stop_line_distance"] < easy.info["stop_line_distance"]
    counts = []
    for w in (easy, hard):  # paint left: pixels the marking changed against the bare ground
        others = [m for m in w.markings if m.color != "stop_line"]  # the stand markings
        plain = build_ground(CFG, w.route, w.road_half_width, w.crossings, w.zones, others, w.seed)
        counts.append(int(np.any(w.ground.rgb != plain.rgb, axis=-1).sum()))
    assert np.all(easy.ground.rgb == want, axis=-1).sum() >= 0.9 * counts[0]  # fresh white paint
    assert counts[0] > 20 and counts[1] < 0.8 * counts[0], counts


def test_expert_stops_holds_and_passes_without_violation() -> None:
    world = make_scenario(ScenarioSpec("stop_line", 7, 1.0), CFG, 16.0)
    line = world.stop_lines[0]
    log = run_closed_loop(world, expert_policy(Expert(CFG)), 16.0, CFG)
    front = log.ego_s + world.ego.front_offset
    before = front <= line.s
    assert line.cleared and line.passed and not line.violated and np.isfinite(line.t_cross)
    assert world.stop_line_violations() == 0 and log.collisions == []
    stopped = before & (log.ego[:, 3] < 0.05) & (front > line.s - line.zone)
    assert stopped.sum() * float(CFG["time"]["physics_dt"]) >= line.dwell - 0.2
    assert front[-1] > line.s + 5.0  # it went on
    assert any("stop line" in f.info["reasoning"] for f in log.frames)


def test_a_planner_that_cannot_see_paint_runs_the_line_and_is_scored_down() -> None:
    spec = ScenarioSpec("stop_line", 7, 1.0)
    builder = FrameBuilder(CFG, CALIB, lidar=False, camera=False)
    straight, _ = make_planner("straight", CFG)
    bad = run_scenario(straight, spec, CFG, CALIB, 14.0, builder)
    good = run_scenario(ExpertPlanner(CFG), spec, CFG, CALIB, 14.0, builder)
    assert bad.stop_line_violations == 1 and bad.slc == CFG["harness"]["stop_line_slc"]
    assert bad.nc == 1.0 and bad.dac == 1.0  # nothing else went wrong: the rule term alone
    assert good.stop_line_violations == 0 and good.slc == 1.0 and good.score > 0.8
    assert bad.score < good.score - 0.5
