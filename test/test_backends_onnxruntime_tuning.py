"""ONNX Runtime CPU tuning keys (spinning, saved optimised graph) and the shipped INT8 QDQ student."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from backends_helpers import SHIPPED_ONNX, inference_cfg, make_contract_onnx

from vla_edge.backends.base import dummy_inputs
from vla_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from vla_edge.errors import ConfigError

INT8_ONNX = SHIPPED_ONNX.with_name("student_int8.onnx")


@pytest.fixture(scope="module")
def contract_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_contract_onnx(tmp_path_factory.mktemp("ort_tuning") / "student.onnx")


def _feed(be: OnnxRuntimeBackend) -> dict[str, np.ndarray]:
    feed = dummy_inputs(be.input_specs)
    feed["noise"] = np.random.default_rng(3).standard_normal(feed["noise"].shape).astype(np.float32)
    return feed


def test_saved_optimised_graph_is_reused_and_checked(
    contract_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = inference_cfg(tmp_path)
    cfg["onnxruntime"].update(save_optimized=True, graph_optimization="all", providers=["cpu"])
    with OnnxRuntimeBackend(contract_onnx, cfg) as be:
        assert be.optimized_source is None  # first start: optimised now and saved
        first = be.infer(_feed(be)).trajectories
    saved = sorted((tmp_path / "cache").glob("student.*.all.*.onnx"))
    assert len(saved) == 1 and saved[0].with_suffix(".json").is_file()
    with OnnxRuntimeBackend(contract_onnx, cfg) as be:
        assert be.optimized_source == saved[0]  # second start: loaded without re-optimising
        np.testing.assert_array_equal(be.infer(_feed(be)).trajectories, first)
    with saved[0].open("ab") as fh:  # tampered: refused, optimised again from the ONNX
        fh.write(b"\0")
    with caplog.at_level(logging.WARNING), OnnxRuntimeBackend(contract_onnx, cfg) as be:
        assert be.optimized_source is None
        np.testing.assert_array_equal(be.infer(_feed(be)).trajectories, first)
    assert any("does not match its sidecar" in r.getMessage() for r in caplog.records)


def test_parallel_starts_share_one_whole_optimised_graph(contract_onnx: Path, tmp_path: Path) -> None:
    """Sim workers start together on an empty cache: each saves through its own temp file, so
    every later start reads a whole graph that its sidecar vouches for, and no temp file stays."""
    from concurrent.futures import ThreadPoolExecutor

    from vla_edge.backends.manifest import sha256_file

    cfg = inference_cfg(tmp_path)
    cfg["onnxruntime"].update(save_optimized=True, graph_optimization="all", providers=["cpu"])

    def start(_: int) -> np.ndarray:
        with OnnxRuntimeBackend(contract_onnx, cfg) as be:
            return be.infer(_feed(be)).trajectories

    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(start, range(12)))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    cache = tmp_path / "cache"
    saved = sorted(cache.glob("student.*.all.*.onnx"))
    assert len(saved) == 1
    assert json.loads(saved[0].with_suffix(".json").read_text())["sha256"] == sha256_file(saved[0])
    assert not list(cache.glob(".*")), "temp files left in the cache"


def test_spinning_and_save_keys_must_be_bool(contract_onnx: Path, tmp_path: Path) -> None:
    for key in ("allow_spinning", "save_optimized"):
        cfg = inference_cfg(tmp_path)
        cfg["onnxruntime"][key] = "no"
        with pytest.raises(ConfigError, match=f"onnxruntime.{key} must be true/false"):
            OnnxRuntimeBackend(contract_onnx, cfg).load()


@pytest.mark.skipif(
    not INT8_ONNX.exists(), reason="engines/student_int8.onnx not built (vla-edge-train quantize)"
)
def test_int8_qdq_student_runs_close_to_fp32(shared_data: Path, tmp_path: Path) -> None:
    """The shipped INT8 file is explicit QDQ with symmetric scales (what TensorRT needs), runs on
    the CPU through the normal backend, drives within 0.1 m of FP32 on simulated frames it was
    not calibrated on, and gives finite plans on the real scans."""
    import onnx

    from training.quantize import engine_input_spec, sim_feeds
    from vla_edge.model_inputs import model_points
    from vla_edge.pillarize import ego_state_input, pillarize, reference_path_input
    from vla_edge.scans import load_scan

    graph = onnx.load(str(INT8_ONNX)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    inits = {i.name: i for i in graph.initializer}
    zero_points = [n.input[2] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(
        not np.any(onnx.numpy_helper.to_array(inits[z])) for z in zero_points if z in inits
    ), "TensorRT explicit INT8 needs zero points of 0 (symmetric)"
    man = json.loads(INT8_ONNX.with_suffix(".json").read_text())
    assert man["precision"] == "int8" and man["quantization"]["best_mode_diff_m_max"] <= 0.1

    spec = engine_input_spec(SHIPPED_ONNX)  # the shipped engine's (multi-sweep: 11 features)
    cfg = inference_cfg(tmp_path)
    cfg["onnxruntime"]["providers"] = ["cpu"]
    # Held out: quantize calibrates on suite seed 11 and reports seed 12; this is seed 97.
    held_out = sim_feeds(1, 97, 3.0, 6, spec)
    real = []
    for scan in sorted((shared_data / "lidar").iterdir()):
        feats, coords, count = pillarize(model_points(spec, load_scan(str(scan))), spec)  # one sweep
        path = np.stack([np.linspace(-2, 40, 30), np.zeros(30)], 1)
        real.append(
            {
                "pillar_features": feats[None],
                "pillar_coords": coords[None],
                "pillar_count": np.array([count], np.int32),
                "ego_state": ego_state_input(np.array([4.0, 0.0, 0.0]), spec)[None],
                "reference_path": reference_path_input(path, spec)[None],
            }
        )
    diffs = []
    with OnnxRuntimeBackend(SHIPPED_ONNX, cfg) as fp32, OnnxRuntimeBackend(INT8_ONNX, cfg) as int8:
        noise = _feed(fp32)["noise"]
        for kind, feeds in (("sim", held_out), ("real", real)):
            for f in feeds:
                a, b = fp32.infer({**f, "noise": noise}), int8.infer({**f, "noise": noise})
                assert np.all(np.isfinite(b.trajectories)) and np.all(np.isfinite(b.scores))
                if kind == "sim":
                    ia, ib = int(np.argmax(a.scores)), int(np.argmax(b.scores))
                    d = np.linalg.norm(a.trajectories[ia, :, :2] - b.trajectories[ib, :, :2], axis=-1)
                    diffs.append(float(d.max()))
    assert len(diffs) >= 3 and max(diffs) <= 0.1, f"INT8 best mode {diffs} m from FP32"


@pytest.mark.skipif(
    not INT8_ONNX.exists(), reason="engines/student_int8.onnx not built (vla-edge-train quantize)"
)
def test_int8_skips_qdq_optimizers_runs_integer_convs(contract_onnx: Path, tmp_path: Path) -> None:
    """INT8 engines open without inference.yaml's qdq_disabled_optimizers (FP32 ones keep them);
    the optimised graph the runtime saves runs every quantised conv as an integer kernel."""
    import onnx

    cfg = inference_cfg(tmp_path)
    cfg["onnxruntime"].update(save_optimized=True, graph_optimization="all", providers=["cpu"])
    skipped = sorted(set(cfg["onnxruntime"]["qdq_disabled_optimizers"]))
    assert OnnxRuntimeBackend(contract_onnx, cfg).disabled_optimizers() == []
    with OnnxRuntimeBackend(INT8_ONNX, cfg) as be:
        assert be.disabled_optimizers() == skipped
        assert np.all(np.isfinite(be.infer(_feed(be)).trajectories))
    saved = sorted((tmp_path / "cache").glob("student_int8.*.all.*.onnx"))
    assert len(saved) == 1 and (".skip" in saved[0].name) == bool(skipped)
    nodes = onnx.load(str(INT8_ONNX)).graph.node
    dq_out = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    quantised = {n.name for n in nodes if n.op_type == "Conv" and n.input[1] in dq_out}  # weight is a DQ
    optimised = onnx.load(str(saved[0])).graph.node
    assert quantised and not quantised & {n.name for n in optimised if n.op_type == "Conv"}
    assert sum(n.op_type == "QLinearConv" for n in optimised) >= len(quantised)
