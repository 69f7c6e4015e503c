"""Salvage scanner for damaged MCAP files (pure Python; no rclpy, no rosbags reader).

``rosbags`` reads an MCAP through its summary section and refuses, or raises half-way,
when a record is corrupt or the file was cut short (a split open when the disk filled or
the power went). :class:`McapScan` walks the records from the start instead, keeps every
message of every intact chunk, and reports each damaged place as a :class:`ScanProblem`
naming the file and byte offset. After a damaged top-level record it resynchronises on
the next chunk whose CRC checks out, so one bad record costs one chunk, not the bag.

Only uncompressed chunks (what the recorder writes: rosbags' default) and top-level
messages are decoded; a compressed chunk is reported and skipped.

Record layouts: https://mcap.dev/spec (Schema 0x03, Channel 0x04, Message 0x05, Chunk 0x06).
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"\x89MCAP0\r\n"
_SCHEMA, _CHANNEL, _MESSAGE, _CHUNK, _FOOTER, _DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F
_MAX_OPCODE = 0x10


@dataclass(frozen=True)
class ScanProblem:
    """One damaged place: byte ``offset`` in ``path`` and what is wrong there."""

    path: Path
    offset: int
    message: str

    def __str__(self) -> str:
        return f"{self.path} at byte {self.offset}: {self.message}"


@dataclass(frozen=True)
class RawMessage:
    """One salvaged message: topic, ROS type name, log time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


@dataclass
class McapScan:
    """Walk one ``.mcap`` file record by record (see the module docstring).

    Attributes:
        path: The file.
        problems: Damaged places found so far (filled while :meth:`messages` runs).
    """

    path: Path
    problems: list[ScanProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._schemas: dict[int, str] = {}
        self._channels: dict[int, tuple[str, int]] = {}

    def _problem(self, offset: int, message: str) -> None:
        if not any(p.offset == offset for p in self.problems):
            self.problems.append(ScanProblem(self.path, offset, message))

    def messages(self) -> Iterator[RawMessage]:
        """Every readable message in file order; damage is recorded in :attr:`problems`."""
        self.problems.clear()
        with self.path.open("rb") as fh:
            size = fh.seek(0, 2)
            if size < len(MAGIC):
                self._problem(0, f"file has {size} B, shorter than the MCAP magic")
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                if mm[: len(MAGIC)] != MAGIC:
                    self._problem(0, "not an MCAP file (bad magic)")
                    return
                yield from self._top_level(mm, len(MAGIC), size)

    def _top_level(self, mm: mmap.mmap, pos: int, size: int) -> Iterator[RawMessage]:
        while pos < size:
            if size - pos < 9:
                self._problem(pos, f"truncated record header ({size - pos} B left); file cut short")
                return
            op = mm[pos]
            (length,) = struct.unpack_from("<Q", mm, pos + 1)
            body = pos + 9
            if op == 0 or op > _MAX_OPCODE or length > size - body:
                what = (
                    f"record 0x{op:02x} declares {length} B but {size - body} B are left; file cut short"
                    if 0 < op <= _MAX_OPCODE
                    else f"invalid record opcode 0x{op:02x}"
                )
                nxt = self._resync(mm, pos + 1, size)
                skipped = "rest of file" if nxt is None else f"{nxt - pos} B up to the next intact chunk"
                self._problem(pos, f"{what}; skipped {skipped}")
                if nxt is None:
                    return
                pos = nxt
                continue
            if op == _CHUNK:
                yield from self._chunk(mm, pos, body, length)
            elif op in (_SCHEMA, _CHANNEL, _MESSAGE):
                yield from self._records(mm, pos, body + length)
            elif op in (_DATA_END, _FOOTER):
                return  # summary section follows: nothing new for a salvage read
            pos = body + length

    def _chunk_ok(self, mm: mmap.mmap, body: int, length: int) -> tuple[str, int, int] | None:
        """``(compression, records start, records end)`` of a chunk whose CRC checks out."""
        try:
            _, _, usize, crc, clen = struct.unpack_from("<QQQII", mm, body)
            comp = bytes(mm[body + 32 : body + 32 + clen]).decode()
            p = body + 32 + clen
            (rlen,) = struct.unpack_from("<Q", mm, p)
        except (struct.error, UnicodeDecodeError, ValueError):
            return None
        start, end = p + 8, p + 8 + rlen
        if end > body + length or end > len(mm):
            return None
        if comp == "" and (rlen != usize or (crc and zlib.crc32(mm[start:end]) != crc)):
            return None
        return comp, start, end

    def _resync(self, mm: mmap.mmap, pos: int, size: int) -> int | None:
        """Offset of the next chunk record that parses and whose CRC matches, or None."""
        while True:
            pos = mm.find(bytes([_CHUNK]), pos)
            if pos < 0 or pos + 9 > size:
                return None
            (length,) = struct.unpack_from("<Q", mm, pos + 1)
            if length <= size - pos - 9 and self._chunk_ok(mm, pos + 9, length) is not None:
                return pos
            pos += 1

    def _chunk(self, mm: mmap.mmap, rec: int, body: int, length: int) -> Iterator[RawMessage]:
        parsed = self._chunk_ok(mm, body, length)
        if parsed is None:
            self._problem(rec, "chunk is corrupt (bad layout or CRC mismatch); its messages are skipped")
            return
        comp, start, end = parsed
        if comp:
            self._problem(rec, f"chunk compressed with '{comp}' cannot be salvaged here; skipped")
            return
        yield from self._records(mm, start, end)

    def _records(self, mm: mmap.mmap, pos: int, end: int) -> Iterator[RawMessage]:
        """Schema/channel/message records in ``[pos, end)`` (a chunk body or one record)."""
        while pos < end:
            try:
                op = mm[pos]
                (length,) = struct.unpack_from("<Q", mm, pos + 1)
                b, e = pos + 9, pos + 9 + length
                if e > end:
                    raise ValueError(f"record 0x{op:02x} runs past its container")
                msg = self._record(mm, op, b, e)
            except (struct.error, ValueError, UnicodeDecodeError, IndexError) as exc:
                self._problem(pos, f"corrupt record ({exc}); rest of this chunk skipped")
                return
            if msg is not None:
                yield msg
            pos = e

    def _record(self, mm: mmap.mmap, op: int, b: int, e: int) -> RawMessage | None:
        if op == _SCHEMA:
            (sid,) = struct.unpack_from("<H", mm, b)
            name, _ = _string(mm, b + 2, e)
            self._schemas[sid] = name
        elif op == _CHANNEL:
            cid, sid = struct.unpack_from("<HH", mm, b)
            topic, _ = _string(mm, b + 4, e)
            self._channels[cid] = (topic, sid)
        elif op == _MESSAGE:
            cid, _, log_ns, _ = struct.unpack_from("<HIQQ", mm, b)
            chan = self._channels.get(cid)
            if chan is None:
                raise ValueError(f"message on unknown channel {cid}")
            msgtype = self._schemas.get(chan[1], "")
            return RawMessage(chan[0], msgtype, int(log_ns), bytes(mm[b + 22 : e]))
        return None

    def channels(self) -> dict[str, str]:
        """``{topic: msgtype}`` seen so far."""
        return {t: self._schemas.get(s, "") for t, s in self._channels.values()}


def _string(mm: mmap.mmap, pos: int, end: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", mm, pos)
    if pos + 4 + n > end:
        raise ValueError("string runs past its record")
    return bytes(mm[pos + 4 : pos + 4 + n]).decode(), pos + 4 + n


def mcap_files(path: str | Path) -> list[Path]:
    """The ``.mcap`` file(s) of a bag directory, or ``[path]`` for a file."""
    p = Path(path)
    return sorted(p.glob("*.mcap")) if p.is_dir() else [p]
