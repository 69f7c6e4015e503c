"""Recorder failures never reach the control path: full disk, unwritable folder, full queue."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from conftest import REPO_ROOT
from rosbags.highlevel import AnyReader

from vla_edge.config import load_config
from vla_edge.msgfactory import RosbagsFactory
from vla_edge.recording import Recorder

LIDAR = "/sensing/lidar/points"
PC2 = "sensor_msgs/msg/PointCloud2"


def _cfg(**over: Any) -> dict[str, Any]:
    cfg = load_config("recorder")
    cfg["ring"]["min_free_mb"] = 1
    for dotted, value in over.items():
        section, key = dotted.split("__")
        cfg[section][key] = value
    return cfg


def _cloud_cdr(n_points: int, seq: int) -> bytes:
    """A real serialized PointCloud2 (xyzi float32) whose first x carries ``seq``."""
    from vla_edge.conversions.pointcloud import xyzi_to_pointcloud2

    fac = RosbagsFactory()
    pts = np.random.default_rng(seq).normal(size=(n_points, 4)).astype(np.float32)
    pts[0, 0] = seq
    return bytes(fac.typestore.serialize_cdr(xyzi_to_pointcloud2(pts, fac, seq * 0.1, "base_link"), PC2))


class ControlLoop:
    """Stand-in for the driving thread: records every cycle and must never stall or raise."""

    def __init__(self, rec: Recorder, payloads: list[bytes], cycles: int, period_s: float) -> None:
        self.rec, self.payloads, self.cycles, self.period_s = rec, payloads, cycles, period_s
        self.done = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for i in range(self.cycles):
                self.rec.record(LIDAR, PC2, self.payloads[i % len(self.payloads)])
                self.done += 1
                time.sleep(self.period_s)
        except BaseException as exc:  # noqa: BLE001 - the assertion below reports it
            self.error = exc


def test_output_dir_replaced_by_file_mid_run_turns_recorder_off(tmp_path: Path) -> None:
    out = tmp_path / "log"
    rec = Recorder.from_config(_cfg(split__max_duration_s=0.2), "topics", out)
    assert rec.start()
    loop = ControlLoop(rec, [_cloud_cdr(2000, i) for i in range(4)], cycles=60, period_s=0.01)
    loop.thread.start()
    time.sleep(0.3)
    # Works as root too (chmod would not stop root): the folder becomes a plain file.
    shutil.rmtree(out)
    out.write_text("not a directory any more")
    loop.thread.join(timeout=20)
    assert not loop.thread.is_alive() and loop.error is None
    assert loop.done == 60  # driving continued
    deadline = time.monotonic() + 10
    while rec.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    st = rec.status()
    assert st.level == "ERROR" and not st.enabled, st
    assert "recorder off" in st.message
    assert int(st.values["dropped_disabled"]) > 0
    rec.close()  # closing a failed recorder is quiet
    assert rec.status().level == "ERROR"


def test_output_dir_that_is_a_file_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rec = Recorder.from_config(_cfg(), "topics", blocker / "log")
    assert not rec.start()
    assert rec.status().level == "ERROR"
    assert not rec.record(LIDAR, PC2, b"\x00\x01\x00\x00")  # no raise, counted
    assert rec.status().values["dropped_disabled"] == "1"


def test_free_space_floor_counts_as_disk_full(tmp_path: Path) -> None:
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    cfg = _cfg()
    cfg["ring"]["min_free_mb"] = free_mb * 4 + 1024  # more than the disk can have
    rec = Recorder.from_config(cfg, "topics", tmp_path / "log")
    assert not rec.start()
    st = rec.status()
    assert st.level == "ERROR" and "disk full" in st.message and "ring.min_free_mb" in st.message


_FSIZE_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys, time
    sys.path.insert(0, "test")
    from test_recorder_failures import _cfg, _cloud_cdr, ControlLoop
    from vla_edge.recording import Recorder
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    limit = 300 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    rec = Recorder.from_config(_cfg(split__max_duration_s=30.0), "topics", sys.argv[1])
    rec.start()
    loop = ControlLoop(rec, [_cloud_cdr(5000, i) for i in range(4)], cycles=80, period_s=0.005)
    loop.thread.start(); loop.thread.join(30)
    t = time.monotonic()
    while rec.error is None and time.monotonic() - t < 10: time.sleep(0.02)
    st = rec.status()
    print(json.dumps({"done": loop.done, "error": repr(loop.error) if loop.error else None,
                      "level": st.level, "message": st.message}))
    """
)


def test_file_size_limit_acts_as_full_disk(tmp_path: Path) -> None:
    """A real write failure (EFBIG from RLIMIT_FSIZE, no root needed) in a subprocess."""
    res = subprocess.run(
        [sys.executable, "-c", _FSIZE_SCRIPT, str(tmp_path / "log")],
        cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["done"] == 80 and out["error"] is None  # driving continued
    assert out["level"] == "ERROR" and "File too large" in out["message"], out


def test_queue_overflow_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    cfg = _cfg(queue__max_messages=4, split__max_duration_s=1.0)
    rec = Recorder.from_config(cfg, "topics", tmp_path / "log")
    assert rec.start()
    payloads = [_cloud_cdr(60_000, i) for i in range(8)]  # ~1 MB each: the writer is slower
    enqueue_s = []
    accepted = []
    for i in range(300):
        data = payloads[i % len(payloads)]
        t0 = time.perf_counter()
        ok = rec.record(LIDAR, PC2, data, stamp_ns=i * 1_000_000)
        enqueue_s.append(time.perf_counter() - t0)
        if ok:
            accepted.append(i)
    st_during = rec.status()
    rec.close(timeout=60)
    st = rec.status()
    dropped = int(st.values["dropped_queue_full"])
    assert dropped > 0 and st_during.level == "WARN" and "dropped" in st_during.message
    assert dropped + len(accepted) == 300 == int(st.values["received"])
    assert int(st.values["written"]) == len(accepted)
    # Enqueue cost vs. what a synchronous write would have cost the producer, same run.
    splits = sorted(p for p in (tmp_path / "log" / "splits").iterdir() if p.name != "_open")
    per_write_s = _write_cost_s(tmp_path / "sync", payloads)
    ratio = float(np.median(enqueue_s)) / per_write_s
    med_us = np.median(enqueue_s) * 1e6
    print(f"enqueue median {med_us:.1f} us, sync write {per_write_s * 1e6:.1f} us, ratio {ratio:.4f}")
    assert ratio < 0.05, ratio
    # What was accepted is all on disk, in order.
    stamps = []
    for split in splits:
        with AnyReader([split]) as reader:
            stamps += [ts for _c, ts, _r in reader.messages()]
    assert stamps == [i * 1_000_000 for i in accepted]


def _write_cost_s(path: Path, payloads: list[bytes]) -> float:
    """Median time of writing one message synchronously with the same writer code."""
    from vla_edge.recording.writer import Item, SplitFile

    (path / "final").mkdir(parents=True)
    split = SplitFile(path / "open", path / "final", "sync", RosbagsFactory().typestore)
    times = []
    for i in range(24):
        t0 = time.perf_counter()
        split.write(Item(LIDAR, PC2, i, payloads[i % len(payloads)]))
        times.append(time.perf_counter() - t0)
    split.close()
    return float(np.median(times))


def test_concurrent_producers_are_counted_exactly(tmp_path: Path) -> None:
    """Executor threads call record() concurrently: no count is lost, nothing blocks."""
    rec = Recorder.from_config(_cfg(queue__max_messages=16), "topics", tmp_path / "log")
    assert rec.start()
    payload = _cloud_cdr(20_000, 0)
    n, threads = 200, 4

    def produce() -> None:
        for _ in range(n):
            rec.record(LIDAR, PC2, payload)

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    rec.close(timeout=60)
    st = rec.status().values
    assert int(st["received"]) == n * threads
    assert int(st["written"]) + int(st["dropped_queue_full"]) == n * threads
    assert int(st["dropped_queue_full"]) > 0


_FULL_SCRIPT = textwrap.dedent(
    """
    import json, resource, signal, sys, time
    sys.path.insert(0, "test")
    from test_recorder_failures import _cfg, _cloud_cdr, ControlLoop
    from vla_edge.recording import Recorder
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    limit = 3 * 2**20  # ~3 MB per file: two ~1 MB MCAP chunks fit, the third does not
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    rec = Recorder.from_config(_cfg(split__max_duration_s=600.0), "topics", sys.argv[1])
    rec.start()
    loop = ControlLoop(rec, [_cloud_cdr(5000, i) for i in range(60)], cycles=60, period_s=0.01)
    loop.thread.start(); loop.thread.join(60)
    t = time.monotonic()
    while rec.error is None and time.monotonic() - t < 10: time.sleep(0.02)
    rec.close()
    print(json.dumps({"done": loop.done, "error": rec.error}))
    """
)


def test_disk_full_keeps_everything_recorded_before_readable(tmp_path: Path) -> None:
    """Issue 14.10: the split open when the disk filled is not lost: every complete chunk of
    it reads back (closed cleanly, or cut short and read by the MCAP salvage scan)."""
    from vla_edge.bagio import open_bag
    from vla_edge.conversions.pointcloud import pointcloud2_to_xyzi

    res = subprocess.run(
        [sys.executable, "-c", _FULL_SCRIPT, str(tmp_path / "log")],
        cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["done"] == 60 and out["error"], out  # driving went on; the recorder turned off
    splits = [p for p in (tmp_path / "log" / "splits").rglob("*.mcap")]
    assert splits, "the split open at the failure vanished"
    seqs: list[int] = []
    for mcap in splits:
        with open_bag(mcap.parent) as bag:
            seqs += [int(pointcloud2_to_xyzi(m.msg)[0, 0]) for m in bag.messages()]
    # ~78 kB clouds, 1 MB chunks: at least the two chunks before the 3 MB limit survive, in order.
    assert len(seqs) >= 20 and seqs == list(range(len(seqs))), seqs
