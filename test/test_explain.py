"""`vla-edge explain` on a bag recorded by the recorder: one aligned row per LiDAR frame."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vla_edge.config import load_config
from vla_edge.conversions import poses_to_path, trajectory_to_path, xyzi_to_pointcloud2
from vla_edge.conversions.odometry import yaw_to_quaternion
from vla_edge.frame_assembly import FRONT_CAMERA
from vla_edge.msgfactory import RosbagsFactory
from vla_edge.recording import Recorder, divergence
from vla_edge.types import Trajectory

N_FRAMES = 12
T0 = 1_700_000_000.0  # frame stamps (s); the recorder's log time follows them
SPEED = 5.0  # m/s along odom x


def _odometry(fac: RosbagsFactory, t: float) -> Any:
    qx, qy, qz, qw = yaw_to_quaternion(0.0)
    m = fac.make
    position = m("geometry_msgs/msg/Point", x=SPEED * (t - T0), y=0.0, z=0.0)
    orientation = m("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw)
    pose = m(
        "geometry_msgs/msg/PoseWithCovariance",
        pose=m("geometry_msgs/msg/Pose", position=position, orientation=orientation),
        covariance=np.zeros(36),
    )
    vec = lambda x: m("geometry_msgs/msg/Vector3", x=x, y=0.0, z=0.0)  # noqa: E731
    twist = m(
        "geometry_msgs/msg/TwistWithCovariance",
        twist=m("geometry_msgs/msg/Twist", linear=vec(SPEED), angular=vec(0.0)),
        covariance=np.zeros(36),
    )
    return m(
        "nav_msgs/msg/Odometry",
        header=fac.header(t, "odom"),
        child_frame_id="base_link",
        pose=pose,
        twist=twist,
    )


def _choice(i: int) -> str:
    return {4: "frenet", 8: "emergency_stop"}.get(i, "student")


def record_drive(out: Path, lidar_points: np.ndarray, no_candidate: set[int]) -> dict[str, Any]:
    """Feed a 10 Hz drive of real serialized messages through the recorder core.

    Returns the topics config. Frames in ``no_candidate`` get no logged candidate.
    """
    topics = load_config("topics")
    cfg = load_config("recorder")
    cfg["ring"]["min_free_mb"] = 1
    cfg["split"]["max_duration_s"] = 0.5  # several splits: explain must read them as one run
    rec = Recorder.from_config(cfg, topics, out)
    assert rec.start()
    fac = RosbagsFactory()
    ts = fac.typestore
    inp, outp = topics["inputs"], topics["outputs"]

    def put(topic: str, msgtype: str, msg: Any, t: float) -> None:
        assert rec.record(topic, msgtype, bytes(ts.serialize_cdr(msg, msgtype)), round(t * 1e9))

    route = np.stack([np.linspace(-20, 200, 111), np.zeros(111)], axis=1)
    put(inp["reference_path"], "nav_msgs/msg/Path", poses_to_path(route, fac, T0 - 0.5, "odom"), T0 - 0.5)
    for i in range(N_FRAMES):
        t = T0 + 0.1 * i
        for k in range(5):  # 50 Hz odometry up to the sweep
            put(
                inp["odometry"],
                "nav_msgs/msg/Odometry",
                _odometry(fac, t - 0.08 + 0.02 * k),
                t - 0.08 + 0.02 * k,
            )
        put(
            inp["lidar"],
            "sensor_msgs/msg/PointCloud2",
            xyzi_to_pointcloud2(lidar_points, fac, t, "lidar"),
            t + 0.001,
        )
        student = Trajectory(
            np.array([[SPEED * 0.5 * (k + 1), 0.1 * k, 0.0] for k in range(8)]), 0.5, t, source="student"
        )
        if i not in no_candidate:
            put(outp["candidate_trajectory"], "nav_msgs/msg/Path", trajectory_to_path(student, fac), t + 0.03)
        final = student.resample(0.1)
        decision = {"stamp": t, "choice": _choice(i), "reasons": [f"test_reason_{i}"], "frame": i}
        put(
            outp["decision"],
            "std_msgs/msg/String",
            fac.make("std_msgs/msg/String", data=json.dumps(decision)),
            t + 0.04,
        )
        put(outp["trajectory"], "nav_msgs/msg/Path", trajectory_to_path(final, fac), t + 0.041)
    rec.close()
    assert rec.status().values["dropped_queue_full"] == "0"
    return topics


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def kitti(shared_data: Path) -> np.ndarray:
    """Real KITTI scan with the lane ahead cleared, so the Frenet teacher finds a plan.

    (In the raw scan parked cars block every Frenet candidate: the teacher would only say so.)
    """
    pts = np.fromfile(shared_data / "lidar" / "kitti_000008.bin", dtype=np.float32).reshape(-1, 4)
    lane = (pts[:, 0] > -6.0) & (pts[:, 0] < 45.0) & (np.abs(pts[:, 1]) < 4.0) & (pts[:, 2] > -1.4)
    return pts[~lane][::3]


def test_explain_recorded_bag_one_aligned_row_per_lidar_frame(tmp_path: Path, kitti: np.ndarray) -> None:
    from vla_edge.explain.run import explain

    log = tmp_path / "log"
    record_drive(log, kitti, no_candidate={2, 3})
    n_splits = len([p for p in (log / "splits").iterdir() if p.name != "_open"])
    assert n_splits >= 2
    res = explain([log], tmp_path / "out", teacher="scene", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "explain.jsonl").read_text().splitlines()]
    assert res.rows == len(rows) == N_FRAMES and res.runs == 1
    for i, row in enumerate(rows):
        assert row["stamp"] == pytest.approx(T0 + 0.1 * i, abs=1e-6)
        assert row["decision"]["frame"] == i  # the logged decision of this very frame
        assert row["final"] is not None and row["final"]["dt"] == pytest.approx(0.1)
        want = "recomputed" if i in (2, 3) else "logged"
        assert row["student"]["source"] == want
        assert row["student"]["trajectory"] is not None
        assert row["teacher"]["name"] == "scene" and row["reasoning"]
        assert f"Vehicle chose {_choice(i)}" in row["reasoning"]
        assert row["frame"]["n_points"] > 1000
    assert "fallback" in rows[4]["flags"] and "emergency_stop" in rows[8]["flags"]
    planned = [r for r in rows if r["teacher"]["trajectory"] is not None]
    assert len(planned) >= N_FRAMES // 2, [r["teacher_extra"]["teacher_reasons"] for r in rows]
    for r in planned:  # teacher vs student divergence, recomputed here from the row itself
        t = Trajectory(np.array(r["teacher"]["trajectory"]["poses"]), r["teacher"]["trajectory"]["dt"], 0.0)
        s = Trajectory(np.array(r["student"]["trajectory"]["poses"]), r["student"]["trajectory"]["dt"], 0.0)
        assert r["divergence"]["ade_m"] == pytest.approx(divergence(t, s)[0], abs=1e-3)
    bags = [r["bag"] for r in rows]
    assert bags == sorted(bags) and len(set(bags)) >= 2
    assert rows[0]["student"]["trajectory"]["poses"][0][0] == pytest.approx(SPEED * 0.5)

    page = (tmp_path / "out" / "summary.html").read_text()
    parser = _Collect()
    parser.feed(page)
    parser.close()
    imgs = [a for t, a in parser.tags if t == "img"]
    bev = [a for a in imgs if (a.get("alt") or "").startswith("BEV frame")]
    assert len(bev) == res.flagged == sum(r["flagged"] for r in rows) >= 2
    assert all((a.get("src") or "").startswith("data:image/png;base64,") for a in imgs)


def test_explain_cli_and_bad_inputs(tmp_path: Path) -> None:
    from vla_edge.cli import main
    from vla_edge.errors import BagError
    from vla_edge.explain.rebuild import find_bags

    with pytest.raises(BagError, match="neither a rosbag2"):
        find_bags(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no rosbag2"):
        find_bags(tmp_path / "empty")
    assert main(["explain", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    code = main(["explain", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--teacher", "nope:Nope"])
    assert code == 1
    assert main(["explain", str(tmp_path), "--out", str(tmp_path / "o"), "--remap", "nonsense"]) == 1


def test_parquet_needs_pyarrow_and_says_so_before_running(tmp_path: Path) -> None:
    from vla_edge.errors import ConfigError
    from vla_edge.explain.run import explain

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install pyarrow"):
            explain([tmp_path / "not_read"], tmp_path / "out", fmt="parquet", progress=False)
    else:  # with pyarrow: nested fields become JSON strings, rows round-trip
        import pyarrow.parquet as pq

        from vla_edge.explain.run import write_parquet

        rows = [{"index": 0, "stamp": 1.5, "decision": {"choice": "frenet"}, "divergence": None}]
        table = pq.read_table(write_parquet(rows, tmp_path / "r.parquet")).to_pylist()
        assert json.loads(table[0]["decision"]) == {"choice": "frenet"} and table[0]["stamp"] == 1.5


def test_explain_simulator_bag_recomputes_the_student(tmp_path: Path) -> None:
    """A simulator bag has no logged outputs: student recomputed, decision null, camera used."""
    from vla_edge.bagio import open_bag
    from vla_edge.explain.run import explain
    from vla_edge.sim.bag_writer import write_scenario_bag

    bag = tmp_path / "sim"
    write_scenario_bag(bag, seed=0, seconds=1.0, camera_mode="jpeg")
    with open_bag(bag) as b:
        lidar_stamps = [m.msg.header.stamp.sec + m.msg.header.stamp.nanosec * 1e-9
                        for m in b.messages([load_config("topics")["inputs"]["lidar"]])]  # fmt: skip
    res = explain([bag], tmp_path / "out", teacher="scene", progress=False, html=False)
    rows = [json.loads(line) for line in (tmp_path / "out" / "explain.jsonl").read_text().splitlines()]
    assert res.rows == len(rows) == len(lidar_stamps) > 0 and res.html_path is None
    assert [r["stamp"] for r in rows] == pytest.approx(lidar_stamps, abs=1e-6)
    assert {r["student"]["source"] for r in rows} == {"recomputed"}
    assert all(r["decision"] is None and r["final"] is None for r in rows)
    # The simulator logs each camera frame just after its sweep, so from the second sweep on
    # the assembler holds a camera image (as the vehicle's would).
    assert all(FRONT_CAMERA in r["frame"]["ages"] for r in rows[1:])
