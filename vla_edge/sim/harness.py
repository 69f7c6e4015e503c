"""Closed-loop evaluation of a planner in the airside world, with a PDMS-style score.

A planner is any callable ``Frame -> Trajectory | None``. Every frame (10 Hz) the harness
builds a :class:`~vla_edge.types.Frame` from the simulated sensors (LiDAR points in
``base_link``, optional camera image, ego state, reference path in the ego frame), calls
the planner, and the ego tracks the returned trajectory with pure pursuit + speed control
through the same vehicle model the expert uses. ``None`` (or a non-finite trajectory)
makes the ego brake at ``controller.fallback_decel`` (an MRM-like stop).

Per scenario (NAVSIM's PDM score adapted to a closed loop):

* **NC** no at-fault collision: 1; only cones/FOD hit: ``harness.static_collision_nc``;
  a vehicle, crew, aircraft or barrier hit: 0. Contacts while the ego stands still are
  not at fault.
* **DAC** 1 when the ego footprint never leaves drivable ground (road minus no-go zones).
* **EP** ego progress along the route over the expert's progress on the same scenario
  (clipped to 1; 1 when the expert itself moves less than ``harness.ep_min_reference``).
* **TTC** share of moving frames whose constant-velocity time to collision stays above
  ``harness.ttc_threshold``.
* **C** share of frames whose executed motion stays within the NAVSIM comfort limits.
* **SLC** stop-line compliance (as EPDMS's traffic-light compliance): 1, or
  ``harness.stop_line_slc`` when the ego crossed a painted stop line before holding at it
  for its dwell time (``stop_line`` family; ``stop_line_violations`` counts them). Every
  other family has no stop line, so SLC is 1 there.

``score = NC * DAC * SLC * (5 * TTC + 5 * EP + 2 * C) / 12``; :class:`SuiteResult` holds the
per-scenario scores and their means.

Privileged planners (the expert) may define ``reset(world)``; the harness calls it at the
start of each scenario.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from vla_edge.calibration import Calibration
from vla_edge.pillarize import PillarSpec
from vla_edge.sim.camera import Camera
from vla_edge.sim.ego import Plan, plan_from_trajectory
from vla_edge.sim.expert import Expert
from vla_edge.sim.label_view import LabelView
from vla_edge.sim.lidar import Lidar
from vla_edge.sim.rollout import FrameRecord, RolloutLog, expert_policy, run_closed_loop
from vla_edge.sim.scenarios import ScenarioSpec, make_scenario, suite
from vla_edge.sim.world import Boxes, SimError, World, box_corners, rect_overlaps
from vla_edge.sweeps import select_sweeps
from vla_edge.types import EgoState, Frame, PastSweep, Trajectory

Planner = Callable[[Frame], "Trajectory | None"]
_SOFT = ("cone", "fod")


@dataclass
class ScenarioScore:
    """Scores of one scenario.

    Attributes:
        name: Scenario name.
        family: Scenario family.
        seed: Scenario seed.
        difficulty: Difficulty 0..1.
        nc: No-collision factor (0, 0.5 or 1).
        dac: Drivable-area compliance (0 or 1).
        ep: Ego progress ratio 0..1.
        ttc: Share of moving frames with a safe time to collision.
        comfort: Share of comfortable frames.
        score: ``nc * dac * slc * (5 ttc + 5 ep + 2 comfort) / 12``.
        progress_m: Ego progress along the route (m).
        expert_progress_m: The expert's progress on the same scenario (m).
        collisions: ``(t, object id, class, ego speed)`` of at-fault contacts.
        offroad_s: Seconds with the footprint off drivable ground.
        planner_failures: Frames where the planner returned None, raised or gave NaN.
        min_ttc: Smallest time to collision seen (s; inf when none).
        slc: Stop-line compliance multiplier (1, or ``harness.stop_line_slc`` after a violation).
        stop_line_violations: Painted stop lines crossed before holding at them.
    """

    name: str
    family: str
    seed: int
    difficulty: float
    nc: float
    dac: float
    ep: float
    ttc: float
    comfort: float
    score: float
    progress_m: float
    expert_progress_m: float
    collisions: list[tuple[float, int, str, float]] = field(default_factory=list)
    offroad_s: float = 0.0
    planner_failures: int = 0
    min_ttc: float = float("inf")
    slc: float = 1.0
    stop_line_violations: int = 0


@dataclass
class SuiteResult:
    """Per-scenario scores and their aggregate."""

    scenarios: list[ScenarioScore]

    @property
    def aggregate(self) -> dict[str, float]:
        """Means of every score over the scenarios, plus the collision rate."""
        if not self.scenarios:
            return {}
        keys = ("score", "nc", "dac", "ep", "ttc", "comfort", "slc")
        out = {k: float(np.mean([getattr(s, k) for s in self.scenarios])) for k in keys}
        out["collision_rate"] = float(np.mean([1.0 if s.collisions else 0.0 for s in self.scenarios]))
        out["stop_line_violations"] = float(sum(s.stop_line_violations for s in self.scenarios))
        out["scenarios"] = float(len(self.scenarios))
        return out

    @property
    def pdms(self) -> float:
        """Mean PDMS-style score."""
        return self.aggregate.get("score", 0.0)

    def by_family(self) -> dict[str, float]:
        """Mean score per family."""
        fams: dict[str, list[float]] = {}
        for s in self.scenarios:
            fams.setdefault(s.family, []).append(s.score)
        return {k: float(np.mean(v)) for k, v in sorted(fams.items())}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        rows = []
        for s in self.scenarios:
            d = asdict(s)
            d["min_ttc"] = None if not np.isfinite(s.min_ttc) else s.min_ttc
            rows.append(d)
        return {"aggregate": self.aggregate, "by_family": self.by_family(), "scenarios": rows}

    def to_json(self) -> str:
        """The result as JSON text."""
        return json.dumps(self.to_dict(), indent=1)

    def table(self) -> str:
        """A plain-text table, one line per scenario plus the mean."""
        from vla_edge.sim.scenarios import CAMERA_FAMILIES

        slc = any(s.family in CAMERA_FAMILIES for s in self.scenarios)  # stop-line column
        head = f"{'scenario':34s} {'NC':>4s} {'DAC':>4s} {'EP':>5s} {'TTC':>5s} {'C':>5s} {'score':>6s}"
        lines = [head + (f" {'SLC':>4s} {'runs':>4s}" if slc else "")]
        for s in self.scenarios:
            row = f"{s.name:34s} {s.nc:4.1f} {s.dac:4.1f} {s.ep:5.2f} {s.ttc:5.2f} {s.comfort:5.2f}"
            extra = f" {s.slc:4.1f} {s.stop_line_violations:4d}" if slc else ""
            lines.append(f"{row} {s.score:6.3f}{extra}")
        a = self.aggregate
        if a:
            extra = f" {a['slc']:4.2f} {int(a['stop_line_violations']):4d}" if slc else ""
            lines.append(
                f"{'mean':34s} {a['nc']:4.2f} {a['dac']:4.2f} {a['ep']:5.2f} {a['ttc']:5.2f} "
                f"{a['comfort']:5.2f} {a['score']:6.3f}{extra}"
            )
        return "\n".join(lines)


class ExpertPlanner:
    """The privileged expert as a harness planner (it reads the world, not the Frame).

    Args:
        cfg: The ``sim`` config.
        view: Drive as the sensor-limited labeller sees the world (``--planner expert_view``);
            None = the whole world.
    """

    def __init__(self, cfg: dict[str, Any], view: LabelView | None = None) -> None:
        self.expert = Expert(cfg, view)
        self.world: World | None = None
        self.last_reasoning = ""

    def reset(self, world: World) -> None:
        """Bind to the scenario's world."""
        self.world = world

    def __call__(self, frame: Frame) -> Trajectory | None:
        if self.world is None:
            raise SimError("ExpertPlanner needs reset(world) before use; run it through run_suite")
        dec = self.expert.plan(self.world)
        self.last_reasoning = dec.reasoning
        return plan_to_trajectory(dec.plan, self.world, frame.stamp)


def plan_to_trajectory(plan: Plan, world: World, stamp: float, n: int = 8, dt: float = 0.5) -> Trajectory:
    """Sample an odom-frame plan at ``dt, 2dt, ...`` into an ego-frame :class:`Trajectory`."""
    if plan.path is None:
        return Trajectory(np.zeros((n, 3)), dt, stamp, np.zeros(n), "expert")
    t = dt * np.arange(1, n + 1)
    tt = np.linspace(0.0, t[-1], int(t[-1] / 0.05) + 1)
    v = np.interp(tt, plan.times, plan.speeds, right=float(plan.speeds[-1]))
    s_adv = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(tt))])
    s0 = float(plan.path.project(world.ego.xy()[None, :])[0][0])
    s = s0 + np.interp(t, tt, s_adv)
    pts = plan.path.interp(s)
    over = s - plan.path.length
    if np.any(over > 0):  # past the end of the path: continue straight
        ex, ey, eyaw = plan.path.interp(plan.path.length)
        o = np.maximum(over, 0.0)
        pts[:, 0] = np.where(over > 0, ex + o * np.cos(eyaw), pts[:, 0])
        pts[:, 1] = np.where(over > 0, ey + o * np.sin(eyaw), pts[:, 1])
    e = world.ego
    c, sn = np.cos(e.yaw), np.sin(e.yaw)
    dx, dy = pts[:, 0] - e.x, pts[:, 1] - e.y
    yaw = np.unwrap(np.concatenate([[e.yaw], pts[:, 2]]))[1:] - e.yaw
    poses = np.stack([c * dx + sn * dy, -sn * dx + c * dy, yaw], axis=1)
    return Trajectory(poses, dt, stamp, np.interp(t, tt, v), "expert")


class FrameBuilder:
    """Builds planner Frames from the simulated sensors through the runtime's FrameAssembler.

    Every frame the ego state goes into the assembler's odometry buffer, the reference path is
    "published" (odom frame) every ``time.path_period`` like the bags do, the LiDAR sweep is
    handed over in the sensor frame and the camera image as a ``sensor_msgs/Image``; the
    :class:`~vla_edge.frame_assembly.FrameAssembler` (``config/frame.yaml``) then transforms,
    clips, ages and flags exactly as on the vehicle and in replay / training.

    Args:
        cfg: The ``sim`` config.
        calib: Sensor extrinsics.
        lidar: Render LiDAR points (else ``points`` is empty).
        camera: Render the front camera into ``images`` (key ``camera_<name>``).
        lidar_preset: LiDAR preset name.
        sensor_calib: Where the LiDAR really sits, when it differs from ``calib`` (what the
            vehicle believes): training randomises mounts and calibration errors this way.
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        calib: Calibration,
        lidar: bool,
        camera: bool,
        lidar_preset: str | None = None,
        sensor_calib: Calibration | None = None,
    ) -> None:
        from vla_edge.config import load_config
        from vla_edge.msgfactory import RosbagsFactory

        self.cfg = cfg
        self.calib = calib
        self.lidar = Lidar(cfg["lidar"], sensor_calib or calib, lidar_preset) if lidar else None
        self.camera = Camera(cfg["camera"], calib) if camera else None
        self.camera_key = f"camera_{cfg['camera']['name']}"
        self.lidar_frame = calib.sensor_frame("lidar")
        self.odom = str(cfg["frames"]["odom"])
        self.frame_cfg = load_config("frame")
        self.factory = RosbagsFactory()
        self.asm: Any = None
        self._world: World | None = None
        self._last_path = -np.inf
        # the last sweeps as rendered (stamp -> pose, boxes, rng key): build_variant re-renders
        # them with its extra boxes, so a multi-sweep model sees a parked object in every sweep
        self._renders: dict[float, tuple[np.ndarray, Boxes, list[int], Any]] = {}
        self._renders_kept = int(self.frame_cfg["lidar"]["history_max_sweeps"]) + 1

    def _reset(self, world: World) -> None:
        from vla_edge.frame_assembly import FrameAssembler

        self.asm = FrameAssembler(self.frame_cfg, self.calib)
        self._world = world
        self._last_path = -np.inf
        self._renders = {}

    def build(self, world: World, frame_index: int) -> Frame:
        """The Frame the vehicle would assemble now."""
        if world is not self._world:
            self._reset(world)
        return self._assemble(self.asm, world, frame_index, None)

    def build_variant(
        self,
        world: World,
        frame_index: int,
        extra: Boxes,
        spec: PillarSpec | None = None,
        in_history: bool = True,
    ) -> Frame:
        """The Frame of ``world`` with ``extra`` (static) boxes in the scene (LiDAR and camera),
        assembled on a copy of the assembler, so the frames that follow are unaffected. Call
        it before :meth:`build` of the same frame index.

        With ``in_history``, the earlier sweeps a multi-sweep model composes (``spec``'s lags;
        every kept sweep when ``spec`` is None) are rendered again from their own poses with
        ``extra`` added: a parked object is in every sweep. Without, it shows only now, as an
        object that appeared (crew stepping out from behind a vehicle).
        """
        import copy

        if world is not self._world:
            self._reset(world)
        asm = copy.deepcopy(self.asm)
        if in_history and self.lidar is not None and asm._history:
            wanted = {id(h) for _, h in select_sweeps(world.stamp, asm._history, spec)} if spec else None
            asm._history = [
                self._rerender(h, world, extra) if wanted is None or id(h) in wanted else h
                for h in asm._history
            ]
        return self._assemble(asm, world, frame_index, extra)

    def _rerender(self, past: PastSweep, world: World, extra: Boxes) -> PastSweep:
        """``past`` as the LiDAR would have seen it with ``extra`` in the scene (unchanged if
        it was not rendered by this builder)."""
        r = self._renders.get(past.stamp)
        if r is None or self.lidar is None:
            return past
        pose, boxes, key, deg = r
        scan = self.lidar.scan(
            pose, Boxes.concat([boxes, extra]), world.ground, np.random.default_rng(key),
            organized=False, degradation=deg,
        ).points  # fmt: skip
        return dataclasses.replace(past, points=self.asm.calibration.cloud_to_base(scan, self.lidar_frame))

    def _assemble(self, asm: Any, world: World, frame_index: int, extra: Boxes | None) -> Frame:
        from vla_edge.conversions import rgb_to_image

        e = world.ego
        pose = np.array([e.x, e.y, e.yaw])
        stamp = world.stamp
        asm.add_ego_state(EgoState(stamp, e.x, e.y, e.yaw, e.v, 0.0, e.yaw_rate), self.odom)
        tc = self.cfg["time"]
        if world.t - self._last_path >= float(tc["path_period"]) - 1e-6:
            rp = self.cfg["reference_path"]
            s_e = world.ego_s()
            pts = world.lane.resample(float(rp["step"]), s_e - float(rp["behind"]), s_e + float(rp["ahead"]))
            asm.set_reference_path(pts, stamp, self.odom)
            if asm is self.asm:
                self._last_path = world.t
        boxes = world.boxes() if (self.lidar or self.camera) else Boxes.empty()
        if extra is not None:
            boxes = Boxes.concat([boxes, extra])
        if self.camera is not None:
            img = self.camera.render(pose, boxes, world.ground)
            asm.add_image(self.camera_key, rgb_to_image(img, self.factory, stamp, self.camera.frame_id))
        if self.lidar is not None:
            key = [world.seed, frame_index, 29]
            deg = world.info.get("lidar")  # per-scenario degradation (lidar_degraded family)
            if asm is self.asm:
                self._renders[stamp] = (pose, boxes, key, deg)
                for old in sorted(self._renders)[: -self._renders_kept]:
                    del self._renders[old]
            rng = np.random.default_rng(key)
            points = self.lidar.scan(pose, boxes, world.ground, rng, organized=False, degradation=deg).points
        else:
            points = np.zeros((0, 4), np.float32)
        return asm.make_frame_from_points(stamp, points, self.lidar_frame)


def _ttc_violation(world: World, horizon: float, step: float) -> float:
    """Smallest time (s) within ``horizon`` at which constant-velocity motion collides; inf if none."""
    e = world.ego
    if e.v < 0.2:
        return float("inf")
    boxes = world.boxes()
    if not len(boxes):
        return float("inf")
    near = (
        np.hypot(*(boxes.xy - e.xy()).T)
        < e.v * horizon + 0.5 * np.hypot(boxes.size[:, 0], boxes.size[:, 1]) + 6.0
    )
    if not near.any():
        return float("inf")
    b = boxes.subset(near)
    for t in np.arange(step, horizon + 1e-9, step):
        yaw = e.yaw + e.yaw_rate * t
        mid = e.yaw + 0.5 * e.yaw_rate * t
        x = e.x + e.v * t * np.cos(mid) + e.centre_offset * np.cos(yaw)
        y = e.y + e.v * t * np.sin(mid) + e.centre_offset * np.sin(yaw)
        ego = box_corners(np.array([x, y]), yaw, e.length, e.width)[0]
        other = box_corners(b.xy + b.speed * t, b.yaw, b.size[:, 0], b.size[:, 1])
        if rect_overlaps(ego, other).any():
            return float(t)
    return float("inf")


def _comfort(log: RolloutLog, per_frame: int, dt: float, lim: dict[str, Any]) -> float:
    a = log.ego[:, 4]
    jerk = np.abs(np.diff(a, prepend=a[0])) / dt
    a_lat = np.abs(log.ego[:, 3] * log.ego[:, 5])
    yr = np.abs(log.ego[:, 5])
    bad = (
        (a_lat > float(lim["max_lat_accel"]))
        | (a < float(lim["min_lon_accel"]))
        | (a > float(lim["max_lon_accel"]))
        | (jerk > float(lim["max_jerk"]))
        | (yr > float(lim["max_yaw_rate"]))
    )
    n = (len(a) - 1) // per_frame
    if n <= 0:
        return 1.0
    per = bad[1 : n * per_frame + 1].reshape(n, per_frame).any(1)
    return float(1.0 - per.mean())


_EXPERT_PROGRESS: dict[tuple[ScenarioSpec, float], float] = {}


def expert_progress(spec: ScenarioSpec, cfg: dict[str, Any], seconds: float) -> float:
    """Progress (m) of the expert on ``spec`` in ``seconds`` (cached; no sensors)."""
    key = (spec, round(seconds, 3))
    if key not in _EXPERT_PROGRESS:
        world = make_scenario(spec, cfg, seconds)
        log = run_closed_loop(world, expert_policy(Expert(cfg)), seconds, cfg, check_collisions=False)
        _EXPERT_PROGRESS[key] = float(log.ego_s[-1] - log.ego_s[0])
    return _EXPERT_PROGRESS[key]


def run_scenario(
    planner: Planner,
    spec: ScenarioSpec,
    cfg: dict[str, Any],
    calib: Calibration,
    seconds: float,
    builder: FrameBuilder,
    keep: dict[str, Any] | None = None,
) -> ScenarioScore:
    """Run one scenario closed loop and score it.

    ``keep`` (a dict) receives the ``world`` and the rollout ``log`` (the safety suite's
    contact classification and plots read them).
    """
    hc = cfg["harness"]
    world = make_scenario(spec, cfg, seconds)
    if hasattr(planner, "reset"):
        planner.reset(world)  # type: ignore[attr-defined]
    failures = 0
    ttc_hits = 0
    moving = 0
    min_ttc = float("inf")
    k = [0]

    def policy(w: World) -> tuple[Plan | None, dict[str, Any]]:
        nonlocal failures
        frame = builder.build(w, k[0])
        k[0] += 1
        try:
            traj = planner(frame)
            plan = None if traj is None else plan_from_trajectory(traj, w.ego, w.t)
        except SimError:
            plan = None
        if plan is None:
            failures += 1
        return plan, {}

    def on_frame(w: World, rec: FrameRecord) -> None:
        nonlocal ttc_hits, moving, min_ttc
        if w.ego.v >= 0.2:
            moving += 1
            t_hit = _ttc_violation(w, float(cfg["expert"]["ttc_check"]), 0.1)
            min_ttc = min(min_ttc, t_hit)
            if t_hit < float(hc["ttc_threshold"]):
                ttc_hits += 1

    log = run_closed_loop(world, policy, seconds, cfg, on_frame=on_frame)
    if keep is not None:
        keep.update(world=world, log=log)
    dt = float(cfg["time"]["physics_dt"])
    per_frame = round(float(cfg["time"]["frame_dt"]) / dt)
    at_fault = [c for c in log.collisions if c[3] >= 0.05]
    if not at_fault:
        nc = 1.0
    elif all(c[2] in _SOFT for c in at_fault):
        nc = float(hc["static_collision_nc"])
    else:
        nc = 0.0
    dac = 0.0 if log.offroad.any() else 1.0
    progress = float(log.ego_s[-1] - log.ego_s[0])
    ref = expert_progress(spec, cfg, seconds)
    ep = 1.0 if ref < float(hc["ep_min_reference"]) else float(np.clip(progress / ref, 0.0, 1.0))
    ttc = 1.0 - ttc_hits / moving if moving else 1.0
    comfort = _comfort(log, per_frame, dt, hc["comfort"])
    violations = world.stop_line_violations()
    slc = float(hc["stop_line_slc"]) if violations else 1.0
    score = nc * dac * slc * (5 * ttc + 5 * ep + 2 * comfort) / 12.0
    return ScenarioScore(
        spec.name,
        spec.family,
        spec.seed,
        spec.difficulty,
        nc,
        dac,
        ep,
        ttc,
        comfort,
        score,
        progress,
        ref,
        at_fault,
        float(log.offroad.sum() * dt),
        failures,
        min_ttc,
        slc,
        violations,
    )


def run_suite(
    planner: Planner,
    scenarios: Sequence[ScenarioSpec] | int,
    *,
    seconds: float | None = None,
    seed: int = 0,
    families: Sequence[str] | None = None,
    difficulty: float | str | None = None,
    cfg: dict[str, Any] | None = None,
    render_lidar: bool | None = None,
    render_camera: bool | None = None,
    lidar_preset: str | None = None,
    progress: bool = False,
) -> SuiteResult:
    """Evaluate ``planner`` closed loop over a scenario suite.

    Args:
        planner: ``Frame -> Trajectory | None`` (optionally with ``reset(world)``).
        scenarios: Specs, or a count for :func:`~vla_edge.sim.scenarios.suite` with
            ``seed``, ``families`` and ``difficulty``.
        seconds: Duration per scenario (default ``harness.seconds``).
        seed: Base seed when ``scenarios`` is a count.
        families: Families when ``scenarios`` is a count.
        difficulty: Difficulty when ``scenarios`` is a count.
        cfg: The ``sim`` config (loaded when None).
        render_lidar: Build ``Frame.points`` (default ``harness.render_lidar``).
        render_camera: Build ``Frame.images`` (default ``harness.render_camera``).
        lidar_preset: LiDAR preset name.
        progress: Show a tqdm bar.

    Returns:
        Per-scenario and aggregate scores.

    Raises:
        SimError: Bad suite arguments.
    """
    from vla_edge.config import load_config

    cfg = cfg if cfg is not None else load_config("sim")
    hc = cfg["harness"]
    specs = (
        suite(scenarios, seed, families, difficulty, cfg) if isinstance(scenarios, int) else list(scenarios)
    )
    secs = float(hc["seconds"] if seconds is None else seconds)
    if secs <= 0:
        raise SimError(f"seconds must be > 0, got {secs}")
    calib = Calibration.from_config(load_config("calibration"))
    builder = FrameBuilder(
        cfg,
        calib,
        bool(hc["render_lidar"] if render_lidar is None else render_lidar),
        bool(hc["render_camera"] if render_camera is None else render_camera),
        lidar_preset,
    )
    it: Any = specs
    if progress:
        from tqdm import tqdm

        it = tqdm(specs, desc="harness", unit="scenario")
    return SuiteResult([run_scenario(planner, s, cfg, calib, secs, builder) for s in it])
