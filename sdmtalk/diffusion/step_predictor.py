"""The auxiliary step predictor of shallow diffusion (paper 3.3): targets and safe use.

Paper: the forward trajectory from the true motion F^0 and the one from the coarse motion
F* "meet" at some step k; start the reverse process there. We make "meet" concrete: at step
t both are Gaussians with the same variance (1 - abar_t) and means sqrt(abar_t) F^0 and
sqrt(abar_t) F*, so their per-dimension KL is abar_t |F* - F^0|^2 / (2 (1 - abar_t)); the
target k is the first t where it falls below `tau` (the two are then hard to tell apart).

DiffSinger (the origin of shallow diffusion) found a learned boundary unreliable and fell
back to a fixed k, so (method.md): the predicted k is clamped to [1, K_max] (the denoiser is
only trained on t <= K_max) and a global fallback k is used whenever the prediction is not
usable. The predictor network itself lives in motion/denoiser.py (StepPredictorNet).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sdmtalk.diffusion.schedule import NoiseSchedule


def meet_kl(schedule: NoiseSchedule, sq_gap: torch.Tensor) -> torch.Tensor:
    """Per-dimension KL between q(F^t | F*) and q(F^t | F^0) for every t.

    sq_gap: (B,) mean over dimensions of (F* - F^0)^2 -> (B, T + 1) (column 0 = inf).
    """
    abar = schedule.alphas_cumprod.to(sq_gap)
    ratio = abar / (1 - abar).clamp_min(1e-12)
    kl = 0.5 * ratio[None, :] * sq_gap[:, None]
    kl[:, 0] = math.inf
    return kl


def meet_step_targets(schedule: NoiseSchedule, coarse: torch.Tensor, target: torch.Tensor,
                      mask: torch.Tensor, tau: float, k_max: int) -> torch.Tensor:
    """Target k per window: first t whose meet KL <= tau, clamped to [1, k_max].

    coarse, target: (B, W, D) normalized motion; mask: (B, W) valid frames -> (B,) long.
    """
    return meet_step_of_gap(schedule, window_sq_gap(coarse, target, mask), tau, k_max)


def window_sq_gap(coarse: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames and dims of (coarse - target)^2: (B, W, D) x2, (B, W) -> (B,)."""
    m = mask.to(coarse.dtype)[..., None]
    return ((coarse - target) ** 2 * m).sum((1, 2)) / (m.sum((1, 2)) * coarse.shape[-1]).clamp_min(1)


def meet_step_of_gap(schedule: NoiseSchedule, sq_gap: torch.Tensor, tau: float, k_max: int) -> torch.Tensor:
    """First t whose meet KL for a mean squared gap (B,) is <= tau, clamped to [1, k_max]."""
    below = meet_kl(schedule, sq_gap) <= tau  # monotone in t: abar falls as t grows
    first = torch.where(below.any(1), below.float().argmax(1), torch.full_like(sq_gap, schedule.num_steps).long())
    return first.clamp(1, k_max)


def tau_for_step(schedule: NoiseSchedule, sq_gap: float, k: int) -> float:
    """The meet KL at which a window of mean squared gap `sq_gap` meets exactly at step k."""
    return float(meet_kl(schedule, torch.tensor([float(sq_gap)], dtype=torch.float64))[0, int(k)])


def rescale_meet_step(schedule: NoiseSchedule, k: float, tau_ratio: float) -> float:
    """The meeting step at tau' = tau_ratio * tau of a window whose step at tau is k.

    At the meeting step abar_k / (1 - abar_k) * gap / 2 = tau, so the window's gap is
    2 tau (1 - abar_k) / abar_k, and its step at tau' is where the ratio abar / (1 - abar)
    falls to ratio(k) * tau_ratio (interpolated between integer steps). A stricter tau'
    (< tau) gives a later step; the result keeps the order of windows exactly.
    """
    abar = schedule.alphas_cumprod.double().cpu().numpy()
    log_ratio = np.log(abar / np.maximum(1 - abar, 1e-12))  # falls as t grows; [0] = t 0
    steps = np.arange(len(log_ratio), dtype=np.float64)
    k = min(max(float(k), 1.0), steps[-1])
    goal = float(np.interp(k, steps, log_ratio)) + math.log(tau_ratio)
    return float(np.interp(-goal, -log_ratio[1:], steps[1:]))  # np.interp wants x ascending


def resolve_k(predicted: float | None, k_max: int, fallback: int) -> tuple[int, bool]:
    """The k to use: round(predicted) clamped to [1, k_max], or `fallback` when predicted is
    None or not finite. Returns (k, used_fallback)."""
    if predicted is None or not math.isfinite(predicted):
        return int(min(max(fallback, 1), k_max)), True
    return int(min(max(round(predicted), 1), k_max)), False
