"""G_c, the pose-mode branch (paper 3.1, eq. 2) with its stochastic pose mode z.

G_c is autoregressive: frame i's motion latent M_i comes from the previous frame's latent
M_{i-1}, the speech content c_i and a latent z that picks the pose mode of the current
segment (a few seconds). z is trained as a conditional VAE (method.md DECISION): the
posterior sees the true motion segment, the prior only speech content; at inference z is
drawn from the prior with the user's seed, so seeds give different plausible head poses.
"""

from __future__ import annotations

import torch
from torch import nn


class SegmentGaussian(nn.Module):
    """Conv + masked mean pool over a segment -> diagonal Gaussian (mu, logvar), each (B, Z).

    Used twice: the posterior q(z | motion, content) and the prior p(z | content).
    x: (B, S, in_dim), mask: (B, S).
    """

    def __init__(self, in_dim: int, hidden: int, z_dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(in_dim, hidden, 5, padding=2), nn.GELU(),
            nn.Conv1d(hidden, hidden, 5, padding=2, dilation=1), nn.GELU(),
        )
        self.head = nn.Linear(hidden, 2 * z_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        m = mask.to(h.dtype)[..., None]
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        mu, logvar = self.head(pooled).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 4.0)


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p, per_dim: bool = False) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians: (B, Z) -> (B,) summed over z, or (B, Z) per_dim."""
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1)
    return kl if per_dim else kl.sum(-1)


class PoseModeGenerator(nn.Module):
    """G_c (eq. 2): M_i = G_c(M_{i-1}, c_i, z), a GRU cell unrolled over frames.

    The output is the absolute latent of frame i (not a change): the content path can set
    the mouth directly while the recurrent state carries the head's trajectory.
    """

    def __init__(self, latent: int, content_dim: int, z_dim: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.init = nn.Linear(z_dim + content_dim, hidden)
        self.cell = nn.GRUCell(latent + content_dim + z_dim, hidden)
        self.out = nn.Sequential(nn.Linear(hidden + content_dim, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, latent))
        self.hidden = hidden

    def initial_state(self, z: torch.Tensor, content0: torch.Tensor) -> torch.Tensor:
        """h_0 from the first segment's z (B, Z) and the first content vector (B, C)."""
        return torch.tanh(self.init(torch.cat([z, content0], -1)))

    def step(self, prev: torch.Tensor, content: torch.Tensor, z: torch.Tensor,
             h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: prev (B, L), content (B, C), z (B, Z), h (B, H) -> (M_i (B, L), h')."""
        h = self.cell(torch.cat([prev, content, z], -1), h)
        return self.out(torch.cat([h, content], -1)), h

    def rollout(self, content: torch.Tensor, z: torch.Tensor, prev: torch.Tensor, h: torch.Tensor,
                teacher: torch.Tensor | None = None, teacher_prob: float = 0.0,
                generator: torch.Generator | None = None):
        """Unroll over W frames.

        content: (B, W, C); z: (B, W, Z) (per frame, constant within a segment); prev: (B, L)
        latent of the frame before the window; h: (B, H). teacher: (B, W, L) true latents:
        with probability teacher_prob a frame's input is the true previous latent instead of
        the model's own output (scheduled sampling; 0 = free running, as at inference).
        Returns (latents (B, W, L), last latent (B, L), last state (B, H)).
        """
        outs = []
        for i in range(content.shape[1]):
            cur, h = self.step(prev, content[:, i], z[:, i], h)
            outs.append(cur)
            prev = cur
            if teacher is not None and teacher_prob > 0:
                use = torch.rand(cur.shape[0], 1, generator=generator) < teacher_prob
                prev = torch.where(use.to(cur.device), teacher[:, i], cur)
        return torch.stack(outs, 1), prev, h


class PoseModeBranch(nn.Module):
    """G_c plus its segment latent: posterior, prior and generator in one module."""

    def __init__(self, seen_dim: int, latent: int, content_dim: int, z_dim: int,
                 hidden: int, enc_hidden: int, dropout: float = 0.1):
        """seen_dim: how many dims of the true motion the posterior reads."""
        super().__init__()
        self.posterior = SegmentGaussian(seen_dim + content_dim, enc_hidden, z_dim)
        self.prior = SegmentGaussian(content_dim, enc_hidden, z_dim)
        self.generator = PoseModeGenerator(latent, content_dim, z_dim, hidden, dropout)
        self.z_dim = z_dim
