"""PointCloud2 <-> numpy: real scans, vendor layouts, every bad-input case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import HAVE_RCLPY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla_edge.conversions import LAYOUTS, pointcloud2_to_structured, pointcloud2_to_xyzi, xyzi_to_pointcloud2
from vla_edge.conversions.pcd import pcd_to_xyzi, read_pcd
from vla_edge.conversions.pointcloud import FieldSpec, PointLayout
from vla_edge.errors import PointCloudError
from vla_edge.msgfactory import RclpyFactory, RosbagsFactory

FACTORIES = ["rosbags", *(["rclpy"] if HAVE_RCLPY else [])]
PC2 = "sensor_msgs/msg/PointCloud2"


@pytest.fixture(params=FACTORIES)
def factory(request):
    return RosbagsFactory() if request.param == "rosbags" else RclpyFactory()


@pytest.fixture(scope="module")
def rosbags_store():
    return RosbagsFactory().typestore


def _kitti(shared: Path) -> np.ndarray:
    return np.fromfile(shared / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4)


def _nuscenes(shared: Path) -> np.ndarray:
    return np.fromfile(shared / "lidar" / "nuscenes_lidar_top_1532402927647951.bin", np.float32).reshape(
        -1, 5
    )


def _cdr_roundtrip(msg, factory, store):
    """Serialize to CDR and back (through rosbags or rclpy, as the message's binding does)."""
    if isinstance(factory, RosbagsFactory):
        return store.deserialize_cdr(store.serialize_cdr(msg, PC2), PC2)
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2

    return deserialize_message(serialize_message(msg), PointCloud2)


def _raw_msg(
    factory, raw: np.ndarray, fields, *, height=1, width=None, point_step=None, row_step=None, be=False
):
    """Build a PointCloud2 by hand from raw bytes, bypassing xyzi_to_pointcloud2."""
    width = raw.nbytes // (height * point_step) if width is None else width
    return factory.make(
        PC2,
        header=factory.header(3.25, "lidar"),
        height=height,
        width=width,
        fields=[
            factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c)
            for n, o, d, c in fields
        ],
        is_bigendian=be,
        point_step=point_step,
        row_step=width * point_step if row_step is None else row_step,
        data=factory.bytes_field(raw.view(np.uint8).reshape(-1)),
        is_dense=True,
    )


# ---------------------------------------------------------------- real scans


def test_kitti_roundtrip_through_cdr(shared_data, factory, rosbags_store):
    pts = _kitti(shared_data)
    assert pts.shape == (17238, 4)
    msg = xyzi_to_pointcloud2(pts, factory, 12.5, "lidar", layout="kitti")
    back = _cdr_roundtrip(msg, factory, rosbags_store)
    assert back.header.frame_id == "lidar"
    assert back.header.stamp.sec == 12 and back.header.stamp.nanosec == 500_000_000
    np.testing.assert_array_equal(pointcloud2_to_xyzi(back), pts)


def test_cross_binding_cdr(shared_data, rosbags_store):
    """rosbags-written CDR decodes in rclpy and vice versa, to the same points."""
    if not HAVE_RCLPY:
        pytest.skip("rclpy not installed")
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import PointCloud2

    pts = _kitti(shared_data)[:500]
    extra = {"ring": np.arange(500) % 64, "t": np.arange(500) * 100}
    a = xyzi_to_pointcloud2(pts, RosbagsFactory(), 1.0, "lidar", layout="ouster", extra=extra)
    b = xyzi_to_pointcloud2(pts, RclpyFactory(), 1.0, "lidar", layout="ouster", extra=extra)
    in_rclpy = deserialize_message(bytes(rosbags_store.serialize_cdr(a, PC2)), PointCloud2)
    in_rosbags = rosbags_store.deserialize_cdr(serialize_message(b), PC2)
    for msg in (in_rclpy, in_rosbags):
        np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)
        np.testing.assert_array_equal(pointcloud2_to_structured(msg, ["ring"])["ring"], extra["ring"])
    assert bytes(in_rclpy.data) == np.asarray(in_rosbags.data).tobytes()


def test_nuscenes_five_floats_with_ring(shared_data, factory, rosbags_store):
    raw = _nuscenes(shared_data)
    assert raw.shape == (34688, 5)
    # Hand-built message straight from the file bytes: 5 float32, point_step 20.
    fields = [(n, 4 * k, 7, 1) for k, n in enumerate(("x", "y", "z", "intensity", "ring"))]
    msg = _raw_msg(factory, raw, fields, point_step=20)
    back = _cdr_roundtrip(msg, factory, rosbags_store)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(back), raw[:, :4])
    ring = pointcloud2_to_structured(back, ["ring"])["ring"]
    np.testing.assert_array_equal(ring, raw[:, 4])
    assert ring.min() >= 0 and ring.max() <= 31  # HDL-32E
    # ... and the builder's own nuScenes layout agrees byte for byte.
    built = xyzi_to_pointcloud2(raw[:, :4], factory, 3.25, "lidar", "nuscenes", extra={"ring": raw[:, 4]})
    assert bytes(_bytes(built)) == raw.tobytes()


def _bytes(msg) -> bytes:
    return np.asarray(msg.data, dtype=np.uint8).tobytes() if not isinstance(msg.data, bytes) else msg.data


def test_hesai_pcd_xyz_only(committed_scan_path, factory, rosbags_store):
    cloud = read_pcd(committed_scan_path)
    assert cloud.dtype.names == ("x", "y", "z") and cloud.shape == (34158,)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1)
    msg = xyzi_to_pointcloud2(xyz, factory, 0.0, "hesai", layout="xyz")
    out = pointcloud2_to_xyzi(_cdr_roundtrip(msg, factory, rosbags_store))
    finite = np.isfinite(xyz).all(axis=1)
    np.testing.assert_array_equal(out[:, :3], xyz[finite])
    assert np.all(out[:, 3] == 0.0)  # missing intensity -> 0
    np.testing.assert_array_equal(pcd_to_xyzi(cloud), out)


# ---------------------------------------------------------------- vendor layouts


def test_ouster_layout_bytes(factory):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(64, 4)).astype(np.float32)
    ring = np.arange(64, dtype=np.uint16) % 16
    t = np.arange(64, dtype=np.uint32) * 1000
    msg = xyzi_to_pointcloud2(pts, factory, 1.0, "os", "ouster", extra={"ring": ring, "t": t})
    assert msg.point_step == 32
    offs = {f.name: (f.offset, f.datatype) for f in msg.fields}
    assert offs["intensity"] == (16, 7) and offs["ring"] == (24, 4) and offs["t"] == (20, 6)
    raw = np.frombuffer(_bytes(msg), np.uint8).reshape(64, 32)
    np.testing.assert_array_equal(raw[:, 24:26].copy().view("<u2").ravel(), ring)
    np.testing.assert_array_equal(raw[:, 16:20].copy().view("<f4").ravel(), pts[:, 3])
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)
    s = pointcloud2_to_structured(msg, ["ring", "t"])
    np.testing.assert_array_equal(s["ring"], ring)
    np.testing.assert_array_equal(s["t"], t)


@pytest.mark.parametrize(
    ("layout", "name", "dtype", "offset", "step"),
    [
        ("velodyne", "time", "<f4", 18, 22),
        ("velodyne_u32time", "time", "<u4", 20, 24),
        ("livox", "offset_time", "<u4", 18, 22),
        ("hesai", "timestamp", "<f8", 18, 26),
    ],
)
def test_time_fields(factory, layout, name, dtype, offset, step):
    rng = np.random.default_rng(1)
    pts = rng.uniform(-50, 50, size=(100, 4)).astype(np.float32)
    tvals = (np.arange(100) * 1000).astype(dtype)
    msg = xyzi_to_pointcloud2(pts, factory, 1.0, "lidar", layout, extra={name: tvals})
    assert msg.point_step == step
    raw = np.frombuffer(_bytes(msg), np.uint8).reshape(100, step)
    size = np.dtype(dtype).itemsize
    np.testing.assert_array_equal(raw[:, offset : offset + size].copy().view(dtype).ravel(), tvals)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)
    np.testing.assert_array_equal(pointcloud2_to_structured(msg, [name])[name], tvals)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_organised_big_endian_row_padding(factory, layout):
    rng = np.random.default_rng(2)
    pts = rng.uniform(-100, 100, size=(6 * 7, 4)).astype(np.float32)
    msg = xyzi_to_pointcloud2(pts, factory, 1.0, "lidar", layout, big_endian=True, height=6, row_padding=5)
    assert msg.height == 6 and msg.width == 7 and msg.is_bigendian
    assert msg.row_step == 7 * LAYOUTS[layout].point_step + 5
    want = pts.copy()
    if layout == "xyz":
        want[:, 3] = 0
    out = pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(out, want)
    assert out.flags.c_contiguous and out.dtype == np.float32
    # and with no-return (NaN) points, native order too: dropped, still contiguous
    pts[::5, 1] = np.nan
    out = pointcloud2_to_xyzi(xyzi_to_pointcloud2(pts, factory, 1.0, "lidar", layout, height=6))
    assert out.shape == (len(pts) - len(pts[::5]), 4) and out.flags.c_contiguous


def test_big_endian_hand_built(factory):
    pts = np.array([[1.5, -2.0, 3.25, 7.0], [4.0, 5.0, 6.0, 8.0]], dtype=np.float32)
    raw = pts.astype(">f4")
    fields = [(n, 4 * k, 7, 1) for k, n in enumerate("xyz")] + [("intensity", 12, 7, 1)]
    msg = _raw_msg(factory, raw, fields, point_step=16, be=True)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)
    # The same bytes read as little-endian must differ: the flag is honoured.
    msg_le = _raw_msg(factory, raw, fields, point_step=16, be=False)
    assert not np.array_equal(pointcloud2_to_xyzi(msg_le, drop_invalid=False), pts)


@pytest.mark.parametrize(
    ("datatype", "np_type"),
    [(1, "i1"), (2, "u1"), (3, "i2"), (4, "u2"), (5, "i4"), (6, "u4"), (7, "f4"), (8, "f8")],
)
def test_every_datatype_any_order_and_padding(factory, datatype, np_type):
    # Reversed field order, odd offsets, padding between fields and at the end.
    n = 50
    dt = np.dtype(
        {
            "names": ["intensity", "z", "y", "x"],
            "formats": ["<" + np_type] * 4,
            "offsets": [1, 11, 21, 31],
            "itemsize": 48,
        }
    )
    rng = np.random.default_rng(datatype)
    vals = rng.integers(0, 100, size=(n, 4))
    rec = np.zeros(n, dtype=dt)
    for k, name in enumerate("xyz"):
        rec[name] = vals[:, k]
    rec["intensity"] = vals[:, 3]
    fields = [
        ("intensity", 1, datatype, 1),
        ("z", 11, datatype, 1),
        ("y", 21, datatype, 1),
        ("x", 31, datatype, 1),
    ]
    msg = _raw_msg(factory, rec.view(np.uint8), fields, point_step=48)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), vals.astype(np.float32))


def test_count_greater_than_one_reads_first_element(factory):
    pts = np.arange(12, dtype=np.float32).reshape(3, 4)
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("intensity", 12, 7, 2)]
    raw = np.concatenate([pts, np.full((3, 1), 99, np.float32)], axis=1)
    msg = _raw_msg(factory, raw, fields, point_step=20)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)


def test_organised_with_row_step_padding_hand_built(factory):
    h, w, step, row = 3, 4, 16, 16 * 4 + 8
    pts = np.arange(h * w * 4, dtype=np.float32).reshape(h, w, 4)
    raw = np.zeros((h, row), np.uint8)
    raw[:, : w * step] = pts.reshape(h, -1).view(np.uint8)
    raw[:, w * step :] = 0xFF  # garbage in the row padding must be ignored
    fields = [(n, 4 * k, 7, 1) for k, n in enumerate(("x", "y", "z", "intensity"))]
    msg = _raw_msg(factory, raw, fields, height=h, width=w, point_step=step, row_step=row)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts.reshape(-1, 4))


def test_reflectivity_used_when_no_intensity(factory):
    rec = np.zeros(
        4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("reflectivity", "<u2"), ("pad", "<u2")]
    )
    rec["x"] = [1, 2, 3, 4]
    rec["reflectivity"] = [10, 20, 30, 40]
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("reflectivity", 12, 4, 1)]
    out = pointcloud2_to_xyzi(_raw_msg(factory, rec.view(np.uint8), fields, point_step=16))
    np.testing.assert_array_equal(out[:, 3], [10, 20, 30, 40])


def test_nan_inf_dropped_and_bad_intensity_zeroed(factory):
    pts = np.array(
        [
            [1, 2, 3, 4],
            [np.nan, 0, 0, 1],
            [0, np.inf, 0, 1],
            [0, 0, -np.inf, 1],
            [5, 6, 7, np.nan],
            [8, 9, 1, 2],
        ],
        dtype=np.float32,
    )
    msg = xyzi_to_pointcloud2(pts, factory, 1.0, "lidar")
    assert msg.is_dense is False
    out = pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(out, [[1, 2, 3, 4], [5, 6, 7, 0], [8, 9, 1, 2]])
    kept = pointcloud2_to_xyzi(msg, drop_invalid=False)
    assert kept.shape == (6, 4) and np.isnan(kept[1, 0]) and kept[4, 3] == 0


def test_huge_finite_values_are_kept(factory):
    # x + y + z overflows float32 but every value is finite: must not be dropped.
    pts = np.array([[3e38, 3e38, 3e38, 3e38], [1, 1, 1, 1]], dtype=np.float32)
    np.testing.assert_array_equal(pointcloud2_to_xyzi(xyzi_to_pointcloud2(pts, factory, 0, "l")), pts)


def test_empty_cloud(factory):
    msg = xyzi_to_pointcloud2(np.zeros((0, 4), np.float32), factory, 0.0, "lidar", "ouster")
    out = pointcloud2_to_xyzi(msg)
    assert out.shape == (0, 4) and out.dtype == np.float32


def test_custom_layout(factory):
    lay = PointLayout("mine", (FieldSpec("z", 0, 8), FieldSpec("y", 8, 8), FieldSpec("x", 16, 8)), 24)
    pts = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    out = pointcloud2_to_xyzi(xyzi_to_pointcloud2(pts, factory, 0.0, "l", lay))
    np.testing.assert_array_equal(out[:, :3], pts)


def test_data_as_plain_list():
    # Some tools hand over uint8[] as a list of ints; still works.
    msg = xyzi_to_pointcloud2(np.ones((2, 4), np.float32), RosbagsFactory(), 0.0, "l")
    msg.data = list(np.asarray(msg.data))
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), np.ones((2, 4)))


# ---------------------------------------------------------------- bad input


def test_missing_xyz_names_fields(factory):
    raw = np.zeros((2, 4), np.float32)
    fields = [("x", 0, 7, 1), ("intensity", 12, 7, 1)]
    with pytest.raises(PointCloudError, match=r"lacks field\(s\) y, z \(has: x@0, intensity@12\)"):
        pointcloud2_to_xyzi(_raw_msg(factory, raw, fields, point_step=16))
    with pytest.raises(PointCloudError, match="lacks field"):
        pointcloud2_to_xyzi(_raw_msg(factory, raw, [], point_step=16))


def test_short_data_names_sizes(factory):
    msg = xyzi_to_pointcloud2(np.ones((10, 4), np.float32), RosbagsFactory(), 0.0, "l")
    msg.data = msg.data[:150]
    with pytest.raises(
        PointCloudError, match=r"150 B but the header declares height\*row_step = 1\*160 = 160 B"
    ):
        pointcloud2_to_xyzi(msg)


@pytest.mark.parametrize("bad_type", [0, 9, 255])
def test_unknown_datatype(factory, bad_type):
    fields = [("x", 0, bad_type, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]
    with pytest.raises(PointCloudError, match=rf"field 'x' has datatype {bad_type}; valid are 1..8"):
        pointcloud2_to_xyzi(_raw_msg(factory, np.zeros((2, 4), np.float32), fields, point_step=16))


def test_field_outside_point_step(factory):
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 14, 7, 1)]
    with pytest.raises(
        PointCloudError, match=r"'z' \(FLOAT32 x1 at offset 14, 4 B\) does not fit in point_step=16"
    ):
        pointcloud2_to_xyzi(_raw_msg(factory, np.zeros((2, 4), np.float32), fields, point_step=16))


def test_row_step_too_small(factory):
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]
    msg = _raw_msg(factory, np.zeros((4, 4), np.float32), fields, width=4, point_step=16, row_step=32)
    with pytest.raises(
        PointCloudError, match=r"row_step=32 B is smaller than width\*point_step = 4\*16 = 64 B"
    ):
        pointcloud2_to_xyzi(msg)


def test_builder_bad_inputs(factory):
    with pytest.raises(PointCloudError, match=r"N x 3 or N x 4, got shape \(5, 2\)"):
        xyzi_to_pointcloud2(np.zeros((5, 2)), factory, 0, "l")
    with pytest.raises(PointCloudError, match="unknown PointCloud2 layout 'foo'; choose one of"):
        xyzi_to_pointcloud2(np.zeros((5, 4)), factory, 0, "l", "foo")
    with pytest.raises(PointCloudError, match=r"extra field\(s\) ring not in layout 'xyzi'"):
        xyzi_to_pointcloud2(np.zeros((5, 4)), factory, 0, "l", "xyzi", extra={"ring": np.zeros(5)})
    with pytest.raises(PointCloudError, match="extra field 'ring' has 4 values for 5 points"):
        xyzi_to_pointcloud2(np.zeros((5, 4)), factory, 0, "l", "ouster", extra={"ring": np.zeros(4)})
    with pytest.raises(PointCloudError, match="cannot organise 5 points into height=2"):
        xyzi_to_pointcloud2(np.zeros((5, 4)), factory, 0, "l", height=2)


def test_structured_missing_field(factory):
    msg = xyzi_to_pointcloud2(np.zeros((3, 4)), factory, 0, "l")
    with pytest.raises(PointCloudError, match=r"lacks field\(s\) ring"):
        pointcloud2_to_structured(msg, ["ring"])


def test_pcd_errors(tmp_path):
    with pytest.raises(PointCloudError, match="cannot open PCD file"):
        read_pcd(tmp_path / "nope.pcd")
    bad = tmp_path / "bad.pcd"
    bad.write_bytes(
        b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nPOINTS 10\nDATA binary\n"
        + b"\0" * 8
    )
    with pytest.raises(PointCloudError, match=r"8 data bytes but POINTS=10 x 12 B = 120 B"):
        read_pcd(bad)
    comp = tmp_path / "c.pcd"
    comp.write_bytes(b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA binary_compressed\n")
    with pytest.raises(PointCloudError, match="binary_compressed is not supported"):
        read_pcd(comp)
    asc = tmp_path / "a.pcd"
    asc.write_text(
        "FIELDS x y z intensity\nSIZE 4 4 4 1\nTYPE F F F U\nCOUNT 1 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\n"
        "DATA ascii\n1 2 3 4\nnan 1 1 9\n"
    )
    cloud = read_pcd(asc)
    assert cloud["intensity"].dtype == np.uint8
    np.testing.assert_array_equal(pcd_to_xyzi(cloud), [[1, 2, 3, 4]])


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pts=hnp.arrays(
        np.float32,
        st.tuples(st.integers(0, 40), st.just(4)),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    ),
    layout=st.sampled_from(sorted(LAYOUTS)),
    big_endian=st.booleans(),
    row_padding=st.integers(0, 7),
)
def test_property_roundtrip_drops_exactly_nonfinite(pts, layout, big_endian, row_padding):
    msg = xyzi_to_pointcloud2(
        pts, RosbagsFactory(), 0.0, "l", layout, big_endian=big_endian, row_padding=row_padding
    )
    out = pointcloud2_to_xyzi(msg)
    want = pts[np.isfinite(pts[:, :3]).all(axis=1)].copy()
    if layout == "xyz":
        want[:, 3] = 0
    want[~np.isfinite(want[:, 3]), 3] = 0
    assert out.dtype == np.float32 and out.shape == want.shape
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("layout", ["kitti", "xyz", "velodyne", "ouster"])
def test_output_never_aliases_message(factory, layout):
    pts = np.arange(40, dtype=np.float32).reshape(10, 4)
    msg = xyzi_to_pointcloud2(pts, factory, 0.0, "l", layout)
    first = pointcloud2_to_xyzi(msg)
    first[:] = -1.0
    again = pointcloud2_to_xyzi(msg)
    want = pts.copy()
    if layout == "xyz":
        want[:, 3] = 0
    np.testing.assert_array_equal(again, want)


@pytest.mark.parametrize("layout", ["kitti", "ouster", "velodyne"])
def test_unaligned_data_pointer(layout):
    pts = np.random.default_rng(3).normal(size=(33, 4)).astype(np.float32)
    msg = xyzi_to_pointcloud2(pts, RosbagsFactory(), 0.0, "l", layout)
    shifted = np.frombuffer(b"\0" + np.asarray(msg.data).tobytes(), np.uint8)[1:]
    assert shifted.ctypes.data % 4 != 0
    msg.data = shifted
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), pts)


def test_bench_smoke(capsys):
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("bench_pc", REPO_ROOT / "bench" / "bench_pointcloud.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--points", "2048", "--runs", "20"]) == 0
    assert "ratio" in capsys.readouterr().out
