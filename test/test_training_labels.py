"""Teacher-label schema: save/load, validation errors, external JSONL import, alignment to frames."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _labels(n=5, T=8, A=20, bev=(4, 20, 20), teacher="t"):
    from training.labels import TeacherLabels

    rng = np.random.default_rng(0)
    return TeacherLabels(
        teacher=teacher, dt=0.5, bag=np.array(["a"] * 3 + ["b"] * (n - 3)), stamp=np.arange(n) * 0.2 + 100.0,
        trajectory=rng.normal(size=(n, T, 3)).astype(np.float32), confidence=np.full(n, 0.7, np.float32),
        mode_logits=rng.normal(size=(n, A)).astype(np.float32),
        bev_features=rng.normal(size=(n, *bev)).astype(np.float16), reasoning=np.array(["go"] * n),
    )  # fmt: skip


def test_roundtrip(tmp_path):
    from training.labels import load_labels, save_labels

    lab = _labels()
    save_labels(tmp_path / "l.npz", lab)
    back = load_labels(tmp_path / "l.npz")
    assert back.teacher == "t" and back.dt == 0.5
    assert np.array_equal(back.trajectory, lab.trajectory) and np.array_equal(back.bag, lab.bag)
    assert back.bev_features.dtype == np.float16 and back.reasoning.tolist() == ["go"] * 5
    # optional fields may be absent
    lab.mode_logits = lab.bev_features = lab.reasoning = None
    save_labels(tmp_path / "m.npz", lab)
    m = load_labels(tmp_path / "m.npz")
    assert m.mode_logits is None and m.bev_features is None and m.reasoning is None


def test_schema_violations_name_the_field(tmp_path):
    from training.labels import LabelSchemaError, load_labels, save_labels

    lab = _labels()
    lab.trajectory[0, 0, 0] = np.nan
    with pytest.raises(LabelSchemaError, match="NaN"):
        save_labels(tmp_path / "x.npz", lab)
    lab = _labels()
    with pytest.raises(LabelSchemaError, match="T=8, dataset needs T=6"):
        lab.validate(horizon=6)
    with pytest.raises(LabelSchemaError, match="bev_size"):
        lab.validate(bev_size=(10, 10))
    lab.mode_logits = lab.mode_logits[:3]
    with pytest.raises(LabelSchemaError, match="mode_logits"):
        lab.validate()
    with pytest.raises(LabelSchemaError, match="not found"):
        load_labels(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(LabelSchemaError, match="not a readable npz"):
        load_labels(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", format=np.array("something/9"))
    with pytest.raises(LabelSchemaError, match="format"):
        load_labels(tmp_path / "other.npz")


def test_external_jsonl_resampled_to_dataset_horizon(tmp_path):
    from training.labels import LabelSchemaError, labels_from_jsonl

    # a VLA output at 0.25 s for 4 s, straight at 4 m/s; 2-column (x, y) on the second line
    t = np.arange(1, 17) * 0.25
    rows = [
        {"bag": "a", "stamp": 100.0, "dt": 0.25,
         "trajectory": np.column_stack([4 * t, 0 * t, 0 * t]).tolist(),
         "mode_logits": [0.0] * 20, "confidence": 0.9, "reasoning": "clear road"},
        {"bag": "a", "stamp": 100.2, "dt": 0.25, "trajectory": np.column_stack([4 * t, 0 * t]).tolist(),
         "mode_logits": [1.0] * 20},
    ]  # fmt: skip
    p = tmp_path / "vla.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    lab = labels_from_jsonl(p, "alpamayo", 0.5, 8)
    assert lab.trajectory.shape == (2, 8, 3)
    assert np.allclose(lab.trajectory[:, :, 0], 4 * 0.5 * np.arange(1, 9))
    assert lab.reasoning.tolist() == ["clear road", ""] and lab.confidence.tolist() == pytest.approx(
        [0.9, 1.0]
    )
    short = dict(rows[0], trajectory=rows[0]["trajectory"][:4])
    p.write_text(json.dumps(rows[0]) + "\n" + json.dumps(short) + "\n")
    with pytest.raises(LabelSchemaError, match=r"vla.jsonl:2: .*spans 1.00 s"):
        labels_from_jsonl(p, "alpamayo", 0.5, 8)
    p.write_text('{"bag": "a"}\n')
    with pytest.raises(LabelSchemaError, match=r":1: bad external label"):
        labels_from_jsonl(p, "alpamayo", 0.5, 8)


def test_align_by_bag_and_stamp_tolerance():
    from training.labels import align

    lab = _labels()
    bags = np.array(["a", "a", "b", "b", "c"])
    stamps = np.array([100.01, 100.35, 100.6, 100.9, 100.0])
    rows = align(lab, bags, stamps, tol=0.06)
    # a@100.01 -> row 0; a@100.35 is 0.05 from row 2 (100.4)... and 0.15 from row 1 -> row 2
    assert rows.tolist() == [0, 2, 3, -1, -1]  # b@100.9 too far from 100.8 (0.1 > 0.06); no bag c
