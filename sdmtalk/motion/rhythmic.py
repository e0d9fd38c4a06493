"""f_rhy: the rhythmic branch (paper 3.2) and L_ind, the independence loss (eq. 5)."""

from __future__ import annotations

import torch
from torch import nn


class RhythmicBranch(nn.Module):
    """Convolutions over prosody (F0, voicing, energy, onsets) -> rhythmic embedding M~ and
    rhythmic motion F~ (small nods and tilts on stressed syllables), added to G_c's motion
    (eq. 1: F = F_bar + F~).

    prosody (B, T, P) normalized -> (embedding (B, T, E), motion (B, T, D)).
    """

    def __init__(self, prosody_dim: int = 4, hidden: int = 64, embed: int = 32,
                 motion_dim: int = 140, kernel: int = 5, dropout: float = 0.1):
        super().__init__()
        pad = kernel // 2
        self.net = nn.Sequential(
            nn.Conv1d(prosody_dim, hidden, kernel, padding=pad), nn.GELU(),
            nn.Conv1d(hidden, hidden, kernel, padding=2 * pad, dilation=2), nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(hidden, embed, kernel, padding=pad),
        )
        self.head = nn.Linear(embed, motion_dim)
        nn.init.zeros_(self.head.weight)  # starts as "no rhythm"; L_rec grows it
        nn.init.zeros_(self.head.bias)

    def forward(self, prosody: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.net(prosody.transpose(1, 2)).transpose(1, 2)
        return emb, self.head(emb)


def independence_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_ind as decorrelation of the rhythmic embedding a (B, T, E) and the content motion
    latent b (B, T, L): mean squared cross-correlation over the valid frames, 0 when every
    rhythm dimension is linearly uncorrelated with every content dimension.

    Eq. 5 as printed, |M~* - M_bar*|, would pull the two embeddings TOGETHER, the opposite
    of its stated purpose (rhythm independent of content); method.md DECISION.
    """
    keep = mask.reshape(-1) > 0
    a = a.reshape(-1, a.shape[-1])[keep]
    b = b.reshape(-1, b.shape[-1])[keep]
    if a.shape[0] < 2:
        return a.sum() * 0.0
    # (var + eps).sqrt(), not std() + eps: std's gradient is NaN on a constant column
    a = (a - a.mean(0)) / (a.var(0) + 1e-8).sqrt()
    b = (b - b.mean(0)) / (b.var(0) + 1e-8).sqrt()
    corr = a.T @ b / a.shape[0]
    return (corr ** 2).mean()
