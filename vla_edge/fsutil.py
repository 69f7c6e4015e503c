"""Atomic file writes: temp file in the same folder, fsync, ``os.replace``.

Readers (another process, a crash-restarted node) see either the old file or the whole new
one, never a half-written one. The temp file is named ``.<name>.<random><suffix>`` next to
the target, so it is on the same filesystem (``os.replace`` is atomic there) and leftovers
are easy to find (the engine cache sweeps ``.*.tmp``).

Folder swaps (recorder splits, event copies) are a different operation and stay in
:mod:`vla_edge.recording`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, suffix: str = ".tmp", mode: int | None = None
) -> Iterator[Path]:
    """A temp path to write ``path``'s new content to; moved into place when the block succeeds.

    For writers that want a file name (``np.savez``, ``torch.onnx.export``) and checks on the
    written file before it is published. On an exception the temp file is removed and
    ``path`` is left as it was.

    Args:
        path: The final file (its folder is created).
        suffix: Temp file suffix (``.npz`` writers need it to end in ``.npz``).
        mode: ``chmod`` before the rename (``mkstemp`` creates ``0o600``); None keeps that.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            tmp.chmod(mode)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically and durably.

    Args:
        path: The final file (its folder is created).
        data: The whole content.
        mode: ``chmod`` before the rename; None keeps ``mkstemp``'s ``0o600``.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(raw)  # fsynced by atomic_path before the rename
