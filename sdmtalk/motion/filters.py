"""Gaussian smoothing and a first-order low-pass in NumPy, giving scipy's numbers.

scipy.ndimage and scipy.signal cost ~0.4 s and ~1.2 s to import, and generate needs only
these two filters of them (tests/test_motion_filters.py holds them to scipy's output).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_PAD_MODES = {"reflect": "symmetric", "nearest": "edge"}  # scipy.ndimage name -> np.pad name


def gaussian_filter1d(
    x: np.ndarray, sigma: float, axis: int = -1, mode: str = "reflect", truncate: float = 4.0
) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d for float arrays, modes "reflect" and "nearest":
    the same kernel (radius int(truncate * sigma + 0.5), normalised to sum 1), summed in
    float64, returned in x's dtype (float64 for integer input)."""
    if mode not in _PAD_MODES:
        raise ValueError(f"mode must be one of {sorted(_PAD_MODES)}, got {mode!r}")
    x = np.asarray(x)
    radius = int(truncate * float(sigma) + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 / (float(sigma) * float(sigma)) * taps**2)
    kernel /= kernel.sum()
    data = np.moveaxis(np.asarray(x, np.float64), axis, 0)
    padded = np.pad(data, [(radius, radius)] + [(0, 0)] * (data.ndim - 1), _PAD_MODES[mode])
    out = sliding_window_view(padded, 2 * radius + 1, axis=0) @ kernel
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return np.moveaxis(out, 0, axis).astype(dtype, copy=False)


def exp_smooth(x: np.ndarray, a: float) -> np.ndarray:
    """y_t = (1 - a) x_t + a y_{t-1} along axis 0 from a zero state, in float64:
    scipy.signal.lfilter([1 - a], [1, -a], x, axis=0), the same operations in the same order."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    state = np.zeros(x.shape[1:])
    for t in range(len(x)):
        state = (1.0 - a) * x[t] + a * state
        out[t] = state
    return out
