"""Generate one scenario: expert rollout, sensors, and a rosbag2 MCAP with vehicle topics.

Per scenario the expert first drives the whole run (plus ``time.horizon_extra`` seconds)
without sensors, so every frame's ground-truth future is what the ego really did. Then
each frame's LiDAR sweep and camera image are rendered from the logged state and written
with the vehicle's topic names (``config/topics.yaml``):

* LiDAR ``sensor_msgs/PointCloud2`` (Ouster layout, LiDAR sensor frame per calibration);
* camera ``sensor_msgs/Image`` (rgb8) or ``sensor_msgs/CompressedImage`` (jpeg);
* ``nav_msgs/Odometry`` every physics step, reference ``nav_msgs/Path`` (odom frame);
* ``/sim/objects`` MarkerArray (odom frame, ns = class, id = object id),
  ``/sim/expert_trajectory`` Path (base_link, 8 poses at 0.5 s), ``/sim/reasoning`` String.

Every stamp is ``stamp0 + t`` with ``stamp0`` fixed by the seed, and every random draw is
seeded, so the same spec gives the same message stream (see ``docs/simulator.md``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.bagio import BagWriter
from vla_edge.calibration import Calibration
from vla_edge.conversions import rgb_to_compressed, rgb_to_image, trajectory_to_path, xyzi_to_pointcloud2
from vla_edge.conversions.odometry import yaw_to_quaternion
from vla_edge.conversions.trajectory import CUBE, make_marker, poses_to_path
from vla_edge.msgfactory import RosbagsFactory
from vla_edge.sim.camera import Camera
from vla_edge.sim.expert import Expert
from vla_edge.sim.lidar import Lidar
from vla_edge.sim.rollout import RolloutLog, expert_policy, run_closed_loop
from vla_edge.sim.scenarios import ScenarioSpec, make_scenario
from vla_edge.sim.world import Boxes, SimError, World
from vla_edge.types import Trajectory

CAMERA_MODES = ("raw", "jpeg", "none")


@dataclass
class GenerateResult:
    """Outcome of one generated scenario.

    Attributes:
        path: The rosbag2 directory.
        spec: The scenario.
        frames: Sensor frames written.
        messages: Messages written.
        collisions: Expert collisions (should be none).
        timing: Seconds spent per stage (``rollout``, ``lidar``, ``camera``, ``encode``, ``total``).
    """

    path: Path
    spec: ScenarioSpec
    frames: int
    messages: int
    collisions: list[tuple[float, int, str, float]]
    timing: dict[str, float] = field(default_factory=dict)


def future_poses(log: RolloutLog, step: int, n: int, dt: float, physics_dt: float) -> np.ndarray:
    """Ego poses ``(n, 3)`` at ``dt, 2dt, ...`` after physics step ``step``, in that step's ego frame.

    Raises:
        SimError: The log does not reach far enough.
    """
    k = round(dt / physics_dt)
    idx = step + k * np.arange(1, n + 1)
    if idx[-1] >= len(log.t):
        raise SimError(f"rollout too short for a {n * dt:.1f} s future at step {step}")
    x0, y0, yaw0 = log.ego[step, :3]
    c, s = np.cos(yaw0), np.sin(yaw0)
    dx = log.ego[idx, 0] - x0
    dy = log.ego[idx, 1] - y0
    yaw = np.unwrap(np.concatenate([[yaw0], log.ego[idx, 2]]))[1:] - yaw0
    return np.stack([c * dx + s * dy, -s * dx + c * dy, yaw], axis=1)


def expert_rollout(world: World, cfg: dict[str, Any], seconds: float) -> RolloutLog:
    """Drive ``world`` with the expert for ``seconds`` plus the future horizon."""
    extra = float(cfg["time"]["horizon_extra"])
    return run_closed_loop(world, expert_policy(Expert(cfg)), seconds + extra, cfg)


def _class_rgb(cfg: dict[str, Any], cls: str) -> tuple[float, float, float]:
    c = cfg["camera"]["class_colors"][cls]
    return (c[0] / 255.0, c[1] / 255.0, c[2] / 255.0)


class _Messages:
    """Builds the bag's messages (rosbags dataclasses)."""

    def __init__(self, cfg: dict[str, Any], topics: dict[str, Any], factory: RosbagsFactory) -> None:
        self.cfg = cfg
        self.f = factory
        self.odom_frame = str(cfg["frames"]["odom"])
        self.base_frame = str(cfg["frames"]["base_link"])
        self.topics = topics

    def odometry(self, stamp: float, state: np.ndarray) -> Any:
        f = self.f
        x, y, yaw, v, _a, yaw_rate = (float(s) for s in state)
        qx, qy, qz, qw = yaw_to_quaternion(yaw)
        pose = f.make(
            "geometry_msgs/msg/PoseWithCovariance",
            pose=f.make(
                "geometry_msgs/msg/Pose",
                position=f.make("geometry_msgs/msg/Point", x=x, y=y, z=0.0),
                orientation=f.make("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw),
            ),
            covariance=np.zeros(36, dtype=np.float64),
        )
        twist = f.make(
            "geometry_msgs/msg/TwistWithCovariance",
            twist=f.make(
                "geometry_msgs/msg/Twist",
                linear=f.make("geometry_msgs/msg/Vector3", x=v, y=0.0, z=0.0),
                angular=f.make("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=yaw_rate),
            ),
            covariance=np.zeros(36, dtype=np.float64),
        )
        return f.make(
            "nav_msgs/msg/Odometry",
            header=f.header(stamp, self.odom_frame),
            child_frame_id=self.base_frame,
            pose=pose,
            twist=twist,
        )

    def objects(self, stamp: float, boxes: Boxes) -> Any:
        markers = []
        for i in range(len(boxes)):
            cls = str(boxes.cls[i])
            length, width, height = boxes.size[i]
            markers.append(
                make_marker(
                    self.f,
                    stamp,
                    self.odom_frame,
                    cls,
                    int(boxes.ids[i]),
                    CUBE,
                    pose=(float(boxes.xy[i, 0]), float(boxes.xy[i, 1]), float(boxes.yaw[i])),
                    z=float(boxes.z0[i] + 0.5 * height),
                    scale=(float(length), float(width), float(height)),
                    color=_class_rgb(self.cfg, cls),
                    alpha=0.8,
                    lifetime_s=0.0,
                )
            )
        return self.f.make("visualization_msgs/msg/MarkerArray", markers=markers)

    def string(self, text: str) -> Any:
        return self.f.make("std_msgs/msg/String", data=text)


def generate_scenario(
    spec: ScenarioSpec,
    bag_path: str | Path,
    cfg: dict[str, Any],
    calib: Calibration,
    topics: dict[str, Any],
    seconds: float,
    *,
    lidar_preset: str | None = None,
    camera_mode: str | None = None,
    on_frame: Callable[[], None] | None = None,
) -> GenerateResult:
    """Simulate ``spec`` for ``seconds`` and write its rosbag2 directory ``bag_path``.

    Args:
        spec: The scenario.
        bag_path: The bag directory to create (must not exist).
        cfg: The ``sim`` config.
        calib: Sensor extrinsics (``config/calibration.yaml``).
        topics: The ``topics`` config.
        seconds: Recorded duration.
        lidar_preset: LiDAR preset name (default: ``lidar.preset``).
        camera_mode: ``raw``, ``jpeg`` or ``none`` (default: ``camera.mode``).
        on_frame: Called after each written frame (progress bars).

    Raises:
        SimError: Bad duration or camera mode.
        BagError: The bag directory exists or cannot be written.
    """
    t_start = time.perf_counter()
    if not np.isfinite(seconds) or seconds <= 0:
        raise SimError(f"--seconds must be a positive number, got {seconds}")
    mode = str(camera_mode or cfg["camera"]["mode"])
    if mode not in CAMERA_MODES:
        raise SimError(f"camera mode must be one of {', '.join(CAMERA_MODES)}, got '{mode}'")
    tc = cfg["time"]
    physics_dt = float(tc["physics_dt"])
    world = make_scenario(spec, cfg, seconds)
    log = expert_rollout(world, cfg, seconds)
    t_roll = time.perf_counter()
    lidar = Lidar(cfg["lidar"], calib, lidar_preset)
    camera = Camera(cfg["camera"], calib) if mode != "none" else None
    factory = RosbagsFactory()
    mk = _Messages(cfg, topics, factory)
    tin, tsim = topics["inputs"], topics["sim"]
    n_steps = round(seconds / physics_dt)
    per_path = max(1, round(float(tc["path_period"]) / physics_dt))
    rp = cfg["reference_path"]
    frames_by_step = {fr.step: fr for fr in log.frames}
    lcfg = cfg["lidar"]
    organized = bool(lcfg["organized"])
    timing = {"lidar": 0.0, "camera": 0.0, "encode": 0.0}
    bag_path = Path(bag_path)
    n_frames = 0
    stamp0 = world.stamp0
    with BagWriter(bag_path, factory.typestore) as bag:
        for i in range(n_steps + 1):
            t = float(log.t[i])
            stamp = stamp0 + round(t, 6)
            bag.write(tin["odometry"], "nav_msgs/msg/Odometry", mk.odometry(stamp, log.ego[i]), stamp)
            if i % per_path == 0:
                s_e = float(log.ego_s[i])
                pts = world.lane.resample(
                    float(rp["step"]), s_e - float(rp["behind"]), s_e + float(rp["ahead"])
                )
                bag.write(
                    tin["reference_path"],
                    "nav_msgs/msg/Path",
                    poses_to_path(pts, factory, stamp, mk.odom_frame),
                    stamp,
                )
            fr = frames_by_step.get(i)
            if fr is None or i == n_steps:
                continue
            boxes = Boxes.concat([world.static, fr.agents])
            pose = log.ego[i, :3]
            t0 = time.perf_counter()
            rng = np.random.default_rng([spec.seed, i, 17])
            scan = lidar.scan(pose, boxes, world.ground, rng, organized, degradation=world.info.get("lidar"))
            t1 = time.perf_counter()
            cloud = xyzi_to_pointcloud2(
                scan.points,
                factory,
                stamp,
                lidar.frame_id,
                layout=str(lcfg["layout"]),
                extra={"ring": scan.ring, "t": np.zeros(len(scan.ring), np.uint32)},
                height=lidar.beams if organized else 1,
            )
            bag.write(tin["lidar"], "sensor_msgs/msg/PointCloud2", cloud, stamp)
            t2 = time.perf_counter()
            timing["lidar"] += t1 - t0
            timing["encode"] += t2 - t1
            if camera is not None:
                img = camera.render(pose, boxes, world.ground)
                t3 = time.perf_counter()
                if mode == "raw":
                    msg = rgb_to_image(img, factory, stamp, camera.frame_id, "rgb8")
                    bag.write(tin["camera_front"], "sensor_msgs/msg/Image", msg, stamp)
                else:
                    msg = rgb_to_compressed(
                        img, factory, stamp, camera.frame_id, "jpeg", int(cfg["camera"]["jpeg_quality"])
                    )
                    bag.write(tin["camera_front_compressed"], "sensor_msgs/msg/CompressedImage", msg, stamp)
                t4 = time.perf_counter()
                timing["camera"] += t3 - t2
                timing["encode"] += t4 - t3
            near = np.hypot(*(boxes.xy - pose[:2]).T) < float(lcfg["max_range"])
            bag.write(
                tsim["objects"],
                "visualization_msgs/msg/MarkerArray",
                mk.objects(stamp, boxes.subset(near)),
                stamp,
            )
            fut = future_poses(log, i, 8, 0.5, physics_dt)
            traj = Trajectory(fut, 0.5, stamp, source="expert")
            bag.write(
                tsim["expert_trajectory"],
                "nav_msgs/msg/Path",
                trajectory_to_path(traj, factory, stamp, mk.base_frame),
                stamp,
            )
            bag.write(tsim["reasoning"], "std_msgs/msg/String", mk.string(str(fr.info["reasoning"])), stamp)
            n_frames += 1
            if on_frame is not None:
                on_frame()
        count = bag.count
    summary = {
        "format": "vla_edge.sim_scenario/1",
        "family": spec.family,
        "seed": spec.seed,
        "difficulty": spec.difficulty,
        "seconds": seconds,
        "stamp0": stamp0,
        "frames": n_frames,
        "lidar_preset": lidar.preset,
        "camera": mode,
        "info": _jsonable(world.info),
        "collisions": [list(c) for c in log.collisions if c[0] <= seconds],
        "progress_m": float(log.ego_s[n_steps] - log.ego_s[0]),
    }
    (bag_path / "scenario.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    timing["rollout"] = t_roll - t_start
    timing["total"] = time.perf_counter() - t_start
    return GenerateResult(bag_path, spec, n_frames, count, summary["collisions"], timing)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, float)):
            out[k] = round(float(v), 4)
        elif isinstance(v, (np.integer, int)):
            out[k] = int(v)
        else:
            out[k] = str(v)
    return out


def write_scenario_bag(
    path: str | Path,
    *,
    seed: int = 0,
    seconds: float = 20.0,
    family: str | None = None,
    difficulty: float | str | None = None,
    overwrite: bool = False,
    lidar_preset: str | None = None,
    camera_mode: str | None = None,
) -> GenerateResult:
    """One-call generation of a single scenario bag at ``path`` (for demos and tests).

    Args:
        path: Bag directory to create.
        seed: Scenario seed.
        seconds: Recorded duration.
        family: Scenario family (default: the config's families cycled by ``seed``).
        difficulty: 0..1, ``"mixed"`` or None (config value).
        overwrite: Delete an existing ``path`` first.
        lidar_preset: LiDAR preset (default from config).
        camera_mode: ``raw``, ``jpeg`` or ``none`` (default from config).
    """
    import shutil

    from vla_edge.config import load_config
    from vla_edge.sim.scenarios import suite

    cfg = load_config("sim")
    fams = [family] if family else list(cfg["scenario"]["families"])
    fam = fams[seed % len(fams)]
    spec = suite(1, seed, [fam], difficulty, cfg)[0]
    p = Path(path)
    if overwrite and p.exists():
        shutil.rmtree(p)
    calib = Calibration.from_config(load_config("calibration"))
    return generate_scenario(
        spec,
        p,
        cfg,
        calib,
        load_config("topics"),
        seconds,
        lidar_preset=lidar_preset,
        camera_mode=camera_mode,
    )
