"""Mouth and lip-sync metrics: LMD, inner-lip gap, loudness, AV offset, correlations, realign."""

from __future__ import annotations

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.evaluate.metric_support import pearson, valid_mask
from sdmtalk.face.align import lip_gap

# Landmarks are (T, 68, 2) float pixels of aligned face crops (iBUG 68 layout, 0-based); `valid`
# is a (T,) bool mask of the frames to score (conventions: metric_support).

MOUTH = np.arange(48, 68)  # 20 mouth points (outer 48-59, inner 60-67)
INNER_UPPER = np.array([61, 62, 63])  # inner upper lip, left to right
INNER_LOWER = np.array([67, 66, 65])  # the inner lower-lip points facing them


def lmd(pred: np.ndarray, real: np.ndarray, points=None, valid=None, centre: bool = False) -> float:
    """Landmark distance (Chen et al. 2018): mean over frames and points of ||pred - real||_2.

    pred, real: (T, 68, 2) pixels; points: indices (e.g. MOUTH) or None for all 68.
    centre=True removes each frame's mean of the chosen points first (shape only, no head
    translation). Returns pixels; NaN when no frame is valid.
    """
    pred, real = np.asarray(pred, np.float64), np.asarray(real, np.float64)
    if points is not None:
        pred, real = pred[:, points], real[:, points]
    keep = valid_mask(valid, len(pred))
    if not keep.any():
        return float("nan")
    pred, real = pred[keep], real[keep]
    if centre:
        pred = pred - pred.mean(axis=1, keepdims=True)
        real = real - real.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(pred - real, axis=-1).mean())


def inner_lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Mouth opening: mean distance of inner-lip points 61-63 to 67-65, (T, 68, 2) -> (T,) px."""
    return lip_gap(np.asarray(landmarks, np.float64))


def frame_loudness(wav: np.ndarray, num_frames: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech energy per video frame: RMS of each 40 ms frame in dB relative to the clip's
    loudest frame, clipped to [-60, 0]. wav (N,) -> (num_frames,)."""
    hop = sample_rate // FPS
    wav = np.asarray(wav, np.float64)[: num_frames * hop]
    wav = np.pad(wav, (0, num_frames * hop - len(wav)))
    rms = np.sqrt((wav.reshape(num_frames, hop) ** 2).mean(axis=1))
    db = 20 * np.log10(np.maximum(rms, 1e-10) / max(rms.max(), 1e-10))
    return np.clip(db, -60.0, 0.0)


def lagged_correlation(video: np.ndarray, audio: np.ndarray, lag: int, valid=None) -> float:
    """Pearson r of video[t + lag] and audio[t] over the t where both exist (and are valid)."""
    n = min(len(video), len(audio))
    keep = valid_mask(valid, n)
    t = np.arange(max(0, -lag), min(n, n - lag))
    t = t[keep[t] & keep[t + lag]]
    return pearson(np.asarray(video)[t + lag], np.asarray(audio)[t])


def av_offset(mouth: np.ndarray, loudness: np.ndarray, max_offset: int = 10, valid=None) -> dict:
    """Audio-visual offset without SyncNet: the lag (frames) maximising the correlation of
    mouth opening (T,) and speech loudness (T,). Positive offset: the mouth follows the
    audio. confidence = peak minus median correlation over lags (as SyncNet reports it)."""
    lags = np.arange(-max_offset, max_offset + 1)
    curve = np.array([lagged_correlation(mouth, loudness, int(d), valid) for d in lags])
    if np.isnan(curve).all():
        return {"offset": float("nan"), "corr": float("nan"), "confidence": float("nan")}
    best = int(np.nanargmax(curve))
    return {"offset": int(lags[best]), "corr": float(curve[best]),
            "confidence": float(curve[best] - np.nanmedian(curve))}


def lip_energy_correlation(mouth: np.ndarray, loudness: np.ndarray, valid=None) -> float:
    """Pearson r of mouth opening and speech loudness at lag 0."""
    return lagged_correlation(mouth, loudness, 0, valid)


def lip_gap_correlation(gen_gap: np.ndarray, real_gap: np.ndarray, valid=None) -> float:
    """Pearson r of the generated and the real clip's inner-lip gap (T,)."""
    return lagged_correlation(gen_gap, real_gap, 0, valid)


def amplitude_ratio(gen_gap: np.ndarray, real_gap: np.ndarray, valid=None) -> float:
    """std(generated lip gap) / std(real lip gap) over valid frames: 1 = as lively as the
    speaker; regression models typically land at 0.3-0.5."""
    keep = valid_mask(valid, min(len(gen_gap), len(real_gap)))
    if keep.sum() < 3:
        return float("nan")
    real_std = np.std(np.asarray(real_gap)[: len(keep)][keep])
    return float(np.std(np.asarray(gen_gap)[: len(keep)][keep]) / real_std) if real_std > 1e-9 else float("nan")


def realign(gen: np.ndarray, real: np.ndarray, offset: int, gen_valid=None, real_valid=None):
    """Pair generated frame t with real frame t + offset, `offset` being the real clip's own
    AV offset in the sync expert's sign (+ = the real mouth lags its audio; the pairing of
    data.offsets.shift_audio): the generated mouth follows the audio, so this re-aligns the
    real one to it. Frames that fall off either end are dropped.
    -> (gen (N,), real (N,), keep (N,) bool: valid in both)."""
    n, d = min(len(gen), len(real)), int(offset)
    lo = max(0, -d)
    t = np.arange(lo, max(lo, n - max(d, 0)))
    keep = valid_mask(gen_valid, n)[t] & valid_mask(real_valid, n)[t + d]
    return np.asarray(gen)[t], np.asarray(real)[t + d], keep


def aligned_lip_sync(gen_gap, real_gap, offset: int, gen_valid=None, real_valid=None) -> dict:
    """lip_gap_corr / lip_amp_ratio against the real lip gap re-aligned by `offset` (realign)."""
    g, r, keep = realign(gen_gap, real_gap, offset, gen_valid, real_valid)
    return {"lip_gap_corr_aligned": lip_gap_correlation(g, r, keep),
            "lip_amp_ratio_aligned": amplitude_ratio(g, r, keep)}
