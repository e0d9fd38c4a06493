"""f_denoi: the denoiser network of shallow diffusion (paper 3.3, eq. 12) and the small
network of the auxiliary step predictor. Schedule and samplers live in sdmtalk/diffusion."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], -1)


class ResBlock(nn.Module):
    """Dilated temporal conv with step-conditioned scale/shift (FiLM), residual."""

    def __init__(self, ch: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.GroupNorm(1, ch)
        self.conv = nn.Conv1d(ch, ch, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.film = nn.Linear(ch, 2 * ch)
        self.proj = nn.Conv1d(ch, ch, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(temb)[..., None].chunk(2, dim=1)
        h = self.norm(x) * (1 + scale) + shift
        h = self.proj(self.drop(nn.functional.gelu(self.conv(h))))
        return x + h


class MotionDenoiser(nn.Module):
    """x0-predicting denoiser over a motion window.

    x_t (B, W, D) noisy motion, t (B,) steps, coarse (B, W, D) coarse motion F*, content
    (B, W, C) -> estimate of F^0 (B, W, D). The output is F* plus a learned residual, whose
    last layer starts at zero: an untrained denoiser returns the coarse motion.
    """

    def __init__(self, motion_dim: int, content_dim: int, hidden: int = 128, layers: int = 6,
                 kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        self.inp = nn.Conv1d(2 * motion_dim + content_dim, hidden, 1)
        self.temb = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.blocks = nn.ModuleList(
            [ResBlock(hidden, kernel, 2 ** (i % 3), dropout) for i in range(layers)])
        self.out = nn.Conv1d(hidden, motion_dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.hidden = hidden

    def forward(self, x_t, t, coarse, content) -> torch.Tensor:
        h = self.inp(torch.cat([x_t, coarse, content], -1).transpose(1, 2))
        temb = self.temb(timestep_embedding(t, self.hidden))
        for block in self.blocks:
            h = block(h, temb)
        return coarse + self.out(nn.functional.gelu(h)).transpose(1, 2)


class StepPredictorNet(nn.Module):
    """Predicts the meeting step k / T of a window from its content and coarse motion.

    content (B, W, C), coarse (B, W, D), mask (B, W) -> (B,) in (0, 1).
    """

    def __init__(self, motion_dim: int, content_dim: int, hidden: int = 64):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(motion_dim + content_dim, hidden), nn.GELU())
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, content, coarse, mask) -> torch.Tensor:
        h = self.frame(torch.cat([content, coarse], -1))
        m = mask.to(h.dtype)[..., None]
        mean = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        # + eps: sqrt has an infinite gradient at 0 (a window with one valid frame)
        std = (((h - mean[:, None]) ** 2 * m).sum(1) / m.sum(1).clamp_min(1.0) + 1e-8).sqrt()
        return torch.sigmoid(self.head(torch.cat([mean, std], -1)))[:, 0]
