"""Reverse-process samplers (paper eq. 8) as plain functions over any denoiser callable.

A denoiser is ``denoise(x_t (B, ...), t: int) -> x0 estimate (B, ...)``: the networks never
see the schedule, the samplers never see the networks (k-diffusion style). The shallow
start (paper 3.3) is just ``x_start = q_sample(coarse, k, noise)`` with ``start_step = k``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sdmtalk.diffusion.schedule import NoiseSchedule, q_sample

Denoiser = Callable[[torch.Tensor, int], torch.Tensor]


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def shallow_start(schedule: NoiseSchedule, coarse: torch.Tensor, k: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """F^k: the coarse motion diffused to step k (k = 0 returns it unchanged)."""
    if k == 0:
        return coarse
    return q_sample(schedule, coarse, k, _randn(coarse, generator))


def sample_ddpm(denoise: Denoiser, x_start: torch.Tensor, start_step: int,
                schedule: NoiseSchedule, generator: torch.Generator | None = None,
                callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Ancestral DDPM from step `start_step` down to 0 (start_step reverse steps).

    x_start: (B, ...) = F^k. start_step = 0 returns x_start. The last step (t = 1) adds no
    noise, so the output is the denoiser's mean estimate there.
    """
    if not 0 <= start_step <= schedule.num_steps:
        raise ValueError(f"start_step must be in [0, {schedule.num_steps}], got {start_step}")
    c0, ct = schedule.posterior_coefs()
    sigma = schedule.posterior_variance.sqrt()
    x = x_start
    for t in range(start_step, 0, -1):
        x0 = denoise(x, t)
        x = c0[t].item() * x0 + ct[t].item() * x
        if t > 1:
            x = x + sigma[t].item() * _randn(x, generator)
        if callback is not None:
            callback(t, x)
    return x


def sample_ddim(denoise: Denoiser, x_start: torch.Tensor, steps: list[int],
                schedule: NoiseSchedule, eta: float = 0.0,
                generator: torch.Generator | None = None,
                callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """DDIM over a decreasing list of steps, e.g. [40, 30, 20, 10] (then to 0).

    eta = 0 is deterministic given x_start; eta = 1 matches DDPM's variance.
    """
    if list(steps) != sorted(steps, reverse=True) or (steps and steps[-1] < 1):
        raise ValueError(f"steps must be decreasing and >= 1, got {steps}")
    abar = schedule.alphas_cumprod
    x = x_start
    for i, t in enumerate(steps):
        prev = steps[i + 1] if i + 1 < len(steps) else 0
        a_t, a_p = abar[t].item(), abar[prev].item()
        x0 = denoise(x, t)
        eps = (x - a_t ** 0.5 * x0) / max(1 - a_t, 1e-12) ** 0.5
        sig = eta * ((1 - a_p) / (1 - a_t) * (1 - a_t / a_p)) ** 0.5 if prev > 0 else 0.0
        x = a_p ** 0.5 * x0 + max(1 - a_p - sig ** 2, 0.0) ** 0.5 * eps
        if sig > 0:
            x = x + sig * _randn(x, generator)
        if callback is not None:
            callback(t, x)
    return x


def ddim_schedule(start_step: int, n: int) -> list[int]:
    """n (or fewer) evenly spaced steps from start_step down to 1."""
    return sorted({int(round(v)) for v in np.linspace(start_step, 1, int(n))}, reverse=True)


def uses_ddim(start_step: int, ddim_steps: int | None) -> bool:
    """Whether sample_reverse takes DDIM steps (fewer than start_step) rather than DDPM."""
    return bool(ddim_steps) and ddim_steps < start_step


def sample_reverse(denoise: Denoiser, x_start: torch.Tensor, start_step: int,
                   schedule: NoiseSchedule, generator: torch.Generator | None = None,
                   ddim_steps: int | None = None,
                   callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """start_step reverse steps from x_start: ancestral DDPM, or, when 0 < ddim_steps <
    start_step, that many stochastic DDIM steps (eta 1, DDPM's variance) over the same range."""
    if not uses_ddim(start_step, ddim_steps):
        return sample_ddpm(denoise, x_start, start_step, schedule, generator, callback)
    return sample_ddim(denoise, x_start, ddim_schedule(start_step, ddim_steps), schedule, eta=1.0,
                       generator=generator, callback=callback)
