"""The safety suite: many scenarios over every family, contacts judged at-fault or not.

``vla-edge sim evaluate --suite safety`` (and ``make safety``) runs ``suite.scenarios``
(200) scenarios at ``mixed`` difficulty cycling through the default and safety families
(``scenarios.SUITE_FAMILIES``; the camera family ``stop_line`` is scored by the harness),
in parallel over ``--workers`` processes, and writes a JSON result and an HTML report with
a bird's-eye plot of every at-fault contact.

**Fault rule** (written down, nuPlan/NAVSIM style; thresholds in ``config/sim.yaml``
``suite.fault``). Every ego-object contact is classified in this order:

1. ``ego_stopped`` - not at fault: the ego moved slower than ``stopped_speed`` at contact.
2. ``hit_from_behind`` - not at fault: a moving object touched the ego behind its centre
   (the contact is behind the ego's body centre, seen in the ego frame).
3. ``unavoidable`` - not at fault: a moving agent entered the ego's (executed) path closer
   than the ego's stopping distance ``v * reaction_time + v^2 / (2 comfort_decel)`` at the
   moment it entered, from ground truth.
4. ``at_fault`` - everything else (static objects always).

**Generator check.** The same entry test runs on the privileged expert's rollout of every
scenario: an agent entering the expert's path inside its stopping distance means the
generator built an unavoidable scene (``generator_unavoidable``; must be 0 at default
difficulty, ``test_safety_suite.py``).

**Emergency stops.** Every frame the arbiter chose ``emergency_stop`` is logged with the
check that caused it (the first failed ``frenet.*`` check, or the Frenet planner's reason when
it found no candidate) and compared with the privileged expert in the same world state:
when the expert is not stopping/braking/holding there, the stop counts as a *false stop* of
that cause.
"""

from __future__ import annotations

import base64
import io
import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.sim.planners import loop_decision
from vla_edge.sim.rollout import RolloutLog, run_closed_loop
from vla_edge.sim.scenarios import SUITE_FAMILIES, ScenarioSpec, make_scenario, suite
from vla_edge.sim.world import SimError, World, box_corners, rect_overlaps

_STATIC_SOFT = ("cone", "fod")


# ----------------------------------------------------------------------------- fault rule
def _ego_boxes(ego_states: np.ndarray, wcfg: dict[str, Any], inflate: float = 0.0) -> np.ndarray:
    """Ego footprints ``[S, 4, 2]`` for rows (x, y, yaw, ...) of a rollout log."""
    e = wcfg["ego"]
    length, width, rear = float(e["length"]), float(e["width"]), float(e["rear_overhang"])
    off = 0.5 * length - rear
    x, y, yaw = ego_states[:, 0], ego_states[:, 1], ego_states[:, 2]
    c = np.stack([x + off * np.cos(yaw), y + off * np.sin(yaw)], axis=1)
    n = len(x)
    return box_corners(c, yaw, np.full(n, length + 2 * inflate), np.full(n, width + 2 * inflate))


def _stop_distance(v: float, fc: dict[str, Any]) -> float:
    return float(v) * float(fc["reaction_time"]) + float(v) ** 2 / (2.0 * float(fc["comfort_decel"]))


def agent_entries(
    log: RolloutLog, cfg: dict[str, Any], until_step: int | None = None, only_id: int | None = None
) -> list[dict[str, Any]]:
    """Entries of agent bodies into the ego's executed path, with the ego's stopping distance then.

    For each frame and each agent body not yet on the ego's path, the path is the ego's own
    footprint (``suite.fault.path_margin`` inflated) over the rest of the rollout (or up to
    ``until_step``); the first frame where the body overlaps it is the entry. Returns one
    dict per entry: ``id``, ``cls``, ``t``, ``distance`` (ego path length to the first
    overlapping pose), ``stop_distance`` and ``unavoidable`` (distance < stop distance).
    """
    fc = cfg["suite"]["fault"]
    end = len(log.t) - 1 if until_step is None else until_step
    boxes = _ego_boxes(log.ego[: end + 1], cfg, float(fc["path_margin"]))
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(log.ego[: end + 1, :2], axis=0).T))])
    sub = np.flatnonzero(np.diff(np.floor(s / 0.25), prepend=-1.0) > 0)  # one pose per 0.25 m
    on_path: dict[int, bool] = {}
    out = []
    for fr in log.frames:
        if fr.step > end:
            break
        ag = fr.agents
        if not len(ag):
            continue
        ahead = sub[sub >= fr.step]
        if not len(ahead):
            continue
        corners = box_corners(ag.xy, ag.yaw, ag.size[:, 0], ag.size[:, 1])
        for k in range(len(ag)):
            oid = int(ag.ids[k])
            if only_id is not None and oid != only_id:
                continue
            hit = rect_overlaps(corners[k], boxes[ahead])
            now = bool(hit.any())
            if now and not on_path.get(oid, False) and fr.step > 0:
                j = int(ahead[int(np.argmax(hit))])
                dist = float(s[j] - s[fr.step])
                v = float(log.ego[fr.step, 3])
                stop = _stop_distance(v, fc)
                rec = {"id": oid, "cls": str(ag.cls[k]), "t": float(fr.t), "distance": dist}
                rec.update(stop_distance=stop, ego_speed=v, unavoidable=bool(dist < stop))
                out.append(rec)
            on_path[oid] = now
    return out


def classify_contacts(world: World, log: RolloutLog, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every contact of the rollout with its fault class (module docstring, in order)."""
    fc = cfg["suite"]["fault"]
    out = []
    for t, oid, cls, v in log.collisions:
        step = int(np.argmin(np.abs(log.t - t)))
        rec = {"t": float(t), "id": int(oid), "cls": str(cls), "speed": float(v), "step": step}
        if v < float(fc["stopped_speed"]):
            rec["fault"] = "ego_stopped"
        else:
            rec["fault"] = "at_fault"
            fr = max((f for f in log.frames if f.step <= step), key=lambda f: f.step, default=None)
            agents = fr.agents if fr is not None else None
            k = np.flatnonzero(agents.ids == oid) if agents is not None and len(agents) else []
            if len(k) and np.hypot(*agents.speed[k[0]]) > 0.1:
                x, y, yaw = log.ego[step, :3]
                rel = agents.xy[k[0]] - np.array([x, y])
                centre = 0.5 * float(cfg["ego"]["length"]) - float(cfg["ego"]["rear_overhang"])
                along = rel[0] * np.cos(yaw) + rel[1] * np.sin(yaw)
                if along < centre - 0.25 * float(cfg["ego"]["length"]):
                    rec["fault"] = "hit_from_behind"
                else:
                    ent = agent_entries(log, cfg, until_step=step, only_id=int(oid))
                    if ent and ent[0]["unavoidable"]:  # the first entry: no excuse from later swerves
                        rec["fault"] = "unavoidable"
                        rec["entry"] = ent[0]
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- BEV plot
def bev_png(world: World, log: RolloutLog, step: int, title: str) -> bytes:
    """Bird's-eye PNG around the ego at ``step``: route, objects, ego trail and footprint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    x, y = log.ego[step, :2]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=90)
    r = world.route.xy
    ax.plot(r[:, 0], r[:, 1], color="0.6", lw=0.8, ls="--")
    for off in (-world.road_half_width, world.road_half_width):
        edge = world.route.offset(off).xy
        ax.plot(edge[:, 0], edge[:, 1], color="0.3", lw=1.0)
    st = world.static
    if len(st):
        for c, cls in zip(st.corners(), st.cls):
            ax.add_patch(
                Polygon(c, closed=True, fc="0.5" if cls not in _STATIC_SOFT else "orange", alpha=0.6)
            )
    fr = max((f for f in log.frames if f.step <= step), key=lambda f: f.step, default=None)
    if fr is not None and len(fr.agents):
        a = fr.agents
        for c, sp in zip(box_corners(a.xy, a.yaw, a.size[:, 0], a.size[:, 1]), a.speed):
            ax.add_patch(Polygon(c, closed=True, fc="tab:red", alpha=0.7))
            m = c.mean(0)
            ax.arrow(m[0], m[1], sp[0], sp[1], width=0.05, color="tab:red")
    ax.plot(log.ego[: step + 1, 0], log.ego[: step + 1, 1], color="tab:blue", lw=1.2)
    ax.add_patch(Polygon(_ego_boxes(log.ego[step : step + 1], world.cfg)[0], closed=True, fc="tab:blue"))
    ax.set_xlim(x - 25, x + 25)
    ax.set_ylim(y - 25, y + 25)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------- planners
class RecordingPlanner:
    """Wraps the on-vehicle pipeline (``frenet`` or ``stack``) and logs every decision.

    Emergency-stop frames record their cause and whether the privileged expert, in the same
    world state, also stops.
    """

    def __init__(
        self, kind: str, config: str | None, engine: str | None, backend: str | None, cfg: dict[str, Any]
    ):
        from vla_edge.drive_loop import DriveLoop
        from vla_edge.params import resolve_overrides, unflatten
        from vla_edge.pipeline import DrivePipeline
        from vla_edge.sim.expert import Expert
        from vla_edge.sim.planners import engine_takes_camera

        values = resolve_overrides(config, {"engine_path": engine, "backend": backend})
        drive = unflatten(dict(values))
        self.kind = kind
        # a camera engine (tiny_cam) in the stack: decoded RGB from the harness (camera raw)
        self.needs_camera = kind == "stack" and engine_takes_camera(drive)
        if self.needs_camera and str(drive.get("camera", "none")) == "none":
            drive["camera"] = "raw"
        self.pipe = DrivePipeline.from_config(drive, with_runner=kind == "stack")
        # the stack runs the arbiter node's drive loop on the simulated clock, as `sim evaluate` does
        self.loop = DriveLoop.from_config(drive, self.pipe) if kind == "stack" else None
        self.expert = Expert(cfg)
        self.world: World | None = None
        self.choices: Counter[str] = Counter()
        self.estops: list[dict[str, Any]] = []

    def reset(self, world: World) -> None:
        """Bind to a new scenario and forget the previous one's tracks, plans and hysteresis."""
        self.world = world
        self.estops = []
        self.choices = Counter()  # per scenario, like the stops
        self.pipe.cycle.reset()  # stamps move forward between scenarios: no time-jump reset
        if self.loop is not None:
            self.loop.reset()

    def __call__(self, frame: Any) -> Any:
        if self.loop is not None:
            dec = loop_decision(self.loop, frame)
        else:
            dec = self.pipe.plan(frame, None, frame.stamp)
        self.choices[dec.choice] += 1
        if dec.choice == "emergency_stop" and self.world is not None:
            self.estops.append(self._estop(dec))
        return dec.trajectory

    def _estop(self, dec: Any) -> dict[str, Any]:
        failed = [k for k, v in dec.checks.items() if k.startswith("frenet.") and not v.ok]
        if dec.frenet is None:
            cause = next(
                (r for r in dec.reasons if r.startswith(("frenet_", "reference_path", "points_"))), ""
            )
            cause = cause or "frenet_unavailable"
        elif failed:
            cause = failed[0]
        else:
            cause = "emergency_latched" if "emergency_latched" in dec.reasons else "other"
        w = self.world
        assert w is not None
        ed = self.expert.plan(w)
        expert_stops = ed.action in ("stop", "brake", "hold") or not ed.safe
        return {"t": round(float(w.t), 2), "cause": cause, "expert_action": ed.action,
                "expert_stops": bool(expert_stops), "ego_speed": round(float(w.ego.v), 2)}  # fmt: skip


def _make_planner(
    kind: str, config: str | None, engine: str | None, backend: str | None, cfg: dict[str, Any]
) -> Any:
    if kind in ("frenet", "stack"):
        return RecordingPlanner(kind, config, engine, backend, cfg)
    from vla_edge.sim.planners import make_planner

    return make_planner(kind, cfg, config, engine, backend)[0]


# ----------------------------------------------------------------------------- workers
_W: dict[str, Any] = {}


def _init_worker(
    kind: str, config: str | None, engine: str | None, backend: str | None, seconds: float
) -> None:
    from vla_edge.calibration import Calibration
    from vla_edge.config import load_config
    from vla_edge.sim.harness import FrameBuilder

    cfg = load_config("sim")
    calib = Calibration.from_config(load_config("calibration"))
    hc = cfg["harness"]
    planner = _make_planner(kind, config, engine, backend, cfg)
    _W.update(
        cfg=cfg,
        calib=calib,
        seconds=seconds,
        planner=planner,
        builder=FrameBuilder(
            cfg, calib, bool(hc["render_lidar"]), bool(getattr(planner, "needs_camera", False))
        ),
    )


def expert_check(spec: ScenarioSpec, cfg: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The privileged expert's rollout: progress and the generator check (unavoidable entries)."""
    from vla_edge.sim.expert import Expert
    from vla_edge.sim.rollout import expert_policy

    world = make_scenario(spec, cfg, seconds)
    log = run_closed_loop(world, expert_policy(Expert(cfg)), seconds, cfg)
    ent = agent_entries(log, cfg)
    return {
        "progress": float(log.ego_s[-1] - log.ego_s[0]),
        "collisions": len(log.collisions),
        "unavoidable_entries": [e for e in ent if e["unavoidable"]],
    }


def _run_one(spec: ScenarioSpec) -> dict[str, Any]:
    from vla_edge.sim import harness

    cfg, seconds = _W["cfg"], _W["seconds"]
    t0 = time.perf_counter()
    exp = expert_check(spec, cfg, seconds)
    harness._EXPERT_PROGRESS[(spec, round(seconds, 3))] = exp["progress"]
    keep: dict[str, Any] = {}
    planner = _W["planner"]
    score = harness.run_scenario(planner, spec, cfg, _W["calib"], seconds, _W["builder"], keep)
    world, log = keep["world"], keep["log"]
    contacts = classify_contacts(world, log, cfg)
    for c in contacts:
        if c["fault"] == "at_fault":
            title = f"{spec.name} t={c['t']:.1f}s {c['cls']} at {c['speed']:.1f} m/s"
            c["bev_png"] = base64.b64encode(bev_png(world, log, c["step"], title)).decode()
    row = asdict(score)
    row["min_ttc"] = None if not np.isfinite(score.min_ttc) else score.min_ttc
    row.update(
        contacts=contacts,
        at_fault=sum(c["fault"] == "at_fault" for c in contacts),
        estops=list(getattr(planner, "estops", [])),
        choices=dict(getattr(planner, "choices", {})),  # arbiter choices, this scenario
        frames=len(log.frames),
        generator_unavoidable=exp["unavoidable_entries"],
        expert_collisions=exp["collisions"],
        wall_s=round(time.perf_counter() - t0, 2),
    )
    return row


def run_safety_suite(
    planner: str,
    n: int,
    seed: int,
    *,
    difficulty: float | str = "mixed",
    seconds: float | None = None,
    workers: int = 1,
    families: list[str] | None = None,
    config: str | None = None,
    engine: str | None = None,
    backend: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the suite; returns the JSON-ready result (aggregate, by family, contacts, stops)."""
    from vla_edge.config import load_config

    cfg = load_config("sim")
    fams = list(families or SUITE_FAMILIES)
    specs = suite(n, seed, fams, difficulty, cfg)
    secs = float(cfg["suite"]["seconds"] if seconds is None else seconds)
    if secs <= 0 or workers < 1:
        raise SimError(f"seconds must be > 0 and workers >= 1, got {secs}, {workers}")
    t0 = time.perf_counter()
    init = (planner, config, engine, backend, secs)
    if workers == 1:
        _init_worker(*init)
        it = map(_run_one, specs)
        rows = _collect(it, len(specs), progress)
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_init_worker, initargs=init) as pool:
            rows = _collect(pool.imap(_run_one, specs), len(specs), progress)
    return summarize(rows, planner, seed, difficulty, secs, time.perf_counter() - t0)


def _collect(it: Any, n: int, progress: bool) -> list[dict[str, Any]]:
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=n, desc="safety suite", unit="scenario")
    return list(it)


def summarize(
    rows: list[dict[str, Any]], planner: str, seed: int, difficulty: Any, seconds: float, wall: float
) -> dict[str, Any]:
    """Aggregate the per-scenario rows."""
    frames = sum(r["frames"] for r in rows)
    estops = [e | {"scenario": r["name"]} for r in rows for e in r["estops"]]
    by_cause = Counter(e["cause"] for e in estops)
    false_cause = Counter(e["cause"] for e in estops if not e["expert_stops"])
    contacts = [c | {"scenario": r["name"], "family": r["family"], "seed": r["seed"],
                     "difficulty": r["difficulty"]} for r in rows for c in r["contacts"]]  # fmt: skip
    fams: dict[str, list[float]] = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r["score"])
    agg = {k: float(np.mean([r[k] for r in rows])) for k in ("score", "nc", "dac", "ep", "ttc", "comfort")}
    agg.update(
        scenarios=len(rows),
        at_fault_contacts=sum(c["fault"] == "at_fault" for c in contacts),
        at_fault_scenarios=sum(1 for r in rows if r["at_fault"]),
        contacts_by_fault=dict(Counter(c["fault"] for c in contacts)),
        estop_frames=len(estops),
        frames=frames,
        estop_fraction=len(estops) / max(frames, 1),
        false_estop_frames=sum(false_cause.values()),
        offroad_scenarios=sum(1 for r in rows if r["dac"] < 1.0),
        generator_unavoidable_scenarios=sum(1 for r in rows if r["generator_unavoidable"]),
        expert_collision_scenarios=sum(1 for r in rows if r["expert_collisions"]),
    )
    return {
        "planner": planner,
        "seed": seed,
        "difficulty": difficulty,
        "seconds": seconds,
        "wall_s": round(wall, 1),
        "aggregate": agg,
        "by_family": {k: float(np.mean(v)) for k, v in sorted(fams.items())},
        "choices": dict(sum((Counter(r.get("choices", {})) for r in rows), Counter()).most_common()),
        "estop_causes": dict(by_cause.most_common()),
        "false_estop_causes": dict(false_cause.most_common()),
        "at_fault": [c for c in contacts if c["fault"] == "at_fault"],
        "not_at_fault": [c for c in contacts if c["fault"] != "at_fault"],
        "scenarios": [{k: v for k, v in r.items() if k != "contacts"} for r in rows],
    }


def table(res: dict[str, Any]) -> str:
    """Plain-text summary of a suite result."""
    a = res["aggregate"]
    lines = [
        f"safety suite: planner {res['planner']}, {a['scenarios']} scenarios, seed {res['seed']}, "
        f"difficulty {res['difficulty']}, {res['seconds']:.0f} s each ({res['wall_s']:.0f} s wall)",
        f"score {a['score']:.3f}  NC {a['nc']:.3f}  DAC {a['dac']:.3f}  EP {a['ep']:.3f}  "
        f"TTC {a['ttc']:.3f}  C {a['comfort']:.3f}",
        f"at-fault contacts {a['at_fault_contacts']} (in {a['at_fault_scenarios']} scenarios); "
        f"contacts by class {a['contacts_by_fault']}",
        f"emergency-stop frames {a['estop_frames']} / {a['frames']} ({100 * a['estop_fraction']:.2f} %), "
        f"false (expert not stopping) {a['false_estop_frames']}",
        f"off-road scenarios {a['offroad_scenarios']}; generator unavoidable scenes "
        f"{a['generator_unavoidable_scenarios']}; expert collisions {a['expert_collision_scenarios']}",
        "by family: " + ", ".join(f"{k} {v:.3f}" for k, v in res["by_family"].items()),
        "arbiter choices: " + (", ".join(f"{k} {v}" for k, v in res.get("choices", {}).items()) or "none"),
        "e-stop causes: "
        + (", ".join(f"{k} {v}" for k, v in list(res["estop_causes"].items())[:6]) or "none"),
        "false e-stop causes: "
        + (", ".join(f"{k} {v}" for k, v in list(res["false_estop_causes"].items())[:6]) or "none"),
    ]
    for c in res["at_fault"]:
        lines.append(
            f"  AT FAULT {c['scenario']} (family {c['family']}, seed {c['seed']}, "
            f"difficulty {c['difficulty']}) t={c['t']:.1f}s {c['cls']} at {c['speed']:.1f} m/s"
        )
    return "\n".join(lines)


def write_report(res: dict[str, Any], json_path: Path | None, html_path: Path | None) -> None:
    """Write the JSON (plots stripped) and the HTML report (plots embedded)."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        slim = json.loads(json.dumps(res))
        for c in slim["at_fault"]:
            c.pop("bev_png", None)
            if html_path is not None:
                c["bev_plot"] = f"{html_path.name}#{c['scenario']}_{c['id']}"
        json_path.write_text(json.dumps(slim, indent=1))
    if html_path is not None:
        import html

        html_path.parent.mkdir(parents=True, exist_ok=True)
        rows = "".join(
            f"<tr><td>{html.escape(s['name'])}</td><td>{s['family']}</td><td>{s['difficulty']:.2f}</td>"
            f"<td>{s['score']:.3f}</td><td>{s['at_fault']}</td><td>{len(s['estops'])}</td></tr>"
            for s in res["scenarios"]
        )
        figs = "".join(
            f"<div id='{c['scenario']}_{c['id']}'><h3>{html.escape(c['scenario'])}: {c['cls']} at "
            f"{c['speed']:.1f} m/s, t={c['t']:.1f} s (seed {c['seed']}, difficulty {c['difficulty']})</h3>"
            f"<img src='data:image/png;base64,{c.get('bev_png', '')}'/></div>"
            for c in res["at_fault"]
        )
        body = (
            f"<html><head><meta charset='utf-8'><title>vla_edge safety suite</title></head><body>"
            f"<h1>Safety suite ({res['planner']})</h1><pre>{html.escape(table(res))}</pre>"
            f"<h2>At-fault contacts</h2>{figs or '<p>none</p>'}"
            f"<h2>Scenarios</h2><table border=1><tr><th>scenario</th><th>family</th><th>difficulty</th>"
            f"<th>score</th><th>at-fault</th><th>e-stop frames</th></tr>{rows}</table></body></html>"
        )
        html_path.write_text(body)
