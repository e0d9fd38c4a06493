"""Helpers shared by the metric modules: the valid-frame mask and a guarded Pearson r."""

from __future__ import annotations

import numpy as np

# Metric conventions (docs/METRICS.md). Landmarks are (T, 68, 2) float pixels of aligned face
# crops (iBUG 68 layout, 0-based); frames are (T, H, W, 3) uint8 RGB. Frame-paired metrics take
# a `valid` (T,) bool mask of the frames to score (a face was found in both videos); the others
# are left out, not guessed.


def valid_mask(valid: np.ndarray | None, n: int) -> np.ndarray:
    """The first n entries of `valid` as bool, or all True when valid is None."""
    return np.ones(n, bool) if valid is None else np.asarray(valid, bool)[:n]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two (N,) signals; NaN when either is constant or N < 3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
