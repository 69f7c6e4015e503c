"""`vla-edge-train quantize` with the train.yaml defaults: every quantised conv becomes an integer
kernel in ONNX Runtime's optimised CPU graph, the result stays close to FP32, and the
``--max-diff`` guard refuses a file that drifts further."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import pytest
from backends_helpers import SHIPPED_ONNX

from training import quantize as tq
from vla_edge.config import load_config


@pytest.fixture(scope="module")
def feeds() -> list[dict[str, np.ndarray]]:
    spec = tq.engine_input_spec(SHIPPED_ONNX)
    # Seed 31: neither the calibration (11) nor the held-out (12) seed of the command's defaults.
    return tq.with_noise(tq.sim_feeds(1, 31, 3.0, 5, spec), tq.runtime_noise(SHIPPED_ONNX))


def _args(*extra: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    tq.add_parser(ap.add_subparsers())
    return ap.parse_args(["quantize", "--onnx", str(SHIPPED_ONNX), *extra])


def test_defaults_quantise_convs_that_ort_runs_as_integer_kernels(
    feeds: list[dict[str, np.ndarray]], tmp_path: Path
) -> None:
    q = load_config("train")["quantize"]
    out = tmp_path / "student_int8.onnx"
    nodes = tq.quantize(
        SHIPPED_ONNX, out, feeds, q["method"], q["per_channel"], tuple(q["scope"]), q["dedicated_qdq_pair"]
    )
    graph = onnx.load(str(out)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv" and n.name in nodes]
    assert convs, "the default scope quantises the backbone convolutions"
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    zero_points = [n.input[2] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and not any(np.any(inits[z]) for z in zero_points if z in inits), "symmetric"
    # One Q per DQ: a tensor read by two quantised convs gets a pair per reader.
    readers: dict[str, int] = {}
    for n in graph.node:
        if n.op_type == "DequantizeLinear":
            readers[n.input[0]] = readers.get(n.input[0], 0) + 1
    assert max(readers.values()) == 1
    # What the runtime opens (level "all", inference.yaml's QDQ optimizer skips): no conv that the
    # file quantises is left as a float Conv between its Q/DQ nodes.
    assert tq.float_convs(out, nodes) == []
    report = tq.compare(SHIPPED_ONNX, out, feeds, threads=1, iters=2)
    assert report["best_mode_diff_m_max"] <= 0.1, report


def test_max_diff_guard_refuses_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "student_int8.onnx"
    args = _args(
        "--out", str(out), "--sim-scenarios", "1", "--seconds", "2", "--every", "5",
        "--eval-frames", "3", "--iters", "1", "--max-diff", "0",
    )  # fmt: skip
    with pytest.raises(tq.QuantizeError, match="--max-diff"):
        tq.run(args)
    assert not out.exists() and not out.with_suffix(".json").exists()
