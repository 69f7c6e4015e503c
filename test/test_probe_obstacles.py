"""scripts/probe_obstacles.py: the swept-body check and the probe run on the shipped engine."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("probe_obstacles", REPO / "scripts" / "probe_obstacles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def world_with_tug(probe):
    from vla_edge.config import load_config
    from vla_edge.sim.counterfactual import parked_box, with_boxes

    base = probe.cruising_world(load_config("sim"), 9200, 8.0)[0]
    box = parked_box(base, "tug", 10.0)
    return with_boxes(base, box), box.corners()


def test_swept_body_check(probe, world_with_tug) -> None:
    w, box = world_with_tug
    t = 0.5 * np.arange(1, 9)
    straight = np.stack([6.5 * t, 0 * t, 0 * t], 1)
    assert probe.plan_hits(w, straight, 0.5, box), "6.5 m/s straight on meets a tug 10 m ahead"
    standing = np.zeros((8, 3))
    assert not probe.plan_hits(w, standing, 0.5, box)
    short = np.stack([np.minimum(6.5 * t, 3.0), 0 * t, 0 * t], 1)  # stops 3 m on: front bumper short of it
    assert not probe.plan_hits(w, short, 0.5, box)
    aside = straight + np.array([0.0, 4.0, 0.0])  # the same plan one lane to the left
    assert not probe.plan_hits(w, aside, 0.5, box)


def test_probe_runs_and_the_expert_never_hits(probe, tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    assert probe.main(["--distances", "10", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == 3 and [r["object"] for r in res["rows"]] == ["crew", "baggage_cart", "tug"]
    assert res["expert_hits"] == 0
    assert all(r["points"] > 20 for r in res["rows"]), "the LiDAR sees each box"


def test_speedup_probe_runs_and_the_expert_speeds_up(tmp_path: Path) -> None:
    """scripts/probe_speedup.py: steady below cruise on an open road, the expert's plan speeds up."""
    import subprocess
    import sys

    out = tmp_path / "speed.json"
    script = REPO / "scripts" / "probe_speedup.py"
    cmd = [sys.executable, str(script), "--speeds", "3,6.5", "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    res = json.loads(out.read_text())
    slow, cruise = res["rows"]
    assert abs(slow["ego_v"] - 3.0) < 0.3, "the capped expert held v0 before the probe frame"
    assert slow["expert_speeds_up"] and not cruise["expert_speeds_up"], "it speeds up only below cruise"
    assert res["n"] == 2 and all(isinstance(r["student_speeds_up"], bool) for r in res["rows"])


def test_real_scan_probe_on_the_committed_hesai_scan(tmp_path: Path) -> None:
    """scripts/probe_real_scans.py on the committed enclosure scan: the student runs on the real
    cloud, and whatever it plans, the arbiter never drives it into the walls."""
    import os
    import subprocess
    import sys

    out = tmp_path / "real.json"
    env = {**os.environ, "VLA_EDGE_SHARED_DATA": str(REPO / "test" / "data")}
    cmd = [sys.executable, str(REPO / "scripts" / "probe_real_scans.py"), "--speeds", "3", "--json", str(out)]
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True, timeout=300)
    rows = json.loads(out.read_text())
    assert [r["scan"] for r in rows] == ["hesai_qt64_1673401196087570870.pcd"]
    (r,) = rows
    assert r["preset"] == "nebula_hesai_qt64" and np.isfinite(r["best_m"]) and r["max_m"] >= r["best_m"]
    # walls 2-7 m around the sensor: no plan that drives on may pass, the stop is the answer
    assert r["choice"] == "emergency_stop"
    if r["best_m"] > 7.0:
        assert "collision" in r["student_failed"]
