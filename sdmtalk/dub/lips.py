"""The dubbed face's landmarks: each video frame's own face, its mouth and jaw moved by the
new speech from a resting mouth where that frame's own sits.

The speech motion comes from the shipped lips model for one face (the video's median resting
face over its first frames, in canonical units) with the head still; only its mouth and jaw
part is used (SPEECH_WEIGHTS), so head pose, eyes, brows and blinks stay the video's. Every
frame's mouth is brought to rest (face.mouth_state.rest_mouth with the resting gap as
threshold: any opening of the video's own speech goes), then given the median resting shape
where its own sits (closing along the basis removes the opening but not the rest of the
video's speech: lip rounding, width, the jaw's sideways swing, which the sync expert still
heard in the dub), and the new motion is added in that frame's canonical frame, so it turns
and scales with the head.
"""

from __future__ import annotations

import numpy as np

from sdmtalk.face.align import from_canonical, to_canonical
from sdmtalk.face.mouth_state import bundled_basis, rest_mouth

SPEECH_WEIGHTS = np.zeros(68)
SPEECH_WEIGHTS[48:68] = 1.0  # lips
SPEECH_WEIGHTS[4:13] = 1.0  # chin and lower jaw
SPEECH_WEIGHTS[[3, 13]] = 0.5  # the jaw's bend: half way, so the cheek line stays smooth
SPEECH_WEIGHTS.setflags(write=False)
_W = SPEECH_WEIGHTS[:, None]


def at_rest(landmarks: np.ndarray) -> np.ndarray:
    """A frame's (68, 2) landmarks with its mouth closed to the resting gap."""
    return rest_mouth(landmarks, open_above=bundled_basis().cfg.rest_gap)


def median_rest(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) canonical: the median resting face of frames (T, 68, 2) (NaN rows skipped),
    the face the lips model animates."""
    found = landmarks[np.isfinite(landmarks).all(axis=(1, 2))]
    canonical, _ = to_canonical(np.stack([at_rest(lm) for lm in found]))
    return np.median(canonical, axis=0).astype(np.float32)


def steady_rest(landmarks: np.ndarray, median: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame's landmarks (68, 2) -> (its resting face in pixels, that face in canonical
    units, the similarity between them): mouth and jaw in the median shape where the frame's
    resting mouth sits."""
    canonical, sims = to_canonical(at_rest(landmarks)[None])
    shift = canonical[0, 48:68].mean(0) - median[48:68].mean(0)
    steady = (1 - _W) * canonical[0] + _W * (median + shift)
    return from_canonical(steady[None], sims)[0], steady, sims


def dub_target(steady: np.ndarray, sims: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The resting face (canonical, from steady_rest) + one frame's speech delta (68, 2)
    -> target landmarks (68, 2) pixels."""
    return from_canonical((steady + _W * delta)[None], sims)[0]
