"""Speaker augmentation of training windows' log-mel (train split only).

The lips model has 78 training speakers and generalises worse to new voices than to new
clips of known ones (train-split lip r 0.69 against dev 0.47). On the cached log-mel,
without touching the audio, two augmentations give it voices it has not heard and a third
the clip mean a stream would have:

- a vocal-tract-length warp (VTLP): every frequency scaled by one factor alpha per window,
  as a longer or shorter vocal tract moves the formants. Done on the mel bins' centre
  frequencies, so it is exact up to the mel filters' width. The per-clip mean log-mel
  (``mel_cmn``) and the running-mean sums get the same warp: a warp is linear in the rows,
  so warp(mean) = mean(warp).
- SpecAugment-style masks: a few frequency bands and short time spans replaced by the
  clip's mean log-mel (0 after per-clip normalisation), so the model cannot lean on one
  band or one instant.
- a streamed clip mean: with probability ``prefix_mean`` the clip's mean log-mel is
  replaced by the mean of the rows heard up to a random row of the window, what a stream
  knows there (the whole clip's mean is the stream's largest missing feature
  after phoneme context; a model trained only on the running mean lost offline lips).

Per-clip channel colour (microphone, room) needs no augmentation: ``mel_cmn`` removes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdmtalk.audio.features import F_MAX, F_MIN, N_MELS


def _hz_to_slaney_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3)
    return np.where(f < 1000.0, lin, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0))


def _slaney_mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m < 15.0, m * (200.0 / 3), 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0)))


def mel_centres(n_mels: int = N_MELS, f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """Centre frequencies (Hz) of the log-mel's bins (librosa's slaney filters)."""
    edges = np.linspace(_hz_to_slaney_mel(f_min), _hz_to_slaney_mel(f_max), n_mels + 2)
    return _slaney_mel_to_hz(edges)[1:-1]


def warp_bins(alpha: float, centres: np.ndarray) -> np.ndarray:
    """Fractional source bin of every output bin when all frequencies are scaled by alpha
    (the spectrum at f after the warp is the one at f / alpha before it; clamped at the ends)."""
    return np.interp(centres / alpha, centres, np.arange(len(centres), dtype=np.float64))


def apply_warp(rows: np.ndarray, src: np.ndarray) -> np.ndarray:
    """rows (..., n_mels) resampled along the bins at fractional positions src (n_mels,)."""
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, rows.shape[-1] - 1)
    w = (src - lo).astype(rows.dtype)
    return rows[..., lo] * (1 - w) + rows[..., hi] * w


@dataclass
class MelAugment:
    """warp: largest relative frequency scaling (alpha in [1 - warp, 1 + warp]; 0 = off);
    masks: frequency bands and time spans masked per window (each up to freq_width bins /
    time_width log-mel rows); prefix_mean: share of windows whose clip mean is the streamed
    one (needs the items' mel_sum_before / mel_rows_before)."""

    warp: float = 0.0
    masks: int = 0
    prefix_mean: float = 0.0
    freq_width: int = 10
    time_width: int = 12

    def __post_init__(self):
        if not 0.0 <= self.warp < 0.5:
            raise ValueError(f"mel warp must be in [0, 0.5), got {self.warp}")
        if self.masks < 0:
            raise ValueError(f"mel masks must be >= 0, got {self.masks}")
        if not 0.0 <= self.prefix_mean <= 1.0:
            raise ValueError(f"prefix_mean must be in [0, 1], got {self.prefix_mean}")
        self._centres = mel_centres()

    @property
    def active(self) -> bool:
        return self.warp > 0 or self.masks > 0 or self.prefix_mean > 0

    def __call__(self, item: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Augment one window of MotionWindows (numpy float32 arrays; returns a new dict)."""
        out = dict(item)
        if self.prefix_mean > 0 and rng.random() < self.prefix_mean:
            out["mel_mean"] = streamed_mean(out, int(rng.integers(1, len(out["mel"]) + 1)))
        if self.warp > 0:
            src = warp_bins(rng.uniform(1 - self.warp, 1 + self.warp), self._centres)
            for key in ("mel", "mel_mean", "mel_sum_before"):
                if key in out:
                    out[key] = apply_warp(out[key], src).astype(out[key].dtype)
        if self.masks:
            mel, mean = out["mel"].copy(), out["mel_mean"]
            rows, bins = mel.shape
            for _ in range(self.masks):
                w = int(rng.integers(0, self.freq_width + 1))
                b = int(rng.integers(0, bins - w + 1))
                mel[:, b:b + w] = mean[b:b + w]
                w = int(rng.integers(0, self.time_width + 1))
                r = int(rng.integers(0, max(rows - w, 0) + 1))
                mel[r:r + w] = mean
            out["mel"] = mel
        return out


def streamed_mean(item: dict[str, np.ndarray], rows: int) -> np.ndarray:
    """Mean log-mel of the clip up to and including row `rows` - 1 of the window: the rows
    before it (mel_sum_before, mel_rows_before) and the window's first `rows`."""
    total = item["mel_sum_before"].astype(np.float64) + item["mel"][:rows].sum(0, dtype=np.float64)
    before = float(np.asarray(item["mel_rows_before"]).reshape(-1)[0])  # (1,) in MotionWindows items
    return (total / (before + rows)).astype(item["mel_mean"].dtype)
