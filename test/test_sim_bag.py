"""Simulator bags: determinism, vehicle topics and types, ground truth that matches the rollout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_edge.bagio import open_bag
from vla_edge.calibration import Calibration
from vla_edge.config import load_config
from vla_edge.conversions import (
    compressed_to_rgb,
    image_to_rgb,
    odometry_to_ego_state,
    path_to_poses,
    pointcloud2_to_structured,
    pointcloud2_to_xyzi,
)
from vla_edge.msgfactory import stamp_to_sec
from vla_edge.sim.bag_writer import generate_scenario
from vla_edge.sim.scenarios import ScenarioSpec
from vla_edge.sim.world import SimError

TOPICS = load_config("topics")
CFG = load_config("sim")
CALIB = Calibration.from_config(load_config("calibration"))


def _gen(out: Path, spec: ScenarioSpec, seconds: float = 2.0, camera: str = "jpeg") -> Path:
    res = generate_scenario(spec, out / spec.name, CFG, CALIB, TOPICS, seconds, camera_mode=camera)
    assert res.frames == round(seconds / CFG["time"]["frame_dt"])
    return res.path


def _stream(path: Path) -> list[tuple[str, str, int, bytes]]:
    with open_bag(path) as bag:
        return [(m.topic, m.msgtype, m.log_time_ns, m.msg) for m in bag.messages(raw=True)]


@pytest.fixture(scope="module")
def crew_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _gen(tmp_path_factory.mktemp("bag"), ScenarioSpec("crew_stepping_out", 11, 0.6), seconds=5.0)


def test_same_seed_gives_identical_message_stream(tmp_path: Path, crew_bag: Path) -> None:
    again = _gen(tmp_path / "a", ScenarioSpec("crew_stepping_out", 11, 0.6), seconds=5.0)
    first, second = _stream(crew_bag), _stream(again)
    assert len(first) == len(second) > 100
    assert first == second
    # rosbags writes no wall-clock time into MCAP or metadata.yaml: the files match too.
    mcap = sorted(crew_bag.glob("*.mcap"))[0]
    assert mcap.read_bytes() == (again / mcap.name).read_bytes()
    other = _gen(tmp_path / "b", ScenarioSpec("crew_stepping_out", 12, 0.6), seconds=5.0)
    third = _stream(other)
    assert [m[3] for m in third if m[0] == TOPICS["inputs"]["lidar"]] != [
        m[3] for m in first if m[0] == TOPICS["inputs"]["lidar"]
    ]
    assert third[0][2] != first[0][2]  # start time follows the seed


def test_bag_has_vehicle_topics_with_right_types(crew_bag: Path) -> None:
    ti, ts = TOPICS["inputs"], TOPICS["sim"]
    expected = {
        ti["lidar"]: "sensor_msgs/msg/PointCloud2",
        ti["camera_front_compressed"]: "sensor_msgs/msg/CompressedImage",
        ti["odometry"]: "nav_msgs/msg/Odometry",
        ti["reference_path"]: "nav_msgs/msg/Path",
        ts["objects"]: "visualization_msgs/msg/MarkerArray",
        ts["expert_trajectory"]: "nav_msgs/msg/Path",
        ts["reasoning"]: "std_msgs/msg/String",
    }
    with open_bag(crew_bag) as bag:
        assert bag.topics == expected
        assert bag.count(ti["lidar"]) == 50
        assert bag.count(ti["odometry"]) >= 50  # at least 10 Hz
        lidar_frame = CALIB.sensor_frame("lidar")
        stamps = []
        for m in bag.messages([ti["lidar"]]):
            assert m.msg.header.frame_id == lidar_frame
            assert m.msg.point_step == 32  # Ouster layout
            st = pointcloud2_to_structured(m.msg, ["ring"])
            assert st["ring"].max() < 32
            pts = pointcloud2_to_xyzi(m.msg)
            assert len(pts) > 5000 and np.isfinite(pts).all()
            assert abs(stamp_to_sec(m.msg.header.stamp) - m.stamp) < 1e-6
            stamps.append(m.stamp)
        assert np.allclose(np.diff(stamps), 0.1, atol=1e-6)
        # Points transformed with the calibration put the ground near z = 0 in base_link.
        base = CALIB.transform_points(pts, lidar_frame)
        ground = base[np.hypot(base[:, 0], base[:, 1]) < 15]
        assert abs(np.median(ground[:, 2])) < 0.1
        img = compressed_to_rgb(next(bag.messages([ti["camera_front_compressed"]])).msg)
        assert img.shape == (CFG["camera"]["height"], CFG["camera"]["width"], 3)
        odo = next(bag.messages([ti["odometry"]])).msg
        assert (
            odo.header.frame_id == CFG["frames"]["odom"] and odo.child_frame_id == CFG["frames"]["base_link"]
        )
        ref = next(bag.messages([ti["reference_path"]])).msg
        assert ref.header.frame_id == CFG["frames"]["odom"] and len(ref.poses) > 50
        objs = next(bag.messages([ts["objects"]])).msg
        classes = {mk.ns for mk in objs.markers}
        assert "crew" in classes
        assert len({mk.id for mk in objs.markers}) == len(objs.markers)
        texts = [m.msg.data for m in bag.messages([ts["reasoning"]])]
        assert all(texts) and len(texts) == 50


def test_expert_trajectory_is_the_real_future(crew_bag: Path) -> None:
    ti, ts = TOPICS["inputs"], TOPICS["sim"]
    with open_bag(crew_bag) as bag:
        odo = {m.log_time_ns: odometry_to_ego_state(m.msg) for m in bag.messages([ti["odometry"]])}
        trajs = [(m.log_time_ns, m.msg) for m in bag.messages([ts["expert_trajectory"]])]
    checked = 0
    for t_ns, path in trajs:
        assert path.header.frame_id == CFG["frames"]["base_link"]
        poses = path_to_poses(path)
        assert poses.shape == (8, 3)
        offsets = [stamp_to_sec(p.header.stamp) - t_ns * 1e-9 for p in path.poses]
        assert np.allclose(offsets, 0.5 * np.arange(1, 9), atol=1e-6)
        e0 = odo[t_ns]
        for j, p in enumerate(poses):
            fut = odo.get(t_ns + round(0.5 * (j + 1) * 1e9))
            if fut is None:
                continue  # beyond the recorded part: comes from the extra simulated horizon
            c, s = np.cos(e0.yaw), np.sin(e0.yaw)
            dx, dy = fut.x - e0.x, fut.y - e0.y
            assert np.allclose([c * dx + s * dy, -s * dx + c * dy], p[:2], atol=1e-4)
            checked += 1
    assert checked > 100


def test_camera_modes(tmp_path: Path) -> None:
    raw = _gen(tmp_path, ScenarioSpec("empty_road", 3, 0.2), seconds=0.5, camera="raw")
    with open_bag(raw) as bag:
        msg = next(bag.messages([TOPICS["inputs"]["camera_front"]])).msg
        assert msg.encoding == "rgb8"
        img = image_to_rgb(msg)
        # Sky on top, ground at the bottom.
        assert img[5].mean() != pytest.approx(img[-5].mean(), abs=10)
    none = _gen(tmp_path, ScenarioSpec("narrow_pass", 3, 0.2), seconds=0.5, camera="none")
    with open_bag(none) as bag:
        assert not any("camera" in t for t in bag.topics)


def test_bad_generate_arguments(tmp_path: Path) -> None:
    with pytest.raises(SimError, match="camera mode"):
        generate_scenario(
            ScenarioSpec("empty_road", 1, 0.5), tmp_path / "x", CFG, CALIB, TOPICS, 1.0, camera_mode="png"
        )
    with pytest.raises(SimError, match="positive"):
        generate_scenario(ScenarioSpec("empty_road", 1, 0.5), tmp_path / "y", CFG, CALIB, TOPICS, 0.0)
    with pytest.raises(SimError, match="LiDAR preset"):
        generate_scenario(
            ScenarioSpec("empty_road", 1, 0.5), tmp_path / "z", CFG, CALIB, TOPICS, 1.0, lidar_preset="16x512"
        )
