"""Test helpers for the backend tests (not a test module).

``make_contract_onnx`` writes a small, real ONNX graph with the exact contract I/O names,
shapes and dtypes (``docs/architecture.md``) and its manifest, so backend and runner tests
run real ONNX Runtime without the trained student. Its outputs depend on every input, so a
wrong wiring changes them:

* ``scores[a] = mean(pillar_features) @ W1 + ego_state @ W2 + 1e-3 * pillar_count
  + 1e-4 * mean(pillar_coords) + mean(reference_path) @ w3``;
* ``trajectories = anchors + 0.1 * noise + 0.01 * scores[..., None, None]``.

``FakeTensorRT`` stands in for TensorRT in engine-cache tests: it "serializes" the ONNX
hash and options into bytes and "deserializes" only bytes it made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vla_edge.backends.engine_cache import BuildOptions
from vla_edge.backends.manifest import Manifest, write_manifest
from vla_edge.config import load_config
from vla_edge.errors import ModelError
from vla_edge.pillarize import PillarSpec

REPO = Path(__file__).resolve().parents[1]
SHIPPED_ONNX = REPO / "engines" / "student.onnx"


def contract_shapes(model_cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Contract shapes derived from ``config/model.yaml``."""
    p, i, t = model_cfg["pillars"], model_cfg["inputs"], model_cfg["trajectory"]
    P, M, C = p["max_pillars"], p["max_points_per_pillar"], len(p["point_features"])
    K, A, T = i["reference_path"]["num_points"], t["num_anchors"], t["num_poses"]
    return {
        "pillar_features": (1, P, M, C),
        "pillar_coords": (1, P, 2),
        "pillar_count": (1,),
        "ego_state": (1, 6),
        "reference_path": (1, K, 2),
        "noise": (1, A, T, 3),
        "trajectories": (1, A, T, 3),
        "scores": (1, A),
    }


def make_contract_onnx(path: Path, model_cfg: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Write the contract-shaped test ONNX and its manifest; returns the ONNX path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = model_cfg or load_config("model")
    sh = contract_shapes(cfg)
    A, T = sh["scores"][1], sh["noise"][2]
    C = sh["pillar_features"][3]
    rng = np.random.default_rng(seed)
    xs = (
        np.linspace(2.0, 30.0, A, dtype=np.float32)[:, None] * np.arange(1, T + 1, dtype=np.float32)[None] / T
    )
    anchors = np.zeros((A, T, 3), dtype=np.float32)
    anchors[..., 0] = xs
    anchors[..., 1] = rng.normal(0, 1, (A, 1)).astype(np.float32) * np.arange(1, T + 1) / T
    inits = [
        numpy_helper.from_array(anchors[None], "anchors"),
        numpy_helper.from_array(rng.normal(0, 1, (C, A)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.normal(0, 1, (6, A)).astype(np.float32), "W2"),
        numpy_helper.from_array(rng.normal(0, 0.1, (2, A)).astype(np.float32), "W3"),
        numpy_helper.from_array(np.array(1e-3, np.float32), "c_count"),
        numpy_helper.from_array(np.array(1e-4, np.float32), "c_coord"),
        numpy_helper.from_array(np.array(0.1, np.float32), "c_noise"),
        numpy_helper.from_array(np.array(0.01, np.float32), "c_score"),
        numpy_helper.from_array(np.array([1, A, 1, 1], np.int64), "score_shape"),
    ]
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["pillar_features"], ["f_mean"], axes=[1, 2], keepdims=0),  # [1, C]
        n("MatMul", ["f_mean", "W1"], ["s_feat"]),
        n("MatMul", ["ego_state", "W2"], ["s_ego"]),
        n("ReduceMean", ["reference_path"], ["r_mean"], axes=[1], keepdims=0),  # [1, 2]
        n("MatMul", ["r_mean", "W3"], ["s_ref"]),
        n("Cast", ["pillar_count"], ["count_f"], to=TensorProto.FLOAT),
        n("Mul", ["count_f", "c_count"], ["s_count"]),
        n("Cast", ["pillar_coords"], ["coords_f"], to=TensorProto.FLOAT),
        n("ReduceMean", ["coords_f"], ["c_mean"], axes=[1, 2], keepdims=0),  # [1]
        n("Mul", ["c_mean", "c_coord"], ["s_coord"]),
        n("Add", ["s_feat", "s_ego"], ["s1"]),
        n("Add", ["s1", "s_ref"], ["s2"]),
        n("Add", ["s2", "s_count"], ["s3"]),
        n("Add", ["s3", "s_coord"], ["scores"]),
        n("Mul", ["noise", "c_noise"], ["noise_s"]),
        n("Add", ["anchors", "noise_s"], ["t1"]),
        n("Reshape", ["scores", "score_shape"], ["scores_4d"]),
        n("Mul", ["scores_4d", "c_score"], ["score_off"]),
        n("Add", ["t1", "score_off"], ["trajectories"]),
    ]
    dtypes = {"pillar_coords": TensorProto.INT32, "pillar_count": TensorProto.INT32}
    in_names = ("pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path", "noise")
    inputs = [helper.make_tensor_value_info(k, dtypes.get(k, TensorProto.FLOAT), sh[k]) for k in in_names]
    outputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, sh[k]) for k in ("trajectories", "scores")]
    graph = helper.make_graph(nodes, "contract_test_model", inputs, outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vla_edge-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    spec = lambda k: {"name": k, "shape": list(sh[k]), "dtype": "int32" if k in dtypes else "float32"}  # noqa: E731
    write_manifest(
        path,
        inputs=[spec(k) for k in in_names],
        outputs=[spec(k) for k in ("trajectories", "scores")],
        model_config=exported_model_config(cfg),
        anchors=anchors,
        weights="random-seeded",
        preset="test-contract",
        opset=17,
        extra={"training": {"note": "onnx.helper contract model for tests"}},
    )
    return path


def exported_model_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The manifest ``model_config`` layout the exporter writes (resolved spec + trajectory)."""
    t = cfg["trajectory"]
    spec = json.loads(json.dumps(asdict(PillarSpec.from_config(cfg))))
    return {"spec": spec, "dt": t["dt"], "num_poses": t["num_poses"], "num_anchors": t["num_anchors"]}


def inference_cfg(tmp_path: Path | None = None) -> dict[str, Any]:
    """``config/inference.yaml`` with the cache directory moved under ``tmp_path``."""
    cfg = json.loads(json.dumps(load_config("inference")))
    if tmp_path is not None:
        cfg["tensorrt"]["cache_dir"] = str(tmp_path / "cache")
    return cfg


class FakeTensorRT:
    """Stand-in for TensorRT in cache tests (absent hardware): bytes in, bytes out.

    Args:
        version: Pretend TensorRT version.
        compute_capability: Pretend GPU compute capability.
    """

    MAGIC = b"FAKE-TRT-ENGINE\n"

    def __init__(self, version: str = "10.3.0", compute_capability: str = "8.7") -> None:
        self._version = version
        self.cc = compute_capability
        self.builds = 0
        self.deserialized = 0

    @property
    def version(self) -> str:
        return self._version

    def compute_capability(self) -> str:
        return self.cc

    def build(self, onnx_path: Path, manifest: Manifest, options: BuildOptions) -> bytes:
        self.builds += 1
        body = json.dumps(
            {"onnx": hashlib.sha256(onnx_path.read_bytes()).hexdigest(), "precision": options.precision}
        ).encode()
        return self.MAGIC + body + b"\n" + hashlib.sha256(body).hexdigest().encode()

    def deserialize(self, data: bytes) -> Any:
        if not data.startswith(self.MAGIC):
            raise ModelError("FakeTensorRT: not an engine (bad magic)")
        body, _, digest = data[len(self.MAGIC) :].rpartition(b"\n")
        if hashlib.sha256(body).hexdigest().encode() != digest:
            raise ModelError("FakeTensorRT: engine payload corrupt")
        self.deserialized += 1
        return {"fake_engine": json.loads(body)}
