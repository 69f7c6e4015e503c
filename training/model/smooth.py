"""Smooth-by-construction output: the arbiter's jerk-penalised fit as a fixed linear layer.

Every decoder layer's poses ``[B, A, T, 3]`` are replaced by their fit
``F @ poses + G @ ghosts(ego)`` (``vla_edge.planning.smoothing.fit_operator``), the same
closed-form least squares the arbiter applies to a student plan, started from the ego's
speed, acceleration and yaw rate (read back from the normalised ``ego_state`` input). x, y
and yaw are fitted alike. Two small matmuls: exported to ONNX as MatMul/Add, no new ops.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from training.model.config import ModelConfig
from vla_edge.planning.smoothing import fit_operator


class SmoothOutput(nn.Module):
    """``(traj [B, A, T, 3], ego_state [B, 6]) -> fitted traj`` (identity when disabled)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sc = cfg.smoothing
        self.enabled = bool(sc.get("enabled", False))
        T = cfg.num_poses
        F, G = np.eye(T), np.zeros((T, 3))
        self.dt = float(sc.get("grid_dt", 0.1))
        if self.enabled:
            times = tuple(float(t) for t in cfg.dt * np.arange(1, T + 1))
            F, G = fit_operator(times, cfg.dt, self.dt, float(sc["jerk_weight"]), float(sc["accel_weight"]))
        self.register_buffer("F", torch.tensor(F, dtype=torch.float32), persistent=False)
        self.register_buffer("G", torch.tensor(G, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "ego_scale", torch.tensor(cfg.spec.ego_scale, dtype=torch.float32), persistent=False
        )
        self.hold_stop = self.enabled and bool(sc.get("hold_stop", False))
        self.register_buffer("upto", torch.triu(torch.ones(T, T)), persistent=False)  # [j <= k]
        lo, hi = (float(v) for v in sc.get("accel_clip", (-4.05, 2.4)))
        self.a_lo, self.a_hi, self.lat_max = lo, hi, float(sc.get("max_lat_accel", 4.89))

    def ghosts(self, ego_state: Tensor) -> Tensor:
        """Known grid poses ``[B, 3, 3]`` (t = -2dt, -dt, 0; columns x, y, yaw) from the ego state."""
        # FP32 even in a .half() model. type_as, not .float(): a trace drops .float() on a buffer
        # that is FP32 while tracing, and the half TorchScript then mixes dtypes.
        raw = ego_state[:, :3].float()
        raw = raw * self.ego_scale.type_as(raw)
        v, r = raw[:, 0], raw[:, 2]
        a = torch.clamp(raw[:, 1], self.a_lo, self.a_hi)
        lat = torch.clamp(v * r, -self.lat_max, self.lat_max)
        d = self.dt
        zero = torch.zeros_like(v)
        x = torch.stack([-2.0 * v * d + 2.0 * a * d * d, -v * d + 0.5 * a * d * d, zero], 1)
        y = torch.stack([2.0 * lat * d * d, 0.5 * lat * d * d, zero], 1)
        yaw = torch.stack([-2.0 * r * d, -r * d, zero], 1)
        return torch.stack([x, y, yaw], 2)

    def forward(self, traj: Tensor, ego_state: Tensor) -> Tensor:
        if not self.enabled:
            return traj
        fit = torch.einsum("kj,bajc->bakc", self.F.type_as(traj), traj)
        ghosts = self.ghosts(ego_state)
        start = torch.einsum("kj,bjc->bkc", self.G.type_as(ghosts), ghosts).type_as(traj)
        fit = fit + start[:, None]
        return self.held(fit) if self.hold_stop else fit

    def held(self, traj: Tensor) -> Tensor:
        """``traj`` [B, A, T, 3] still from each plan's first backwards step on (the origin
        when the first step already goes back)."""
        prev = torch.cat([torch.zeros_like(traj[:, :, :1]), traj[:, :, :-1]], 2)
        seg = traj[..., :2] - prev[..., :2]
        yaw = traj[..., 2]
        back = (seg[..., 0] * torch.cos(yaw) + seg[..., 1] * torch.sin(yaw) < 0).type_as(traj)
        keep = (back @ self.upto.type_as(traj) == 0).type_as(traj)  # 1 up to the first back step
        # keep is a prefix of ones: keep_k - keep_(k+1) is 1 only at the last kept pose
        nxt = torch.cat([keep[:, :, 1:], torch.zeros_like(keep[:, :, :1])], 2)
        last = ((keep - nxt)[..., None] * traj).sum(2, keepdim=True)
        k = keep[..., None]
        return k * traj + (1.0 - k) * last
