"""Engine cache logic with FakeTensorRT (TensorRT itself is absent on these machines)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from backends_helpers import FakeTensorRT, make_contract_onnx

from vla_edge import fsutil
from vla_edge.backends import engine_cache as ec
from vla_edge.backends.engine_cache import BuildOptions, EngineCache
from vla_edge.backends.manifest import load_manifest, manifest_path_for
from vla_edge.errors import ManifestError, ModelError

FP16 = BuildOptions(precision="fp16", workspace_mb=1024, optimization_level=3)


@pytest.fixture(scope="module")
def master_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_contract_onnx(tmp_path_factory.mktemp("cache_src") / "student.onnx")


@pytest.fixture
def onnx(master_onnx: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "engines" / "student.onnx"
    dst.parent.mkdir()
    shutil.copy(master_onnx, dst)
    shutil.copy(manifest_path_for(master_onnx), manifest_path_for(dst))
    return dst


def _sidecar(engine: Path) -> Path:
    return engine.parent / engine.name.replace(".engine", ".json")


def _cache(onnx: Path, trt: FakeTensorRT, prune: bool = True) -> EngineCache:
    return EngineCache(onnx.parent / "cache", trt, prune_stale=prune)


def test_key_covers_every_field(onnx: Path) -> None:
    trt = FakeTensorRT()
    man = load_manifest(onnx)
    key = _cache(onnx, trt).key_for(man, FP16)
    assert (key.tensorrt_version, key.compute_capability, key.onnx_sha256, key.precision) == (
        "10.3.0",
        "8.7",
        man.sha256,
        "fp16",
    )
    variants = [
        _cache(onnx, FakeTensorRT(version="10.4.0")).key_for(man, FP16),
        _cache(onnx, FakeTensorRT(compute_capability="9.0")).key_for(man, FP16),
        _cache(onnx, trt).key_for(man, BuildOptions("int8", 1024, 3, "ab" * 32)),
        _cache(onnx, trt).key_for(man, BuildOptions("fp16", 2048, 3)),
        _cache(onnx, trt).key_for(man, BuildOptions("fp16", 1024, 5)),
    ]
    assert len({key.id, *(v.id for v in variants)}) == 6
    assert variants[0].diff(key) == ["tensorrt_version '10.3.0' -> '10.4.0'"]


def test_build_then_hit(onnx: Path, caplog: pytest.LogCaptureFixture) -> None:
    trt = FakeTensorRT()
    cache = _cache(onnx, trt)
    with caplog.at_level(logging.INFO):
        first = cache.get(onnx, load_manifest(onnx), FP16)
    assert first.built and "no cached engine for student.onnx" in first.reason
    assert (
        first.path.name == f"student.fp16.{first.key.id}.engine"
        and first.path.parent == onnx.parent / "cache"
    )
    side = json.loads(_sidecar(first.path).read_text())
    assert side["key"]["onnx_sha256"] == load_manifest(onnx).sha256
    assert side["engine_sha256"] == ec.sha256_file(first.path)
    assert any("building" in r.getMessage() and "no cached engine" in r.getMessage() for r in caplog.records)
    second = cache.get(onnx, load_manifest(onnx), FP16)
    assert not second.built and second.path == first.path and trt.builds == 1
    assert second.engine == first.engine


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": "10.4.1"}, "tensorrt_version '10.3.0' -> '10.4.1'"),
        ({"compute_capability": "9.0"}, "compute_capability '8.7' -> '9.0'"),
    ],
)
def test_key_change_rebuilds_and_says_why(onnx: Path, change: dict, expected: str) -> None:
    first = _cache(onnx, FakeTensorRT()).get(onnx, load_manifest(onnx), FP16)
    os.utime(_sidecar(first.path), (time.time() - 5, time.time() - 5))
    trt2 = FakeTensorRT(**change)
    second = _cache(onnx, trt2).get(onnx, load_manifest(onnx), FP16)
    assert second.built and trt2.builds == 1
    assert second.reason == f"cache key changed: {expected}"
    assert not first.path.exists()  # pruned: this machine can never use it again
    assert any("pruned stale engine" in e for e in second.events)


def test_precisions_coexist_and_options_change_is_named(onnx: Path) -> None:
    trt = FakeTensorRT()
    cache = _cache(onnx, trt)
    fp16 = cache.get(onnx, load_manifest(onnx), FP16)
    fp32 = cache.get(onnx, load_manifest(onnx), BuildOptions("fp32", 1024, 3))
    assert fp16.path.exists() and fp32.path.exists() and trt.builds == 2
    bigger = cache.get(onnx, load_manifest(onnx), BuildOptions("fp16", 4096, 3))
    assert "workspace_mb 1024 -> 4096" in bigger.reason
    assert not fp16.path.exists() and fp32.path.exists()  # only the same precision is pruned


def test_new_onnx_rebuilds_naming_the_hash(onnx: Path, tmp_path: Path) -> None:
    trt = FakeTensorRT()
    _cache(onnx, trt).get(onnx, load_manifest(onnx), FP16)
    make_contract_onnx(onnx, seed=5)  # re-export: new weights, new manifest
    again = _cache(onnx, trt).get(onnx, load_manifest(onnx), FP16)
    assert again.built and again.reason.startswith("cache key changed: onnx_sha256 ")


def test_tampered_onnx_refused_before_any_build(onnx: Path) -> None:
    trt = FakeTensorRT()
    man = load_manifest(onnx)
    with onnx.open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ManifestError, match="refusing to load"):
        _cache(onnx, trt).get(onnx, man, FP16)
    assert trt.builds == 0 and not (onnx.parent / "cache").exists()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", "engine sha256 differs from its sidecar (truncated or modified)"),
        ("no_sidecar", "sidecar missing"),
        ("bad_sidecar", "sidecar unreadable"),
        ("undeserializable", "deserialization failed: FakeTensorRT: not an engine"),
    ],
)
def test_corrupt_cache_entry_deleted_and_rebuilt(onnx: Path, damage: str, reason: str) -> None:
    trt = FakeTensorRT()
    cache = _cache(onnx, trt)
    first = cache.get(onnx, load_manifest(onnx), FP16)
    side = _sidecar(first.path)
    if damage == "truncate":
        first.path.write_bytes(first.path.read_bytes()[:10])
    elif damage == "no_sidecar":
        side.unlink()
    elif damage == "bad_sidecar":
        side.write_text("{half")
    else:  # sha matches the sidecar, but TensorRT rejects the bytes
        first.path.write_bytes(b"garbage engine")
        doc = json.loads(side.read_text())
        doc["engine_sha256"] = ec.sha256_file(first.path)
        side.write_text(json.dumps(doc))
    again = cache.get(onnx, load_manifest(onnx), FP16)
    assert again.built and trt.builds == 2
    assert reason in again.reason and "deleted" in again.reason
    assert again.path == first.path and trt.deserialize(again.path.read_bytes())


def test_force_rebuilds(onnx: Path) -> None:
    trt = FakeTensorRT()
    cache = _cache(onnx, trt)
    cache.get(onnx, load_manifest(onnx), FP16)
    forced = cache.get(onnx, load_manifest(onnx), FP16, force=True)
    assert forced.built and forced.reason == "forced rebuild (--force)" and trt.builds == 2


def test_crash_during_write_leaves_no_engine(onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = FakeTensorRT()
    cache = _cache(onnx, trt)

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated power loss during rename")

    monkeypatch.setattr(fsutil.os, "replace", crash)
    with pytest.raises(OSError, match="simulated power loss"):
        cache.get(onnx, load_manifest(onnx), FP16)
    monkeypatch.undo()
    cache_dir = onnx.parent / "cache"
    assert list(cache_dir.iterdir()) == []  # no half engine, no temp file
    assert cache.get(onnx, load_manifest(onnx), FP16).built


def test_engine_without_sidecar_after_crash_is_rebuilt(onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = FakeTensorRT()
    cache = _cache(onnx, trt)
    real = ec.atomic_write

    def crash_on_sidecar(path: Path, data: bytes) -> None:
        if path.suffix == ".json":
            raise OSError("crash before the sidecar")
        real(path, data)

    monkeypatch.setattr(ec, "atomic_write", crash_on_sidecar)
    with pytest.raises(OSError):
        cache.get(onnx, load_manifest(onnx), FP16)
    monkeypatch.undo()
    again = cache.get(onnx, load_manifest(onnx), FP16)
    assert again.built and "sidecar missing" in again.reason


def test_old_temp_files_are_cleaned(onnx: Path) -> None:
    cache_dir = onnx.parent / "cache"
    cache_dir.mkdir()
    old = cache_dir / ".student.fp16.x.engine.abc.tmp"
    new = cache_dir / ".student.fp16.y.engine.def.tmp"
    old.write_bytes(b"half")
    new.write_bytes(b"being written")
    past = time.time() - 2 * ec.STALE_TMP_S
    os.utime(old, (past, past))
    _cache(onnx, FakeTensorRT()).get(onnx, load_manifest(onnx), FP16)
    assert not old.exists() and new.exists()


def test_build_failures_are_model_errors(onnx: Path) -> None:
    class EmptyBuild(FakeTensorRT):
        def build(self, *a: object) -> bytes:
            return b""

    with pytest.raises(ModelError, match="empty engine"):
        _cache(onnx, EmptyBuild()).get(onnx, load_manifest(onnx), FP16)
    with pytest.raises(ModelError, match="unknown engine precision 'int4'"):
        BuildOptions("int4", 1024, 3)
    with pytest.raises(ModelError, match="workspace"):
        BuildOptions("fp16", 0, 3)


def test_unwritable_cache_dir_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "read_only_share"
    blocker.write_text("a file where the install's engines/ would be")  # mkdir under it fails, even as root
    fallback = tmp_path / "home_cache"
    with caplog.at_level(logging.WARNING):
        assert ec.writable_dir(blocker / "cache", fallback) == fallback
    assert any("not writable" in r.getMessage() for r in caplog.records)
    with pytest.raises(ModelError, match="no writable engine cache directory"):
        ec.writable_dir(blocker / "cache", blocker / "other")
