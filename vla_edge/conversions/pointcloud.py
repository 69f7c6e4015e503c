"""``sensor_msgs/PointCloud2`` <-> numpy, for any vendor layout.

Hand-written on purpose: ``sensor_msgs_py`` (``point_cloud2.read_points``) and
``cv_bridge`` cannot be installed from any registry reachable here (they ship only as
ROS distro packages, not on PyPI), and the runtime core must not import rclpy anyway.
Reading duck-types on the message fields (``fields``, ``point_step``, ``row_step``,
``data``...), which rclpy messages and ``rosbags``-deserialized messages share; building
goes through a :class:`vla_edge.msgfactory.MessageFactory`, so both bindings get the same
code path.

Decoding is fully vectorised (no per-point Python loop): the message buffer is viewed,
without a copy, as a numpy structured array whose dtype mirrors the declared fields (any
order, offsets, datatype, byte order, ``point_step``/``row_step`` padding, organised
``height > 1``). For the layouts drivers actually publish (x, y, z as adjacent native
float32) one strided 16-byte copy per point yields the N x 4 result directly; see
:func:`_decode_xyzi`. ``bench/bench_pointcloud.py`` measures it against a plain copy.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_edge.errors import PointCloudError
from vla_edge.msgfactory import MessageFactory

# sensor_msgs/PointField datatype constants -> numpy type code (byte order added later).
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
DATATYPES: dict[int, str] = {
    INT8: "i1",
    UINT8: "u1",
    INT16: "i2",
    UINT16: "u2",
    INT32: "i4",
    UINT32: "u4",
    FLOAT32: "f4",
    FLOAT64: "f8",
}
DATATYPE_NAMES = {
    INT8: "INT8",
    UINT8: "UINT8",
    INT16: "INT16",
    UINT16: "UINT16",
    INT32: "INT32",
    UINT32: "UINT32",
    FLOAT32: "FLOAT32",
    FLOAT64: "FLOAT64",
}
_NUMPY_TO_DATATYPE = {np.dtype(v).str[1:]: k for k, v in DATATYPES.items()}

# Field names tried, in order, for the intensity channel. Ouster publishes both
# ``intensity`` (signal) and ``reflectivity``; the first one present wins.
INTENSITY_NAMES: tuple[str, ...] = ("intensity", "reflectivity", "i")


@dataclass(frozen=True)
class FieldSpec:
    """One declared point field.

    Attributes:
        name: Field name.
        offset: Byte offset inside a point.
        datatype: ``sensor_msgs/PointField`` datatype constant (1..8).
        count: Number of elements (only the first is read).
    """

    name: str
    offset: int
    datatype: int
    count: int = 1

    @property
    def size(self) -> int:
        """Bytes the field occupies inside a point."""
        return np.dtype(DATATYPES[self.datatype]).itemsize * max(self.count, 1)


@dataclass(frozen=True)
class PointLayout:
    """A PointCloud2 point layout for :func:`xyzi_to_pointcloud2`.

    Attributes:
        name: Short name (``"ouster"``...).
        fields: The fields, each with offset and datatype.
        point_step: Bytes per point (may include padding).
    """

    name: str
    fields: tuple[FieldSpec, ...]
    point_step: int

    def field_names(self) -> list[str]:
        """Names of the fields, in declaration order."""
        return [f.name for f in self.fields]


def _xyz(*more: FieldSpec, intensity_offset: int | None = 12) -> tuple[FieldSpec, ...]:
    base = [FieldSpec("x", 0, FLOAT32), FieldSpec("y", 4, FLOAT32), FieldSpec("z", 8, FLOAT32)]
    if intensity_offset is not None:
        base.append(FieldSpec("intensity", intensity_offset, FLOAT32))
    return (*base, *more)


# Layouts as the common drivers publish them (offsets in bytes).
LAYOUTS: dict[str, PointLayout] = {
    # x, y, z only, padded to 16 bytes like PCL's PointXYZ (e.g. Hesai ground-truth PCD).
    "xyz": PointLayout("xyz", _xyz(intensity_offset=None), 16),
    # x, y, z, intensity float32, packed (KITTI .bin, PCL PointXYZI).
    "xyzi": PointLayout("xyzi", _xyz(), 16),
    "kitti": PointLayout("kitti", _xyz(), 16),
    # nuScenes .pcd.bin: 5 float32 (ring index as float).
    "nuscenes": PointLayout("nuscenes", _xyz(FieldSpec("ring", 16, FLOAT32)), 20),
    # ouster-ros PointXYZIRT: pad after z, intensity f32 @16, t u32 @20, ring u16 @24, 32 B.
    "ouster": PointLayout(
        "ouster",
        _xyz(FieldSpec("t", 20, UINT32), FieldSpec("ring", 24, UINT16), intensity_offset=16),
        32,
    ),
    # ROS 2 velodyne_pointcloud XYZIRT: packed, ring u16 @16, time f32 @18 (unaligned), 22 B.
    "velodyne": PointLayout(
        "velodyne", _xyz(FieldSpec("ring", 16, UINT16), FieldSpec("time", 18, FLOAT32)), 22
    ),
    # Velodyne-style with time as uint32 nanoseconds since sweep start, 24 B.
    "velodyne_u32time": PointLayout(
        "velodyne_u32time",
        _xyz(FieldSpec("ring", 16, UINT16), FieldSpec("time", 20, UINT32)),
        24,
    ),
    # Livox (livox_ros_driver custom -> PointCloud2): tag u8 @16, line u8 @17,
    # offset_time u32 @18 (unaligned, ns since frame start), 22 B.
    "livox": PointLayout(
        "livox",
        _xyz(
            FieldSpec("tag", 16, UINT8),
            FieldSpec("line", 17, UINT8),
            FieldSpec("offset_time", 18, UINT32),
        ),
        22,
    ),
    # Hesai (pandar driver): ring u16 @16, timestamp f64 @18 (unaligned), 26 B.
    "hesai": PointLayout(
        "hesai", _xyz(FieldSpec("ring", 16, UINT16), FieldSpec("timestamp", 18, FLOAT64)), 26
    ),
}


def _field_specs(msg: Any) -> list[FieldSpec]:
    specs = []
    for f in msg.fields:
        dt = int(f.datatype)
        if dt not in DATATYPES:
            raise PointCloudError(
                f"PointCloud2 field '{f.name}' has datatype {dt}; valid are 1..8 "
                f"({', '.join(DATATYPE_NAMES.values())}). Fix the publisher's PointField list."
            )
        specs.append(FieldSpec(str(f.name), int(f.offset), dt, int(f.count)))
    return specs


def _buffer(data: Any) -> np.ndarray:
    """The message's ``uint8[]`` payload as a flat uint8 array (no copy when possible)."""
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1) if data.dtype.itemsize == 1 else data.view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)  # array.array, bytes, memoryview
    except TypeError:
        return np.asarray(data, dtype=np.uint8)  # a plain list of ints


@dataclass(frozen=True)
class _Geometry:
    height: int
    width: int
    point_step: int
    row_step: int
    big_endian: bool


def _geometry(msg: Any, specs: Sequence[FieldSpec], nbytes: int) -> _Geometry:
    g = _Geometry(
        int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step), bool(msg.is_bigendian)
    )
    if g.height < 0 or g.width < 0:
        raise PointCloudError(f"PointCloud2 has negative size height={g.height} width={g.width}")
    if g.height * g.width == 0:
        return g
    for s in specs:
        if s.offset < 0 or s.offset + s.size > g.point_step:
            raise PointCloudError(
                f"PointCloud2 field '{s.name}' ({DATATYPE_NAMES[s.datatype]} x{max(s.count, 1)} at offset "
                f"{s.offset}, {s.size} B) does not fit in point_step={g.point_step} B"
            )
    if g.row_step < g.width * g.point_step:
        raise PointCloudError(
            f"PointCloud2 row_step={g.row_step} B is smaller than width*point_step = "
            f"{g.width}*{g.point_step} = {g.width * g.point_step} B"
        )
    declared = g.height * g.row_step
    if nbytes < declared:
        raise PointCloudError(
            f"PointCloud2 data has {nbytes} B but the header declares height*row_step = "
            f"{g.height}*{g.row_step} = {declared} B (width={g.width}, point_step={g.point_step}); "
            "the message is truncated"
        )
    return g


def _view(buf: np.ndarray, g: _Geometry, specs: Sequence[FieldSpec]) -> np.ndarray:
    """Zero-copy H x W structured view of the wanted fields."""
    order = ">" if g.big_endian else "<"
    dtype = np.dtype(
        {
            "names": [s.name for s in specs],
            "formats": [order + DATATYPES[s.datatype] for s in specs],
            "offsets": [s.offset for s in specs],
            "itemsize": g.point_step,
        }
    )
    return np.ndarray(
        shape=(g.height, g.width), dtype=dtype, buffer=buf, offset=0, strides=(g.row_step, g.point_step)
    )


def _pick_fields(msg: Any) -> tuple[list[FieldSpec], list[FieldSpec]]:
    specs = _field_specs(msg)
    by_name: dict[str, FieldSpec] = {}
    for s in specs:
        by_name.setdefault(s.name, s)  # first declaration wins on duplicates
    missing = [n for n in ("x", "y", "z") if n not in by_name]
    if missing:
        have = ", ".join(f"{s.name}@{s.offset}" for s in specs) or "none"
        raise PointCloudError(
            f"PointCloud2 lacks field(s) {', '.join(missing)} (has: {have}); a cloud needs x, y and z"
        )
    wanted = [by_name["x"], by_name["y"], by_name["z"]]
    for name in INTENSITY_NAMES:
        if name in by_name:
            wanted.append(by_name[name])
            break
    return specs, wanted


_BLOCK = 16  # numpy copies 16-byte items with a fast dedicated loop


def _native_f4(g: _Geometry, spec: FieldSpec) -> bool:
    return spec.datatype == FLOAT32 and g.big_endian == (sys.byteorder == "big")


def _decode_xyzi(buf: np.ndarray, g: _Geometry, wanted: Sequence[FieldSpec]) -> np.ndarray:
    """Copy x, y, z (, intensity) of every point into a new C-contiguous (H*W, 4) float32 array.

    Fast path (every common driver layout: PCL's PointXYZ* family, Ouster, Velodyne,
    Livox, Hesai): x, y, z are native-endian float32 at consecutive offsets ``o, o+4, o+8``
    with 16 bytes available from ``o``. Then one strided copy of that 16-byte window per
    point (numpy has a fast loop for 16-byte items, alignment does not matter) *is* the
    N x 4 result; column 3 is then the intensity if it sits at ``o+12`` as float32,
    otherwise it is overwritten by one strided copy + cast of the intensity field (any
    datatype/offset), or 0 without intensity.

    Anything else (big-endian, non-float32 or scattered x/y/z, 12-byte points): one
    strided copy + cast per field through a structured view.
    """
    n = g.height * g.width
    x, y, z = wanted[:3]
    inten = wanted[3] if len(wanted) == 4 else None
    o = x.offset
    if (
        all(_native_f4(g, s) for s in (x, y, z))
        and (y.offset, z.offset) == (o + 4, o + 8)
        and o + _BLOCK <= g.point_step
    ):
        win = np.dtype({"names": ["w"], "formats": [f"V{_BLOCK}"], "offsets": [o], "itemsize": g.point_step})
        view = np.ndarray((g.height, g.width), dtype=win, buffer=buf, strides=(g.row_step, g.point_step))
        block = np.empty((g.height, g.width), dtype=f"V{_BLOCK}")
        block[...] = view["w"]
        out = block.reshape(-1).view(np.float32).reshape(n, 4)
        if inten is None:
            out[:, 3] = 0.0  # column 3 held whatever followed z
        elif not (inten.offset == o + 12 and _native_f4(g, inten)):
            out[:, 3] = _view(buf, g, [inten])[inten.name].reshape(n)
        return out
    out = np.empty((g.height, g.width, 4), dtype=np.float32)
    view = _view(buf, g, wanted)
    for k, spec in enumerate(wanted):
        out[..., k] = view[spec.name]  # one strided copy + cast per field
    if inten is None:
        out[..., 3] = 0.0
    return out.reshape(n, 4)


def pointcloud2_to_xyzi(msg: Any, *, drop_invalid: bool = True) -> np.ndarray:
    """Convert a ``sensor_msgs/PointCloud2`` (rclpy or rosbags) to N x 4 float32.

    Handles any field order and offsets, every PointField datatype (INT8..FLOAT64, cast to
    float32), ``point_step`` and ``row_step`` padding, organised clouds (``height > 1``,
    flattened row-major) and big-endian data. Intensity is taken from the first of
    :data:`INTENSITY_NAMES` present, else filled with 0.

    Args:
        msg: The cloud message.
        drop_invalid: Drop points whose x, y or z is NaN/Inf (non-finite intensity becomes
            0). With ``False`` the output keeps one row per declared point (``H*W``).

    Returns:
        ``(N, 4)`` float32 array of x, y, z, intensity in the message's frame.

    Raises:
        PointCloudError: x/y/z missing, unknown datatype, a field outside ``point_step``,
            ``row_step < width * point_step``, or data shorter than ``height * row_step``.
    """
    _, wanted = _pick_fields(msg)
    buf = _buffer(msg.data)
    g = _geometry(msg, wanted, buf.size)
    n = g.height * g.width
    if n == 0:
        return np.empty((0, 4), dtype=np.float32)
    out = _decode_xyzi(buf, g, wanted)
    # Exact, cheap screen (one vectorised pass over contiguous memory): the common
    # all-valid cloud returns here.
    finite = np.isfinite(out)
    if finite.all():
        return out
    bad_i = ~finite[:, 3]
    if bad_i.any():
        out[bad_i, 3] = 0.0
        finite[bad_i, 3] = True
    if not drop_invalid:
        return out
    # Row all-finite <=> its 4 bool bytes read as one uint32 are 0x01010101 (any byte order);
    # much faster than finite.all(axis=1).
    keep = finite.view(np.uint32).reshape(-1) == 0x01010101
    return np.compress(keep, out, axis=0)  # ~10x faster than out[keep] for N x 4


def pointcloud2_to_structured(msg: Any, names: Sequence[str] | None = None) -> np.ndarray:
    """All (or the named) fields of a cloud as a flat structured array (a copy, native order).

    Useful for per-point extras such as ``ring`` or ``time``. No points are dropped.

    Args:
        msg: The cloud message.
        names: Fields to return; ``None`` for all declared fields.

    Returns:
        ``(H*W,)`` structured array with one native-endian column per field.

    Raises:
        PointCloudError: A named field is missing, or the layout/data are inconsistent.
    """
    specs = _field_specs(msg)
    by_name: dict[str, FieldSpec] = {}
    for s in specs:
        by_name.setdefault(s.name, s)
    if names is None:
        names = list(by_name)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise PointCloudError(
            f"PointCloud2 lacks field(s) {', '.join(missing)} (has: {', '.join(by_name) or 'none'})"
        )
    wanted = [by_name[n] for n in names]
    buf = _buffer(msg.data)
    g = _geometry(msg, wanted, buf.size)
    out = np.empty((g.height, g.width), dtype=[(s.name, DATATYPES[s.datatype]) for s in wanted])
    if g.height * g.width:
        view = _view(buf, g, wanted)
        for s in wanted:
            out[s.name] = view[s.name]
    return out.reshape(-1)


def _resolve_layout(layout: str | PointLayout) -> PointLayout:
    if isinstance(layout, PointLayout):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise PointCloudError(
            f"unknown PointCloud2 layout '{layout}'; choose one of {', '.join(sorted(LAYOUTS))} "
            "or pass a PointLayout"
        ) from None


def xyzi_to_pointcloud2(
    points: np.ndarray,
    factory: MessageFactory,
    stamp: float,
    frame_id: str,
    layout: str | PointLayout = "xyzi",
    extra: Mapping[str, np.ndarray] | None = None,
    *,
    big_endian: bool = False,
    height: int = 1,
    row_padding: int = 0,
) -> Any:
    """Build a ``sensor_msgs/PointCloud2`` from N x 3 or N x 4 points in a chosen layout.

    Args:
        points: ``(N, 3)`` x, y, z or ``(N, 4)`` x, y, z, intensity.
        factory: Message factory (``RclpyFactory`` or ``RosbagsFactory``).
        stamp: Header stamp in seconds.
        frame_id: Header frame id.
        layout: A name from :data:`LAYOUTS` or a :class:`PointLayout`.
        extra: Per-point arrays for the layout's other fields (``ring``, ``t``, ``time``,
            ``offset_time``...), each of length N; absent ones are written as 0.
        big_endian: Write big-endian data and set ``is_bigendian``.
        height: Rows of an organised cloud (``N`` must be divisible by it); 1 = unorganised.
        row_padding: Extra bytes at the end of every row (``row_step`` padding).

    Returns:
        The message, of the factory's binding.

    Raises:
        PointCloudError: Bad points shape, unknown layout or extra field, wrong extra
            length, or ``N`` not divisible by ``height``.
    """
    lay = _resolve_layout(layout)
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise PointCloudError(f"points must be N x 3 or N x 4, got shape {pts.shape}")
    n = pts.shape[0]
    if height < 1 or n % height:
        raise PointCloudError(f"cannot organise {n} points into height={height} rows")
    width = n // height
    names = lay.field_names()
    extra = dict(extra or {})
    unknown = [k for k in extra if k not in names or k in ("x", "y", "z", "intensity")]
    if unknown:
        raise PointCloudError(
            f"extra field(s) {', '.join(unknown)} not in layout '{lay.name}' (its fields: {', '.join(names)})"
        )
    order = ">" if big_endian else "<"
    dtype = np.dtype(
        {
            "names": names,
            "formats": [order + DATATYPES[f.datatype] for f in lay.fields],
            "offsets": [f.offset for f in lay.fields],
            "itemsize": lay.point_step,
        }
    )
    row_bytes = width * lay.point_step + row_padding
    raw = np.zeros(height * row_bytes, dtype=np.uint8)
    rec = np.ndarray((height, width), dtype=dtype, buffer=raw, strides=(row_bytes, lay.point_step))
    for k, name in enumerate(("x", "y", "z")):
        rec[name] = pts[:, k].reshape(height, width)
    if "intensity" in names and pts.shape[1] == 4:
        rec["intensity"] = pts[:, 3].reshape(height, width)
    for name, values in extra.items():
        arr = np.asarray(values).reshape(-1)
        if arr.size != n:
            raise PointCloudError(f"extra field '{name}' has {arr.size} values for {n} points")
        rec[name] = arr.reshape(height, width)
    fields = [
        factory.make("sensor_msgs/msg/PointField", name=f.name, offset=f.offset, datatype=f.datatype, count=1)
        for f in lay.fields
    ]
    dense = bool(np.isfinite(pts[:, :3]).all()) if n else True
    return factory.make(
        "sensor_msgs/msg/PointCloud2",
        header=factory.header(stamp, frame_id),
        height=height,
        width=width,
        fields=fields,
        is_bigendian=big_endian,
        point_step=lay.point_step,
        row_step=row_bytes,
        data=factory.bytes_field(raw),
        is_dense=dense,
    )


def datatype_of(dtype: np.dtype | str) -> int:
    """PointField datatype constant for a numpy dtype (byte order ignored)."""
    key = np.dtype(dtype).str[1:]
    if key not in _NUMPY_TO_DATATYPE:
        raise PointCloudError(f"numpy dtype {dtype} has no PointField datatype")
    return _NUMPY_TO_DATATYPE[key]
