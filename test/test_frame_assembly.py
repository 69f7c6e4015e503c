"""FrameAssembler: real scan + odometry + path + camera -> Frame, staleness, bad input."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from conftest import HAVE_RCLPY
from test_conversions_odometry import make_odom

from vla_edge.calibration import Calibration
from vla_edge.config import load_config
from vla_edge.conversions import poses_to_path, rgb_to_compressed, rgb_to_image, xyzi_to_pointcloud2
from vla_edge.errors import ConfigError, FrameError, ImageError, PointCloudError
from vla_edge.frame_assembly import FrameAssembler, clip_path, path_to_ego_frame
from vla_edge.msgfactory import RclpyFactory, RosbagsFactory
from vla_edge.types import EgoState

FACTORIES = ["rosbags", *(["rclpy"] if HAVE_RCLPY else [])]
V, W = 8.0, 0.2  # ego speed [m/s] and yaw rate [rad/s] of the synthetic drive


@pytest.fixture(params=FACTORIES)
def factory(request):
    return RosbagsFactory() if request.param == "rosbags" else RclpyFactory()


@pytest.fixture(scope="module")
def kitti(shared_data):
    return np.fromfile(shared_data / "lidar" / "kitti_000008.bin", np.float32).reshape(-1, 4)


@pytest.fixture(scope="module")
def camera_rgb(shared_data):
    import cv2

    bgr = cv2.imread(str(shared_data / "camera_nuscenes_cam_front.jpg"), cv2.IMREAD_COLOR)
    return bgr[::6, ::6, ::-1].copy()


def _pose_at(t):
    """Exact ego pose of a constant-turn drive starting at (100, 50), yaw 0.3 at t=0."""
    yaw0 = 0.3
    r = V / W
    yaw = yaw0 + W * t
    return 100.0 + r * (math.sin(yaw) - math.sin(yaw0)), 50.0 - r * (math.cos(yaw) - math.cos(yaw0)), yaw


def _messages(factory, kitti, camera_rgb, t_cloud=1.0):
    """Odometry at 50 Hz, a path along the ego's circle, a camera frame, and a cloud."""
    odoms = []
    for k in range(0, 60):
        t = 0.02 * k
        x, y, yaw = _pose_at(t)
        odoms.append(make_odom(factory, t, x, y, yaw, V, W))
    ts = np.linspace(-2.0, 15.0, 300)
    path_xy = np.array([_pose_at(t)[:2] for t in ts])
    path = poses_to_path(path_xy, factory, 0.5, "odom")
    image = rgb_to_compressed(camera_rgb, factory, t_cloud - 0.03, "camera_front", "jpeg", 90)
    cloud = xyzi_to_pointcloud2(kitti, factory, t_cloud, "lidar", layout="ouster")
    return odoms, path, image, cloud


def _assemble(assembler, odoms, path, image, cloud):
    for m in odoms[::-1][:5] + odoms:  # a few duplicates and out-of-order first
        assembler.add_odometry(m)
    assembler.add_reference_path(path)
    assembler.add_image("front", image)
    return assembler.make_frame(cloud)


def test_frame_from_real_scan(factory, kitti, camera_rgb):
    fa = FrameAssembler.from_config()
    frame = _assemble(fa, *_messages(factory, kitti, camera_rgb))
    calib = Calibration.from_config(load_config("calibration"))
    assert frame.stamp == pytest.approx(1.0) and frame.frame_id == "base_link"
    assert frame.points.dtype == np.float32 and frame.points.shape == kitti.shape
    np.testing.assert_allclose(frame.points, calib.transform_points(kitti, "lidar"), atol=1e-5)
    x, y, yaw = _pose_at(1.0)
    e = frame.ego
    assert (e.x, e.y) == pytest.approx((x, y), abs=1e-3) and e.yaw == pytest.approx(yaw, abs=1e-6)
    assert e.v == V and e.yaw_rate == pytest.approx(W) and e.a == pytest.approx(0.0, abs=1e-9)
    # Path along the ego's own circle: in the ego frame it starts ~behind_m behind, passes
    # through the origin heading +x, and curves left with radius V/W.
    cfg = load_config("frame")["reference_path"]
    ref = frame.reference_path
    r, b = V / W, cfg["behind_m"]
    assert ref[0] == pytest.approx([-r * math.sin(b / r), r * (1 - math.cos(b / r))], abs=0.02)
    s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(ref, axis=0).T))])
    assert s[-1] == pytest.approx(cfg["behind_m"] + cfg["lookahead_m"], rel=1e-3)
    np.testing.assert_allclose(np.hypot(ref[:, 0], ref[:, 1] - r), r, atol=0.05)  # circle about (0, r)
    assert frame.images["front"].shape == camera_rgb.shape
    assert np.abs(frame.images["front"].astype(int) - camera_rgb).mean() < 4.0
    assert frame.ages["odometry"] == pytest.approx(0.0, abs=1e-9)  # a sample at exactly t=1.0
    assert frame.ages["reference_path"] == pytest.approx(0.5)
    assert frame.ages["front"] == pytest.approx(0.03)
    assert frame.stale == set() and frame.is_fresh


def test_rclpy_and_rosbags_cdr_frames_identical(kitti, camera_rgb):
    """Messages that went through CDR (as replay reads them) give the same frame."""
    rb = RosbagsFactory()
    msgs = _messages(rb, kitti, camera_rgb)
    store = rb.typestore
    types = ["nav_msgs/msg/Odometry", "nav_msgs/msg/Path", "sensor_msgs/msg/CompressedImage"]

    def cdr(m, t):
        return store.deserialize_cdr(store.serialize_cdr(m, t), t)

    odoms = [cdr(m, types[0]) for m in msgs[0]]
    back = (
        odoms,
        cdr(msgs[1], types[1]),
        cdr(msgs[2], types[2]),
        cdr(msgs[3], "sensor_msgs/msg/PointCloud2"),
    )
    f_direct = _assemble(FrameAssembler.from_config(), *msgs)
    f_cdr = _assemble(FrameAssembler.from_config(), *back)
    frames = [f_direct, f_cdr]
    if HAVE_RCLPY:
        frames.append(_assemble(FrameAssembler.from_config(), *_messages(RclpyFactory(), kitti, camera_rgb)))
    for f in frames[1:]:
        np.testing.assert_array_equal(f.points, f_direct.points)
        assert f.ego == f_direct.ego
        np.testing.assert_array_equal(f.reference_path, f_direct.reference_path)
        np.testing.assert_array_equal(f.images["front"], f_direct.images["front"])
        assert f.ages == f_direct.ages and f.stale == f_direct.stale


def test_stale_inputs_are_flagged(factory, kitti, camera_rgb):
    cfg = load_config("frame")
    odoms, path, image, _ = _messages(factory, kitti, camera_rgb)
    fa = FrameAssembler.from_config()
    for m in odoms:  # odometry up to t = 1.18
        fa.add_odometry(m)
    small = kitti[:100]
    # 1) odometry slightly late: extrapolated, but older than max_age -> stale
    t = 1.18 + 0.5 * (cfg["max_age_s"]["odometry"] + cfg["odometry"]["max_extrapolation_s"])
    assert cfg["max_age_s"]["odometry"] < t - 1.18 < cfg["odometry"]["max_extrapolation_s"]
    f = fa.make_frame(xyzi_to_pointcloud2(small, factory, t, "lidar"))
    assert "odometry" in f.stale and f.ages["odometry"] == pytest.approx(t - 1.18)
    assert f.ego.x != pytest.approx(_pose_at(1.18)[0])  # moved forward, not held
    # no path and no camera yet
    assert "reference_path" in f.stale and f.ages["reference_path"] == math.inf
    assert f.reference_path.shape == (0, 2) and f.images == {}
    # 2) odometry far too old: held (not moved) and stale
    f = fa.make_frame(xyzi_to_pointcloud2(small, factory, 3.0, "lidar"))
    assert "odometry" in f.stale and f.ego.x == pytest.approx(_pose_at(1.18)[0]) and f.ego.stamp == 3.0
    # 3) old path and old image flagged; a fresh cloud time otherwise
    fa.add_reference_path(path)  # stamped 0.5
    fa.add_image("front", image)  # stamped 0.97
    t = 0.5 + cfg["max_age_s"]["reference_path"] + 0.1
    f = fa.make_frame(xyzi_to_pointcloud2(small, factory, t, "lidar"))
    assert {"reference_path", "front", "odometry"} <= f.stale
    assert len(f.reference_path) > 0  # still delivered, just flagged
    # 4) image newer than the sweep -> negative age, fresh if within the limit
    fa2 = FrameAssembler.from_config()
    for m in odoms:
        fa2.add_odometry(m)
    fa2.add_image("front", rgb_to_image(camera_rgb, factory, 1.02, "camera_front", "bgr8"))
    f = fa2.make_frame(xyzi_to_pointcloud2(small, factory, 1.0, "lidar"))
    assert f.ages["front"] == pytest.approx(-0.02) and "front" not in f.stale
    np.testing.assert_array_equal(f.images["front"], camera_rgb)


def test_nearest_image_and_bounded_buffer(factory, camera_rgb):
    fa = FrameAssembler.from_config()
    fa.add_ego_state(EgoState(0.0, 0, 0, 0, 0), "odom")
    n = load_config("frame")["images"]["buffer_size"]
    small = camera_rgb[:8, :8].copy()
    for k in range(n + 3):
        fa.add_image("front", rgb_to_image(small, factory, 0.05 * k, "cam", "rgb8"))
    assert len(fa._images["front"]) == n
    f = fa.make_frame_from_points(0.05 * (n + 1) + 0.01, np.zeros((1, 4), np.float32), "base_link")
    assert f.ages["front"] == pytest.approx(0.01)


def test_image_decode_failure_flags_camera(factory):
    fa = FrameAssembler.from_config()
    fa.add_ego_state(EgoState(0.0, 0, 0, 0, 0), "odom")
    broken = factory.make(
        "sensor_msgs/msg/CompressedImage",
        header=factory.header(0.0, "cam"),
        format="jpeg",
        data=factory.bytes_field(b"\xff\xd8 broken"),
    )
    fa.add_image("front", broken)
    f = fa.make_frame_from_points(0.0, np.zeros((1, 4), np.float32), "base_link")
    assert "front" in f.stale and "front" not in f.images
    assert "could not be decoded" in fa.image_errors["front"]
    bayer = rgb_to_image(np.zeros((2, 2, 3), np.uint8), factory, 0.0, "cam", "rgb8")
    bayer.encoding = "bayer_rggb8"
    with pytest.raises(ImageError, match="camera 'front': unsupported Image encoding 'bayer_rggb8'"):
        fa.add_image("front", bayer)


def test_errors(factory, kitti):
    fa = FrameAssembler.from_config()
    cloud = xyzi_to_pointcloud2(kitti[:10], factory, 1.0, "lidar")
    with pytest.raises(FrameError, match="no odometry received before the LiDAR sweep"):
        fa.make_frame(cloud)
    fa.add_odometry(make_odom(factory, 1.0, 0, 0, 0, 1.0, frame="map"))
    with pytest.raises(FrameError, match="unknown frame_id 'velodyne'"):
        fa.make_frame(xyzi_to_pointcloud2(kitti[:10], factory, 1.0, "velodyne"))
    fa.add_reference_path(poses_to_path(np.zeros((3, 2)), factory, 1.0, "odom"))
    with pytest.raises(FrameError, match="path is in frame 'odom' but odometry is in 'map'"):
        fa.make_frame(cloud)
    bad = copy.deepcopy(cloud)
    bad.fields = [f for f in bad.fields if f.name != "z"]
    with pytest.raises(PointCloudError, match=r"lacks field\(s\) z"):
        fa.make_frame(bad)
    with pytest.raises(FrameError, match="M x 2 or M x 3"):
        fa.set_reference_path(np.zeros(3), 0.0, "map")


def test_config_errors():
    cfg = load_config("frame")
    del cfg["max_age_s"]["camera"]
    with pytest.raises(ConfigError, match=r"missing key 'max_age_s\.camera'"):
        FrameAssembler(cfg)
    with pytest.raises(ConfigError, match="missing key 'reference_path'"):
        FrameAssembler({k: v for k, v in load_config("frame").items() if k != "reference_path"})


def test_empty_path_and_base_link_cloud(factory):
    fa = FrameAssembler(load_config("frame"), Calibration.from_config(load_config("calibration")))
    fa.add_ego_state(EgoState(0.0, 0, 0, 0, 0), "odom")
    fa.add_reference_path(poses_to_path(np.zeros((0, 2)), factory, 0.0, "odom"))
    pts = np.array([[1, 2, 3, 4]], np.float32)
    f = fa.make_frame(xyzi_to_pointcloud2(pts, factory, 0.0, "base_link"))
    assert "reference_path" in f.stale and f.reference_path.shape == (0, 2)
    np.testing.assert_array_equal(f.points, pts)


def test_clip_path_geometry():
    # Sparse 2-waypoint road, 1 km long, ego in the middle heading along it.
    ego = EgoState(0.0, 500.0, 0.0, 0.0, 10.0)
    xy = path_to_ego_frame(np.array([[0.0, 0.0], [1000.0, 0.0]]), ego)
    np.testing.assert_allclose(clip_path(xy, 5.0, 80.0), [[-5.0, 0.0], [80.0, 0.0]])
    # Ego yawed 90 deg: a path along +y in odom is straight ahead (+x) in the ego frame.
    ego = EgoState(0.0, 3.0, 0.0, math.pi / 2, 1.0)
    xy = path_to_ego_frame(np.array([[3.0, -10.0], [3.0, 10.0], [3.0, 200.0]]), ego)
    out = clip_path(xy, 5.0, 80.0)
    np.testing.assert_allclose(out, [[-5.0, 0.0], [10.0, 0.0], [80.0, 0.0]], atol=1e-9)
    # Ego past the end of the path: only what is behind remains.
    out = clip_path(np.array([[-50.0, 0.0], [-20.0, 0.0]]), 5.0, 80.0)
    np.testing.assert_allclose(out, [[-25.0, 0.0], [-20.0, 0.0]])
    one = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(clip_path(one, 5, 80), one)


def test_core_imports_without_rclpy_cv2_torch():
    """The ingest core must import on a machine with neither rclpy nor torch (cv2 lazily)."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    code = (
        "import sys\n"
        "import vla_edge.conversions, vla_edge.calibration, vla_edge.frame_assembly\n"
        "bad = [m for m in ('rclpy', 'torch', 'cv2', 'training') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
