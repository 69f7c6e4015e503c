"""DDIM scheduler with x0-prediction (deterministic, eta = 0), own implementation.

Schedule: scaled-linear betas ``linspace(sqrt(b0), sqrt(b1), N) ** 2`` (as in latent
diffusion / DiffusionDrive). Inference timesteps for a start ``t0`` and ``n`` steps are
``round(t0 * (n - i) / n)`` for ``i = 0 .. n-1``; the model's x0 prediction at the last
timestep is the output.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class DDIMScheduler:
    """Noise schedule, forward noising and the deterministic DDIM update.

    Args:
        num_train_timesteps: N.
        beta_start: First beta.
        beta_end: Last beta.
    """

    def __init__(self, num_train_timesteps: int, beta_start: float, beta_end: float) -> None:
        betas = torch.linspace(
            math.sqrt(beta_start), math.sqrt(beta_end), num_train_timesteps, dtype=torch.float64, device="cpu"
        )
        # host-side table (also under a meta/cuda default device): timesteps are python ints
        self.alphas_cumprod = torch.cumprod(1.0 - betas**2, dim=0)
        self.num_train_timesteps = num_train_timesteps

    def alpha_bar(self, t: int) -> float:
        """Cumulative alpha at integer timestep ``t`` (1.0 for ``t < 0``)."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    @staticmethod
    def inference_timesteps(start: int, num_steps: int) -> list[int]:
        """Descending timesteps visited at inference (``[8, 4]`` for start 8, 2 steps)."""
        return [round(start * (num_steps - i) / num_steps) for i in range(num_steps)]

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """Sample ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``; ``t`` int or ``[B]`` tensor."""
        if isinstance(t, int):
            ab = self.alpha_bar(t)
            return math.sqrt(ab) * x0 + math.sqrt(1.0 - ab) * noise
        ab = self.alphas_cumprod.to(x0.device)[t.long()].to(x0.dtype)
        ab = ab.reshape(-1, *([1] * (x0.ndim - 1)))
        return ab.sqrt() * x0 + (1.0 - ab).sqrt() * noise

    def step(self, x0_pred: Tensor, x_t: Tensor, t: int, t_prev: int) -> Tensor:
        """DDIM (eta = 0) update from ``t`` to ``t_prev`` given the predicted ``x0``."""
        ab_t, ab_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        eps = (x_t - math.sqrt(ab_t) * x0_pred) / math.sqrt(max(1.0 - ab_t, 1e-12))
        return math.sqrt(ab_prev) * x0_pred + math.sqrt(1.0 - ab_prev) * eps
