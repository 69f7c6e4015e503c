"""Where the INT8 QDQ student's CPU time goes, beside FP32: ONNX Runtime per-node profile.

Opens each ONNX as the runtime does (CPU, level "all", one intra-op thread; QDQ graphs without
``onnxruntime.qdq_disabled_optimizers`` of inference.yaml unless ``--keep-optimizers``), runs
simulated frames with ``enable_profiling`` and prints the kernel time per run by model part
(pillar net, BEV scatter, backbone, bev_proj, head...), by op type, and the slowest nodes.
Kernel times of the optimised graph: fused nodes carry their new names (``..._nchwc``,
``..._token_N``), QLinearConv is an integer conv, a float ``Conv`` in the backbone of an INT8
file is one that ORT left between its Q/DQ nodes.

    python bench/bench_int8_profile.py [--onnx engines/student.onnx engines/student_int8.onnx] [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PARTS = ("pfn", "backbone", "bev_proj", "head", "ego")


def part(node: str) -> str:
    """Model part of a node of the optimised graph (by its name)."""
    for k in PARTS:
        if f"/model/{k}" in node:
            return k
    if "ScatterElements" in node:
        return "scatter"
    if node.startswith("bev_features"):  # the fused last backbone conv and its Q/DQ keep the output name
        return "backbone"
    return "other"


def profile(path: Path, feeds: list, runs: int, qdq: bool) -> dict[str, Counter]:
    """Per-run kernel milliseconds of ``path`` by part, op type and node."""
    from training.quantize import ort_session

    with tempfile.TemporaryDirectory(prefix="vla_edge_prof_") as tmp:
        sess = ort_session(path, 1, qdq=qdq, profile_prefix=str(Path(tmp) / "prof"))
        for f in feeds[:3]:
            sess.run(None, f)
        for i in range(runs):
            sess.run(None, feeds[i % len(feeds)])
        events = json.loads(Path(sess.end_profiling()).read_text())
    by: dict[str, Counter] = {"part": Counter(), "op": Counter(), "node": Counter()}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name, op, ms = e["name"][: -len("_kernel_time")], e["args"]["op_name"], e["dur"] / 1e3 / (runs + 3)
        by["part"][part(name)] += ms
        by["op"][op] += ms
        by["node"][f"{op} {name}"] += ms
    return by


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--onnx",
        nargs="+",
        default=[str(ROOT / "engines" / "student.onnx"), str(ROOT / "engines" / "student_int8.onnx")],
    )
    p.add_argument("--runs", type=int, default=30, help="profiled runs per model (default 30)")
    p.add_argument("--top", type=int, default=15, help="slowest nodes listed (default 15)")
    p.add_argument("--keep-optimizers", action="store_true", help="QDQ graphs with every ORT rewrite")
    args = p.parse_args(argv)
    import onnx

    from training.quantize import engine_input_spec, runtime_noise, sim_feeds, with_noise

    fp32 = ROOT / "engines" / "student.onnx"
    feeds = with_noise(sim_feeds(2, 12, 4.0, 4, engine_input_spec(fp32)), runtime_noise(fp32))
    for path in map(Path, args.onnx):
        qdq = not args.keep_optimizers and any(
            n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node
        )
        by = profile(path, feeds, args.runs, qdq)
        total = sum(by["op"].values())
        print(f"== {path.name}: kernel time {total:.2f} ms/run ({args.runs} runs, 1 thread)")
        for key in ("part", "op"):
            print(f"  by {key}: " + ", ".join(f"{k} {v:.2f}" for k, v in by[key].most_common(16)))
        for k, v in by["node"].most_common(args.top):
            print(f"  {v:6.2f}  {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
