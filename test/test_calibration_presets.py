"""Mounting presets and the self-return crop box on the real scans.

Each real scan goes through the real path of a vehicle: calibration (preset + crop box) ->
FrameAssembler -> PlanningCycle (obstacles, Frenet, arbiter). The committed Apache-2.0
Hesai scan always runs; KITTI and nuScenes run when fetched (scripts/fetch_test_data.sh).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from planning_scenes import cycle, frame_at

from vla_edge.calibration import Calibration
from vla_edge.config import load_config
from vla_edge.errors import ConfigError, FrameError
from vla_edge.frame_assembly import FrameAssembler
from vla_edge.planning import ObstacleParams, extract_obstacles
from vla_edge.planning.cycle import load_planning_config
from vla_edge.scans import SCAN_PRESETS, load_scan, scan_preset
from vla_edge.types import EgoState


@pytest.fixture(scope="module")
def calib_cfg() -> dict:
    return load_config("calibration")


def base_link_points(cfg: dict, preset: str | None, scan: np.ndarray) -> np.ndarray:
    """The scan through FrameAssembler with ``preset`` (None: sensors.lidar as written)."""
    calib = Calibration.from_config(cfg, preset=preset if preset is not None else "")
    asm = FrameAssembler(load_config("frame"), calib)
    asm.add_ego_state(EgoState(10.0, 0.0, 0.0, 0.0, 0.0), "odom")
    return asm.make_frame_from_points(10.0, scan, calib.sensor_frame("lidar")).points


def decide(points: np.ndarray, v: float):
    """Three planning cycles on a static scene at speed ``v``; the last decision."""
    cyc = cycle()
    d = None
    for k in range(3):
        t = 100.0 + 0.1 * k
        d = cyc.step(frame_at(t, points, v, x=v * 0.1 * k), None, None, t)
    return d


def obstacles(points: np.ndarray):
    return extract_obstacles(points, 0.0, ObstacleParams.from_config(load_planning_config()))


def test_crop_box_drops_only_points_inside(calib_cfg: dict) -> None:
    calib = Calibration.from_config(calib_cfg, preset="nuscenes_lidar_top")
    pts = np.array([[0.0, 0.0, -0.5, 1.0], [0.0, 3.0, -0.5, 1.0], [2.0, 0.0, 0.0, 1.0]], np.float32)
    kept = calib.crop_self_returns(pts, "lidar")
    np.testing.assert_array_equal(kept, pts[1:])
    assert calib.crop_self_returns(pts, "camera_front") is pts  # no box for that frame


def test_crop_box_on_float32_clouds_matches_the_float64_box_exactly(calib_cfg: dict) -> None:
    """The crop compares float32 clouds in float32 (fast) with bounds rounded inwards, so a
    point is dropped exactly when it lies inside the box as written (float64), also on its faces."""
    calib = Calibration.from_config(calib_cfg, preset="nuscenes_lidar_top")
    lo, hi = calib.crop_boxes["lidar"]
    edges = []
    for b in (*lo, *hi):
        v = np.float32(b)
        edges += [np.nextafter(v, np.float32(-np.inf)), v, np.nextafter(v, np.float32(np.inf))]
    rng = np.random.default_rng(3)
    pts = (rng.uniform(-1.5, 1.5, size=(20000, 4))).astype(np.float32)
    pts[: len(edges) * 3, :3] = 0.0
    for k, e in enumerate(edges):  # each edge value on each axis, the other axes at the centre
        for axis in range(3):
            pts[3 * k + axis, axis] = e
    pts[-5:, 0] = np.nan  # non-finite rows are never "inside"
    xyz = pts[:, :3].astype(np.float64)
    inside = np.all((xyz >= lo) & (xyz <= hi), axis=1)
    kept = calib.crop_self_returns(pts, "lidar")
    np.testing.assert_array_equal(kept, pts[~inside])
    assert 0 < inside.sum() < len(pts) and np.isnan(kept[-5:, 0]).all()
    clear = pts[~inside]
    assert calib.crop_self_returns(clear, "lidar") is clear  # nothing inside: no copy
    np.testing.assert_array_equal(
        calib.cloud_to_base(pts, "lidar"), calib.transform_points(pts[~inside], "lidar")
    )


def test_every_scan_preset_exists_and_is_found_by_file_name(calib_cfg: dict) -> None:
    assert set(SCAN_PRESETS.values()) <= set(calib_cfg["mounting_presets"])
    assert scan_preset("/data/lidar/nuscenes_lidar_top_1532402927647951.bin") == "nuscenes_lidar_top"
    assert scan_preset("kitti_000008.bin") == "kitti_hdl64e"
    assert scan_preset("test/data/lidar/hesai_qt64_1673401196087570870.pcd") == "nebula_hesai_qt64"
    assert scan_preset("my_lab_scan.pcd") == ""


def test_intensity_scale_per_sensor_and_preset(calib_cfg: dict) -> None:
    """KITTI's 0..1 reflectance reaches the student on the 0..255 scale it learnt; the 8-bit
    sensors stay as they are; the caller's array is never scaled in place; bad scales are named."""
    import copy

    pts = np.array([[5.0, 1.0, 0.5, 0.4], [8.0, -2.0, 0.2, 0.9]], np.float32)
    kitti = Calibration.from_config(calib_cfg, preset="kitti_hdl64e")
    out = kitti.cloud_to_base(pts, "lidar")
    np.testing.assert_allclose(out[:, 3], pts[:, 3] * 255.0, rtol=1e-6)
    assert pts[0, 3] == np.float32(0.4)
    for preset in ("nuscenes_lidar_top", "nebula_hesai_qt64", ""):
        np.testing.assert_array_equal(
            Calibration.from_config(calib_cfg, preset=preset).cloud_to_base(pts, "lidar")[:, 3], pts[:, 3]
        )
    cfg = copy.deepcopy(calib_cfg)
    cfg["base_frame"] = "lidar"  # a cloud already in the base frame is copied before scaling
    cfg["sensors"]["lidar"]["intensity_scale"] = 2.0
    same = Calibration.from_config(cfg, preset="")
    np.testing.assert_allclose(same.cloud_to_base(pts, "lidar")[:, 3], pts[:, 3] * 2.0)
    assert pts[1, 3] == np.float32(0.9)
    for bad in (0.0, "bright", float("inf")):
        cfg["sensors"]["lidar"]["intensity_scale"] = bad
        with pytest.raises(FrameError, match="intensity_scale"):
            Calibration.from_config(cfg, preset="")


def test_unknown_preset_and_bad_box_are_named(calib_cfg: dict) -> None:
    with pytest.raises(ConfigError, match=r"unknown mounting preset 'roof9'.*nebula_hesai_qt64"):
        Calibration.from_config(calib_cfg, preset="roof9")
    bad = {
        **calib_cfg,
        "sensors": {
            "lidar": {**calib_cfg["sensors"]["lidar"], "crop_box": {"min": [1, 0, 0], "max": [0, 1, 1]}}
        },
    }
    with pytest.raises(FrameError, match=r"sensors.lidar.crop_box: .*min <= max"):
        Calibration.from_config(bad)


def test_hesai_preset_floor_is_ground_housing_cropped_and_room_walls_stop(
    calib_cfg: dict, committed_scan: np.ndarray
) -> None:
    pts = base_link_points(calib_cfg, "nebula_hesai_qt64", committed_scan)
    assert len(committed_scan) - len(pts) == 8483  # the housing returns of the README
    assert np.all(np.max(np.abs(pts[:, :3]), axis=1) > 0.3)
    ob = obstacles(pts)
    # Floor at z = 0: a real share of the returns is ground, unlike the roof calibration
    # (1.9 m up), which puts the floor above the ego's roof line.
    roof = obstacles(base_link_points(calib_cfg, None, committed_scan))
    assert ob.counts["roi"] - ob.counts["obstacle"] > 5000
    assert roof.counts["roi"] - roof.counts["obstacle"] < 0.5 * (ob.counts["roi"] - ob.counts["obstacle"])
    # The scene is an enclosure about 2-7 m around the sensor: no lane is clear, so the honest
    # decision is a stop with the planner's reason, never a plan through the walls.
    c = ob.centroids
    assert np.any((c[:, 0] > 0) & (c[:, 0] < 7.0)), "no structure ahead inside the enclosure"
    d = decide(pts, 0.0)
    assert d.choice == "emergency_stop" and "frenet_no_feasible_candidate" in d.reasons
    assert np.all(np.isfinite(d.trajectory.poses)) and d.trajectory.poses[-1, 0] < 1.0


def test_nuscenes_roof_returns_cropped_and_clear_lane_drives(calib_cfg: dict, shared_data: Path) -> None:
    scan = load_scan(str(shared_data / "lidar" / "nuscenes_lidar_top_1532402927647951.bin"))
    pts = base_link_points(calib_cfg, "nuscenes_lidar_top", scan)
    assert len(scan) - len(pts) == 8526
    ob = obstacles(pts)
    assert not np.any(np.hypot(*(ob.centroids[:, :2] - [0.94, 0.0]).T) < 3.0), "own-car returns left"
    for v in (0.0, 3.0):
        d = decide(pts, v)
        assert d.choice == "frenet", (v, d.choice, d.reasons)
        # It drives on, down the clear lane (from standstill the airside speed rules for people
        # near the lane cap the speed, so the plan ends ~8.6 m ahead rather than > 10 m).
        assert d.trajectory.poses[-1, 0] > 5.0, (v, d.trajectory.poses[-1])
    # Without the crop box the roof is an obstacle on the ego and nothing drives.
    nocrop = {**calib_cfg, "mounting_presets": {"p": {**calib_cfg["mounting_presets"]["nuscenes_lidar_top"]}}}
    nocrop["mounting_presets"]["p"].pop("crop_box")
    assert decide(base_link_points(nocrop, "p", scan), 3.0).choice == "emergency_stop"


def test_kitti_obstacles_match_the_scene_and_standstill_creeps_up(calib_cfg: dict, shared_data: Path) -> None:
    scan = load_scan(str(shared_data / "lidar" / "kitti_000008.bin"))
    pts = base_link_points(calib_cfg, "kitti_hdl64e", scan)
    ob = obstacles(pts)
    c = ob.centroids

    def found(x0: float, x1: float, y0: float, y1: float) -> bool:
        return bool(np.any((c[:, 0] > x0) & (c[:, 0] < x1) & (c[:, 1] > y0) & (c[:, 1] < y1)))

    assert found(3.0, 10.0, 1.2, 3.5), "parked car on the left, 3-10 m ahead"
    assert found(4.0, 7.0, -4.5, -2.5), "parked car on the right, 4-7 m ahead"
    assert found(12.5, 16.5, -1.0, 1.2), "car ahead in the lane at 13-16 m"
    assert found(5.0, 25.0, -15.0, -6.0), "wall / fence along the right"
    assert not found(0.0, 12.0, -1.0, 1.0), "nothing in the lane before the car ahead"
    # At standstill the lane is clear up to the car ahead: Frenet creeps up and stops short of it.
    d = decide(pts, 0.0)
    assert d.choice == "frenet", d.reasons
    assert 1.0 < d.trajectory.poses[-1, 0] < 12.0
