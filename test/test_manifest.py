"""Manifest write/load/verify: round trip, tamper refusal and malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_edge.backends.manifest import (
    FORMAT,
    load_manifest,
    manifest_path_for,
    sha256_file,
    verify_onnx,
    write_manifest,
)
from vla_edge.errors import ManifestError, ModelError

INPUTS = [
    {"name": "pillar_features", "shape": [1, 16, 4, 10], "dtype": "float32"},
    ("pillar_coords", [1, 16, 2], "int32"),
]
OUTPUTS = [{"name": "trajectories", "shape": [1, 3, 8, 3], "dtype": "float32"}]


def _write(tmp_path: Path, payload: bytes = b"not really onnx but hashed") -> tuple[Path, Path]:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(payload)
    man = write_manifest(
        onnx,
        inputs=INPUTS,
        outputs=OUTPUTS,
        model_config={"trajectory": {"dt": 0.5}},
        anchors=[[[1.0, 0.0, 0.0]] * 8] * 3,
        weights="random-seeded",
        preset="tiny",
        opset=17,
        extra={"training": {"seed": 0}},
    )
    return onnx, man


def test_round_trip(tmp_path: Path) -> None:
    onnx, man = _write(tmp_path)
    assert man == manifest_path_for(onnx)
    m = load_manifest(man)
    assert json.loads(man.read_text())["format"] == FORMAT
    assert m.sha256 == sha256_file(onnx)
    assert m.input_names == ("pillar_features", "pillar_coords")
    assert m.input("pillar_coords").shape == (1, 16, 2)
    assert m.output("trajectories").dtype == "float32"
    assert m.dt == 0.5
    assert m.extra == {"training": {"seed": 0}}
    assert verify_onnx(m) == onnx.resolve()
    assert load_manifest(onnx).sha256 == m.sha256  # .onnx path finds its sibling manifest


def test_tampered_onnx_refused(tmp_path: Path) -> None:
    onnx, man = _write(tmp_path)
    onnx.write_bytes(onnx.read_bytes() + b"x")
    with pytest.raises(ManifestError, match=r"refusing to load; re-export with `python -m training.export`"):
        verify_onnx(load_manifest(man))


def test_manifest_pointing_elsewhere(tmp_path: Path) -> None:
    _, man = _write(tmp_path)
    other = tmp_path / "other.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ManifestError, match=r"not .*other\.onnx"):
        verify_onnx(load_manifest(man), other)
    doc = json.loads(man.read_text())
    doc["onnx"] = "missing.onnx"
    man.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=r"model file not found: .*missing\.onnx"):
        verify_onnx(load_manifest(man))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("sha256"), "lacks keys"),
        (lambda d: d.update(format="other/9"), "format"),
        (lambda d: d.update(sha256="abc"), "64 lower-case hex"),
        (lambda d: d.update(opset=11), "opset"),
        (lambda d: d.update(weights="magic"), "weights"),
        (lambda d: d.update(onnx="../x.onnx"), "bare file name"),
        (lambda d: d["inputs"][0].update(shape=[1, -1]), "positive static ints"),
        (lambda d: d["inputs"][0].update(dtype="complex64"), "dtype"),
        (lambda d: d["inputs"].append(dict(d["inputs"][0])), "duplicate"),
    ],
)
def test_malformed_manifest(tmp_path: Path, mutate, match: str) -> None:
    _, man = _write(tmp_path)
    doc = json.loads(man.read_text())
    mutate(doc)
    man.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=match):
        load_manifest(man)


def test_unreadable_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ManifestError, match="JSON object"):
        load_manifest(bad)


def test_write_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model file not found"):
        write_manifest(tmp_path / "none.onnx", inputs=INPUTS, outputs=OUTPUTS, model_config={},
                       anchors=[], weights="trained", preset="tiny", opset=17)  # fmt: skip
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    kw = dict(inputs=INPUTS, outputs=OUTPUTS, model_config={}, anchors=[], preset="tiny")
    with pytest.raises(ManifestError, match="weights"):
        write_manifest(onnx, weights="pretend", opset=17, **kw)
    with pytest.raises(ManifestError, match="opset"):
        write_manifest(onnx, weights="trained", opset=13, **kw)
    with pytest.raises(ManifestError, match="override"):
        write_manifest(onnx, weights="trained", opset=17, extra={"sha256": "x"}, **kw)
    assert not manifest_path_for(onnx).exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_dt_is_clear(tmp_path: Path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    man = write_manifest(onnx, inputs=INPUTS, outputs=OUTPUTS, model_config={"head": {}},
                         anchors=[], weights="trained", preset="tiny", opset=17)  # fmt: skip
    with pytest.raises(ManifestError, match="no trajectory 'dt'"):
        _ = load_manifest(man).dt
