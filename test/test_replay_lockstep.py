"""Lockstep replay on real simulator bags: determinism, report, sqlite3 + remap, the gate.

Bags are short (4 s of simulation, 40 LiDAR sweeps) to keep the module well under a minute
on two shared cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_replay_metrics import parse_html

from vla_edge.cli import main
from vla_edge.errors import VlaEdgeError
from vla_edge.replay.gate import load_metrics

REPO = Path(__file__).resolve().parents[1]
SECONDS = 4.0


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla_edge.sim.bag import write_scenario_bag

    path = tmp_path_factory.mktemp("replay_bags") / "sim"
    write_scenario_bag(path, seed=1, seconds=SECONDS, camera_mode="none")
    return path


@pytest.fixture(scope="module")
def lockstep_runs(sim_bag: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same bag replayed twice with the shipped engine."""
    base = tmp_path_factory.mktemp("lockstep")
    outs = []
    for name in ("run1", "run2"):
        out = base / name
        args = ["replay", str(sim_bag), "--mode", "lockstep", "--out", str(out), "--no-progress"]
        if name == "run2":
            args.append("--no-report")
        assert main(args) == 0
        outs.append(out)
    return outs[0], outs[1]


def test_lockstep_is_deterministic(lockstep_runs: tuple[Path, Path]) -> None:
    a, b = lockstep_runs
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert (a / "records.jsonl").read_bytes() == (b / "records.jsonl").read_bytes()
    m = load_metrics(a)
    assert m["mode"] == "lockstep" and m["frames"] == int(SECONDS * 10)
    assert m["bags"][0]["sweeps"] == m["frames"] and m["bags"][0]["skipped"] == 0
    assert m["decisions"]["total"] == m["frames"]  # no drops: one decision per sweep
    assert m["open_loop"]["student"]["ade_m"]["count"] > 0
    assert m["open_loop"]["final"]["ade_m"]["mean"] is not None
    assert m["ground_truth"]["available"]  # simulator bag: /sim/objects
    assert m["meta"]["weights"] == json.loads((REPO / "engines/student.json").read_text())["weights"]
    assert "timing" not in m and (a / "timing.json").is_file()  # wall times stay out of metrics


def test_report_is_valid_self_contained_html(lockstep_runs: tuple[Path, Path]) -> None:
    out = lockstep_runs[0]
    p = parse_html(out / "report.html")
    bevs = sorted(out.glob("bev_*.png"))
    assert len(bevs) == 6 and len(p.imgs) == len(bevs) + 2  # + timeline + ADE
    assert (out / "timeline.png").stat().st_size > 1000
    assert not (lockstep_runs[1] / "report.html").exists()  # --no-report


def write_sqlite_copy(src: Path, dst: Path, rename: dict[str, str], stop_s: float) -> None:
    """Copy the first ``stop_s`` seconds of ``src`` into a sqlite3 rosbag2, renaming topics."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from vla_edge.bagio import default_typestore, open_bag

    ts = default_typestore()
    with open_bag(src) as bag, Writer(dst, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        conns = {}
        for m in bag.messages(raw=True, stop=bag.start + stop_s):
            topic = rename.get(m.topic, m.topic)
            if topic not in conns:
                conns[topic] = w.add_connection(topic, m.msgtype, typestore=ts)
            w.write(conns[topic], m.log_time_ns, m.msg)


def test_sqlite3_bag_with_remapped_topics(
    sim_bag: Path, lockstep_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rename = {"/sensing/lidar/points": "/points_raw", "/localization/odometry": "/odom"}
    db = tmp_path / "sqlite_bag"
    write_sqlite_copy(sim_bag, db, rename, stop_s=2.0)
    assert list(db.glob("*.db3")) and not list(db.glob("*.mcap"))
    # without the remap the bag has no LiDAR topic: a typed error that says how to fix it
    with pytest.raises(VlaEdgeError, match="remap"):
        from vla_edge.replay.lockstep import drive_values, load_replay_config, run_lockstep

        run_lockstep([db], drive_values(None, None, None), load_replay_config(), {})
    out = tmp_path / "out"
    args = ["replay", str(db), "--out", str(out), "--no-progress", "--no-report"]
    args += ["--remap", "/points_raw:=/sensing/lidar/points", "--remap", "/odom:=/localization/odometry"]
    assert main(args) == 0
    capsys.readouterr()
    sq = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    full = {
        r["stamp"]: r for r in map(json.loads, (lockstep_runs[0] / "records.jsonl").read_text().splitlines())
    }
    assert len(sq) == 20
    # a causal pipeline: the first 2 s give exactly the records of the full MCAP replay
    for r in sq:
        ref = full[r["stamp"]]
        assert (r["choice"], r["student"], r["final"]) == (ref["choice"], ref["student"], ref["final"])
    assert load_metrics(out)["meta"]["remap"]["/points_raw"] == "/sensing/lidar/points"


@pytest.mark.slow
def test_gate_fires_on_a_worse_engine_and_passes_on_the_same(
    lockstep_runs: tuple[Path, Path], sim_bag: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    shipped = json.loads((REPO / "engines/student.json").read_text())
    assert shipped["weights"] == "trained", "the shipped student must be the trained one (issue 8)"
    # Same tiny architecture with seeded random weights: the deliberately worse engine.
    eng = tmp_path / "worse"
    cmd = [sys.executable, "-m", "training.export", "--random-seed", "0", "--preset", "tiny"]
    cmd += ["--out-dir", str(eng), "--no-torchscript"]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=120)
    worse = tmp_path / "b"
    args = ["replay", str(sim_bag), "--out", str(worse), "--engine", str(eng / "student.onnx")]
    assert main([*args, "--no-progress", "--no-report"]) == 0
    base, same = lockstep_runs
    assert main(["replay", "compare", str(base), str(same), "--out", str(tmp_path / "c_same")]) == 0
    assert "GATE: PASS" in capsys.readouterr().out
    rc = main(
        ["replay", "compare", str(base), str(worse / "metrics.json"), "--out", str(tmp_path / "c_worse")]
    )
    text = capsys.readouterr().out
    assert rc == 1 and "GATE: FAIL" in text and "student ADE" in text
    res = json.loads((tmp_path / "c_worse" / "compare.json").read_text())
    assert not res["passed"] and "student ADE" in res["regressions"]
    parse_html(tmp_path / "c_worse" / "compare.html")


def test_compare_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "compare", str(tmp_path / "x"), "--out", str(tmp_path / "o")]) == 1
    assert main(["replay", "compare", str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["replay", str(tmp_path), "--out", str(tmp_path / "o"), "--gate", "x.yaml"]) == 2


def test_replay_errors_on_missing_bag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    assert "neither a rosbag2" in capsys.readouterr().err


def test_vehicle_recorder_splits_replay_like_the_original(
    sim_bag: Path, lockstep_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Inputs logged by the recorder (receive-time log stamps, 1 s splits) replay identically."""
    import copy
    import time

    from vla_edge.bagio import open_bag
    from vla_edge.config import load_config
    from vla_edge.recording.recorder import Recorder

    cfg = copy.deepcopy(load_config("recorder"))
    cfg["split"]["max_duration_s"] = 1.0
    cfg["split"]["fsync"] = False
    rec = Recorder.from_config(cfg, "topics", out_dir=tmp_path / "vehicle_log")
    assert rec.start()
    delay_ns = {"/sensing/lidar/points": 40_000_000, "/localization/odometry": 3_000_000}  # receive delays
    with open_bag(sim_bag) as bag:
        for m in bag.messages(
            ["/sensing/lidar/points", "/localization/odometry", "/planning/reference_path"], raw=True
        ):
            while not rec.record(m.topic, m.msgtype, m.msg, m.log_time_ns + delay_ns.get(m.topic, 0)):
                time.sleep(0.01)  # queue full: the recorder dropped it (counted); offer it again
    rec.close()
    splits = sorted(p for p in (tmp_path / "vehicle_log" / "splits").iterdir() if p.name != "_open")
    assert len(splits) >= 3
    out = tmp_path / "out"
    assert (
        main(["replay", str(tmp_path / "vehicle_log"), "--out", str(out), "--no-progress", "--no-report"])
        == 0
    )
    got = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (lockstep_runs[0] / "records.jsonl").read_text().splitlines()]
    assert len(got) == len(ref) and len({r["run"] for r in got}) == 1  # splits of one session = one run
    for g, r in zip(got, ref, strict=True):
        assert (g["stamp"], g["choice"], g["student"], g["final"]) == (
            r["stamp"],
            r["choice"],
            r["student"],
            r["final"],
        )
    m = load_metrics(out)
    assert not m["ground_truth"]["available"]  # the vehicle log has no /sim/objects
