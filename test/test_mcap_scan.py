"""Damaged MCAP bags (issue 14.9/14.10): a corrupt record or a cut-short file gives the
intact messages plus a problem naming the file and byte offset, never a traceback."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from vla_edge.bagio import BagWriter, open_bag
from vla_edge.conversions import xyzi_to_pointcloud2
from vla_edge.errors import BagError
from vla_edge.mcap_scan import McapScan
from vla_edge.msgfactory import RosbagsFactory

F = RosbagsFactory()
N = 24  # clouds of ~130 kB: rosbags closes a chunk every ~1 MB, so several chunks


def _write(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with BagWriter(path) as w:
        for i in range(N):
            pts = rng.uniform(-20, 20, (8000, 4)).astype(np.float32)
            w.write(
                "/lidar", "sensor_msgs/msg/PointCloud2", xyzi_to_pointcloud2(pts, F, i, "lidar"), float(i + 1)
            )
    return next(path.glob("*.mcap"))


def _chunks(mcap: Path) -> list[tuple[int, int]]:
    """(offset, length) of the top-level chunk records."""
    data = mcap.read_bytes()
    pos, out = 8, []
    while pos + 9 <= len(data):
        op = data[pos]
        (n,) = struct.unpack_from("<Q", data, pos + 1)
        if op == 0x06:
            out.append((pos, n))
        if op == 0x0F:
            break
        pos += 9 + n
    return out


def test_intact_bag_scans_like_rosbags(tmp_path: Path) -> None:
    mcap = _write(tmp_path / "bag")
    scan = McapScan(mcap)
    msgs = list(scan.messages())
    assert not scan.problems and len(msgs) == N
    assert [m.log_time_ns for m in msgs] == [(i + 1) * 10**9 for i in range(N)]
    assert len(_chunks(mcap)) >= 3


def test_corrupt_chunk_skips_one_chunk_and_names_offset(tmp_path: Path) -> None:
    mcap = _write(tmp_path / "bag")
    off, _ = _chunks(mcap)[1]
    data = bytearray(mcap.read_bytes())
    (clen,) = struct.unpack_from("<I", data, off + 9 + 28)
    first = off + 9 + 32 + clen + 8  # first record inside the second chunk
    struct.pack_into("<Q", data, first + 1, 2**40)  # its length field overwritten: corrupt record
    mcap.write_bytes(bytes(data))
    with open_bag(tmp_path / "bag") as bag:
        got = [m.stamp for m in bag.messages()]
        assert bag.problems and f"{mcap} at byte {first}" in bag.problems[0], bag.problems
    assert 0 < len(got) < N and got == sorted(got)
    assert got[-1] == pytest.approx(N), "messages after the damaged chunk were lost"


def test_file_cut_short_keeps_everything_before_the_cut(tmp_path: Path) -> None:
    mcap = _write(tmp_path / "bag")
    chunks = _chunks(mcap)
    cut = chunks[-1][0] + 100  # inside the last chunk: disk full / power loss while writing
    mcap.write_bytes(mcap.read_bytes()[:cut])
    with open_bag(tmp_path / "bag") as bag:
        got = list(bag.messages())
        assert any(f"at byte {chunks[-1][0]}" in p and "cut short" in p for p in bag.problems), bag.problems
    assert len(got) >= N // 2 and [m.stamp for m in got] == pytest.approx([i + 1 for i in range(len(got))])
    assert got[0].msg.width == 8000


def test_garbage_and_empty_give_a_clear_error(tmp_path: Path) -> None:
    mcap = _write(tmp_path / "bag")
    mcap.write_bytes(b"\x89MCAP0\r\n" + bytes(64))
    with pytest.raises(BagError, match=rf"no readable message in .*bag.*{mcap.name} at byte 8"):
        open_bag(tmp_path / "bag").__enter__()
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "bag", other)
    next(other.glob("*.mcap")).write_bytes(b"not a bag")
    with pytest.raises(BagError, match="not an MCAP file"):
        open_bag(other).__enter__()
