"""Truncated diffusion planning head (DiffusionDrive style), x0-prediction DDIM.

Inference (truncated): noise the normalised anchors to ``t = start`` with the ``noise``
input, then for each DDIM timestep clamp to [-1, 1], de-normalise, run the cascade decoder
(which predicts x0 in metres) and take a DDIM step. Vanilla: start from the noise itself at
``t = 999`` and take 20 steps. The last decoder pass gives the trajectories and the scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from training.model.config import ModelConfig
from training.model.decoder import DecoderLayer
from training.model.ego_encoder import mlp
from training.model.scheduler import DDIMScheduler
from training.model.smooth import SmoothOutput


class Sinusoid(nn.Module):
    """Sinusoidal embedding of the last axis values: ``[..., n] -> [..., n * dim]``.

    Computed in float32 and cast back to the input dtype: under FP16 a half-precision angle
    (``t * freq`` with ``t`` up to 999) would be off by ~0.5 rad. The frequency index is an
    integer buffer so ``module.half()`` leaves it exact and tracing bakes in no device;
    ``type_as`` (not ``.to(dtype)``) keeps a traced graph dtype-generic (FP16 TorchScript).
    """

    def __init__(self, dim: int, max_period: float = 1000.0) -> None:
        super().__init__()
        self.half_dim = dim // 2
        self.log_period = math.log(max_period)
        self.register_buffer("idx", torch.arange(dim // 2), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        freqs = torch.exp(-self.log_period * self.idx.float() / self.half_dim)
        ang = x[..., None].float() * freqs
        return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2).type_as(x)


class DiffusionHead(nn.Module):
    """Anchors + trajectory embedding + cascade decoder + scheduler loop."""

    def __init__(self, cfg: ModelConfig, anchors: Tensor) -> None:
        super().__init__()
        n, d = cfg.net, cfg.net.d_model
        self.cfg = cfg
        self.register_buffer("anchors", anchors.float().clone())  # [A, T, 3] metres, in checkpoints
        self.register_buffer("offset", torch.tensor(cfg.norm_offset), persistent=False)
        self.register_buffer("scale", torch.tensor(cfg.norm_scale), persistent=False)
        self.sched = DDIMScheduler(
            cfg.diffusion.num_train_timesteps, cfg.diffusion.beta_start, cfg.diffusion.beta_end
        )
        self.timesteps = DDIMScheduler.inference_timesteps(
            cfg.diffusion.start_timestep, cfg.diffusion.num_steps
        )
        self.traj_sin = Sinusoid(16)
        self.time_sin = Sinusoid(d)
        self.traj_embed = mlp(cfg.num_poses * 3 * 16, d, d)
        self.time_embed = mlp(d, d, d)
        rng = cfg.spec.point_cloud_range
        self.layers = nn.ModuleList(
            DecoderLayer(d, n.num_heads, n.ffn_dim, cfg.num_poses, rng) for _ in range(n.decoder_layers)
        )
        self.smooth = SmoothOutput(cfg)

    def normalize(self, traj: Tensor) -> Tensor:
        """Metres/radians -> normalised diffusion space."""
        return (traj - self.offset) / self.scale

    def denormalize(self, x: Tensor) -> Tensor:
        """Normalised diffusion space -> metres/radians."""
        return x * self.scale + self.offset

    def set_anchors(self, anchors: Tensor) -> None:
        """Replace the anchors (``[A, T, 3]`` metres, e.g. from k-means on training data)."""
        if tuple(anchors.shape) != tuple(self.anchors.shape):
            raise ValueError(f"anchors must be {tuple(self.anchors.shape)}, got {tuple(anchors.shape)}")
        self.anchors.copy_(anchors.to(self.anchors))

    def denoise(
        self, x_t: Tensor, t: Tensor, ego: dict[str, Tensor], bev_value: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Run the cascade on noisy normalised samples ``x_t [B, A, T, 3]`` at timesteps ``t [B]``.

        Returns:
            Per decoder layer: trajectories ``[B, A, T, 3]`` (metres) and logits ``[B, A]``.
        """
        traj = self.denormalize(torch.clamp(x_t, -1.0, 1.0))
        query = self.traj_embed(self.traj_sin(torch.clamp(x_t, -1.0, 1.0).flatten(2) * 100.0))
        query = query + ego["ego_query"][:, None]
        t_emb = self.time_embed(self.time_sin(t.type_as(x_t)[:, None]))
        trajs, logits = [], []
        for layer in self.layers:
            query, traj, score = layer(query, traj, bev_value, ego["ego_tokens"], t_emb)
            traj = self.smooth(traj, ego["ego_state"])
            trajs.append(traj)
            logits.append(score)
            traj = traj.detach()
        return trajs, logits

    def forward(self, noise: Tensor, ego: dict[str, Tensor], bev_value: Tensor) -> dict[str, Tensor]:
        """Inference loop; ``noise [B, A, T, 3]`` is the (deterministic) diffusion noise."""
        t0 = self.timesteps[0]
        if self.cfg.net.vanilla:
            x = noise
        else:
            x = self.sched.add_noise(self.normalize(self.anchors)[None].expand_as(noise), noise, t0)
        traj = score = None
        for i, t in enumerate(self.timesteps):
            t_vec = torch.zeros_like(noise[:, 0, 0, 0]) + float(t)  # no device constant when traced
            trajs, logits = self.denoise(x, t_vec, ego, bev_value)
            traj, score = trajs[-1], logits[-1]
            if i + 1 < len(self.timesteps):
                x = self.sched.step(self.normalize(traj), x, t, self.timesteps[i + 1])
        return {"trajectories": traj, "scores": score}
