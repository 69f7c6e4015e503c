"""Soak: the live graph fed the real scans at 10 Hz, memory must stay bounded (issue 14).

CI runs a 2-minute slice (``SOAK_S``, default 120 s). ``make soak`` runs >= 30 min and
prints the report: RSS growth, latency drift (median of the first vs the last window)
and the drop ratio. RSS is the whole test process (graph, feeder and monitor inside it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

import rclpy
from rclpy.context import Context
from test_graph_live import Harness

SOAK_S = float(os.environ.get("SOAK_S", "120"))
WARMUP_S = min(30.0, SOAK_S / 4)  # allocator / ORT arenas settle first
# Bound on RSS growth after warm-up: bounded buffers (monitor lists aside, trimmed below)
# must not grow with run time; 40 MB over the CI slice, plus 10 MB per further 10 minutes.
MAX_GROWTH_MB = 40.0 + 10.0 * max(0.0, (SOAK_S - 120.0) / 600.0)

pytestmark = [pytest.mark.ros, pytest.mark.timeout(SOAK_S + 180)]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS in /proc/self/status")


def test_soak_bounded_memory(shared_data: Path) -> None:
    from vla_edge.nodes.feeder import load_scan

    scans = [load_scan(str(p)) for p in sorted((shared_data / "lidar").iterdir())]
    ctx = Context()
    rclpy.init(context=ctx)
    h = Harness(ctx, scans, share_frames=False)
    try:
        h.wait_matched()
        t0 = time.monotonic()
        rss: list[tuple[float, float]] = []
        lat: list[tuple[float, float]] = []
        sent_total = decided_total = 0
        sent: dict[float, float] = {}
        i = 0
        while time.monotonic() - t0 < SOAK_S:
            stamp, wall = h.send(scans[i % len(scans)])
            sent_total += 1
            i += 1
            time.sleep(0.1)
            if i % 50 == 0:  # every 5 s: sample, then trim the monitor's logs (test-side memory)
                t = time.monotonic() - t0
                rss.append((t, _rss_mb()))
                with h.monitor.lock:
                    for s, rx in h.monitor.first_rx.items():
                        if s in sent:
                            lat.append((t, 1000.0 * (rx - sent[s])))
                    decided_total += len(h.monitor.first_rx)
                    h.monitor.trajectories.clear()
                    h.monitor.first_rx.clear()
                    h.monitor.decisions.clear()
                    h.monitor.diagnostics.clear()
                    h.monitor.infos.clear()
                    h.monitor.statuses_by_name.clear()
                sent.clear()
            sent[stamp] = wall
        after = [m for t, m in rss if t >= WARMUP_S]
        growth = max(after) - after[0] if after else 0.0
        window = max(10.0, SOAK_S / 10)
        first = [v for t, v in lat if t <= WARMUP_S + window and t >= WARMUP_S]
        last = [v for t, v in lat if t >= SOAK_S - window]
        drift = float(np.median(last) - np.median(first)) if first and last else float("nan")
        drops = h.graph.arbiter.loop.drops.ratio
        nan = float("nan")
        rss0, rss1 = (after[0], after[-1]) if after else (nan, nan)
        lat0 = float(np.median(first)) if first else nan
        lat1 = float(np.median(last)) if last else nan
        report = (
            f"soak {SOAK_S:.0f} s: sweeps {sent_total}, decided {decided_total}, "
            f"RSS {rss0:.0f} -> {rss1:.0f} MB (growth {growth:.1f} MB, bound {MAX_GROWTH_MB:.0f}), "
            f"latency median {lat0:.1f} -> {lat1:.1f} ms (drift {drift:+.1f} ms), drop ratio {drops:.3f}"
        )
        print(report)
        out = os.environ.get("SOAK_REPORT")
        if out:
            Path(out).write_text(report + "\n", encoding="utf-8")
        # Alive, not fast: the composed in-process graph on 2 cores cannot decide every real
        # 120k-point sweep at 10 Hz (0.69 drop ratio measured; issue 15 is open); this slice
        # bounds memory, and a graph that stops deciding altogether still fails here.
        assert decided_total >= sent_total // 5, report
        assert growth < MAX_GROWTH_MB, report
    finally:
        h.close()
        if ctx.ok():
            rclpy.shutdown(context=ctx)
