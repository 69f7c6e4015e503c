"""One scenario of on-policy data: drive (expert with DART noise, or the student), label with the expert.

Runs in a worker process (:func:`run_job`). Every kept frame stores exactly what the
vehicle's model would be fed, built by the runtime's own code (``FrameBuilder`` →
``FrameAssembler`` → ``vla_edge.pillarize`` input helpers), except that the points stay
*sparse* (quantised to 1 cm, int16) and are pillarized later on the GPU, batched
(:func:`training.model.pillars.pillarize_batch`). The label is the expert's plan (privileged, or
cut to the student's view with ``onpolicy.observable_labels``: :mod:`vla_edge.sim.label_view`)
from the visited state, whoever drives.

A camera preset (``tiny_cam``; :attr:`CollectJob.camera`) renders the front camera too and
stores per frame the image *already resized* to the model input
(:func:`vla_edge.camera_input.frame_resized_image`: uint8 ``[H, W, 3]``, 46 KB at 96 x 160,
4.6 GB per 10^5 frames, small enough to stay on the GPU beside the points) and the camera
reason code (index into :data:`vla_edge.camera_input.REASONS`). Why not JPEG bytes of the
640 x 360 image: a lossy round trip the harness evaluation does not have (it hands raw RGB to
the model) and a JPEG decode + resize per sample per epoch on the CPU. The stored array is the
exact intermediate of :func:`~vla_edge.camera_input.image_tensor`, so the per-batch
normalisation gives the runtime's tensor bit for bit. LiDAR-only presets store no images.
A camera preset's frames also store ``stop_line_m``, the target of its training-only stop-line
head: the distance from the ego front to the stop line the privileged expert stops for next
(:meth:`vla_edge.sim.expert.Expert.stop_line_distance` on the true world, whatever
``observable_labels`` says; +inf when none).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.calibration import Calibration
from vla_edge.camera_input import REASONS, CameraSpec, frame_resized_image
from vla_edge.config import load_config
from vla_edge.model_inputs import frame_inputs, frame_points
from vla_edge.pillarize import ModelInputError, PillarSpec
from vla_edge.sim.counterfactual import parked_box, with_boxes
from vla_edge.sim.ego import Plan, plan_from_trajectory
from vla_edge.sim.expert import Expert
from vla_edge.sim.harness import FrameBuilder, _ttc_violation, plan_to_trajectory
from vla_edge.sim.label_view import LabelView
from vla_edge.sim.rollout import run_closed_loop
from vla_edge.sim.scenarios import ScenarioSpec, make_scenario
from vla_edge.sim.world import SimError, World
from vla_edge.types import Trajectory

#: Points are stored as int16 in units of this many metres (1 cm; +-327 m range).
POINT_QUANTUM = 0.01


@dataclass(frozen=True)
class CollectJob:
    """One scenario to collect.

    Attributes:
        spec: Scenario family, seed and difficulty.
        iteration: DAgger iteration (0 = expert only).
        policy: ``"expert"`` (DART-perturbed expert drives) or ``"student"``.
        checkpoint: Student checkpoint for ``policy="student"``.
        oc: The ``onpolicy`` section of the train config in use.
        checkpoint: Student checkpoint for ``policy="student"``.
        force_cpu: Run the student on the CPU even when CUDA exists.
        camera: The trained preset's camera input (None: LiDAR-only, no images rendered or stored).
        pillar_spec: The trained preset's pillar spec (None: model.yaml's, single sweep); a
            multi-sweep spec stores the composed clouds (time lag as a fifth column).
    """

    spec: ScenarioSpec
    iteration: int
    policy: str
    oc: dict[str, Any]
    checkpoint: str | None = None
    force_cpu: bool = True
    camera: CameraSpec | None = None
    pillar_spec: PillarSpec | None = None


def preset_camera(model_cfg: dict[str, Any], preset: str) -> CameraSpec | None:
    """The camera input of ``preset`` (``presets.<preset>.camera``), or None for LiDAR-only."""
    from training.model.config import resolve_preset

    raw = resolve_preset(model_cfg, preset).get("camera")
    return CameraSpec.from_dict(raw) if raw else None


def quantise_points(points: np.ndarray, spec: PillarSpec) -> np.ndarray:
    """Finite in-range points as int16 in units of ``POINT_QUANTUM``.

    ``[N, 4]`` (x, y, z, intensity), or ``[N, 5]`` with the time lag (s) for multi-sweep specs.
    """
    p = np.asarray(points, dtype=np.float64)[:, : spec.point_columns]
    lo, hi = np.array(spec.point_cloud_range[:3]), np.array(spec.point_cloud_range[3:])
    keep = np.all(np.isfinite(p), axis=1) & np.all((p[:, :3] >= lo) & (p[:, :3] < hi), axis=1)
    q = np.round(p[keep] / POINT_QUANTUM)
    return np.clip(q, -32767, 32767).astype(np.int16)


def randomised_sensors(
    sim_cfg: dict[str, Any], calib_cfg: dict[str, Any], rnd: dict[str, Any], rng: np.random.Generator
) -> tuple[dict[str, Any], Calibration, Calibration]:
    """A per-scenario LiDAR: noise, dropout, mount and calibration error, maybe a blocked sector.

    Returns:
        ``(sim_cfg, believed calibration, true sensor calibration)``.
    """
    cfg = copy.deepcopy(sim_cfg)
    lid = cfg["lidar"]
    lid["dropout"] = float(rng.uniform(*rnd["dropout"]))
    lid["range_noise"] = float(rng.uniform(*rnd["range_noise"]))
    if rng.random() < float(rnd["blocked_sector_prob"]):
        start = float(rng.uniform(-180.0, 180.0))
        lid["blocked_sectors"] = [[start, start + float(rng.uniform(*rnd["blocked_sector_deg"]))]]
    believed, true = copy.deepcopy(calib_cfg), copy.deepcopy(calib_cfg)
    dz = float(rng.uniform(*rnd["mount_height"]))
    pitch = np.radians(float(rng.uniform(*rnd["mount_pitch_deg"])))
    err = np.radians(float(rng.uniform(*rnd["pitch_error_deg"])))
    for c, extra in ((believed, 0.0), (true, err)):
        s = c["sensors"]["lidar"]
        s["xyz"] = [float(s["xyz"][0]), float(s["xyz"][1]), float(s["xyz"][2]) + dz]
        s["rpy"] = [float(s["rpy"][0]), float(s["rpy"][1]) + pitch + extra, float(s["rpy"][2])]
    return cfg, Calibration.from_config(believed), Calibration.from_config(true)


def _perturbed(traj: Trajectory, lateral: float, speed_scale: float) -> Trajectory:
    """The expert's plan pushed sideways (ramped in over 2 s) and re-timed by ``speed_scale``."""
    poses = traj.with_origin()
    t = np.concatenate([[0.0], traj.times])
    tq = np.clip(traj.times * speed_scale, 0.0, t[-1])
    x, y = np.interp(tq, t, poses[:, 0]), np.interp(tq, t, poses[:, 1])
    yaw = np.interp(tq, t, np.unwrap(poses[:, 2]))
    ramp = np.minimum(1.0, traj.times / 2.0) * lateral
    out = np.column_stack([x - np.sin(yaw) * ramp, y + np.cos(yaw) * ramp, yaw])
    return Trajectory(out, traj.dt, traj.stamp, None, "expert_dart")


_MODELS: dict[str, Any] = {}


def _student(checkpoint: str, force_cpu: bool) -> Any:
    """The student as a planner (cached per worker process)."""
    if checkpoint not in _MODELS:
        import torch

        from training.evaluate import ModelPlanner
        from training.teachers.learned import load_model

        torch.set_num_threads(1)
        dev = torch.device("cuda" if torch.cuda.is_available() and not force_cpu else "cpu")
        model = load_model(checkpoint, load_config("model"), dev)
        _MODELS[checkpoint] = ModelPlanner(model, dev, float(model.cfg.dt))
    return _MODELS[checkpoint]


def run_job(job: CollectJob) -> dict[str, Any]:
    """Drive one scenario and return its samples (``arrays``) and what happened (``stats``)."""
    oc = job.oc
    sim_cfg = load_config("sim")
    spec = job.pillar_spec or PillarSpec.from_config(load_config("model"))
    seconds = float(oc["seconds"])
    rng = np.random.default_rng([job.spec.seed, job.iteration, 17])
    cfg, believed, true = randomised_sensors(sim_cfg, load_config("calibration"), oc["randomize"], rng)
    cam = job.camera
    source_size: tuple[int, int] | None = None
    builder = FrameBuilder(cfg, believed, lidar=True, camera=cam is not None, sensor_calib=true)
    if cam is not None:
        src = believed.camera_intrinsics(cam.name)
        source_size = (src.height, src.width)
    world = make_scenario(job.spec, cfg, seconds)
    expert = Expert(cfg)  # drives (DART demonstrations, takeovers): the whole world
    labeller = Expert(cfg, LabelView.from_spec(spec)) if oc.get("observable_labels", False) else expert
    student = _student(job.checkpoint, job.force_cpu) if job.policy == "student" else None
    dart, take = oc["dart"], oc["takeover"]
    frame_dt = float(cfg["time"]["frame_dt"])
    decay = float(np.exp(-frame_dt / float(dart["lateral_tau"])))
    state = {"k": 0, "lateral": 0.0, "scale": 1.0, "expert_left": 0}
    keys = ("points", "ego", "path", "gt", "t", "expert_drove")
    cam_keys = ("images", "camera_reason", "stop_line_m") if cam else ()
    rows: dict[str, list[Any]] = {k: [] for k in keys + cam_keys}
    takeovers = 0
    cf = oc.get("counterfactual", {})
    cf_share = float(cf.get("share", 0.0))
    cf_rng = np.random.default_rng([job.spec.seed, job.iteration, 31])  # independent of the rollout's draws
    added = {"counterfactual": 0}

    def store(fr: Any, label: Trajectory, t: float, expert_drove: bool, stop_line_m: float) -> None:
        inp = frame_inputs(fr, spec, points=False)  # points are stored sparse, pillarized later
        rows["points"].append(quantise_points(frame_points(fr, spec), spec))
        rows["ego"].append(inp["ego_state"])
        rows["path"].append(inp["reference_path"])
        rows["gt"].append(label.poses.astype(np.float32))
        rows["t"].append(t)
        rows["expert_drove"].append(expert_drove)
        if cam is not None:
            img, reason = frame_resized_image(fr, cam, source_size)
            rows["images"].append(img if img is not None else np.zeros((cam.height, cam.width, 3), np.uint8))
            rows["camera_reason"].append(REASONS.index(reason))
            rows["stop_line_m"].append(stop_line_m)

    def policy(w: World) -> tuple[Plan | None, dict[str, Any]]:
        nonlocal takeovers
        k = state["k"]
        state["k"] += 1
        cf_world = None
        if cf_share > 0.0 and k % int(oc["stride"]) == 0 and cf_rng.random() < cf_share:
            box = parked_box(
                w,
                str(cf_rng.choice(cf["classes"])),
                cf_rng.uniform(*cf["distance"]),
                cf_rng.uniform(*cf["lateral"]),
            )
            cf_world = with_boxes(w, box)
            parked = cf_rng.random() < float(cf["parked_share"])  # else it appears now (multi-sweep)
            cf_frame = builder.build_variant(w, k, box, spec, parked)  # before build(): copies the assembler
        frame = builder.build(w, k)
        dec = expert.plan(w)
        expert_drives = student is None or state["expert_left"] > 0 or rng.random() < float(oc["beta"])
        if student is not None and not expert_drives:
            _, d = w.lane.project(w.ego.xy()[None, :], w.ego_s() - 10.0, w.ego_s() + 10.0)
            heading = abs((w.ego.yaw - w.lane.interp(w.ego_s())[2] + np.pi) % (2 * np.pi) - np.pi)
            near_fail = (
                abs(float(d[0])) > float(take["lateral"])
                or heading > float(take["heading"])
                or _ttc_violation(w, float(take["ttc"]), 0.1) < float(take["ttc"])
            )
            if near_fail:
                state["expert_left"] = int(take["frames"])
                takeovers += 1
                expert_drives = True
        state["expert_left"] = max(0, state["expert_left"] - 1)
        if k % int(oc["stride"]) == 0:
            try:
                lab = dec if labeller is expert else labeller.plan(w)
                # the true world's next stop line (same ego and lines in the counterfactual world)
                sl = expert.stop_line_distance(w) if cam is not None else float("nan")
                store(frame, plan_to_trajectory(lab.plan, w, frame.stamp), w.t, expert_drives, sl)
                if cf_world is not None:
                    store(
                        cf_frame,
                        plan_to_trajectory(labeller.plan(cf_world).plan, cf_world, frame.stamp),
                        w.t,
                        True,
                        sl,
                    )
                    added["counterfactual"] += 1
            except ModelInputError:
                pass  # no usable reference path yet: the vehicle would not run the model either
        if student is None:
            state["lateral"] = state["lateral"] * decay + float(dart["lateral_sigma"]) * np.sqrt(
                1 - decay * decay
            ) * float(rng.standard_normal())
            if k % round(3.0 / frame_dt) == 0:
                state["scale"] = float(
                    np.clip(1 + float(dart["speed_sigma"]) * rng.standard_normal(), 0.6, 1.3)
                )
            calm = dec.safe and dec.action in ("cruise", "accelerate", "follow", "nudge")
            if calm and dec.plan.path is not None:
                drive = plan_to_trajectory(dec.plan, w, frame.stamp)
                pert = _perturbed(drive, state["lateral"], state["scale"])
                return plan_from_trajectory(pert, w.ego, w.t), {}
            return dec.plan, {}
        if expert_drives:
            return dec.plan, {}
        try:
            return plan_from_trajectory(student(frame), w.ego, w.t), {}
        except (SimError, ModelInputError):
            return dec.plan, {}

    log = run_closed_loop(world, policy, seconds, cfg)
    counts = np.array([len(p) for p in rows["points"]], dtype=np.int64)
    n = len(counts)
    K, T = spec.num_path_points, len(rows["gt"][0]) if n else 8
    arrays = {
        "points": np.concatenate(rows["points"]) if n else np.zeros((0, spec.point_columns), np.int16),
        "counts": counts,
        "ego": np.asarray(rows["ego"], dtype=np.float32).reshape(n, 6),
        "path": np.asarray(rows["path"], dtype=np.float32).reshape(n, K, 2),
        "gt": np.asarray(rows["gt"], dtype=np.float32).reshape(n, T, 3),
        "t": np.asarray(rows["t"], dtype=np.float32),
        "expert_drove": np.asarray(rows["expert_drove"], dtype=bool),
    }
    if cam is not None:
        arrays["images"] = np.asarray(rows["images"], dtype=np.uint8).reshape(n, cam.height, cam.width, 3)
        arrays["camera_reason"] = np.asarray(rows["camera_reason"], dtype=np.uint8)
        arrays["stop_line_m"] = np.asarray(rows["stop_line_m"], dtype=np.float32).reshape(n)
    stats = {
        "family": job.spec.family,
        "seed": job.spec.seed,
        "difficulty": job.spec.difficulty,
        "policy": job.policy,
        "frames": n,
        "takeovers": takeovers,
        "counterfactual": added["counterfactual"],
        "collisions": len([c for c in log.collisions if c[3] >= 0.05]),
        "offroad": bool(log.offroad.any()),
    }
    return {"arrays": arrays, "stats": stats}
