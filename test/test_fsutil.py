"""Atomic writes (vla_edge/fsutil.py): whole new file or the old one, never a temp left over."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_edge.fsutil import atomic_path, atomic_write


def test_atomic_write_bytes_and_text_create_folders_and_modes(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b" / "x.json"
    atomic_write(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode() and (p.stat().st_mode & 0o777) == 0o600
    atomic_write(p, b"\x00\x01", mode=0o644)
    assert p.read_bytes() == b"\x00\x01" and (p.stat().st_mode & 0o777) == 0o644
    assert sorted(q.name for q in p.parent.iterdir()) == ["x.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    p = tmp_path / "model.onnx"
    atomic_write(p, b"old")
    with pytest.raises(RuntimeError, match="check failed"), atomic_path(p, suffix=".tmp.npz") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.") and tmp.suffix == ".npz"
        tmp.write_bytes(b"new but bad")
        raise RuntimeError("check failed")
    assert p.read_bytes() == b"old"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["model.onnx"]
