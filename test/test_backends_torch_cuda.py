"""torch-CUDA backend: artefact lookup everywhere; FP16 + CUDA graphs where a GPU exists.

The GPU tests run the shipped ``engines/student.ts`` (the model session's TorchScript
export) against ONNX Runtime on the same inputs; they skip with a reason on CPU machines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from backends_helpers import SHIPPED_ONNX, inference_cfg, make_contract_onnx

from vla_edge.backends import torch_cuda_backend as tcb
from vla_edge.backends.base import dummy_inputs
from vla_edge.backends.manifest import load_manifest, manifest_path_for
from vla_edge.errors import BackendUnavailableError, ManifestError, ModelError

HAVE_CUDA = tcb.available()
SHIPPED_TS = SHIPPED_ONNX.with_suffix(".ts")
needs_gpu = pytest.mark.skipif(not HAVE_CUDA, reason="torch with a CUDA device is not available here")
needs_shipped = pytest.mark.skipif(
    not (SHIPPED_ONNX.exists() and SHIPPED_TS.exists()), reason="engines/student.{onnx,ts} not shipped"
)


@pytest.fixture
def onnx(tmp_path: Path) -> Path:
    return make_contract_onnx(tmp_path / "student.onnx")


def _add_ts_entry(onnx: Path, name: str, sha: str) -> None:
    doc = json.loads(manifest_path_for(onnx).read_text())
    doc["torchscript"] = {"file": name, "sha256": sha}
    manifest_path_for(onnx).write_text(json.dumps(doc))


def test_artefact_lookup_order(onnx: Path, tmp_path: Path) -> None:
    man = load_manifest(onnx)
    with pytest.raises(ModelError, match=r"torch artefact not found: .*student\.ts"):
        tcb.find_artefact(onnx, man, "")
    (tmp_path / "student.ts").write_bytes(b"ts")
    assert tcb.find_artefact(onnx, man, "") == tmp_path / "student.ts"
    (tmp_path / "custom.ts").write_bytes(b"custom")
    assert tcb.find_artefact(onnx, man, str(tmp_path / "custom.ts")) == tmp_path / "custom.ts"
    import hashlib

    _add_ts_entry(onnx, "custom.ts", hashlib.sha256(b"custom").hexdigest())
    assert tcb.find_artefact(onnx, load_manifest(onnx), "") == tmp_path / "custom.ts"


def test_tampered_artefact_refused(onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "student.ts").write_bytes(b"modified")
    _add_ts_entry(onnx, "student.ts", "0" * 64)
    with pytest.raises(ManifestError, match=r"student\.ts has sha256 .* refusing to load"):
        tcb.find_artefact(onnx, load_manifest(onnx), "")


def test_corrupt_artefact_is_model_error(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch not installed (pip install .[train])")
    bad = tmp_path / "student.ts"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ModelError, match=r"torch cannot load artefact .*student\.ts"):
        tcb._load_module(torch, bad, torch.device("cpu"))


@pytest.mark.skipif(HAVE_CUDA, reason="CUDA is available here")
def test_no_cuda_is_unavailable(onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "student.ts").write_bytes(b"ts")
    with pytest.raises(BackendUnavailableError, match="torch"):
        tcb.TorchCudaBackend(onnx, inference_cfg(tmp_path)).load()


def _feed(onnx: Path) -> dict[str, np.ndarray]:
    man = load_manifest(onnx)
    rng = np.random.default_rng(3)
    feed = dummy_inputs(man.inputs)
    P = feed["pillar_coords"].shape[1]
    n = P // 4
    feed["pillar_count"][:] = n
    feed["pillar_features"][0, :n] = rng.normal(0, 3, feed["pillar_features"][0, :n].shape)
    feed["pillar_coords"][0, :n] = rng.integers(0, 160, (n, 2))
    feed["ego_state"][0, :3] = [0.6, 0.1, 0.05]
    feed["reference_path"][0, :, 0] = np.arange(feed["reference_path"].shape[1]) * 2.0
    feed["noise"][:] = rng.standard_normal(feed["noise"].shape)
    return feed


def test_error_chain_names_the_root_cause() -> None:
    try:
        try:
            raise RuntimeError("operation not permitted when stream is capturing")
        finally:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
    except RuntimeError as exc:
        text = tcb.error_chain(exc)
    assert text.startswith("RuntimeError: CUDA error: operation failed")
    assert text.endswith("RuntimeError: operation not permitted when stream is capturing")


@needs_shipped
def test_shipped_torchscript_in_plain_interpreter_matches_onnxruntime(tmp_path: Path) -> None:
    """The artefact + executor setting the backend uses (jit_optimize false), on CPU."""
    torch = pytest.importorskip("torch", reason="torch not installed (pip install .[train])")
    from vla_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    man = load_manifest(SHIPPED_ONNX)
    feed = _feed(SHIPPED_ONNX)
    module = tcb._load_module(torch, SHIPPED_TS, torch.device("cpu"))
    with torch.no_grad(), torch.jit.optimized_execution(False):
        outs = module(*[torch.from_numpy(feed[s.name]) for s in man.inputs])
    with OnnxRuntimeBackend(SHIPPED_ONNX, inference_cfg(tmp_path)) as ort_be:
        ref = ort_be.infer(feed)
    np.testing.assert_allclose(outs[0][0].numpy(), ref.trajectories, atol=1e-3)
    np.testing.assert_allclose(outs[1][0].numpy(), ref.scores, atol=1e-3)


@needs_gpu
@needs_shipped
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_shipped_student_matches_onnxruntime(tmp_path: Path, precision: str) -> None:
    from vla_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    cfg = inference_cfg(tmp_path)
    cfg["torch_cuda"]["precision"] = precision
    feed = _feed(SHIPPED_ONNX)
    with tcb.TorchCudaBackend(SHIPPED_ONNX, cfg) as gpu, OnnxRuntimeBackend(SHIPPED_ONNX, cfg) as cpu:
        ref = cpu.infer(feed)
        out = gpu.infer(feed)
        again = gpu.infer(feed)
        assert gpu._graph is not None, f"CUDA graph was not captured: {gpu.capture_error}"
        timings = []
        for be in (gpu, cpu):
            t0 = time.perf_counter()
            for _ in range(20):
                be.infer(feed)
            timings.append(1e3 * (time.perf_counter() - t0) / 20)
        d_traj = float(np.abs(out.trajectories - ref.trajectories).max())
        d_score = float(np.abs(out.scores - ref.scores).max())
        print(
            f"\ntorch_cuda[{precision}, mode {gpu.mode}] vs onnxruntime CPU: max|d traj| {d_traj:.2e} m, "
            f"max|d score| {d_score:.2e}; latency {timings[0]:.2f} ms vs {timings[1]:.2f} ms "
            f"(ratio {timings[1] / timings[0]:.1f}x) on {__import__('torch').cuda.get_device_name(0)}"
        )
    # torch_cuda.deterministic (shipped on): replays of the graph are bit-identical.
    np.testing.assert_array_equal(out.trajectories, again.trajectories)
    # GPU FP32 (no TF32, deterministic) vs CPU: measured 2.3e-3 m max on an H200.
    tol = 0.01 if precision == "fp32" else 0.25  # fp16 over ~30 m trajectories
    assert d_traj < tol and d_score < tol * 10
    assert gpu.mode in (("fp32",) if precision == "fp32" else ("half", "autocast"))


@needs_gpu
@needs_shipped
def test_graph_follows_new_inputs(tmp_path: Path) -> None:
    """Replay must read the static input buffers: other noise -> other trajectories."""
    cfg = inference_cfg(tmp_path)
    feed = _feed(SHIPPED_ONNX)
    with tcb.TorchCudaBackend(SHIPPED_ONNX, cfg) as gpu:
        a = gpu.infer(feed)
        feed["noise"] = -feed["noise"]
        b = gpu.infer(feed)
    assert not np.allclose(a.trajectories, b.trajectories)


@needs_gpu
def test_wrong_artefact_for_manifest(onnx: Path, tmp_path: Path) -> None:
    """A TorchScript file that is not this model fails load with a ModelError, not a crash."""
    import torch

    class Wrong(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    torch.jit.script(Wrong()).save(str(tmp_path / "student.ts"))
    with pytest.raises(ModelError, match=r"cannot run .*student\.ts in any mode"):
        tcb.TorchCudaBackend(onnx, inference_cfg(tmp_path)).load()


def test_shipped_artefact_is_where_the_manifest_says() -> None:
    if not SHIPPED_ONNX.exists():
        pytest.skip("engines/student.onnx not shipped")
    man = load_manifest(SHIPPED_ONNX)
    if "torchscript" not in man.extra:
        pytest.skip("shipped manifest has no torchscript entry")
    assert tcb.find_artefact(SHIPPED_ONNX.resolve(), man, "") == SHIPPED_TS.resolve()


@needs_shipped
def test_shipped_torchscript_runs_in_fp16_mode_on_cpu() -> None:
    """The backend's ``half`` mode (``.half()`` + half inputs) must run on the shipped trace.

    A trace that kept a buffer's ``.float()`` as a no-op failed here, so the GPU backend fell
    back to autocast at about twice the replay time without anyone noticing.
    """
    torch = pytest.importorskip("torch")
    man = load_manifest(SHIPPED_ONNX)
    ts = torch.jit.load(str(SHIPPED_TS), map_location="cpu").eval()
    args = [torch.from_numpy(v) for v in dummy_inputs(man.inputs).values()]
    with torch.no_grad():
        ref = ts(*args)[0]
        out16 = ts.half()(*[a.half() if a.is_floating_point() else a for a in args])[0]
    assert out16.dtype == torch.float16
    assert float((out16.float() - ref).abs().max()) < 0.2  # metres (0.034 on the export inputs)


class FakeCudaTorch:
    """FAKE for the absent GPU: torch on the CPU where the backend asks for CUDA things.

    Pinned host buffers become plain ones and the stream wait does nothing (CPU ops are
    synchronous), so the backend's own staging, fetch and ordering code runs on CI.
    """

    def __init__(self, torch: object) -> None:
        self._torch = torch
        self.cuda = type("FakeCuda", (), {"current_stream": staticmethod(lambda *_: _NoWaitStream())})

    def __getattr__(self, name: str) -> object:
        return getattr(self._torch, name)

    def empty(self, *shape: object, pin_memory: bool = False, **kw: object) -> object:
        return self._torch.empty(*shape, **kw)


class _NoWaitStream:
    def synchronize(self) -> None:
        """CPU work is already done."""


def _backend_on_fake_cuda(torch: object, fetch_bev: bool) -> tcb.TorchCudaBackend:
    """The shipped student in the backend's fp32 mode, its buffers on the CPU (FakeCudaTorch;
    half precision on the CPU is slow, and its casts run on the GPU anyway)."""
    cfg = inference_cfg()
    cfg["torch_cuda"]["fetch_bev"] = fetch_bev
    be = tcb.TorchCudaBackend(SHIPPED_ONNX, cfg)
    be._torch, be.mode = FakeCudaTorch(torch), "fp32"
    be._module = torch.jit.load(str(SHIPPED_TS), map_location="cpu").eval()
    float_or_int = [torch.float32 if s.dtype == "float32" else torch.int32 for s in be.input_specs]
    be._static_in = [torch.zeros(s.shape, dtype=d) for s, d in zip(be.input_specs, float_or_int)]
    be._loaded = True
    return be


class _Recorder:
    """Calls the pillarizer and notes the order (``spec`` as the backend checks it), and which
    ego state the model's buffer holds when the pillarization (on a GPU: the fused graph of
    pillarization + model) is launched."""

    def __init__(self, pillarizer: object, order: list[str], ego_buf: object, fused: bool) -> None:
        self._p, self._order, self.spec, self._ego = pillarizer, order, pillarizer.spec, ego_buf
        self.ego_at_launch: list[np.ndarray] = []
        # On the CPU nothing is captured: ``fused`` plays what the GPU's capture would report
        # (launch then runs the pillarization eagerly and the backend runs the model after it).
        self.fused = fused

    def stage(self, points: np.ndarray) -> int:
        self._order.append("points")
        return self._p.stage(points)

    def launch(self, bucket: int) -> object:
        self._order.append("launch")
        self.ego_at_launch.append(self._ego.numpy().copy())
        return self._p.launch(bucket)


@needs_shipped
@pytest.mark.parametrize(("fetch_bev", "fused"), [(False, False), (True, False), (False, True)])
def test_staged_inputs_and_fetched_outputs_on_fake_cuda(fetch_bev: bool, fused: bool) -> None:
    """The per-frame data path (pinned staging, one wait, BEV left on the device unless
    ``fetch_bev``, pillar count read back; two graphs: the pillarization launched before the
    other inputs are built, so the host builds them while the GPU pillarizes; fused: the inputs
    built while the points upload and uploaded before the one graph is launched) on the CPU
    through FakeCudaTorch; the CUDA-graph and timing parts need a GPU (tests above and
    test_torch_pillarize_gpu.py)."""
    torch = pytest.importorskip("torch")
    from conftest import COMMITTED_SCAN

    from vla_edge.backends.gpu_pillars import GpuPillarizer
    from vla_edge.config import load_config
    from vla_edge.inference import StudentRunner
    from vla_edge.pillarize import PillarSpec, ego_state_input
    from vla_edge.scans import load_scan
    from vla_edge.types import EgoState, Frame

    spec = PillarSpec.from_config(load_config("model"))
    frame = Frame(
        1.0, load_scan(str(COMMITTED_SCAN)), EgoState(1.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0),
        np.stack([np.linspace(-2.0, 40.0, 40), np.zeros(40)], 1),
    )  # fmt: skip
    with StudentRunner.from_config(load_config("model"), "onnxruntime", SHIPPED_ONNX) as ort_runner:
        ref = ort_runner.run(frame)
        feed, count = ort_runner.inputs(frame)
    be = _backend_on_fake_cuda(torch, fetch_bev)
    res = be.infer(feed)  # the CPU-pillar path: every input staged and uploaded
    np.testing.assert_allclose(res.trajectories, ref.trajectories, atol=1e-3)
    assert (res.bev is not None) is fetch_bev
    if fetch_bev:
        assert res.bev.shape == (128, 40, 40) and res.bev.dtype == np.float32
    # the GPU-pillar path: the points upload; two graphs: the pillarization starts, the other
    # inputs are built meanwhile, then the model; fused: the inputs are built and uploaded first
    bufs = {s.name: b for s, b in zip(be.input_specs, be._static_in)}
    order: list[str] = []
    pz = GpuPillarizer(torch, torch.device("cpu"), spec, 200000, bufs, False)
    be._pillarizer = rec = _Recorder(pz, order, bufs["ego_state"], fused)
    rest = {k: v for k, v in feed.items() if not k.startswith("pillar_")}
    res2, count2 = be.infer_points(frame.points, spec, lambda: (order.append("inputs"), rest)[1])
    want = ["points", "inputs", "launch"] if fused else ["points", "launch", "inputs"]
    assert order == want and count2 == count > 0
    np.testing.assert_allclose(res2.trajectories, res.trajectories, atol=1e-3)
    # the staged buffers are reused: a new ego speed reaches the model (fused: uploaded before
    # the launch of the graph that runs it)
    faster = dict(rest, ego_state=ego_state_input(np.array([8.0, 0.0, 0.0]), spec)[None])
    res3, _ = be.infer_points(frame.points, spec, lambda: faster)
    assert not np.array_equal(res3.trajectories, res2.trajectories)
    if fused:
        np.testing.assert_array_equal(rec.ego_at_launch[-1], faster["ego_state"])
