"""The dubbed face's landmarks: each video frame's own face, its mouth and jaw moved by the
new speech from that frame's own resting mouth.

The speech motion comes from the shipped lips model for one face (the video's median resting
face, in canonical units) with the head still; only its mouth and jaw part is used
(SPEECH_WEIGHTS), so head pose, eyes, brows and blinks stay the video's. Every frame's mouth
is first brought to rest (face.mouth_state.rest_mouth with the resting gap as threshold: any
opening of the video's own speech goes) and given the video's median resting mouth shape
where its own sits (`steady_rest`), then the new motion is added in that frame's canonical
frame, so it turns and scales with the head.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from sdmtalk import FPS
from sdmtalk.face.align import from_canonical, to_canonical
from sdmtalk.face.mouth_state import bundled_basis, rest_mouth

SPEECH_WEIGHTS = np.zeros(68)
SPEECH_WEIGHTS[48:68] = 1.0  # lips
SPEECH_WEIGHTS[4:13] = 1.0  # chin and lower jaw
SPEECH_WEIGHTS[[3, 13]] = 0.5  # the jaw's bend: half way, so the cheek line stays smooth
SPEECH_WEIGHTS.setflags(write=False)


def rest_faces(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, 68, 2) each found frame's landmarks with the mouth at rest (NaN where no face)."""
    rest_gap = bundled_basis().cfg.rest_gap
    out = np.full(landmarks.shape, np.nan, np.float32)
    for i in np.flatnonzero(valid):
        out[i] = rest_mouth(landmarks[i], open_above=rest_gap)
    return out


def steady_rest(rest: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rest faces (T, 68, 2) whose mouth and jaw take the video's median resting shape,
    that median face (68, 2) canonical: what the lips model sees).

    Closing a frame's mouth along the basis removes its opening but not the rest of its
    speech (lip rounding, width, the jaw's sideways swing), which the sync expert still
    heard in the dub. So each found frame keeps where its resting mouth sits (the mouth's
    centroid: the head's turn moves it) and takes the median shape there."""
    out = np.full(rest.shape, np.nan, np.float32)
    canonical, sims = to_canonical(rest[valid])
    median = np.median(canonical, axis=0)
    shift = canonical[:, 48:68].mean(1) - median[48:68].mean(0)  # (n, 2) where each mouth sits
    w = SPEECH_WEIGHTS[None, :, None]
    steady = (1 - w) * canonical + w * (median[None] + shift[:, None, :])
    out[valid] = from_canonical(steady, sims)
    return out, median.astype(np.float32)


def delta_at_frames(delta: np.ndarray, frames: int, fps: Fraction) -> np.ndarray:
    """Motion deltas (Ta, 68, 2) at FPS -> (frames, 68, 2) at the video's fps (linear in time)."""
    delta = np.asarray(delta, np.float32)
    times = np.arange(frames) / float(fps) * FPS
    lo = np.clip(np.floor(times).astype(int), 0, len(delta) - 1)
    hi = np.clip(lo + 1, 0, len(delta) - 1)
    w = (times - np.floor(times)).astype(np.float32)[:, None, None]
    return (1 - w) * delta[lo] + w * delta[hi]


def dub_targets(rest: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """rest (N, 68, 2) resting faces of the frames shown + speech delta (N, 68, 2) canonical
    -> target landmarks (N, 68, 2) pixels (NaN rows stay NaN: frames without the face)."""
    out = np.full(rest.shape, np.nan, np.float32)
    ok = np.isfinite(rest).all(axis=(1, 2))
    if not ok.any():
        return out
    canonical, sims = to_canonical(rest[ok])
    moved = canonical + SPEECH_WEIGHTS[None, :, None] * delta[ok]
    out[ok] = from_canonical(moved, sims)
    return out
