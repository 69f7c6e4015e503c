"""Read PCD v0.7 files (``ascii`` and ``binary``) into numpy.

The Hesai reference scans in the shared test data are PCD. ``DATA binary_compressed``
(LZF) is not supported and raises :class:`PointCloudError`; convert such files with
``pcl_convert_pcd_ascii_binary <in> <out> 1`` first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vla_edge.errors import PointCloudError

_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8"}
_TYPES.update({("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"})
_MAX_HEADER_LINES = 32


def _parse_header(fh) -> tuple[dict[str, list[str]], int]:
    header: dict[str, list[str]] = {}
    for _ in range(_MAX_HEADER_LINES):
        line = fh.readline()
        if not line:
            break
        text = line.decode("ascii", errors="replace").strip()
        if not text or text.startswith("#"):
            continue
        key, *values = text.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            return header, fh.tell()
    raise PointCloudError("PCD header has no DATA line within the first 32 lines; not a PCD v0.7 file")


def read_pcd(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PCD file into a flat structured array, one named column per field.

    Fields with ``COUNT > 1`` become sub-array columns. Padding fields named ``_`` are kept.

    Args:
        path: The ``.pcd`` file.

    Returns:
        ``(POINTS,)`` structured array (little-endian, as PCD stores it).

    Raises:
        PointCloudError: Missing file, malformed header, unsupported ``DATA`` kind or
            fewer bytes/values than the header declares.
    """
    p = Path(path)
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise PointCloudError(f"cannot open PCD file {p}: {exc.strerror}") from None
    with fh:
        header, start = _parse_header(fh)
        try:
            names = header["FIELDS"]
            sizes = [int(v) for v in header["SIZE"]]
            types = [t.upper() for t in header["TYPE"]]
            counts = [int(v) for v in header.get("COUNT", ["1"] * len(names))]
            n = (
                int(header["POINTS"][0])
                if "POINTS" in header
                else (int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0]))
            )
            kind = header["DATA"][0].lower()
        except (KeyError, IndexError, ValueError) as exc:
            raise PointCloudError(f"PCD file {p} has a malformed header ({exc!r})") from None
        if not len(names) == len(sizes) == len(types) == len(counts):
            raise PointCloudError(
                f"PCD file {p}: FIELDS/SIZE/TYPE/COUNT lengths differ "
                f"({len(names)}/{len(sizes)}/{len(types)}/{len(counts)})"
            )
        fmts = []
        for name, size, typ in zip(names, sizes, types):
            if (typ, size) not in _TYPES:
                raise PointCloudError(f"PCD file {p}: field '{name}' has unsupported TYPE {typ} SIZE {size}")
            fmts.append(_TYPES[(typ, size)])
        dtype = np.dtype(
            [
                (name if name != "_" else f"_pad{i}", "<" + f, (c,) if c > 1 else ())
                for i, (name, f, c) in enumerate(zip(names, fmts, counts))
            ]
        )
        if kind == "binary":
            raw = fh.read()
            need = n * dtype.itemsize
            if len(raw) < need:
                raise PointCloudError(
                    f"PCD file {p} has {len(raw)} data bytes but POINTS={n} x {dtype.itemsize} B = {need} B"
                )
            return np.frombuffer(raw, dtype=dtype, count=n).copy()
        if kind == "ascii":
            fh.seek(start)
            flat = np.loadtxt(fh, dtype=np.float64, ndmin=2)
            cols = sum(counts)
            if flat.shape[0] < n or (n and flat.shape[1] != cols):
                raise PointCloudError(
                    f"PCD file {p} has {flat.shape[0]} rows x {flat.shape[1]} values; header declares "
                    f"{n} x {cols}"
                )
            out = np.empty(n, dtype=dtype)
            col = 0
            for name, c in zip(dtype.names, counts):
                out[name] = flat[:n, col] if c == 1 else flat[:n, col : col + c]
                col += c
            return out
        raise PointCloudError(
            f"PCD file {p}: DATA {kind} is not supported (only ascii and binary); "
            "convert it with pcl_convert_pcd_ascii_binary"
        )


def pcd_to_xyzi(cloud: np.ndarray) -> np.ndarray:
    """N x 4 float32 (x, y, z, intensity-or-0) from a :func:`read_pcd` array, NaN/Inf dropped."""
    names = cloud.dtype.names or ()
    missing = [k for k in ("x", "y", "z") if k not in names]
    if missing:
        raise PointCloudError(f"PCD cloud lacks field(s) {', '.join(missing)} (has: {', '.join(names)})")
    out = np.zeros((cloud.shape[0], 4), dtype=np.float32)
    for k, name in enumerate(("x", "y", "z")):
        out[:, k] = cloud[name]
    if "intensity" in names:
        out[:, 3] = cloud["intensity"]
    out[~np.isfinite(out[:, 3]), 3] = 0.0
    return out[np.isfinite(out[:, :3]).all(axis=1)]
