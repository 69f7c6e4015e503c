"""CPU pillarization, this checkout against an earlier commit's, side by side in one run.

Loads ``vla_edge/pillarize.py`` as it was at ``--against`` (``git show``) next to the current
one, checks that both give bit-identical pillars on every cloud, and prints the median time
of each, interleaved, and the ratio new / old. Clouds: the committed Hesai QT64 scan
(34k points) and the same scan tiled with jitter to ``--points`` (a 128-beam sweep is ~210k),
with a few non-finite rows.

    python bench/bench_pillarize.py --against HEAD~1 [--points 210000] [--iters 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_old(rev: str) -> types.ModuleType:
    """``vla_edge/pillarize.py`` at ``rev`` as a module (it imports the current package)."""
    src = subprocess.run(
        ["git", "show", f"{rev}:vla_edge/pillarize.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    mod = types.ModuleType("pillarize_at_" + rev.replace("~", "_"))
    sys.modules[mod.__name__] = mod  # dataclasses look their module up there
    exec(compile(src, f"{rev}:vla_edge/pillarize.py", "exec"), mod.__dict__)  # our file, earlier
    return mod


def clouds(n_big: int) -> dict[str, np.ndarray]:
    from vla_edge.conversions.pcd import pcd_to_xyzi, read_pcd

    pcd = REPO / "test" / "data" / "lidar" / "hesai_qt64_1673401196087570870.pcd"
    scan = np.ascontiguousarray(pcd_to_xyzi(read_pcd(str(pcd))), np.float32)
    rng = np.random.default_rng(0)
    reps = -(-n_big // len(scan))
    jitter = [scan + rng.normal(0, 0.05, scan.shape).astype(np.float32) for _ in range(reps)]
    big = np.concatenate(jitter)[:n_big]
    big[::997, 0] = np.nan
    return {f"{len(scan)} (Hesai QT64)": scan, f"{n_big} (tiled)": big}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--against", default="HEAD~1", help="git revision of the earlier pillarizer (default HEAD~1)"
    )
    ap.add_argument("--points", type=int, default=210000, help="points of the tiled cloud (default 210000)")
    ap.add_argument("--iters", type=int, default=30, help="timed calls per version and cloud (default 30)")
    args = ap.parse_args(argv)
    from vla_edge import pillarize as new
    from vla_edge.config import load_config

    old = load_old(args.against)
    spec = new.PillarSpec.from_config(load_config("model"))
    print(f"pillarize: this checkout vs {args.against}, {args.iters} interleaved calls each")
    print(f"{'points':>22} {'old ms':>8} {'new ms':>8} {'new/old':>8}")
    for name, pts in clouds(args.points).items():
        a, b = new.pillarize(pts, spec), old.pillarize(pts, spec)
        if a[2] != b[2] or not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])):
            print(f"MISMATCH on {name}: the two versions give different pillars", file=sys.stderr)
            return 1
        t_old, t_new = [], []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            old.pillarize(pts, spec)
            t1 = time.perf_counter()
            new.pillarize(pts, spec)
            t_new.append(time.perf_counter() - t1)
            t_old.append(t1 - t0)
        mo, mn = 1e3 * float(np.median(t_old)), 1e3 * float(np.median(t_new))
        print(f"{name:>22} {mo:8.2f} {mn:8.2f} {mn / mo:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
