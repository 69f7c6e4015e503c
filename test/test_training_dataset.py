"""Dataset from bags: GT from future odometry, bad-segment counts, split by bag without leakage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from training_bags import write_bag


def _track(t, x, y, yaw, v):
    from training.segments import OdometryTrack

    return OdometryTrack(t=np.asarray(t), xy=np.column_stack([x, y]), yaw=np.asarray(yaw), v=np.asarray(v))


def test_future_trajectory_on_a_circle_in_the_ego_frame():
    from training.segments import future_trajectory

    # ego on a circle of radius R at angular rate w, starting at angle pi/2 heading -x (yaw = pi)
    R, w = 20.0, 0.25
    t = np.arange(0, 10.001, 0.01)
    ang = np.pi / 2 + w * t
    track = _track(t, R * np.cos(ang), R * np.sin(ang), ang + np.pi / 2, np.full_like(t, R * w))
    gt = future_trajectory(track, 1.0, 8, 0.5)
    k = np.arange(1, 9) * 0.5
    # in the ego frame the circle starts at the origin heading +x, centre at (0, R) (left turn)
    exp = np.column_stack([R * np.sin(w * k), R * (1 - np.cos(w * k)), w * k])
    assert np.allclose(gt, exp, atol=2e-3)


def test_classify_window_reasons():
    from training.segments import SegmentFilter, classify_window

    f = SegmentFilter(max_gap=0.3, teleport_speed=60.0, stationary_distance=0.5, stationary_speed=0.3)
    t = np.arange(0, 10.0001, 0.05)
    x = 5.0 * t
    ok = _track(t, x, 0 * t, 0 * t, np.full_like(t, 5.0))
    assert classify_window(ok, 1.0, 4.0, f) == "ok"
    assert classify_window(ok, 6.5, 4.0, f) == "end_of_bag"
    still = _track(t, 0 * t, 0 * t, 0 * t, 0 * t)
    assert classify_window(still, 1.0, 4.0, f) == "stationary"
    jump = x.copy()
    jump[100:] += 30.0
    assert classify_window(_track(t, jump, 0 * t, 0 * t, np.full_like(t, 5.0)), 3.0, 4.0, f) == "teleport"
    keep = (t < 4.0) | (t > 4.5)
    gap = _track(t[keep], x[keep], 0 * t[keep], 0 * t[keep], np.full(keep.sum(), 5.0))
    assert classify_window(gap, 2.0, 4.0, f) == "gap"
    assert classify_window(gap, 5.0, 4.0, f) == "ok"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Four bags with known defects, built into a dataset (stride 2 -> 5 Hz frames)."""
    from training.dataset import build_dataset
    from vla_edge.config import load_config

    d = tmp_path_factory.mktemp("ds")
    write_bag(d / "bags" / "still", seconds=12, stationary=(0.0, 6.0), seed=0)
    write_bag(d / "bags" / "jump", seconds=12, teleport_at=6.0, seed=1)
    write_bag(d / "bags" / "gap", seconds=12, gap=(5.0, 5.6), seed=2)
    write_bag(d / "bags" / "clean", seconds=12, seed=3)
    cfg, mc = load_config("train"), load_config("model")
    man = build_dataset([d / "bags"], d / "ds", cfg, mc, workers=1)
    return d, man, cfg, mc


def test_filter_counts_per_bag(built):
    _, man, _, _ = built
    b = man["bags"]
    # 12 s at 10 Hz, stride 2 -> 61 frames per bag; a window is 8 x 0.5 s = 4 s
    for name in b:
        assert sum(b[name]["counts"].values()) == 61
        assert 19 <= b[name]["counts"]["end_of_bag"] <= 21  # t0 > 8 s
    assert 10 <= b["still"]["counts"]["stationary"] <= 12  # t0 <= ~2 s: still for the whole window
    assert 19 <= b["jump"]["counts"]["teleport"] <= 21  # windows that contain the 40 m jump at 6 s
    assert 19 <= b["gap"]["counts"]["gap"] <= 22  # windows overlapping the 0.6 s odometry hole
    assert b["gap"]["counts"]["stale_input"] >= 1  # sweeps inside the hole: odometry stale
    assert b["clean"]["counts"]["ok"] == b["clean"]["frames"] == 61 - b["clean"]["counts"]["end_of_bag"]
    assert b["still"]["counts"]["teleport"] == b["clean"]["counts"]["stationary"] == 0
    tot = man["totals"]
    assert tot["frames_kept"] == sum(e["frames"] for e in b.values())
    assert tot["dropped"]["teleport"] == b["jump"]["counts"]["teleport"]


def test_gt_from_odometry_and_inputs_like_the_runtime(built):
    from training.data import load_split_arrays
    from vla_edge.pillarize import PillarSpec

    d, _man, _, mc = built
    a = load_split_arrays(d / "ds", "all")
    clean = a["bag"] == "clean"
    gt = a["gt"][clean]
    k = np.arange(1, 9) * 0.5
    assert np.allclose(gt[:, :, 0], 5.0 * k[None], atol=1e-3)  # 5 m/s along +x
    assert np.allclose(gt[:, :, 1:], 0.0, atol=1e-6)
    spec = PillarSpec.from_config(mc)
    assert a["pillar_features"].shape[1:] == (spec.max_pillars, spec.max_points, spec.num_features)
    assert np.all(a["pillar_count"] > 0)
    assert np.allclose(a["ego_state"][clean][:, 0], 5.0 / mc["inputs"]["ego_state"]["v"], atol=1e-4)
    # reference path runs along +x in the ego frame
    assert np.allclose(a["reference_path"][clean][:, :, 1], 0.0, atol=1e-3)


def test_split_by_bag_has_no_leakage(built):
    from training.data import SplitData
    from training.dataset import split_bags

    d, man, _, _ = built
    splits = {n: e["split"] for n, e in man["bags"].items()}
    assert set(splits.values()) == {"train", "val"}
    tr, va = SplitData.load(d / "ds", "train"), SplitData.load(d / "ds", "val")
    assert set(tr.bag) & set(va.bag) == set()
    assert set(tr.bag) == {n for n, s in splits.items() if s == "train" and man["bags"][n]["frames"]}
    assert len(tr) + len(va) == man["totals"]["frames_kept"]
    # the assignment depends on bag names only (not order), and is seeded
    names = [f"bag{i}" for i in range(20)]
    s1, s2 = split_bags(names, 0.2, 0), split_bags(list(reversed(names)), 0.2, 0)
    assert s1 == s2 and sum(v == "val" for v in s1.values()) == 4
    assert split_bags(names, 0.2, 1) != s1


def test_cached_shards_are_reused_and_rebuilt_on_force(built, caplog):
    from training.dataset import build_dataset

    d, man, cfg, mc = built
    shard = d / "ds" / "shards" / "clean.npz"
    mtime = shard.stat().st_mtime_ns
    man2 = build_dataset([d / "bags"], d / "ds", cfg, mc, workers=1)
    assert shard.stat().st_mtime_ns == mtime
    assert man2["totals"] == man["totals"]
    json.loads((d / "ds" / "manifest.json").read_text())


def test_bad_inputs_raise_dataset_errors(tmp_path):
    from training.data import DatasetError, read_manifest
    from training.dataset import build_dataset, find_bags
    from vla_edge.config import load_config

    with pytest.raises(DatasetError, match="does not exist"):
        find_bags([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no rosbag2 bags"):
        find_bags([tmp_path / "empty"])
    with pytest.raises(DatasetError, match="no dataset manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_manifest(tmp_path)
    # a bag that only ever stands still: every frame filtered -> clear error
    write_bag(tmp_path / "bags" / "parked", seconds=6, speed=0.0)
    with pytest.raises(DatasetError, match="survived filtering"):
        build_dataset(
            [tmp_path / "bags"], tmp_path / "ds", load_config("train"), load_config("model"), workers=1
        )


def test_calibration_set_from_dataset(built, tmp_path, caplog):
    from training.calibration import export_calibration

    d, man, _, mc = built
    s = export_calibration(d / "ds", tmp_path / "calib.npz", 500, "all", 7, mc)
    n = man["totals"]["frames_kept"]
    assert s["frames"] == n < 500 and "only" in caplog.text  # fewer frames than asked: all, with a warning
    with np.load(tmp_path / "calib.npz") as z:
        assert set(z.files) == {
            "pillar_features", "pillar_coords", "pillar_count", "ego_state", "reference_path", "noise",
        }  # fmt: skip
        assert z["pillar_features"].dtype == np.float32 and z["pillar_features"].shape[0] == n
        assert z["pillar_coords"].dtype == np.int32
        assert np.all(z["noise"][0] == z["noise"][-1])  # the runtime's fixed noise
    s2 = export_calibration(d / "ds", tmp_path / "c2.npz", 5, "all", 7, mc)
    assert s2["frames"] == 5
