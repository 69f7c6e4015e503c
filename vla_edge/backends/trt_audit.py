"""Check an ONNX graph against onnx-tensorrt's operator support, without TensorRT.

``vla-edge build-engine --audit`` runs it anywhere (no GPU): every node's op type must be on
the supported list of onnx-tensorrt for TensorRT 10 (``docs/operators.md`` of
onnx/onnx-tensorrt, opsets 9..20) and meet the documented restriction that applies to it
(constant weights, initializer axes, zero points of 0, GridSample modes...). Tensor types
outside TensorRT's set are findings too. INT64 tensors and Slice bounds computed at run time
are counted and reported, not refused: TensorRT 10 handles INT64 natively and shape tensors
for Slice, but both are worth folding away (``vla-edge-train export`` does).

The table lists the ops such student graphs use plus their common neighbours; an op that
is not in it is reported as "not on the audited list" so that it gets looked up, never
silently passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_edge.errors import ModelError

#: opset range of onnx-tensorrt for TensorRT 10.
OPSET_RANGE = (9, 20)

#: Ops supported by onnx-tensorrt (TensorRT 10) with no restriction relevant to static graphs.
# fmt: off
SUPPORTED = frozenset(
    [
        "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
        "AveragePool", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat", "Constant",
        "ConstantOfShape", "Cos", "Cosh", "CumSum", "DepthToSpace", "Div", "Dropout", "Einsum", "Elu",
        "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu",
        "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "HardSigmoid",
        "HardSwish", "Identity", "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Less",
        "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mish", "Mod", "Mul",
        "Neg", "Not", "Or", "Pad", "Pow", "PRelu", "Range", "Reciprocal", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
        "ReduceSumSquare", "Relu", "Reshape", "Resize", "Round", "ScatterND", "Selu", "Shape", "Sigmoid",
        "Sign", "Sin", "Sinh", "Size", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt",
        "Sub", "Sum", "Tan", "Tanh", "Tile", "TopK", "Transpose", "Where", "Xor",
    ]
)

#: Supported with a documented restriction that :func:`audit` checks.
RESTRICTED = frozenset(
    [
        "Conv", "ConvTranspose", "Squeeze", "Unsqueeze", "Slice", "QuantizeLinear", "DequantizeLinear",
        "GridSample", "ScatterElements", "Cast",
    ]
)

#: Ops onnx-tensorrt does not import (the usual suspects of quantised or dynamic graphs).
UNSUPPORTED = frozenset(
    [
        "BitShift", "Compress", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear",
        "MatMulInteger", "MaxRoiPool", "MaxUnpool", "NonZero", "QLinearConv", "QLinearMatMul",
        "RandomNormal", "RandomNormalLike", "SequenceAt", "SequenceConstruct", "SequenceEmpty",
        "SequenceErase", "SequenceInsert", "SequenceLength", "SplitToSequence", "StringNormalizer",
        "TfIdfVectorizer", "Unique",
    ]
)
# fmt: on

#: ONNX TensorProto data types TensorRT 10 has (FLOAT, UINT8, INT8, INT32, INT64, BOOL, FLOAT16,
#: DOUBLE (cast down), BFLOAT16, FLOAT8E4M3FN, INT4).
TRT_TYPES = {1: "FLOAT", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FLOAT16"}
TRT_TYPES |= {11: "DOUBLE", 16: "BFLOAT16", 17: "FLOAT8E4M3FN", 22: "INT4"}


@dataclass
class AuditReport:
    """What :func:`audit` found.

    Attributes:
        path: The audited file.
        opset: The default-domain opset.
        op_counts: Node count per op type.
        problems: Findings that would stop or break a TensorRT build (empty = passes).
        int64_tensors: Count of INT64 value infos / initializers (reported, not refused).
        dynamic_slices: Slice nodes whose starts/ends are not constants (reported).
    """

    path: Path
    opset: int
    op_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    int64_tensors: int = 0
    dynamic_slices: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing blocks the TensorRT import."""
        return not self.problems

    def text(self) -> str:
        """Human-readable summary."""
        lines = [
            f"{self.path.name}: opset {self.opset}, {sum(self.op_counts.values())} nodes, "
            f"{len(self.op_counts)} op types; INT64 tensors {self.int64_tensors}, Slice nodes with "
            f"run-time bounds {self.dynamic_slices}",
            "ops: " + ", ".join(f"{k} {v}" for k, v in sorted(self.op_counts.items())),
        ]
        lines += [f"PROBLEM: {p}" for p in self.problems] or [
            "every op is on onnx-tensorrt's list (TensorRT 10)"
        ]
        return "\n".join(lines)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def audit(path: str | Path) -> AuditReport:
    """Audit the ONNX file ``path`` (see the module docstring).

    Raises:
        ModelError: The file cannot be read as ONNX (or the ``onnx`` package is missing).
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelError("the TensorRT op audit needs the `onnx` package (pip install onnx)") from None
    p = Path(path)
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types for bad files
        raise ModelError(f"cannot read ONNX file {p}: {exc}") from None
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    report = AuditReport(p, opset)
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        report.problems.append(f"opset {opset} outside onnx-tensorrt's range {OPSET_RANGE}")
    consts = {i.name for i in graph.initializer}
    consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    init_values = {i.name: i for i in graph.initializer}
    const_nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    # A DequantizeLinear of a constant is a constant weight for TensorRT (explicit quantisation).
    dq_of_const = {
        n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in consts
    }

    def const_array(name: str) -> Any:
        if name in init_values:
            return numpy_helper.to_array(init_values[name])
        if name in const_nodes:
            return numpy_helper.to_array(_attr(const_nodes[name], "value"))
        return None

    for node in graph.node:
        op = node.op_type
        report.op_counts[op] = report.op_counts.get(op, 0) + 1
        where = f"{op} node '{node.name}'"
        if node.domain not in ("", "ai.onnx"):
            report.problems.append(f"{where}: custom domain '{node.domain}' needs a TensorRT plugin")
            continue
        if op in UNSUPPORTED:
            report.problems.append(f"{where}: not supported by onnx-tensorrt")
        elif op not in SUPPORTED and op not in RESTRICTED:
            report.problems.append(f"{where}: not on the audited list; check onnx-tensorrt docs/operators.md")
        elif op in ("Conv", "ConvTranspose"):
            w = node.input[1]
            if w not in consts and w not in dq_of_const:
                report.problems.append(f"{where}: weights '{w}' must be an initializer")
        elif op in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1] not in consts:
            report.problems.append(f"{where}: axes must be an initializer")
        elif op == "Slice":
            if len(node.input) > 3 and node.input[3] and node.input[3] not in consts:
                report.problems.append(f"{where}: axes must be an initializer")
            if any(i not in consts for i in node.input[1:3]):
                report.dynamic_slices += 1
        elif op in ("QuantizeLinear", "DequantizeLinear"):
            zp = const_array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if zp is not None and zp.any():
                report.problems.append(f"{where}: zero point must be 0 (symmetric) for TensorRT")
            if zp is not None and zp.dtype.name not in ("int8", "float8_e4m3fn"):
                report.problems.append(f"{where}: {zp.dtype.name} quantisation; TensorRT wants INT8/FP8")
        elif op == "GridSample":
            mode = _attr(node, "mode", "bilinear")
            pad = _attr(node, "padding_mode", "zeros")
            if mode not in ("bilinear", "linear", "nearest", "bicubic", "cubic"):
                report.problems.append(f"{where}: mode '{mode}' unsupported")
            if pad not in ("zeros", "border", "reflection"):
                report.problems.append(f"{where}: padding_mode '{pad}' unsupported")
        elif op == "ScatterElements":
            red = _attr(node, "reduction", "none")
            if red not in ("none", "add", "mul", "max", "min"):
                report.problems.append(f"{where}: reduction '{red}' unsupported")
        elif op == "Cast" and int(_attr(node, "to", 1)) not in TRT_TYPES:
            report.problems.append(f"{where}: cast to type {_attr(node, 'to')} TensorRT does not have")
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - unknown custom ops stop inference; count what the file has
        inferred = graph
    for vi in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
        dtype = vi.type.tensor_type.elem_type
        if dtype == 7:
            report.int64_tensors += 1
        elif dtype and dtype not in TRT_TYPES:
            report.problems.append(f"tensor '{vi.name}': element type {dtype} TensorRT does not have")
    report.int64_tensors += sum(1 for i in graph.initializer if i.data_type == 7)
    return report
