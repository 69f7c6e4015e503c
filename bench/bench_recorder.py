"""Recorder figures: writer throughput and enqueue cost, measured in the same run.

    python bench/bench_recorder.py [--points 120000] [--messages 200] [--out /tmp/bench_rec]

Prints, for LiDAR-sized PointCloud2 messages (real serialized CDR):
* writer throughput (MB/s) of the full path: queue -> rosbags MCAP split -> rename;
* enqueue median / p99 (us) while the writer is busy, and the ratio of the median enqueue to
  a synchronous write of the same message (what the control path would pay without the queue).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vla_edge.config import load_config
from vla_edge.conversions import xyzi_to_pointcloud2
from vla_edge.msgfactory import RosbagsFactory
from vla_edge.recording import Recorder
from vla_edge.recording.writer import Item, SplitFile

PC2 = "sensor_msgs/msg/PointCloud2"


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=120_000, help="points per cloud (x,y,z,i float32)")
    ap.add_argument("--messages", type=int, default=200, help="messages per measurement")
    ap.add_argument("--out", default=None, help="scratch folder (default: a temp dir, removed)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_rec_"))
    fac = RosbagsFactory()
    rng = np.random.default_rng(0)
    clouds = [rng.normal(size=(args.points, 4)).astype(np.float32) for _ in range(4)]
    msgs = [
        bytes(fac.typestore.serialize_cdr(xyzi_to_pointcloud2(c, fac, i * 0.1, "lidar"), PC2))
        for i, c in enumerate(clouds)
    ]
    mb = len(msgs[0]) / 1e6

    split = SplitFile(root / "sync_open", root / "sync", "sync", fac.typestore)
    (root / "sync").mkdir(exist_ok=True)
    sync = []
    for i in range(args.messages):
        t0 = time.perf_counter()
        split.write(Item("/l", PC2, i, msgs[i % 4]))
        sync.append(time.perf_counter() - t0)
    split.close()

    cfg = load_config("recorder")
    cfg["ring"]["min_free_mb"] = 1
    cfg["queue"]["max_messages"] = args.messages + 1  # no drops: measure throughput
    cfg["queue"]["max_mb"] = mb * (args.messages + 1) * 1.1
    rec = Recorder.from_config(cfg, "topics", root / "log")
    rec.start()
    enq = []
    t_start = time.perf_counter()
    for i in range(args.messages):
        t0 = time.perf_counter()
        rec.record("/sensing/lidar/points", PC2, msgs[i % 4], i * 100_000_000)
        enq.append(time.perf_counter() - t0)
    rec.close(timeout=600)
    elapsed = time.perf_counter() - t_start
    st = rec.status().values
    print(f"message {mb:.2f} MB x {args.messages}; written {st['written']}, "
          f"dropped {st['dropped_queue_full']}")  # fmt: skip
    print(f"writer throughput (queue -> MCAP splits): {mb * int(st['written']) / elapsed:.1f} MB/s")
    print(f"synchronous write: median {np.median(sync) * 1e3:.3f} ms")
    print(f"enqueue: median {np.median(enq) * 1e6:.1f} us, p99 {np.percentile(enq, 99) * 1e6:.1f} us")
    print(f"ratio median enqueue / synchronous write: {np.median(enq) / np.median(sync):.5f}")
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
