"""Tiny end-to-end run on CPU: simulator bags -> dataset -> train -> label -> distil -> export -> ORT.

Real parts only: the simulator's bag writer, the runtime's FrameAssembler/pillarization, the
model session's model and exporter, ONNX Runtime. A few steps each, so it stays fast.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import requires_torch

pytestmark = requires_torch


def _cfg():
    from vla_edge.config import load_config

    cfg = load_config("train")
    cfg["train"].update(
        batch_size=4, log_every=1, val_every=1000, ckpt_every=5, warmup_steps=1, val_max_frames=8
    )
    cfg["dataset"]["val_fraction"] = 0.5
    mc = load_config("model")
    # a micro preset (same code, fewer channels) keeps CPU steps fast; the grid/inputs are the real ones
    mc["presets"]["micro"] = {
        "pfn_channels": 8, "stages": [[8, 1, 2], [16, 1, 2]], "bev_channels": 16, "neck_stride": 4,
        "d_model": 32, "num_heads": 4, "ffn_dim": 64, "decoder_layers": 2, "vanilla": False,
    }  # fmt: skip
    return cfg, mc


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    import torch

    from training.data import SplitData
    from training.dataset import build_dataset
    from training.labels import save_labels
    from training.runs import run_training
    from training.teachers.learned import learned_labels, load_model
    from training.trainer import runtime_noise_seed
    from vla_edge.sim.bag import write_scenario_bag

    torch.set_num_threads(2)
    d = tmp_path_factory.mktemp("e2e")
    for seed in (1, 2):
        write_scenario_bag(d / "bags" / f"sc{seed}", seed=seed, seconds=8.0, camera_mode="none")
    cfg, mc = _cfg()
    man = build_dataset([d / "bags"], d / "ds", cfg, mc, workers=1)
    gt = run_training(d / "ds", d / "runs" / "gt", "micro", cfg, mc, epochs=3, force_cpu=True, minutes=0)
    model = load_model(d / "runs" / "gt" / "best.pt", mc, torch.device("cpu"))
    data = SplitData.load(d / "ds", "all")
    labels = learned_labels(
        model, data, tuple(cfg["labels"]["bev_size"]), 8, runtime_noise_seed(), torch.device("cpu")
    )
    save_labels(d / "labels.npz", labels)
    kd = run_training(
        d / "ds", d / "runs" / "kd", "micro", cfg, mc, labels=d / "labels.npz", distill=True, epochs=2,
        force_cpu=True, minutes=0,
    )  # fmt: skip
    return {"dir": d, "manifest": man, "gt": gt, "kd": kd, "labels": labels, "cfg": cfg, "mc": mc}


def _mean(hist, key, sl):
    return float(np.mean([h[key] for h in hist[sl]]))


def test_dataset_from_simulator_bags(pipeline):
    man = pipeline["manifest"]
    assert man["totals"]["frames_kept"] > 10
    assert set(e["split"] for e in man["bags"].values()) == {"train", "val"}
    from training.data import load_split_arrays

    a = load_split_arrays(pipeline["dir"] / "ds", "all")
    assert a["expert_valid"].all()  # simulator bags carry the privileged expert
    assert (a["reasoning"] != "").all()


def test_loss_decreases_and_checkpoints_resume(pipeline):
    hist = pipeline["gt"]["history"]
    assert len(hist) >= 6
    assert _mean(hist, "total", slice(-3, None)) < _mean(hist, "total", slice(0, 3))
    run = pipeline["dir"] / "runs" / "gt"
    assert (run / "best.pt").exists() and (run / "last.pt").exists() and (run / "summary.json").exists()
    # resume: a second call finds last.pt at the planned end and does not train again
    from training.runs import run_training

    again = run_training(
        pipeline["dir"] / "ds",
        run,
        "micro",
        pipeline["cfg"],
        pipeline["mc"],
        epochs=3,
        force_cpu=True,
        minutes=0,
    )
    assert again["steps"] == pipeline["gt"]["steps"] and again["history"] == []


def test_learned_labels_follow_the_schema(pipeline):
    lab = pipeline["labels"]
    lab.validate(horizon=8, bev_size=tuple(pipeline["cfg"]["labels"]["bev_size"]))
    assert lab.mode_logits.shape[1] == 20 and lab.bev_features.dtype == np.float16
    assert np.all((lab.confidence > 0) & (lab.confidence <= 1))


def test_distillation_uses_every_teacher_term(pipeline):
    hist = pipeline["kd"]["history"]
    for key in ("mse_teacher", "feat", "kl"):
        assert all(h[key] > 0 for h in hist), key
    info = json.loads((pipeline["dir"] / "runs" / "kd" / "summary.json").read_text())
    assert info["steps"] == pipeline["kd"]["steps"] > 0


def test_export_round_trips_through_onnx_runtime(pipeline, tmp_path):
    import onnxruntime as ort
    import torch

    from training import modelio
    from training.data import SplitData
    from training.runs import export_checkpoint
    from training.teachers.learned import load_model
    from training.trainer import runtime_noise_seed

    ck = pipeline["dir"] / "runs" / "kd" / "best.pt"
    s = export_checkpoint(ck, tmp_path, "student")
    man = json.loads((tmp_path / "student.json").read_text())
    assert man["weights"] == "trained" and man["preset"] == "micro"
    assert s["bytes"] <= 16 * 2**20
    # a real dataset frame through ONNX Runtime vs the torch model
    model = load_model(ck, pipeline["mc"], torch.device("cpu"))
    data = SplitData.load(pipeline["dir"] / "ds", "all")
    batch = data.batch(np.array([0]), torch.device("cpu"))
    noise = modelio.fixed_noise(model, 1, runtime_noise_seed(), torch.device("cpu"))
    with torch.no_grad():
        ref = modelio.infer(model, batch, noise)
    sess = ort.InferenceSession(str(tmp_path / "student.onnx"), providers=["CPUExecutionProvider"])
    feed = {k: batch[k].numpy() for k in modelio.INPUT_KEYS}
    feed["noise"] = noise.numpy()
    traj, scores = sess.run(["trajectories", "scores"], feed)[:2]
    assert np.abs(traj - ref["trajectories"].numpy()).max() < 1e-4
    assert np.abs(scores - ref["scores"].numpy()).max() < 1e-4
