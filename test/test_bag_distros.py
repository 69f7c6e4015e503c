"""Bags across distros: the recorder writes the target distro's rosbag2 metadata version, and
replay/training (``open_bag``) read bags as Humble's and Jazzy's ``ros2 bag record`` write them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from vla_edge.bagio import open_bag
from vla_edge.config import load_config
from vla_edge.conversions import pointcloud2_to_xyzi, xyzi_to_pointcloud2
from vla_edge.errors import ConfigError
from vla_edge.msgfactory import RosbagsFactory
from vla_edge.recording.splits import SplitPolicy, metadata_version_for
from vla_edge.recording.writer import Item, SplitFile

F = RosbagsFactory()
PC2 = "sensor_msgs/msg/PointCloud2"
# offered_qos_profiles as Humble's `ros2 bag record` writes it: one YAML string.
HUMBLE_QOS = (
    "- history: 3\n  depth: 0\n  reliability: 2\n  durability: 2\n  deadline:\n    sec: 2147483647\n"
    "    nsec: 4294967295\n  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n  liveliness: 1\n"
    "  liveliness_lease_duration:\n    sec: 2147483647\n    nsec: 4294967295\n"
    "  avoid_ros_namespace_conventions: false"
)


def humble_decode(info: dict[str, Any]) -> dict[str, Any]:
    """What rosbag2 on Humble (metadata version 5) reads from ``rosbag2_bagfile_information``.

    Mirrors ``YAML::convert<BagMetadata>::decode`` of Humble: the fields below with these
    types; ``offered_qos_profiles`` is read ``as<std::string>()`` (a YAML list throws).
    """
    assert isinstance(info["version"], int) and info["version"] <= 5, info["version"]
    out = {
        "storage_identifier": str(info["storage_identifier"]),
        "relative_file_paths": [str(p) for p in info["relative_file_paths"]],
        "duration": int(info["duration"]["nanoseconds"]),
        "starting_time": int(info["starting_time"]["nanoseconds_since_epoch"]),
        "message_count": int(info["message_count"]),
        "compression_format": str(info["compression_format"]),
        "compression_mode": str(info["compression_mode"]),
        "files": [
            (str(f["path"]), int(f["starting_time"]["nanoseconds_since_epoch"]),
             int(f["duration"]["nanoseconds"]), int(f["message_count"]))
            for f in info["files"]
        ],
        "topics": {},
    }  # fmt: skip
    for t in info["topics_with_message_count"]:
        md = t["topic_metadata"]
        assert isinstance(md["offered_qos_profiles"], str), "Humble reads the QoS profiles as one string"
        out["topics"][str(md["name"])] = (
            str(md["type"]),
            str(md["serialization_format"]),
            int(t["message_count"]),
        )
    return out


def _cloud(stamp: float) -> Any:
    pts = np.arange(40, dtype=np.float32).reshape(10, 4) + stamp
    return xyzi_to_pointcloud2(pts, F, stamp, "lidar", layout="velodyne")


def _split(tmp_path: Path, version: int) -> Path:
    f = SplitFile(
        tmp_path / "_open", tmp_path, f"split_v{version}", F.typestore, fsync=False, metadata_version=version
    )
    for k in range(3):
        data = bytes(F.typestore.serialize_cdr(_cloud(float(k)), PC2))
        f.write(Item("/sensing/lidar/points", PC2, 1_000_000_000 * (k + 1), data))
    return f.close().path


def test_distro_choice_by_config_or_running_ros() -> None:
    assert metadata_version_for("humble") == ("humble", 5)
    assert metadata_version_for("Jazzy") == ("jazzy", 9)
    assert metadata_version_for("auto", {"ROS_DISTRO": "humble"}) == ("humble", 5)
    assert metadata_version_for("auto", {}) == ("unknown", 8)
    with pytest.raises(ConfigError, match=r"split.rosbag_distro must be auto or one of"):
        metadata_version_for("foxy")
    cfg = load_config("recorder")
    cfg["split"]["rosbag_distro"] = "humble"
    assert SplitPolicy.from_config(cfg).metadata_version == 5


def test_humble_split_has_exactly_the_fields_humble_reads_and_replays(tmp_path: Path) -> None:
    bag = _split(tmp_path, 5)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 5
    assert not {"custom_data", "ros_distro"} & set(info)
    got = humble_decode(info)
    assert got["storage_identifier"] == "mcap" and got["message_count"] == 3
    assert got["topics"] == {"/sensing/lidar/points": (PC2, "cdr", 3)}
    assert got["files"][0][0] == got["relative_file_paths"][0] and (bag / got["files"][0][0]).is_file()
    assert got["duration"] == 2_000_000_000 and got["starting_time"] == 1_000_000_000
    with open_bag(bag) as b:  # replay and training read it back
        clouds = [pointcloud2_to_xyzi(m.msg) for m in b.messages()]
    assert len(clouds) == 3 and np.allclose(clouds[2][0], [2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("version", [8, 9])
def test_newer_splits_keep_their_version(tmp_path: Path, version: int) -> None:
    bag = _split(tmp_path, version)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == version
    qos = info["topics_with_message_count"][0]["topic_metadata"]["offered_qos_profiles"]
    # Version 9 (Jazzy+) stores the QoS profiles as a YAML list, which Humble's string read refuses.
    assert isinstance(qos, str) == (version < 9)
    with open_bag(bag) as b:
        assert b.count("/sensing/lidar/points") == 3


def _humble_sqlite_bag(path: Path) -> None:
    """A bag as Humble's `ros2 bag record` (sqlite3 default) writes it: schema 3, metadata 5,
    no message definitions inside."""
    path.mkdir()
    db = sqlite3.connect(path / "humble_0.db3")
    db.executescript(
        "CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);"
        "INSERT INTO schema VALUES (3, 'humble');"
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,"
        " serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,"
        " timestamp INTEGER NOT NULL, data BLOB NOT NULL);"
    )
    db.execute("INSERT INTO topics VALUES (1, '/sensing/lidar/points', ?, 'cdr', ?)", (PC2, HUMBLE_QOS))
    for k in range(2):
        data = bytes(F.typestore.serialize_cdr(_cloud(float(k)), PC2))
        db.execute(
            "INSERT INTO messages(topic_id, timestamp, data) VALUES (1, ?, ?)", (10**9 * (k + 1), data)
        )
    db.commit()
    db.close()
    meta = {
        "rosbag2_bagfile_information": {
            "version": 5, "storage_identifier": "sqlite3", "relative_file_paths": ["humble_0.db3"],
            "duration": {"nanoseconds": 10**9}, "starting_time": {"nanoseconds_since_epoch": 10**9},
            "message_count": 2,
            "topics_with_message_count": [{"topic_metadata": {"name": "/sensing/lidar/points", "type": PC2,
                "serialization_format": "cdr", "offered_qos_profiles": HUMBLE_QOS}, "message_count": 2}],
            "compression_format": "", "compression_mode": "",
            "files": [{"path": "humble_0.db3", "starting_time": {"nanoseconds_since_epoch": 10**9},
                       "duration": {"nanoseconds": 10**9}, "message_count": 2}],
        }
    }  # fmt: skip
    (path / "metadata.yaml").write_text(yaml.safe_dump(meta))


def test_replay_reads_humble_sqlite3_and_jazzy_mcap_recordings(tmp_path: Path) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    humble = tmp_path / "humble"
    _humble_sqlite_bag(humble)
    jazzy = tmp_path / "jazzy"  # Jazzy's default: MCAP with metadata version 9
    with Writer(jazzy, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/sensing/lidar/points", PC2, typestore=F.typestore)
        for k in range(2):
            w.write(conn, 10**9 * (k + 1), bytes(F.typestore.serialize_cdr(_cloud(float(k)), PC2)))
    for bag in (humble, jazzy):
        with open_bag(bag) as b:
            clouds = [pointcloud2_to_xyzi(m.msg) for m in b.messages(["/sensing/lidar/points"])]
        assert len(clouds) == 2, bag
        assert np.allclose(clouds[1][0], [1.0, 2.0, 3.0, 4.0]), bag
