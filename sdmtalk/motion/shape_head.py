"""A direct speech-to-shape path inside the content motion F_bar (a deviation, measured).

G_c reaches the landmarks only through its autoregressive state and the motion latent
(f_dec); run free at inference, that path smoothed the lips towards the mean (val lip-gap
r 0.27, amplitude 0.5). This head maps the content c of a few neighbouring frames straight
to the non-rigid shape (never the head pose, which stays G_c's), the way a regression over
a speech window does, and G_c models what is left: pose modes and slower dynamics.
"""

from __future__ import annotations

import torch
from torch import nn


class ShapeHead(nn.Module):
    """content (B, T, C) -> shape offsets (B, T, out_dim) added to F_bar's landmark dims.

    Two convolutions over time (kernel 5 then 3: +-3 frames, about 120 ms of context beyond
    what f_con already sees), zero-initialised last layer so training starts from G_c alone.
    """

    def __init__(self, content_dim: int, hidden: int, out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv1d(content_dim, hidden, 5, padding=2)
        self.conv2 = nn.Conv1d(hidden, out_dim, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        h = self.drop(nn.functional.gelu(self.conv1(content.transpose(1, 2))))
        return self.conv2(h).transpose(1, 2)
