"""Shared bag I/O: MCAP write/read, sqlite3 read, remapping, ordering and typed errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_edge.bagio import BagWriter, open_bag, read_messages, read_raw
from vla_edge.conversions import pointcloud2_to_xyzi, xyzi_to_pointcloud2
from vla_edge.errors import BagError
from vla_edge.msgfactory import RosbagsFactory

F = RosbagsFactory()


def _string(text: str):
    return F.make("std_msgs/msg/String", data=text)


def _write_mcap(path: Path) -> None:
    pts = np.arange(40, dtype=np.float32).reshape(10, 4)
    with BagWriter(path) as w:
        # Written out of time order on purpose: readers must return them sorted.
        w.write("/b", "std_msgs/msg/String", _string("b2"), 2.0)
        w.write("/a", "std_msgs/msg/String", _string("a1"), 1.0)
        w.write(
            "/points_raw",
            "sensor_msgs/msg/PointCloud2",
            xyzi_to_pointcloud2(pts, F, 1.5, "lidar", layout="ouster"),
            1.5,
        )
        w.write("/a", "std_msgs/msg/String", _string("a3"), 3_000_000_000)  # int = ns
        assert w.count == 4


def test_mcap_roundtrip_ordering_and_remap(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    _write_mcap(bag)
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))
    with open_bag(bag, remap={"/points_raw": "/sensing/lidar/points"}) as b:
        assert b.topics == {
            "/a": "std_msgs/msg/String",
            "/b": "std_msgs/msg/String",
            "/sensing/lidar/points": "sensor_msgs/msg/PointCloud2",
        }
        assert b.count("/a") == 2
        assert b.start == pytest.approx(1.0) and b.end == pytest.approx(3.0)
        msgs = list(b.messages())
        assert [m.stamp for m in msgs] == [1.0, 1.5, 2.0, 3.0]
        assert [m.topic for m in msgs] == ["/a", "/sensing/lidar/points", "/b", "/a"]
        cloud = pointcloud2_to_xyzi(msgs[1].msg)
        assert np.array_equal(cloud, np.arange(40, dtype=np.float32).reshape(10, 4))
        assert [m.msg.data for m in b.messages(["/a"], start=2.0)] == ["a3"]
        assert [m.msg.data for m in b.messages(["/a", "/b"], stop=2.5)] == ["a1", "b2"]
    raw = list(read_raw(bag, topics=["/b"]))
    assert raw[0][:3] == ("/b", "std_msgs/msg/String", 2_000_000_000) and isinstance(raw[0][3], bytes)
    assert [m.msg.data for m in read_messages(bag, ["/b"])] == ["b2"]
    # Opening the .mcap file itself works too.
    with open_bag(next(bag.glob("*.mcap"))) as b:
        assert b.count("/a") == 2


def test_sqlite3_bags_are_read(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = tmp_path / "sq"
    ts = F.typestore
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as w:
        conn = w.add_connection("/odom_raw", "std_msgs/msg/String", typestore=ts)
        w.write(conn, 5, ts.serialize_cdr(_string("x"), "std_msgs/msg/String"))
    with open_bag(path, remap={"/odom_raw": "/localization/odometry"}) as b:
        (m,) = list(b.messages(["/localization/odometry"]))
        assert m.msg.data == "x" and m.log_time_ns == 5


def test_bad_inputs_raise_bag_error(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="not found"), open_bag(tmp_path / "nope"):
        pass
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "metadata.yaml").write_text("not: a bag\n")
    with pytest.raises(BagError, match="cannot read"), open_bag(junk):
        pass
    bag = tmp_path / "bag"
    _write_mcap(bag)
    with open_bag(bag) as b, pytest.raises(BagError, match=r"not in .*it has"):
        list(b.messages(["/missing"]))
    with pytest.raises(BagError, match="two message types"), open_bag(bag, remap={"/points_raw": "/a"}):
        pass
    with pytest.raises(BagError, match="already exists"), BagWriter(bag):
        pass
    with BagWriter(tmp_path / "w") as w:
        w.write("/t", "std_msgs/msg/String", _string("s"), 1.0)
        with pytest.raises(BagError, match="already carries"):
            w.write("/t", "std_msgs/msg/Bool", F.make("std_msgs/msg/Bool", data=True), 2.0)
    with pytest.raises(BagError, match="not open"):
        BagWriter(tmp_path / "x").write("/t", "std_msgs/msg/String", _string("s"), 1.0)
    reader = open_bag(bag)
    with pytest.raises(BagError, match="not open"):
        _ = reader.topics
