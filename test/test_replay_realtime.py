"""Realtime replay over DDS (loopback, own domain id) against lockstep on the same bag.

What may legitimately differ between the two (docs/replay.md, "lockstep vs realtime"):
sweeps dropped or planned by the watchdog without their candidate when the machine is
slower than the sweep rate, odometry arriving after its sweep (ego extrapolated), extra
``cycle`` decisions on the latest frame, and wall-clock latency. On this 2-core shared
machine the bag is played at ``RATE`` and the inference deadline is relaxed (it is wall
time, unlike the arbiter's, which follows /clock) so the comparison measures the decision
logic and transport, not the CI machine's load. Tolerances below are what may differ then.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import requires_rclpy
from test_replay_metrics import parse_html

from vla_edge.cli import main
from vla_edge.replay.gate import load_metrics

# Wall-clock DDS timing on a shared 2-core runner (pytest -n 2): a row is retried up to twice;
# a real regression fails every attempt. Behaviour, not speed, is asserted (figures in bench/).
pytestmark = [pytest.mark.ros, requires_rclpy, pytest.mark.flaky(reruns=2, reruns_delay=2)]

SECONDS = 4.0
RATE = 0.3
MIN_DECIDED = 0.9  # share of sweeps that must get a plan in realtime
MIN_CHOICE_AGREEMENT = 0.85  # share of frames with the same choice as lockstep
ADE_TOL_M = 0.10  # |student / final ADE realtime - lockstep| (odometry ordering moves the ego a little)


@pytest.fixture(scope="module")
def bag_and_config(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from vla_edge.sim.bag import write_scenario_bag

    base = tmp_path_factory.mktemp("replay_rt")
    bag = base / "sim"
    write_scenario_bag(bag, seed=1, seconds=SECONDS, camera_mode="none")
    cfg = base / "drive_slow_machine.yaml"
    # Deadlines relaxed on both sides (the arbiter's follows /clock): on a loaded CI machine a
    # late candidate would otherwise reset the student hysteresis and the choices diverge.
    cfg.write_text(
        "/**:\n  ros__parameters:\n    inference:\n      deadline_ms: 5000.0\n"
        "    arbiter:\n      deadline_ms: 1000.0\n      cycle_period_ms: 1000.0\n"
    )
    return bag, cfg


def records(out: Path) -> dict[float, dict]:
    return {r["stamp"]: r for r in map(json.loads, (out / "records.jsonl").read_text().splitlines())}


def test_realtime_inprocess_agrees_with_lockstep(bag_and_config: tuple[Path, Path], tmp_path: Path) -> None:
    bag, cfg = bag_and_config
    ls, rt = tmp_path / "lockstep", tmp_path / "realtime"
    common = [str(bag), "--config", str(cfg), "--no-progress"]
    assert main(["replay", *common, "--mode", "lockstep", "--out", str(ls), "--no-report"]) == 0
    args = [
        "replay",
        *common,
        "--mode",
        "realtime",
        "--out",
        str(rt),
        "--rate",
        str(RATE),
        "--graph",
        "inprocess",
    ]
    assert main(args) == 0
    m_ls, m_rt = load_metrics(ls), load_metrics(rt)
    r = m_rt["realtime"]
    assert m_rt["mode"] == "realtime" and r["graph"] == "inprocess"
    assert r["sweeps_published"] == m_ls["frames"] == int(SECONDS * 10)
    assert r["frames_decided"] >= MIN_DECIDED * r["sweeps_published"]
    lat = r["latency"]
    assert lat["p50_ms"] > 0 and lat["p99_ms"] >= lat["p50_ms"] and lat["sweeps"] == r["sweeps_published"]
    rec_ls, rec_rt = records(ls), records(rt)
    common_frames = [s for s, x in rec_rt.items() if x["choice"] is not None]
    same = sum(rec_rt[s]["choice"] == rec_ls[s]["choice"] for s in common_frames)
    assert same >= MIN_CHOICE_AGREEMENT * len(common_frames), (m_ls["decisions"], m_rt["decisions"])
    for kind in ("student", "final"):
        a, b = m_ls["open_loop"][kind]["ade_m"]["mean"], m_rt["open_loop"][kind]["ade_m"]["mean"]
        assert abs(a - b) <= ADE_TOL_M, (kind, a, b)
    parse_html(rt / "report.html")  # realtime report has the latency plot too
    assert (rt / "timeline.png").is_file()


@pytest.mark.slow
def test_realtime_against_a_vla_edge_drive_subprocess(
    bag_and_config: tuple[Path, Path], tmp_path: Path
) -> None:
    bag, cfg = bag_and_config
    out = tmp_path / "sub"
    args = ["replay", str(bag), "--config", str(cfg), "--mode", "realtime", "--graph", "subprocess"]
    assert main([*args, "--rate", "0.5", "--out", str(out), "--no-progress", "--no-report"]) == 0
    m = load_metrics(out)
    assert m["realtime"]["graph"] == "subprocess"
    assert m["realtime"]["frames_decided"] >= 0.5 * m["realtime"]["sweeps_published"]
    assert m["realtime"]["candidates_received"] > 0
    assert (out / "drive_params.yaml").is_file()  # the exact parameters the subprocess got
    assert "inference node ready" in (out / "drive_subprocess.log").read_text()


def test_realtime_refuses_bad_rate_and_graph(bag_and_config: tuple[Path, Path], tmp_path: Path) -> None:
    from vla_edge.nodes.realtime_replay import run_realtime
    from vla_edge.replay import ReplayError
    from vla_edge.replay.lockstep import drive_values, load_replay_config

    bag, _ = bag_and_config
    vals, cfg = drive_values(None, None, None), load_replay_config()
    with pytest.raises(ReplayError, match="rate must be > 0"):
        run_realtime([bag], vals, cfg, {}, tmp_path, rate=0.0)
    with pytest.raises(ReplayError, match="--graph must be one of"):
        run_realtime([bag], vals, cfg, {}, tmp_path, graph="docker")
