"""TensorRT op audit (``vla-edge build-engine --audit``) on the shipped graphs and on bad ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vla_edge.backends.trt_audit import audit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [
    p for p in (REPO / "engines" / "student.onnx", REPO / "engines" / "student_int8.onnx") if p.exists()
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_graphs_pass_the_audit(path: Path) -> None:
    report = audit(path)
    assert report.ok, report.text()
    assert report.opset == 17 and "Conv" in report.op_counts and "GridSample" in report.op_counts


def test_cli_audit_runs_without_tensorrt() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vla_edge", "build-engine", "--audit", "--onnx", str(SHIPPED[0])],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every op is on onnx-tensorrt's list" in out.stdout


def _save(tmp_path: Path, nodes: list, inits: list, opset: int = 17) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    return path


def test_audit_names_each_blocking_node(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "w_q")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp_bad = numpy_helper.from_array(np.array(3, np.int8), "zp_bad")
    bias_q = numpy_helper.from_array(np.ones(2, np.int32), "b_q")
    zp32 = numpy_helper.from_array(np.array(0, np.int32), "zp32")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp_bad"], ["xq"], name="q_asym"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp_bad"], ["xd"], name="dq_asym"),
        helper.make_node("DequantizeLinear", ["w_q", "s"], ["w"], name="dq_w"),
        helper.make_node("DequantizeLinear", ["b_q", "s", "zp32"], ["b"], name="dq_bias32"),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], name="conv_ok"),
        helper.make_node("Conv", ["xd", "c"], ["c2"], name="conv_dyn_w"),
        helper.make_node("NonZero", ["c2"], ["nz"], name="nonzero"),
        helper.make_node("Relu", ["c2"], ["r"], name="relu"),
        helper.make_node("MyPlugin", ["r"], ["y"], name="custom", domain="com.example"),
    ]
    report = audit(_save(tmp_path, nodes, [w, scale, zp_bad, bias_q, zp32]))
    text = "\n".join(report.problems)
    assert not report.ok
    for name in ("q_asym", "dq_asym", "dq_bias32", "conv_dyn_w", "nonzero", "custom"):
        assert f"'{name}'" in text, text
    for name in ("conv_ok", "relu", "dq_w"):
        assert f"'{name}'" not in text, text


def test_audit_flags_unlisted_ops_and_opset(tmp_path: Path) -> None:
    nodes = [helper.make_node("Hardmax", ["x"], ["y"], name="hm")]
    report = audit(_save(tmp_path, nodes, [], opset=21))
    assert any("opset 21" in p for p in report.problems)
    assert any("'hm'" in p and "not on the audited list" in p for p in report.problems)


def test_camera_preset_graph_passes_and_adds_only_plain_ops(tmp_path: Path) -> None:
    """tiny_cam (issue 18): the camera branch adds only Conv/Relu/Reshape/MatMul/Mul/Concat-type ops."""
    pytest.importorskip("torch")
    from training.export import export
    from training.model.presets import build_model

    counts = {}
    for preset in ("tiny", "tiny_cam"):
        export(build_model(preset, seed=0), tmp_path, preset, "random-seeded", torchscript=False)
        report = audit(tmp_path / f"{preset}.onnx")
        assert report.ok, report.text()
        counts[preset] = report.op_counts
    plain = {"Conv", "Relu", "Add", "Mul", "MatMul", "Reshape", "Transpose", "Softmax", "Concat"}
    plain |= {"Constant", "Identity"}  # exporter bookkeeping, folded by TensorRT
    added = {op for op, n in counts["tiny_cam"].items() if n > counts["tiny"].get(op, 0)}
    assert added and added <= plain, added
    assert counts["tiny_cam"].get("GridSample") == counts["tiny"].get("GridSample"), (
        "no GridSample in the lift"
    )
