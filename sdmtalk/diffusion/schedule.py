"""The DDPM noise schedule (paper eq. 6-7) as plain tensors, apart from any network.

Notation: the paper writes the per-step noise variance as alpha_t (eq. 7); we use the usual
DDPM names: beta_t = the paper's alpha_t, alpha_bar_t = prod_{s<=t} (1 - beta_s).
Every table has T + 1 entries so that index t is step t and index 0 is the clean data
(beta_0 = 0, alpha_bar_0 = 1): q_sample at t = 0 returns x0 exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class NoiseSchedule:
    """Tables of a T-step schedule, each (T + 1,) float64 on the CPU (index 0 = clean)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0] - 1

    @property
    def posterior_variance(self) -> torch.Tensor:
        """beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t); 0 at t = 0."""
        prev = torch.cat([self.alphas_cumprod[:1], self.alphas_cumprod[:-1]])
        var = self.betas * (1 - prev) / (1 - self.alphas_cumprod).clamp_min(1e-12)
        var[0] = 0.0
        return var

    def posterior_coefs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(c0, ct) with mean of q(x_{t-1} | x_t, x0) = c0 * x0 + ct * x_t."""
        abar = self.alphas_cumprod
        prev = torch.cat([abar[:1], abar[:-1]])
        denom = (1 - abar).clamp_min(1e-12)
        c0 = self.betas * prev.sqrt() / denom
        ct = (1 - prev) * (1 - self.betas).sqrt() / denom
        c0[0], ct[0] = 1.0, 0.0
        return c0, ct


def make_schedule(num_steps: int = 100, kind: str = "cosine") -> NoiseSchedule:
    """A T-step schedule. "cosine" (Nichol & Dhariwal) reaches alpha_bar_T ~ 0 even for
    T = 100, so step T is (almost) pure noise as eq. 8 assumes; "linear" is DDPM's 1e-4..0.02
    rescaled to T steps (DiffSinger's T = 100 variant ends at 0.06)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = torch.arange(num_steps + 1, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        f = torch.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = (f / f[0]).clamp(min=1e-8)
        betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    elif kind == "linear":
        scale = 1000.0 / num_steps
        betas = torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), num_steps, dtype=torch.float64)
    else:
        raise ValueError(f"schedule kind must be 'cosine' or 'linear', not {kind!r}")
    betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
    return NoiseSchedule(betas=betas, alphas_cumprod=torch.cumprod(1 - betas, 0))


def _per_sample(table: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """table[t] broadcast against `like` (B, ...): t is an int or a (B,) integer tensor."""
    t = torch.as_tensor(t, device=table.device).long()
    val = table[t].to(device=like.device, dtype=like.dtype)
    return val.reshape(val.shape + (1,) * (like.dim() - val.dim()))


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor | int,
             noise: torch.Tensor) -> torch.Tensor:
    """F^t = sqrt(abar_t) F^0 + sqrt(1 - abar_t) eps (closed form of eq. 6-7).

    x0, noise: (B, ...); t: int or (B,) in [0, T]. At t = 0 this is x0 itself.
    """
    abar = _per_sample(schedule.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise
