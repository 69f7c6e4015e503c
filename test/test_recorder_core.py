"""Recorder core: split policy, ring budget, event detection, event windows on real bags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from vla_edge.config import load_config
from vla_edge.errors import ConfigError, RecorderError
from vla_edge.msgfactory import RosbagsFactory
from vla_edge.recording import EventDetector, Recorder, RingBudget, SplitInfo, SplitPolicy, divergence
from vla_edge.recording.events import StampPairs
from vla_edge.types import Trajectory

DECISION = "/vla_edge/decision"
STRING = "std_msgs/msg/String"


def _cfg(**over: Any) -> dict[str, Any]:
    cfg = load_config("recorder")
    for dotted, value in over.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def _split(name: str, size: int, flagged: bool = False, complete: bool = True) -> SplitInfo:
    return SplitInfo(name, Path(name), size, 0, 1, 1, flagged=flagged, copied=flagged, complete=complete)


def test_split_policy_closes_on_time_stamp_span_or_size() -> None:
    pol = SplitPolicy.from_config(_cfg(split__max_duration_s=5.0, split__max_size_mb=1))
    assert not pol.should_close(1.0, int(1e9), 1000)
    assert pol.should_close(5.0, 0, 0)
    assert pol.should_close(0.0, int(5e9), 0)
    assert pol.should_close(0.0, 0, 1024 * 1024)


@pytest.mark.parametrize("key,value", [("split__max_duration_s", 0), ("split__max_size_mb", -1)])
def test_split_policy_rejects_bad_config(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match="must be > 0"):
        SplitPolicy.from_config(_cfg(**{key: value}))


def test_ring_deletes_incomplete_then_oldest_unflagged_then_copied_flagged() -> None:
    ring = RingBudget(max_total_bytes=300)
    splits = [
        _split("a_000001", 100, flagged=True),
        _split("a_000002", 100),
        _split("a_000003", 100),
        _split("a_000004", 100, flagged=True),
        _split("a_000000", 50, complete=False),
    ]
    victims = [s.name for s in ring.to_delete(splits)]
    assert victims == ["a_000000", "a_000002"]  # 450 -> 300
    assert [s.name for s in ring.to_delete(splits, open_bytes=200)] == [
        "a_000000",
        "a_000002",
        "a_000003",
        "a_000001",
    ]
    assert ring.to_delete(splits[:2]) == []
    with pytest.raises(ConfigError, match="max_total_mb"):
        RingBudget.from_config(_cfg(ring__max_total_mb=0))


def _traj(ys: float, source: str, stamp: float = 5.0, dt: float = 0.5, n: int = 8) -> Trajectory:
    poses = [[2.0 * (i + 1) * dt, ys * (i + 1) / n, 0.0] for i in range(n)]
    return Trajectory(np.array(poses), dt, stamp, source=source)


def test_event_detector_finds_fallback_estop_and_disagreement() -> None:
    det = EventDetector.from_config(_cfg())
    assert det.detect({"choice": "student", "reasons": []}, 1) == []
    (fb,) = det.detect({"choice": "frenet", "reasons": ["student_collision"]}, 7)
    assert (fb.kind, fb.stamp_ns) == ("fallback", 7) and "student_collision" in fb.reason
    assert det.detect({"choice": "emergency_stop"}, 1)[0].kind == "emergency_stop"
    frenet = _traj(0.0, "frenet", dt=0.1, n=30)  # planner step and horizon differ from the student's
    assert det.disagreement(_traj(0.5, "student"), frenet, 1) is None
    far = det.disagreement(_traj(8.0, "student"), frenet, 3)
    assert far is not None and far.kind == "disagreement" and far.stamp_ns == 3


def test_stamp_pairs_match_student_and_frenet_of_one_frame_in_any_order() -> None:
    pairs = StampPairs(keep=2)
    assert pairs.add("student", _traj(0, "student", stamp=1.0)) is None
    assert pairs.add("frenet", _traj(0, "frenet", stamp=2.0)) is None
    s, f = pairs.add("frenet", _traj(0, "frenet", stamp=1.0 + 1e-8))
    assert (s.source, f.source) == ("student", "frenet")
    s, f = pairs.add("student", _traj(0, "student", stamp=2.0))
    assert (s.stamp, f.stamp) == (2.0, 2.0)
    for k in range(5):  # unpaired entries are bounded
        pairs.add("student", _traj(0, "student", stamp=10.0 + k))
    assert len(pairs.student) == 2


def test_disagreement_event_from_candidate_path_and_decision_frenet(tmp_path: Path) -> None:
    from vla_edge.conversions import trajectory_to_path

    fac = RosbagsFactory()
    ts = fac.typestore
    topics = load_config("topics")["outputs"]
    rec = Recorder.from_config(_cfg(ring__min_free_mb=1), "topics", tmp_path)
    assert rec.start()
    t0 = 1_700_000_000 * 10**9
    for i, lateral in enumerate([0.2, 9.0]):  # frame 1: student swerves 9 m, Frenet goes straight
        stamp = 100.0 + i * 0.1
        cand = trajectory_to_path(_traj(lateral, "student", stamp=stamp), fac, frame_id="base_link")
        frenet = _traj(0.0, "frenet", stamp=stamp, dt=0.1, n=30)
        dec = {"stamp": stamp, "choice": "student", "reasons": [],
               "frenet": {"stamp": stamp, "dt": 0.1, "poses": frenet.poses.tolist()}}  # fmt: skip
        rec.record(topics["candidate_trajectory"], "nav_msgs/msg/Path",
                   bytes(ts.serialize_cdr(cand, "nav_msgs/msg/Path")), t0 + i * 10**8)  # fmt: skip
        msg = fac.make(STRING, data=json.dumps(dec))
        rec.record(DECISION, STRING, bytes(ts.serialize_cdr(msg, STRING)), t0 + i * 10**8 + 1)
    rec.close()
    (event,) = json.loads((tmp_path / "events" / "index.json").read_text())["events"]
    assert event["kind"] == "disagreement" and "ADE" in event["reasons"][0]
    assert event["stamp"] == pytest.approx((t0 + 10**8 + 1) * 1e-9)


def test_divergence_is_ade_fde_over_common_horizon() -> None:
    a = Trajectory(np.array([[1.0 * (i + 1), 0.0, 0.0] for i in range(8)]), 0.5, 0.0)
    b = Trajectory(np.array([[1.0 * (i + 1), 1.0, 0.0] for i in range(8)]), 0.5, 0.0)
    ade, fde = divergence(a, b)
    assert fde == pytest.approx(1.0)
    assert ade == pytest.approx(1.0)
    c = Trajectory(np.array([[1.0 * (i + 1), 0.25 * (i + 1), 0.0] for i in range(8)]), 0.5, 0.0)
    ade, fde = divergence(a, c)  # lateral offset grows 0.25 m per step
    assert (ade, fde) == pytest.approx((np.mean(0.25 * np.arange(1, 9)), 2.0))
    fine = a.resample(0.1)
    assert divergence(a, fine) == pytest.approx((0.0, 0.0), abs=1e-9)


def _decision(ts: Any, seq: int, choice: str) -> bytes:
    msg = RosbagsFactory(ts).make(STRING, data=json.dumps({"seq": seq, "choice": choice, "reasons": []}))
    return bytes(ts.serialize_cdr(msg, STRING))


def test_event_window_keeps_overlapping_splits_and_indexes_them(tmp_path: Path) -> None:
    cfg = _cfg(
        split__max_duration_s=0.5,
        events__pre_s=1.0,
        events__post_s=0.5,
        ring__max_total_mb=0.004,  # ~4 kB: forces the ring to delete old splits
        ring__min_free_mb=1,
    )
    rec = Recorder.from_config(cfg, "topics", tmp_path / "log")
    assert rec.start()
    ts = RosbagsFactory().typestore
    t0 = 1_700_000_000 * 10**9
    step = 50_000_000  # 50 ms of log time per decision; splits rotate on stamp span
    estop_seq = 50
    for seq in range(100):
        choice = "emergency_stop" if seq == estop_seq else "student"
        assert rec.record(DECISION, STRING, _decision(ts, seq, choice), t0 + seq * step)
    rec.close()
    st = rec.status()
    assert st.values["written"] == "100" and st.values["dropped_queue_full"] == "0"
    assert int(st.values["splits_deleted"]) > 0

    index = json.loads((tmp_path / "log" / "events" / "index.json").read_text())
    assert index["format"] == "vla_edge.events/1"
    (event,) = index["events"]
    assert event["kind"] == "emergency_stop" and event["status"] == "complete"
    lo, hi = event["window"]
    assert lo == pytest.approx((t0 + estop_seq * step) * 1e-9 - 1.0)
    assert hi == pytest.approx((t0 + estop_seq * step) * 1e-9 + 0.5)
    seqs = []
    for name in event["splits"]:
        with AnyReader([tmp_path / "log" / "events" / event["folder"] / name]) as reader:
            for conn, stamp, raw in reader.messages():
                seqs.append(json.loads(reader.deserialize(raw, conn.msgtype).data)["seq"])
                assert stamp <= hi * 1e9 + 0.5e9 and stamp >= lo * 1e9 - 0.5e9  # whole splits only
    # Every message inside the window was kept, although the ring deleted old splits.
    in_window = [s for s in range(100) if lo * 1e9 <= t0 + s * step <= hi * 1e9]
    assert set(in_window) <= set(seqs)
    ring = sorted(p for p in (tmp_path / "log" / "splits").iterdir() if p.name != "_open")
    assert len(ring) < 10  # 100 x 50 ms at 0.5 s per split = 10 splits before the ring


def test_operator_event_and_bad_kind(tmp_path: Path) -> None:
    rec = Recorder.from_config(_cfg(ring__min_free_mb=1), "topics", tmp_path)
    with pytest.raises(RecorderError, match="unknown event kind"):
        rec.flag_event("bogus")
    assert not rec.flag_event("operator")  # not started: refused, not raised
    assert rec.start()
    ts = RosbagsFactory().typestore
    rec.record(DECISION, STRING, _decision(ts, 0, "student"))
    assert rec.flag_event("operator", "button")
    rec.close()
    (event,) = json.loads((tmp_path / "events" / "index.json").read_text())["events"]
    assert event["kind"] == "operator" and event["reasons"] == ["button"] and len(event["splits"]) == 1


def test_disabled_by_config_records_nothing(tmp_path: Path) -> None:
    rec = Recorder.from_config(_cfg(enabled=False), "topics", tmp_path / "log")
    assert not rec.start()
    assert not rec.record(DECISION, STRING, b"\x00\x01\x00\x00")
    st = rec.status()
    assert st.level == "WARN" and "disabled" in st.message and not (tmp_path / "log").exists()


def test_bad_recorder_config_is_a_config_error() -> None:
    cfg = _cfg()
    cfg["topics"]["inputs"].append("no_such_key")
    with pytest.raises(ConfigError, match="no_such_key"):
        Recorder.from_config(cfg, "topics", "/tmp/unused")
    with pytest.raises(ConfigError, match="jpeg_quality"):
        Recorder.from_config(_cfg(camera__jpeg_quality=0), "topics", "/tmp/unused")
    bad_types = _cfg()
    del bad_types["topic_types"]["lidar"]
    with pytest.raises(ConfigError, match="topic_types"):
        Recorder.from_config(bad_types, "topics", "/tmp/unused")


def test_unknown_message_type_is_skipped_not_fatal(tmp_path: Path) -> None:
    rec = Recorder.from_config(_cfg(ring__min_free_mb=1), "topics", tmp_path)
    assert rec.start()
    ts = RosbagsFactory().typestore
    rec.record("/x", "no_pkg/msg/Nope", b"\x00\x01\x00\x00")
    rec.record(DECISION, STRING, _decision(ts, 0, "student"))
    rec.close()
    assert rec.error is None and rec.unknown_type_errors == 1 and rec.written == 1


def test_raw_camera_is_jpeg_encoded_on_the_writer_thread(tmp_path: Path, shared_data: Path) -> None:
    import cv2

    from vla_edge.conversions.image import compressed_to_rgb, rgb_to_compressed, rgb_to_image

    topics = load_config("topics")["inputs"]
    bgr = cv2.imread(str(shared_data / "camera_nuscenes_cam_front.jpg"))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[::2, ::2]
    fac = RosbagsFactory()
    ts = fac.typestore
    raw = bytes(ts.serialize_cdr(rgb_to_image(rgb, fac, 12.5, "camera_front"), "sensor_msgs/msg/Image"))
    bad = ts.serialize_cdr(
        fac.make(
            "sensor_msgs/msg/Image", header=fac.header(13.0, "camera_front"), height=1, width=1,
            encoding="bayer_weird", is_bigendian=0, step=1, data=fac.bytes_field(b"\x00"),
        ),
        "sensor_msgs/msg/Image",
    )  # fmt: skip
    comp = bytes(
        ts.serialize_cdr(rgb_to_compressed(rgb, fac, 12.6, "camera_front"), "sensor_msgs/msg/CompressedImage")
    )
    rec = Recorder.from_config(_cfg(ring__min_free_mb=1), "topics", tmp_path)
    assert rec.start()
    rec.record(topics["camera_front"], "sensor_msgs/msg/Image", raw, 1)
    rec.record(topics["camera_front_compressed"], "sensor_msgs/msg/CompressedImage", comp, 2)  # duplicate
    rec.record(topics["camera_front"], "sensor_msgs/msg/Image", bytes(bad), 3)
    rec.close()
    st = rec.status().values
    counts = (st["camera_jpeg_encoded"], st["camera_compressed_skipped"], st["camera_kept_raw"])
    assert counts == ("1", "1", "1")
    (split,) = [p for p in (tmp_path / "splits").iterdir() if p.name != "_open"]
    with AnyReader([split]) as reader:
        msgs = [(c.topic, c.msgtype, reader.deserialize(r, c.msgtype)) for c, _t, r in reader.messages()]
    assert [(t, m) for t, m, _ in msgs] == [
        (topics["camera_front_compressed"], "sensor_msgs/msg/CompressedImage"),
        (topics["camera_front"], "sensor_msgs/msg/Image"),
    ]
    jpeg = msgs[0][2]
    assert len(jpeg.data) < len(raw) / 5 and "jpeg" in jpeg.format
    assert jpeg.header.frame_id == "camera_front" and jpeg.header.stamp.sec == 12
    back = compressed_to_rgb(jpeg)
    assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 6.0


def test_restart_counts_earlier_splits_and_deletes_crash_leftovers_first(tmp_path: Path) -> None:
    ts = RosbagsFactory().typestore
    cfg = _cfg(ring__min_free_mb=1, split__max_duration_s=0.05)
    first = Recorder.from_config(cfg, "topics", tmp_path)
    assert first.start()
    for seq in range(6):
        first.record(DECISION, STRING, _decision(ts, seq, "student"), 1_000_000_000 + seq * 60_000_000)
    first.close()
    splits = tmp_path / "splits"
    old = sorted(p for p in splits.iterdir() if p.name != "_open")
    assert len(old) >= 3
    # A crash leaves a split in _open/ (no rename): emulate one with a copy of a split.
    import shutil

    shutil.copytree(old[-1], splits / "_open" / "crashed_000001")
    budget_mb = (sum(f.stat().st_size for p in old[1:] for f in p.iterdir()) + 1) / 2**20
    second = Recorder.from_config(_cfg(ring__min_free_mb=1, ring__max_total_mb=budget_mb), "topics", tmp_path)
    assert second.start()
    second.record(DECISION, STRING, _decision(ts, 99, "student"))
    second.close()
    left = {p.name for p in splits.iterdir()}
    assert not (splits / "_open" / "crashed_000001").exists()  # incomplete leftover went first
    assert old[0].name not in left  # then the oldest complete split
    assert old[-1].name in left
