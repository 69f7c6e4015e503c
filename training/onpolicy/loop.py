"""The DAgger loop: collect on-policy → label with the expert → aggregate → retrain → evaluate.

Work directory layout (everything resumable; rerun the same command to continue)::

    WORKDIR/
      state.json                 # finished stages per iteration, the results table rows
      anchors.npy                # k-means anchors, fitted once on iteration 0 (modes keep meaning)
      data/iter_K.npz            # sparse frames collected in iteration K (SparseFrames)
      iter_K/                    # trainer run of iteration K (last.pt = resume, best.pt, summary.json)
      results.json, results.md   # per-iteration table (frames, takeovers, ADE, closed-loop score ...)
      export/student.{onnx,json,ts}  # the final student, manifest with provenance (never engines/)

Collection and evaluation run in a process pool over every CPU core; training runs on the
GPU when there is one (pillarizing each batch there from the sparse points).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training import distributed as dist_utils
from training.distill import LossWeights
from training.evaluate import closed_loop
from training.model.anchors import kmeans_anchors
from training.model.config import ModelConfig
from training.onpolicy.collect import CollectJob, preset_camera, run_job
from training.onpolicy.store import (
    SparseFrames,
    SparseSplitData,
    hazard_mask,
    oversample_order,
    speedup_mask,
)
from training.trainer import RunSpec, load_checkpoint, train
from vla_edge.camera_input import CameraSpec
from vla_edge.errors import VlaEdgeError
from vla_edge.pillarize import PillarSpec
from vla_edge.sim.scenarios import suite

log = logging.getLogger(__name__)


class OnPolicyError(VlaEdgeError):
    """The on-policy loop cannot run with these arguments or this work directory."""


def per_iteration(values: Any, k: int) -> float:
    """``values[k]`` of a per-iteration list (the last value repeats), or the scalar itself."""
    if isinstance(values, (list, tuple)):
        return float(values[min(k, len(values) - 1)])
    return float(values)


def iteration_lr(train_lr: float, finetune_lr: float, from_checkpoint: bool) -> float:
    """Peak learning rate of one iteration: ``onpolicy.finetune_lr`` when it starts from a
    checkpoint and that is set (> 0), else ``train.lr``."""
    return float(finetune_lr) if from_checkpoint and finetune_lr > 0 else float(train_lr)


def plan_jobs(
    oc: dict[str, Any],
    k: int,
    checkpoint: str | None,
    force_cpu: bool,
    camera: CameraSpec | None = None,
    pillar_spec: PillarSpec | None = None,
) -> list[CollectJob]:
    """Scenario jobs of iteration ``k``: the DART expert until a student exists, then mostly the student.

    ``camera`` (a camera preset's input) makes every job render and store the camera image;
    ``pillar_spec`` is the trained preset's (a multi-sweep preset stores composed clouds).
    """
    n = int(per_iteration(oc["scenarios"], k))
    specs = suite(n, int(oc["train_seed"]) + 100 * k, oc.get("families"), oc["difficulty"])
    n_expert = n if checkpoint is None else round(n * float(oc["expert_share"]))
    return [
        CollectJob(
            s,
            k,
            "expert" if i < n_expert else "student",
            oc,
            checkpoint if i >= n_expert else None,
            force_cpu,
            camera,
            pillar_spec,
        )
        for i, s in enumerate(specs)
    ]


def _pool_map(fn: Any, jobs: list[Any], workers: int, desc: str) -> list[Any]:
    if workers <= 1:
        return [fn(j) for j in tqdm(jobs, desc=desc, unit="scenario")]
    with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return list(tqdm(pool.imap_unordered(fn, jobs), total=len(jobs), desc=desc, unit="scenario"))


def _val_mask(frames: SparseFrames, fraction: float) -> np.ndarray:
    """Whole scenarios to validation, chosen by a hash of the seed (stable across resumes)."""
    h = np.array([zlib.crc32(str(int(s)).encode()) % 10_000 for s in frames.scenario])
    return h < fraction * 10_000


def git_commit() -> str:
    """The source tree's commit (provenance), or ``"unknown"`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parents[2], check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class OnPolicyLoop:
    """Runs (or resumes) the loop in ``workdir``.

    Args:
        workdir: Work directory (created).
        cfg: Parsed ``config/train.yaml`` (``onpolicy``, ``train``, ``loss``, ``seed``).
        model_cfg: Parsed ``config/model.yaml``.
        preset: Model preset to train.
        force_cpu: Train on the CPU.
        init: Optional checkpoint to start iteration 0's training from (a committed one).
    """

    def __init__(
        self,
        workdir: Path,
        cfg: dict[str, Any],
        model_cfg: dict[str, Any],
        preset: str,
        force_cpu: bool = False,
        init: str | None = None,
    ) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg, self.model_cfg, self.preset = cfg, model_cfg, preset
        self.oc = cfg["onpolicy"]
        self.force_cpu = force_cpu
        self.init = init
        mc = ModelConfig.from_config(model_cfg, preset)
        self.spec = mc.spec  # the preset's (multi-sweep presets)
        self.camera = preset_camera(model_cfg, preset)  # None: LiDAR-only, no images collected
        # bins of the training-only stop-line head (camera presets with camera.stop_line_bins)
        self.stop_line_bins = mc.net.camera.stop_line_bins if mc.net.camera is not None else ()
        self.workers = int(self.oc["workers"]) or (os.cpu_count() or 1)
        self.state_path = self.dir / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {"rows": {}, "done": {}}
        )
        self.t_start = time.monotonic()

    # ------------------------------------------------------------------ bookkeeping
    def _mark(self, k: int, stage: str) -> None:
        self.state["done"].setdefault(str(k), []).append(stage)
        self.state_path.write_text(json.dumps(self.state, indent=1))

    def _done(self, k: int, stage: str) -> bool:
        return stage in self.state["done"].get(str(k), [])

    def checkpoint(self, k: int) -> Path:
        """Best checkpoint of iteration ``k``."""
        return self.dir / f"iter{k}" / "best.pt"

    # ------------------------------------------------------------------ stages
    def collect(self, k: int) -> SparseFrames:
        """Collect (or reload) iteration ``k``'s frames."""
        path = self.dir / "data" / f"iter_{k}.npz"
        if self._done(k, "collect") and path.exists():
            return SparseFrames.load(path)
        prev = self.checkpoint(k - 1) if k > 0 else (Path(self.init) if self.init else None)
        ckpt = str(prev) if prev is not None and prev.exists() else None
        jobs = plan_jobs(
            self.oc, k, ckpt, self.force_cpu or not torch.cuda.is_available(), self.camera, self.spec
        )
        res = _pool_map(run_job, jobs, self.workers, f"collect iter {k}")
        frames = SparseFrames.from_jobs(res, k)
        frames.save(path)
        st = [r["stats"] for r in res]
        student = [s for s in st if s["policy"] == "student"]
        self.state["rows"][str(k)] = {
            "iteration": k,
            "scenarios": len(st),
            "student_scenarios": len(student),
            "new_frames": len(frames),
            "expert_frames": int(frames.expert_drove.sum()),
            "takeovers_per_student_scenario": (
                float(np.mean([s["takeovers"] for s in student])) if student else None
            ),
            "rollout_collision_scenarios": int(sum(1 for s in st if s["collisions"])),
            "rollout_offroad_scenarios": int(sum(1 for s in st if s["offroad"])),
        }
        self._mark(k, "collect")
        return frames

    def anchors(self, frames: SparseFrames) -> np.ndarray:
        """k-means anchors fitted once (iteration 0's labels) and kept for every iteration."""
        path = self.dir / "anchors.npy"
        if path.exists():
            return np.load(path).astype(np.float32)
        if self.init:
            a = np.asarray(load_checkpoint(Path(self.init))["anchors"], dtype=np.float32)
        else:
            k = int(self.model_cfg["trajectory"]["num_anchors"])
            rng = np.random.default_rng(int(self.cfg["seed"]))
            sample = frames.gt[rng.permutation(len(frames))[:20000]]
            a = kmeans_anchors(sample, k, seed=int(self.cfg["seed"]))
        np.save(path, a)
        return a

    def train(self, k: int, data: SparseFrames, anchors: np.ndarray) -> dict[str, Any]:
        """Train iteration ``k`` from iteration ``k - 1``'s best weights (resumes inside ``iter_k``)."""
        info = dist_utils.setup(force_cpu=self.force_cpu)
        tc = self.cfg["train"]
        dev = info.device if (info.device.type == "cuda" and tc["data_on_device"]) else None
        val = _val_mask(data, float(self.oc["val_fraction"]))
        if val.all() or not val.any():
            val = np.zeros(len(data), bool)
            val[:: max(2, len(data) // max(1, int(len(data) * 0.05)))] = True
        drop = float(self.oc.get("camera_dropout", 0.0))
        seed = int(self.cfg["seed"]) + k
        train_f = data.subset(~val)
        hz = self.oc.get("hazard") or {}
        tr = self.model_cfg["trajectory"]
        horizon = tr["num_poses"] * tr["dt"]
        hazards = hazard_mask(
            train_f, self.spec, horizon, float(hz.get("ratio", 0.7)), float(hz.get("min_speed", 2.0))
        )
        speedups = speedup_mask(train_f, self.spec, horizon, float(hz.get("speedup_margin", 3.0)))
        extra = hazards * int(hz.get("oversample", 0)) + speedups * int(hz.get("speedup_oversample", 0))
        order = oversample_order(extra)
        bins = self.stop_line_bins
        train_d = SparseSplitData(
            train_f, self.spec, dev, self.camera, drop, seed, order, bins,
            intensity_dropout=float(self.oc.get("intensity_dropout", 0.0)),
            intensity_gain=tuple(self.oc.get("intensity_gain", (1.0, 1.0))),
        )  # fmt: skip
        val_d = SparseSplitData(data.subset(val), self.spec, dev, self.camera, stop_line_bins=bins)
        prev = self.checkpoint(k - 1) if k > 0 else (Path(self.init) if self.init else None)
        init_state = load_checkpoint(prev)["model"] if prev is not None and prev.exists() else None
        spec = RunSpec(
            name=f"iter{k}",
            preset=self.preset,
            out_dir=self.dir / f"iter{k}",
            weights=LossWeights.from_config(self.cfg["loss"]).gt_only(),
            lr=iteration_lr(tc["lr"], float(self.oc.get("finetune_lr", 0.0)), init_state is not None),
            max_minutes=per_iteration(self.oc["minutes"], k),
            epochs=int(self.oc["epochs"]),
            init_from=init_state,
            force_cpu=self.force_cpu,
            extra={"info": {"preset": self.preset, "onpolicy_iteration": k, "train_frames": len(train_f)}},
        )
        summary = train(spec, train_d, val_d, anchors, self.cfg, self.model_cfg, info)
        row = self.state["rows"][str(k)]
        row.update(
            train_frames=len(train_f),
            hazard_frames=int(hazards.sum()),
            speedup_frames=int(speedups.sum()),
            train_samples=len(train_d),
            val_frames=len(val_d),
            steps=summary["steps"],
            train_minutes=round(summary["seconds"] / 60.0, 2),
            val_ade=summary["best_val"]["ade"],
        )
        if "stop_line_acc" in summary["final_val"]:  # camera presets with the stop-line head
            row.update(
                val_stop_line_acc=summary["final_val"]["stop_line_acc"],
                val_stop_line_acc_line=summary["final_val"]["stop_line_acc_line"],
            )
        self._mark(k, "train")
        return summary

    def evaluate(self, k: int) -> dict[str, Any]:
        """Closed loop (student alone) on the held-out eval seeds; adds the row's scores.

        ``eval_scenarios: 0`` skips it (the row's score columns stay empty), e.g. when the
        candidates are judged afterwards on more scenarios (``gpu_session.sh judge``).
        """
        if int(self.oc["eval_scenarios"]) == 0:
            self._mark(k, "evaluate")
            return {}
        specs = suite(int(self.oc["eval_scenarios"]), int(self.oc["eval_seed"]), None, self.oc["difficulty"])
        models: dict[str, str | None] = {"student": str(self.checkpoint(k))}
        if "expert" not in self.state:
            models["expert"] = None
        if torch.cuda.is_available():
            # The trainer's cached blocks (tens of GB) go back before the eval workers each open
            # a CUDA context: two runs sharing one GPU ran out of memory here.
            torch.cuda.empty_cache()
        res = closed_loop(
            models, specs, self.model_cfg, self.force_cpu or not torch.cuda.is_available(), self.workers,
            float(self.oc["eval_seconds"]),
        )  # fmt: skip
        if "expert" in res:
            self.state["expert"] = {k2: v for k2, v in res["expert"].items() if k2 != "scenarios"}
        s = res["student"]
        self.state["rows"][str(k)].update(
            score=s["score"],
            collision_scenarios=s["collision_scenarios"],
            offroad_scenarios=s["offroad_scenarios"],
            raw_pass_fraction=s["raw_pass_fraction"],
            eval_scenarios=len(specs),
        )
        self._mark(k, "evaluate")
        return s

    # ------------------------------------------------------------------ driver
    def run(self, iterations: int, export: bool = True) -> dict[str, Any]:
        """Run iterations ``0 .. iterations-1`` (finished stages are skipped) and export the last."""
        frames: list[SparseFrames] = []
        anchors = None
        for k in range(iterations):
            frames.append(self.collect(k))
            anchors = self.anchors(frames[0]) if anchors is None else anchors
            if not self._done(k, "train"):
                self.train(k, SparseFrames.concat(frames), anchors)
            if not self._done(k, "evaluate"):
                self.evaluate(k)
            tqdm.write(self.table())
        out = self.write_results()
        if export:
            out["export"] = self.export(iterations - 1, frames)
            self.write_results(out)
        return out

    def table(self) -> str:
        """The per-iteration results table (markdown)."""
        cols = [
            ("iteration", "iter"), ("new_frames", "new frames"), ("train_frames", "train frames"),
            ("hazard_frames", "hazard frames"), ("speedup_frames", "speed-up frames"),
            ("student_scenarios", "student rollouts"),
            ("takeovers_per_student_scenario", "takeovers/rollout"),
            ("steps", "steps"), ("val_ade", "val ADE m"),
            ("val_stop_line_acc", "val stop-line acc"), ("val_stop_line_acc_line", "acc near line"),
            ("score", "score"),
            ("collision_scenarios", "collisions"), ("offroad_scenarios", "off-road"),
            ("raw_pass_fraction", "raw pass"),
        ]  # fmt: skip
        rows = self.state["rows"].values()
        optional = ("val_stop_line_acc", "val_stop_line_acc_line")  # camera presets with the stop-line head
        cols = [c for c in cols if c[0] not in optional or any(c[0] in r for r in rows)]
        lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
        for _, row in sorted(self.state["rows"].items(), key=lambda kv: int(kv[0])):
            cells = []
            for key, _ in cols:
                v = row.get(key)
                cells.append("–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v)))
            lines.append("| " + " | ".join(cells) + " |")
        ex = self.state.get("expert")
        if ex:
            lines.append(f"\nexpert (ceiling) on the same eval scenarios: score {ex['score']:.3f}")
        return "\n".join(lines)

    def write_results(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """``results.json`` and ``results.md`` in the work directory."""
        out = {
            "rows": self.state["rows"],
            "expert": self.state.get("expert"),
            "config": self.oc,
            **(extra or {}),
        }
        (self.dir / "results.json").write_text(json.dumps(out, indent=1, default=str))
        (self.dir / "results.md").write_text(self.table() + "\n")
        return out

    def export(self, k: int, frames: list[SparseFrames]) -> dict[str, Any]:
        """Export iteration ``k``'s best checkpoint to ``WORKDIR/export`` with provenance."""
        from training.runs import export_checkpoint

        row = self.state["rows"][str(k)]
        data = SparseFrames.concat(frames)
        labels = "observable-view" if self.oc.get("observable_labels") else "privileged"
        cf = ", counterfactual parked objects" if self.oc.get("counterfactual", {}).get("share") else ""
        prov = {
            "provenance": {
                "method": f"onpolicy (DAgger, {labels} expert labels{cf})",
                "dataset_sha256": data.digest(),
                "frames": len(data),
                "scenario_seeds": sorted({int(s) for s in data.scenario}),
                "eval_seeds": {
                    "seed": int(self.oc["eval_seed"]),
                    "scenarios": int(self.oc["eval_scenarios"]),
                },
                "steps": int(sum(r.get("steps", 0) for r in self.state["rows"].values())),
                "wall_minutes": round((time.monotonic() - self.t_start) / 60.0, 2),
                "heldout_score": row.get("score"),
                "git_commit": git_commit(),
                "config": json.loads(json.dumps(self.oc, default=str)),
            }
        }
        return export_checkpoint(self.checkpoint(k), self.dir / "export", "student", prov)
