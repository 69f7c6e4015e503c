"""Replay metrics, gate and report on synthetic inputs (pure numpy, no bags, no DDS)."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from vla_edge.replay import ReplayError
from vla_edge.replay.gate import compare, format_table, load_metrics
from vla_edge.replay.lockstep import Tracks, load_replay_config, parse_remaps
from vla_edge.replay.metrics import (
    MetricSettings,
    ObjectTracks,
    comfort_violations,
    compute_metrics,
    displacement_errors,
    future_in_ego,
    latency_summary,
    plan_contacts,
)
from vla_edge.replay.report import write_compare_report, write_report
from vla_edge.types import Trajectory

V = 5.0  # m/s of the synthetic straight drive


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_replay_config()


@pytest.fixture(scope="module")
def settings(cfg: dict) -> MetricSettings:
    return MetricSettings.from_config(cfg)


def straight_odom(yaw: float = 0.3, seconds: float = 10.0) -> np.ndarray:
    """Odometry at 20 Hz of a straight drive at V along heading ``yaw`` from (10, -4)."""
    t = np.arange(0.0, seconds + 1e-9, 0.05)
    return np.column_stack(
        [100.0 + t, 10.0 + V * t * np.cos(yaw), -4.0 + V * t * np.sin(yaw), np.full_like(t, yaw)]
    )


def straight_plan(stamp: float, dt: float = 0.5, n: int = 8, v: float = V, y: float = 0.0) -> Trajectory:
    t = dt * np.arange(1, n + 1)
    return Trajectory(np.column_stack([v * t, np.full(n, y), np.zeros(n)]), dt, stamp)


def test_future_is_expressed_in_the_ego_frame() -> None:
    odom = straight_odom(yaw=1.1)
    xy, valid = future_in_ego(odom, 102.0, np.array([0.5, 1.0, 20.0]))
    assert np.allclose(xy[:2], [[2.5, 0.0], [5.0, 0.0]], atol=1e-9)
    assert valid.tolist() == [True, True, False]
    assert future_in_ego(odom, 50.0, np.array([0.5])) is None  # before the log


def test_ade_fde_zero_for_the_logged_motion_and_exact_for_an_offset(settings: MetricSettings) -> None:
    odom = straight_odom()
    ade, fde = displacement_errors(straight_plan(101.0), odom, 101.0, settings)
    assert ade == pytest.approx(0.0, abs=1e-9) and fde == pytest.approx(0.0, abs=1e-9)
    ade, fde = displacement_errors(straight_plan(101.0, y=1.5), odom, 101.0, settings)
    assert ade == pytest.approx(1.5) and fde == pytest.approx(1.5)
    # plan too fast by 1 m/s: error grows linearly with time, ADE = mean of t, FDE = horizon
    ade, fde = displacement_errors(straight_plan(101.0, v=V + 1.0), odom, 101.0, settings)
    assert ade == pytest.approx(np.mean(0.5 * np.arange(1, 9))) and fde == pytest.approx(4.0)


def test_short_future_gives_ade_without_fde_and_too_short_none(settings: MetricSettings) -> None:
    odom = straight_odom(seconds=10.0)
    ade, fde = displacement_errors(straight_plan(108.0, y=1.0), odom, 108.0, settings)  # 2 s logged
    assert ade == pytest.approx(1.0) and fde is None
    assert displacement_errors(straight_plan(109.6), odom, 109.6, settings) is None  # < min_future


def test_comfort_flags_each_limit(settings: MetricSettings) -> None:
    assert not any(comfort_violations(straight_plan(0.0, dt=0.1, n=40), settings).values())
    t = 0.1 * np.arange(1, 41)
    hard_brake = Trajectory(np.column_stack([8.0 * t - 4.0 * t**2, 0 * t, 0 * t]), 0.1, 0.0)  # a = -8 m/s^2
    assert comfort_violations(hard_brake, settings)["min_lon_accel"]
    yaw = 1.5 * t  # 1.5 rad/s at 5 m/s: yaw rate and lateral acceleration above NAVSIM
    xy = np.cumsum(np.column_stack([V * 0.1 * np.cos(yaw), V * 0.1 * np.sin(yaw)]), axis=0)
    turn = Trajectory(np.column_stack([xy, yaw]), 0.1, 0.0)
    v = comfort_violations(turn, settings)
    assert v["yaw_rate"] and v["lat_accel"]


def box_track(x: float, y: float, t0: float = 100.0, t1: float = 110.0, vx: float = 0.0) -> list:
    out = []
    for t in np.arange(t0, t1 + 1e-9, 0.1):
        out.append((float(t), ["cart/1"], ["cart"], np.array([[x + vx * (t - t0), y, 0.0, 2.0, 1.5]])))
    return out


def test_plan_collides_with_a_box_on_its_path_not_beside_it(settings: MetricSettings) -> None:
    plan = straight_plan(101.0, dt=0.1, n=40)
    hit = plan_contacts(plan, (0.0, 0.0, 0.0), 101.0, ObjectTracks(box_track(10.0, 0.0)), settings)
    assert hit["collision"] and hit["object"] == "cart/1"
    # the footprint's front circle reaches the box a bit before the rear axle gets to x=9-radius
    assert 1.2 < hit["t_collision"] < 1.9 and hit["ttc"] <= hit["t_collision"]
    miss = plan_contacts(plan, (0.0, 0.0, 0.0), 101.0, ObjectTracks(box_track(10.0, 4.0)), settings)
    assert not miss["collision"] and miss["ttc"] is None
    grazing = plan_contacts(plan, (0.0, 0.0, 0.0), 101.0, ObjectTracks(box_track(10.0, 2.0)), settings)
    assert not grazing["collision"] and grazing["ttc"] is not None  # inside the TTC buffer only


def test_moving_object_is_checked_at_the_same_future_time(settings: MetricSettings) -> None:
    plan = straight_plan(101.0, dt=0.1, n=40)
    # the box is 10 m ahead now but drives away faster than the ego: no contact
    away = plan_contacts(
        plan, (0.0, 0.0, 0.0), 101.0, ObjectTracks(box_track(10.0, 0.0, vx=8.0, t0=101.0)), settings
    )
    assert not away["collision"]


def test_stopped_ego_is_not_at_fault(settings: MetricSettings) -> None:
    stop = Trajectory(np.zeros((40, 3)), 0.1, 101.0)
    res = plan_contacts(stop, (0.0, 0.0, 0.0), 101.0, ObjectTracks(box_track(1.0, 0.0)), settings)
    assert not res["collision"]


def test_latency_summary_counts_missing_and_late() -> None:
    s = latency_summary([50.0, 80.0, 150.0, None], 100.0)
    assert s["deadline_misses"] == 2 and s["frames_without_plan"] == 1 and s["sweeps"] == 4
    assert s["p50_ms"] == pytest.approx(80.0)


def records_for(odom: np.ndarray, student_y: float, choice: str = "student") -> list[dict]:
    recs = []
    for stamp in np.arange(100.5, 104.0, 0.1):
        plan = straight_plan(float(stamp), y=student_y)
        final = straight_plan(float(stamp), dt=0.1, n=50)
        recs.append(
            {
                "run": "r",
                "stamp": round(float(stamp), 6),
                "choice": choice,
                "reasons": [] if choice == "student" else ["student_jerk"],
                "student": {"dt": 0.5, "poses": plan.poses.tolist()},
                "frenet": None,
                "final": {"dt": 0.1, "poses": final.poses.tolist()},
            }
        )
    return recs


def make_metrics(settings: MetricSettings, student_y: float, choice: str = "student") -> dict:
    odom = straight_odom()
    tracks = {"r": Tracks(odom=odom, objects=box_track(40.0, 30.0))}
    runs = [{"run": "r", "sweeps": 35, "frames": 35, "skipped": 0}]
    return compute_metrics(records_for(odom, student_y, choice), tracks, settings, mode="lockstep", runs=runs)


def test_compute_metrics_aggregates(settings: MetricSettings) -> None:
    m = make_metrics(settings, 0.5)
    assert m["decisions"]["counts"] == {"student": 35} and m["decisions"]["fallback_rate"] == 0.0
    assert m["open_loop"]["student"]["ade_m"]["mean"] == pytest.approx(0.5)
    assert m["open_loop"]["final"]["ade_m"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert m["ground_truth"]["available"] and m["ground_truth"]["collisions"] == 0
    json.dumps(m)  # JSON-safe


def test_gate_passes_on_same_and_fires_on_worse(cfg: dict, settings: MetricSettings) -> None:
    a = make_metrics(settings, 0.5)
    same = compare(a, make_metrics(settings, 0.5), cfg["gate"])
    assert same.passed, format_table(same)
    worse = compare(a, make_metrics(settings, 2.0), cfg["gate"])
    assert [r.metric for r in worse.regressions] == ["student ADE", "student FDE"]
    assert "GATE: FAIL" in format_table(worse)
    fallback = compare(a, make_metrics(settings, 0.5, choice="frenet"), cfg["gate"])
    assert "fallback rate" in [r.metric for r in fallback.regressions]
    # within the relative threshold and the noise floor: no regression
    assert compare(a, make_metrics(settings, 0.52), cfg["gate"]).passed


def test_gate_counts_new_collisions(cfg: dict, settings: MetricSettings) -> None:
    a = make_metrics(settings, 0.5)
    b = json.loads(json.dumps(a))
    b["ground_truth"]["collisions"] = 1
    assert [r.metric for r in compare(a, b, cfg["gate"]).regressions] == ["GT collisions"]


def test_gate_refuses_different_bags(cfg: dict, settings: MetricSettings) -> None:
    a = make_metrics(settings, 0.5)
    b = json.loads(json.dumps(a))
    b["bags"][0]["sweeps"] = 99
    with pytest.raises(ReplayError, match="different bags"):
        compare(a, b, cfg["gate"])


def test_load_metrics_errors(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="not found"):
        load_metrics(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ReplayError, match="not valid JSON"):
        load_metrics(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "x"}')
    with pytest.raises(ReplayError, match="not a replay metrics"):
        load_metrics(tmp_path / "other.json")


def test_parse_remaps() -> None:
    assert parse_remaps(["/a:=/b"], {"/c": "/d"}) == {"/c": "/d", "/a": "/b"}
    for bad in ("/a=/b", "a:=/b", "/a:="):
        with pytest.raises(ReplayError, match="FROM:=TO"):
            parse_remaps([bad])


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.imgs: list[str] = []
        self.tables = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag in ("link", "script"):
            self.external.append(tag)
        elif tag == "table":
            self.tables += 1
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack[-3:]}"
        self.stack.pop()


def parse_html(path: Path) -> _Html:
    """Parse, check balanced tags, no external resources, every image an embedded PNG."""
    p = _Html()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    assert not p.stack and not p.external
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return p


def test_report_and_compare_report_are_self_contained(
    tmp_path: Path, cfg: dict, settings: MetricSettings
) -> None:
    m = make_metrics(settings, 0.5)
    odom = straight_odom()
    recs = records_for(odom, 0.5)
    snaps = [{**recs[3], "points": [[5.0, 1.0], [6.0, -2.0]], "clusters": [[8.0, 0.0, 1.0]]}]
    tracks = {"r": Tracks(odom=odom, objects=box_track(12.0, 3.0))}
    html_path = write_report(tmp_path, m, recs, snaps, tracks, settings, cfg["report"])
    p = parse_html(html_path)
    assert len(p.imgs) == 3 and p.tables >= 5  # bev + timeline + ade
    assert {f.name for f in tmp_path.glob("*.png")} == {"bev_00.png", "timeline.png", "ade.png"}
    cmp = compare(m, make_metrics(settings, 2.0), cfg["gate"])
    p2 = parse_html(write_compare_report(tmp_path, cmp, ("shipped", "worse"), 60))
    assert len(p2.imgs) == 1 and "REGRESSED" in (tmp_path / "compare.html").read_text()


@pytest.mark.parametrize("argv", [["replay", "--help"], ["replay", "compare", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from vla_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--mode" in out and "replay compare A B" in out and "--gate" in out
