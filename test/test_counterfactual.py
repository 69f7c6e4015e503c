"""Counterfactual parked objects (vla_edge/sim/counterfactual.py) and their training samples."""

from __future__ import annotations

import numpy as np
import pytest

from vla_edge.calibration import Calibration
from vla_edge.config import load_config
from vla_edge.sim.counterfactual import COUNTERFACTUAL_ID, parked_box, with_boxes
from vla_edge.sim.expert import Expert
from vla_edge.sim.harness import FrameBuilder
from vla_edge.sim.rollout import run_closed_loop
from vla_edge.sim.scenarios import make_scenario, suite


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_config("sim")


def _world(cfg: dict):
    return make_scenario(suite(1, 9200, ["empty_road"], 0.5, cfg)[0], cfg, 20.0)


def test_box_sits_on_the_lane_ahead_and_the_world_is_untouched(cfg: dict) -> None:
    w = _world(cfg)
    n_static = len(w.static)
    box = parked_box(w, "tug", 12.0, lateral=1.0)
    x, y, yaw = w.lane.interp(w.ego_s() + 12.0)
    assert np.allclose(box.xy[0], [x - np.sin(yaw), y + np.cos(yaw)])
    assert box.ids[0] == COUNTERFACTUAL_ID and tuple(box.size[0]) == (3.0, 1.8, 1.8)
    w2 = with_boxes(w, box)
    assert len(w2.static) == n_static + 1 and len(w.static) == n_static
    with pytest.raises(ValueError, match="unknown object class"):
        parked_box(w, "airbus", 5.0)


def test_variant_frames_leave_the_real_frames_unchanged(cfg: dict) -> None:
    """Frames built with variants in between equal the frames built without (assembler copied)."""
    calib = Calibration.from_config(load_config("calibration"))
    expert = Expert(cfg)
    frames: dict[bool, list] = {False: [], True: []}
    for with_variants in (False, True):
        builder = FrameBuilder(cfg, calib, lidar=True, camera=False)
        world = _world(cfg)
        k = [0]

        def policy(w, with_variants=with_variants, builder=builder, k=k):
            if with_variants and k[0] % 3 == 0:
                v = builder.build_variant(w, k[0], parked_box(w, "tug", 8.0))
                near = v.points[(np.abs(v.points[:, 0] - 8.0) < 2.0) & (np.abs(v.points[:, 1]) < 1.0)]
                assert len(near) > 50, "the variant shows the tug"
            frames[with_variants].append(builder.build(w, k[0]))
            k[0] += 1
            return expert.plan(w).plan, {}

        run_closed_loop(world, policy, 1.5, cfg)
    assert len(frames[True]) == len(frames[False]) > 10
    for a, b in zip(frames[False], frames[True]):
        assert np.array_equal(a.points, b.points) and a.stamp == b.stamp
        assert np.array_equal(a.reference_path, b.reference_path)


def test_collection_adds_expert_labelled_counterfactual_samples(cfg: dict) -> None:
    from training.onpolicy.collect import CollectJob, run_job

    oc = load_config("train")["onpolicy"]
    spec = suite(1, 9200, ["empty_road"], 0.5, cfg)[0]
    out = {}
    for share in (0.0, 1.0):
        job = CollectJob(
            spec,
            0,
            "expert",
            dict(
                oc,
                seconds=4.0,
                stride=10,
                counterfactual=dict(
                    oc["counterfactual"], share=share, distance=[6.0, 8.0], lateral=[0.0, 0.0]
                ),
            ),
        )
        out[share] = run_job(job)
    plain, both = out[0.0], out[1.0]
    n = plain["stats"]["frames"]
    assert both["stats"]["counterfactual"] == n and both["stats"]["frames"] == 2 * n
    gt = both["arrays"]["gt"]
    real, cf = gt[0::2], gt[1::2]  # each counterfactual sample follows its frame
    assert np.allclose(real, plain["arrays"]["gt"]), "the rollout and its labels are unchanged"
    moved = np.hypot(*real[:, -1, :2].T) - np.hypot(*cf[:, -1, :2].T)
    later = np.flatnonzero(both["arrays"]["t"][0::2] >= 1.0)  # once cruising, the expert reacts
    assert (moved[later] > 1.0).all(), moved


def test_onpolicy_flags_set_the_config() -> None:
    import argparse

    from training.onpolicy.commands import onpolicy_config, register
    from vla_edge.errors import ConfigError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["onpolicy", "--workdir", "x"]
    cfg, _ = onpolicy_config(
        parser.parse_args([*base, "--counterfactual-share", "0.2", "--observable-labels"])
    )
    assert cfg["onpolicy"]["counterfactual"]["share"] == 0.2 and cfg["onpolicy"]["observable_labels"] is True
    default, _ = onpolicy_config(parser.parse_args(base))
    assert (
        default["onpolicy"]["counterfactual"]["share"] == 0.0
        and default["onpolicy"]["observable_labels"] is False
    )
    with pytest.raises(ConfigError, match="counterfactual-share"):
        onpolicy_config(parser.parse_args([*base, "--counterfactual-share", "1.5"]))


def test_variant_renders_the_object_in_the_earlier_sweeps_a_model_uses(cfg: dict) -> None:
    """A multi-sweep model sees the parked object in its earlier sweep too (not one that
    appeared just now); the real frames' history stays without it."""
    from vla_edge.pillarize import PillarSpec
    from vla_edge.sweeps import select_sweeps

    spec = PillarSpec.from_config(load_config("model")).with_sweeps([0.3], 0.05)  # tiny_motion's
    calib = Calibration.from_config(load_config("calibration"))
    builder = FrameBuilder(cfg, calib, lidar=True, camera=False)
    expert, k, seen = Expert(cfg), [0], {}

    def near_tug(points: np.ndarray, ahead: float) -> int:
        return int(
            np.sum((np.abs(points[:, 0] - ahead) < 2.0) & (np.abs(points[:, 1]) < 1.0) & (points[:, 2] > 0.3))
        )

    def policy(w):
        if k[0] == 12:
            box = parked_box(w, "tug", 10.0)
            v = builder.build_variant(w, k[0], box, spec)
            _lag, past = select_sweeps(v.stamp, v.history, spec)[0]
            moved = float(np.hypot(w.ego.x - past.ego.x, w.ego.y - past.ego.y))
            seen["variant_past"] = near_tug(past.points, 10.0 + moved)
            seen["variant_now"] = near_tug(v.points, 10.0)
            real = builder.build(w, k[0])
            seen["real_past"] = near_tug(
                select_sweeps(real.stamp, real.history, spec)[0][1].points, 10.0 + moved
            )
        else:
            builder.build(w, k[0])
        k[0] += 1
        return expert.plan(w).plan, {}

    run_closed_loop(_world(cfg), policy, 1.5, cfg)
    assert seen["variant_now"] > 50 and seen["variant_past"] > 50, seen
    assert seen["real_past"] == 0, seen


@pytest.mark.parametrize("parked_share", [1.0, 0.0])
def test_multi_sweep_samples_show_a_parked_object_in_the_earlier_sweep(
    cfg: dict, parked_share: float
) -> None:
    """Collected for a multi-sweep preset: a parked object is in the earlier sweep's points too
    (motion-compensated to the same place); with ``parked_share`` 0 it shows only now."""
    from training.onpolicy.collect import POINT_QUANTUM, CollectJob, run_job
    from vla_edge.pillarize import PillarSpec

    oc = load_config("train")["onpolicy"]
    pspec = PillarSpec.from_config(load_config("model")).with_sweeps([0.3], 0.05)
    cf = dict(
        oc["counterfactual"], share=1.0, parked_share=parked_share, distance=[8.0, 8.0], lateral=[0.0, 0.0],
        classes=["tug"],
    )  # fmt: skip
    job = CollectJob(
        suite(1, 9200, ["empty_road"], 0.5, cfg)[0], 0, "expert",
        dict(oc, seconds=2.5, stride=10, counterfactual=cf), pillar_spec=pspec,
    )  # fmt: skip
    arrays = run_job(job)["arrays"]
    samples = np.split(arrays["points"].astype(np.float64) * POINT_QUANTUM, np.cumsum(arrays["counts"])[:-1])
    cf_samples = samples[1::2][1:]  # after the first second, the 0.3 s sweep exists
    assert len(cf_samples) == 2
    for p in cf_samples:
        on_tug = (np.abs(p[:, 0] - 8.0) < 2.0) & (np.abs(p[:, 1]) < 1.0) & (p[:, 2] > 0.3)
        assert np.sum(on_tug & (p[:, 4] == 0)) > 50, "the current sweep shows it"
        earlier = int(np.sum(on_tug & (p[:, 4] > 0.2)))
        assert (earlier > 50) if parked_share == 1.0 else (earlier == 0), earlier
