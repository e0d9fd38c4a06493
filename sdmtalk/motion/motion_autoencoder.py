"""f_enc / f_dec: the motion encoder and decoder of the pose-mode branch (paper 3.1)."""

from __future__ import annotations

import torch
from torch import nn


class MotionAutoencoder(nn.Module):
    """Per-frame MLP encoder/decoder between normalized motion F (D,) and latent M (L,).

    D = 4 pose + 136 delta values. L_reg (eq. 4) makes f_dec(f_enc(F)) reconstruct every
    frame (F_i and F_{i-1} alike), which keeps the latent a true motion space that the
    autoregressive G_c can walk in.
    """

    def __init__(self, motion_dim: int = 140, hidden: int = 256, latent: int = 64):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(motion_dim, hidden), nn.GELU(), nn.Linear(hidden, latent))
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(), nn.Linear(hidden, motion_dim))

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        """f_enc: (..., D) -> (..., L)."""
        return self.enc(motion)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """f_dec: (..., L) -> (..., D)."""
        return self.dec(latent)


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of err (B, W, ...) over the frames where mask (B, W) is 1."""
    m = mask.to(err.dtype).reshape(mask.shape + (1,) * (err.dim() - mask.dim()))
    per_frame = err[0, 0].numel()
    return (err * m).sum() / (m.sum() * per_frame).clamp_min(1.0)


def regularization_loss(ae: MotionAutoencoder, motion: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_reg, eq. 4: |F - f_dec(f_enc(F))|_1 over all frames of the window (each frame is
    F_i for one pair and F_{i-1} for the next). motion: (B, W, D), mask: (B, W)."""
    return masked_mean((ae.decode(ae.encode(motion)) - motion).abs(), mask)
