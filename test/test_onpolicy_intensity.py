"""Intensity augmentation of on-policy batches: samples with no intensity, or another gain.

The shipped student leans on the simulator's 0..255 intensities (fed zeros it collides in 8 of
10 scenarios, docs/training.md); ``onpolicy.intensity_dropout`` / ``intensity_gain`` train it
on sweeps without them. Real collected frames, the real GPU-path pillarizer on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_torch

pytestmark = requires_torch


@pytest.fixture(scope="module")
def frames():
    from training.onpolicy.collect import CollectJob, run_job
    from training.onpolicy.store import SparseFrames
    from vla_edge.config import load_config
    from vla_edge.sim.scenarios import ScenarioSpec

    oc = load_config("train")["onpolicy"]
    oc.update(seconds=2.0, stride=4)
    job = CollectJob(ScenarioSpec(family="blocked_lane", seed=4343, difficulty=0.5), 0, "expert", oc)
    return SparseFrames.from_jobs([run_job(job)], 0)


def _intensity(data, idx):
    import torch

    b = data.batch(idx, torch.device("cpu"))
    return b["pillar_features"][..., 3], b["pillar_features"].abs().sum(-1) > 0


def test_dropout_zeroes_whole_samples_and_gain_scales_them(frames) -> None:
    from training.onpolicy.store import SparseSplitData
    from vla_edge.config import load_config
    from vla_edge.pillarize import PillarSpec

    spec = PillarSpec.from_config(load_config("model"))
    idx = np.arange(len(frames))
    ref, occupied = _intensity(SparseSplitData(frames, spec), idx)
    assert ref[occupied].max() > 10.0  # the simulator's 0..255 scale
    off, _ = _intensity(SparseSplitData(frames, spec, intensity_dropout=1.0), idx)
    assert (off == 0).all()
    doubled, _ = _intensity(SparseSplitData(frames, spec, intensity_gain=(2.0, 2.0)), idx)
    np.testing.assert_allclose(doubled.numpy(), 2.0 * ref.numpy(), rtol=1e-5, atol=1e-4)
    # half the samples dropped, whole samples only, the rest within the gain range; seeded
    many = np.tile(idx, 40)
    data = SparseSplitData(frames, spec, seed=5, intensity_dropout=0.5, intensity_gain=(0.5, 2.0))
    got, occ = _intensity(data, many)
    base = ref.repeat(40, 1, 1)
    zero = [(got[i][occ[i]] == 0).all().item() for i in range(len(many))]
    assert 0.35 < np.mean(zero) < 0.65
    for i in np.flatnonzero(~np.asarray(zero))[:20]:
        ratio = got[i][occ[i]] / base[i][occ[i]].clamp_min(1e-6)
        sel = base[i][occ[i]] > 1.0
        assert ratio[sel].min() >= 0.5 - 1e-4 and ratio[sel].max() <= 2.0 + 1e-4
        np.testing.assert_allclose(ratio[sel].numpy(), ratio[sel][0].item(), rtol=1e-4)  # one gain per sample
    again, _ = _intensity(
        SparseSplitData(frames, spec, seed=5, intensity_dropout=0.5, intensity_gain=(0.5, 2.0)), many
    )
    assert (again == got).all()
    with pytest.raises(ValueError, match="intensity_gain"):
        SparseSplitData(frames, spec, intensity_gain=(2.0, 1.0))
    with pytest.raises(ValueError, match="intensity_dropout"):
        SparseSplitData(frames, spec, intensity_dropout=1.5)


def test_config_and_flag_are_checked(small_onpolicy_config, capsys) -> None:
    import yaml

    from training.cli import main
    from vla_edge.config import load_config
    from vla_edge.errors import ConfigError

    train = yaml.safe_load((small_onpolicy_config / "train.yaml").read_text())
    train["onpolicy"]["intensity_gain"] = [2.0, 1.0]
    (small_onpolicy_config / "train.yaml").write_text(yaml.safe_dump(train))
    with pytest.raises(ConfigError, match="intensity_gain"):
        load_config("train")
    train["onpolicy"]["intensity_gain"] = [1.0, 1.0]
    (small_onpolicy_config / "train.yaml").write_text(yaml.safe_dump(train))
    assert (
        main(["onpolicy", "--workdir", str(small_onpolicy_config / "w"), "--intensity-dropout", "1.5"]) != 0
    )
    assert "--intensity-dropout 1.5: must be in [0, 1]" in capsys.readouterr().err
