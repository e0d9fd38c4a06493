"""Eye blinks added to a landmark sequence on a natural, seeded schedule.

A blink moves the eyelid points (37, 38, 40, 41 and 43, 44, 46, 47) toward the line through
the eye corners (36-39, 42-45): a fast close (~0.1 s), a short hold and a slower open
(~0.15 s). Blinks start at random intervals around 60 / rate_per_min seconds
(uniform in [0.5, 1.5] x that mean: 2-6 s at 15 per minute).
"""

from __future__ import annotations

import numpy as np

from sdmtalk import FPS

# (corner_a, corner_b, eyelid points) per eye
EYES = ((36, 39, (37, 38, 40, 41)), (42, 45, (43, 44, 46, 47)))
CLOSE_S, HOLD_S, OPEN_S = 0.10, 0.04, 0.15


def blink_profile(t: np.ndarray) -> np.ndarray:
    """Eye closure 0..1 at times t (s) after a blink starts (0 outside the blink)."""
    t = np.asarray(t, np.float64)
    closing = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / CLOSE_S, 0.0, 1.0))
    opening = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - CLOSE_S - HOLD_S) / OPEN_S, 0.0, 1.0))
    closure = np.where(t < CLOSE_S, closing, np.where(t < CLOSE_S + HOLD_S, 1.0, opening))
    return np.where((t < 0) | (t > CLOSE_S + HOLD_S + OPEN_S), 0.0, closure)


def blink_closure(num_frames: int, seed: int, fps: float = FPS, rate_per_min: float = 15.0):
    """Eye closure (T,) in 0..1 per frame: 1 = lids shut."""
    if rate_per_min <= 0:
        return np.zeros(num_frames)
    rng = np.random.default_rng(seed)
    mean_gap = 60.0 / rate_per_min
    times = np.arange(num_frames) / fps
    closure = np.zeros(num_frames)
    # The first blink comes sooner than a full interval, so short clips blink too.
    start = rng.uniform(0.1, 0.6) * mean_gap
    while start < num_frames / fps:
        # Put the fully closed hold on a frame so every blink shows a shut eye.
        peak = np.ceil((start + CLOSE_S) * fps) / fps
        closure = np.maximum(closure, blink_profile(times - (peak - CLOSE_S)))
        start += rng.uniform(0.5, 1.5) * mean_gap
    return closure


def close_eyes(landmarks: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """Landmarks (T, 68, 2) with eyelids moved toward the corner line by closure (T,)."""
    out = np.array(landmarks, dtype=np.float32, copy=True)
    c = np.asarray(closure, np.float32)[:, None, None]
    for a, b, lids in EYES:
        corner_a, corner_b = out[:, a : a + 1], out[:, b : b + 1]  # (T, 1, 2)
        axis = corner_b - corner_a
        axis_len2 = np.maximum((axis**2).sum(-1, keepdims=True), 1e-6)
        lid = out[:, list(lids)]
        along = ((lid - corner_a) * axis).sum(-1, keepdims=True) / axis_len2
        on_line = corner_a + along * axis  # foot of each lid point on the corner line
        out[:, list(lids)] = lid + c * (on_line - lid)
    return out


def add_blinks(
    landmarks: np.ndarray, seed: int, fps: float = FPS, rate_per_min: float = 15.0
) -> np.ndarray:
    """Landmarks (T, 68, 2) with seeded natural blinks added (same seed, same blinks)."""
    lm = np.asarray(landmarks)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"add_blinks: landmarks must be (T, 68, 2), got {lm.shape}")
    return close_eyes(lm, blink_closure(len(lm), seed, fps, rate_per_min))
