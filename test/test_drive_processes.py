"""``vla-edge drive --processes N``: one process per node, as ``ros2 launch`` runs the graph."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from doubles import spin_feeding_odometry

from vla_edge.nodes.params import default_params_file, flatten, load_params_file

REPO = Path(__file__).resolve().parents[1]


def test_params_file_round_trip_keeps_every_value(tmp_path: Path) -> None:
    """What the child processes read back is exactly what the parent resolved."""
    pytest.importorskip("rclpy")
    from vla_edge.nodes.graph import node_commands
    from vla_edge.params import unflatten

    values = load_params_file(default_params_file())
    values["arbiter.deadline_ms"] = 55.5
    values["backend"] = "onnxruntime"
    assert flatten(unflatten(values)) == values
    cmds = node_commands(values, str(tmp_path / "p.yaml"), record=False)
    assert list(cmds) == ["inference_node", "arbiter_node"]
    assert "recorder_node" in node_commands(values, "p.yaml", record=True)
    for name, cmd in cmds.items():
        assert cmd[:2] == [sys.executable, "-m"] and f"__node:={name}" in cmd and "--params-file" in cmd


def test_processes_count_must_match_the_nodes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vla_edge", "drive", "--processes", "5", "--duration", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--processes 5" in proc.stderr


@pytest.mark.ros
@pytest.mark.timeout(180)
def test_one_process_per_node_publishes_student_trajectories(shared_data: Path, tmp_path: Path) -> None:
    """Two processes, DDS only between them: sweeps get student candidates that reach the arbiter
    in the other process, and final trajectories come out."""
    pytest.importorskip("rclpy")
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from vla_edge.config import load_config
    from vla_edge.nodes.feeder import SensorFeeder, load_scan
    from vla_edge.nodes.frames import default_lidar_frame
    from vla_edge.nodes.monitor import GraphMonitor

    # Deadlines far above any model time, so a loaded machine cannot turn the check into a
    # timing test: this is about the layout, bench/bench_e2e.py measures the timing.
    params = tmp_path / "drive.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    backend: onnxruntime\n"
        "    inference:\n      deadline_ms: 2000.0\n    arbiter:\n      deadline_ms: 1500.0\n"
    )
    log = tmp_path / "drive.log"
    cmd = [sys.executable, "-m", "vla_edge", "drive", "--processes", "2", "--config", str(params)]
    cmd += ["--duration", "120"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
    ctx = Context()
    rclpy.init(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    stop = threading.Event()
    spinner: threading.Thread | None = None
    try:
        topics = load_config("topics")
        feeder = SensorFeeder(topics, default_lidar_frame(), context=ctx)
        monitor = GraphMonitor(topics, context=ctx)
        executor.add_node(feeder)
        executor.add_node(monitor)

        spinner = spin_feeding_odometry(executor, feeder, stop)
        end = time.monotonic() + 90.0
        while time.monotonic() < end:
            r = feeder.readers()
            # Two LiDAR readers: the arbiter assembles its own frames in its own process.
            if r["lidar"] >= 2 and r["odometry"] >= 2 and monitor.matched():
                break
            assert proc.poll() is None, f"drive exited early:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        else:
            pytest.fail(f"graph did not match in 90 s: {feeder.readers()}\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
        feeder.set_cloud(load_scan(str(shared_data / "lidar" / "kitti_000008.bin")))
        sent = []
        for _ in range(8):
            stamp = round(feeder.clock_now(), 6)
            feeder.publish_cloud(stamp)
            sent.append(stamp)
            time.sleep(0.6)
        want = set(sent[1:])
        end = time.monotonic() + 20.0
        while time.monotonic() < end:
            with monitor.lock:
                with_student = {
                    round(d["frame_stamp"], 6)
                    for d in monitor.decisions
                    if d.get("candidate_stamp") is not None
                    and round(d["candidate_stamp"], 6) == round(d["frame_stamp"], 6)
                }
            if want <= with_student:
                break
            time.sleep(0.1)
        with monitor.lock:
            finals = {t["stamp"] for t in monitor.trajectories}
            cands = [i for i in monitor.infos if i["name"] == "vla_edge/candidate"]
            for t in monitor.trajectories:
                assert t["frame_id"] == "base_link" and np.all(np.isfinite(t["poses"]))
        assert cands, "no candidate_info from the inference process"
        assert len(want & with_student) >= len(want) - 1, (
            f"student candidates reached the arbiter for {len(want & with_student)}/{len(want)} sweeps\n"
            + log.read_text()[-3000:]
        )
        assert len(want & finals) >= len(want) - 1, f"final trajectories for {len(want & finals)}/{len(want)}"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=40)
        text = log.read_text()
        assert rc == 0, f"vla-edge drive exited {rc}:\n{text[-3000:]}"
        assert "as 2 processes" in text and "drive graph stopped (2 node processes)" in text
    finally:
        stop.set()
        if spinner is not None:
            spinner.join(timeout=5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        executor.shutdown(timeout_sec=2.0)
        if ctx.ok():
            rclpy.shutdown(context=ctx)


def _node_pids(log: Path, timeout: float) -> dict[str, int]:
    """The node pids `vla-edge drive` logs once it has started them."""
    import re

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = dict(re.findall(r"(\w+_node) pid (\d+)", log.read_text()))
        if len(found) >= 2:
            return {n: int(p) for n, p in found.items()}
        time.sleep(0.1)
    pytest.fail(f"no node pids logged in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its new parent to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_link_to_supervisor_names_a_parent_that_is_gone() -> None:
    """Armed in a child whose parent is the named supervisor; False when another pid is named."""
    from vla_edge.nodes.supervisor_link import SUPERVISOR_ENV, link_to_supervisor

    assert link_to_supervisor({}) is None  # ros2 run / ros2 launch: nothing to link
    code = "from vla_edge.nodes.supervisor_link import link_to_supervisor as f; print(f())"
    for named, want in ((os.getpid(), "True"), (os.getpid() + 10**6, "False")):
        env = {**os.environ, SUPERVISOR_ENV: str(named)}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
        assert out.stdout.strip() == want, out.stderr


def _start_drive(tmp_path: Path, args: list[str], preexec_fn: Any = None) -> tuple[subprocess.Popen, Path]:
    """`vla-edge drive --processes ...` with its output in ``tmp_path/drive.log``."""
    log = tmp_path / "drive.log"
    cmd = [sys.executable, "-m", "vla_edge", "drive", *args, "--backend", "onnxruntime", "--duration", "120"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn
        )
    return proc, log


def _wait_ready(log: Path) -> None:
    """Until both nodes say they are up, so a signal lands on running nodes, not on imports."""
    end = time.monotonic() + 60.0
    ready = ("arbiter ready", "inference node ready")
    while time.monotonic() < end and not all(r in log.read_text() for r in ready):
        time.sleep(0.2)


def _kill_all(proc: subprocess.Popen, pids: dict[str, int]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    for p in pids.values():
        if _running(p):
            os.kill(p, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_drive_supervisor_death_ends_every_node(tmp_path: Path, sig: signal.Signals) -> None:
    """A supervisor that is terminated or SIGKILLed leaves no orphan node (each gets a SIGINT)."""
    pytest.importorskip("rclpy")
    record = ["--record", "--record-dir", str(tmp_path / "rec")]
    proc, log = _start_drive(tmp_path, ["--processes", "3", *record])
    pids: dict[str, int] = {}
    try:
        pids = _node_pids(log, 60.0)
        assert set(pids) == {"inference_node", "arbiter_node", "recorder_node"}, pids
        _wait_ready(log)
        time.sleep(1.0)
        proc.send_signal(sig)
        proc.wait(timeout=40)
        end = time.monotonic() + 30.0
        while time.monotonic() < end and any(_running(p) for p in pids.values()):
            time.sleep(0.2)
        alive = {n: p for n, p in pids.items() if _running(p)}
        assert not alive, f"nodes outlived the supervisor ({sig.name}): {alive}\n{log.read_text()[-3000:]}"
    finally:
        _kill_all(proc, pids)


def test_drive_stops_on_sigint_when_started_ignoring_it(tmp_path: Path) -> None:
    """A shell's background job (a script's ``&``, ``nohup``) starts with SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler: Ctrl-C / SIGINT must still stop the graph."""
    pytest.importorskip("rclpy")

    def ignore_sigint() -> None:  # what bash does for a background job without job control
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc, log = _start_drive(tmp_path, ["--processes", "2"], ignore_sigint)
    pids: dict[str, int] = {}
    try:
        pids = _node_pids(log, 60.0)
        _wait_ready(log)
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGINT did not stop `vla-edge drive`:\n{log.read_text()[-3000:]}")
        assert rc == 0, log.read_text()[-3000:]
        assert "drive graph stopped" in log.read_text()
    finally:
        _kill_all(proc, pids)
