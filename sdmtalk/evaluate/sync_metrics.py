"""Lip sync by our landmark sync expert: clip log-mel, expert scores, a real clip's own AV offset."""

from __future__ import annotations

import numpy as np

from sdmtalk.audio.features import SAMPLES_PER_FRAME, fit_length, log_mel
from sdmtalk.data.offsets import OffsetRule
from sdmtalk.data.prepare import PrepareConfig
from sdmtalk.evaluate.metric_support import valid_mask
from sdmtalk.face.align import to_canonical
from sdmtalk.face.track import smooth_landmarks
from sdmtalk.sync.score import clip_offset, default_expert, sync_scores

# Landmarks are (T, 68, 2) float pixels of aligned face crops (iBUG 68 layout, 0-based); `valid`
# is a (T,) bool mask of the frames to score (conventions: metric_support).


def clip_log_mel(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """The clip's log-mel (4T, 80) as the models see it (audio.features.log_mel of the
    wav cut or zero-padded to T video frames)."""
    wav = fit_length(np.asarray(wav, np.float32), num_frames * SAMPLES_PER_FRAME)
    return log_mel(wav)[: 4 * num_frames]


def _canonical(landmarks: np.ndarray, valid=None, smooth: bool = True):
    """Detected landmarks (T, 68, 2) -> (canonical (T, 68, 2), keep (T,)) for the sync
    expert, or None with fewer than 3 usable frames. With smooth, the track is smoothed over
    time as `prepare` smooths the tracks the shipped expert was trained on (raw dlib jitter is not what it
    learned: on the dev clips it hid 2 of the 4 offsets that the cache's table finds)."""
    lm = np.asarray(landmarks, np.float64)
    keep = valid_mask(valid, len(lm)) & np.isfinite(lm).all(axis=(1, 2))
    if keep.sum() < 3:
        return None
    if smooth:
        cfg = PrepareConfig()
        lm = smooth_landmarks(lm, keep, cfg.smooth_window, cfg.smooth_polyorder).astype(np.float64)
    lm = np.where(keep[:, None, None], lm, lm[np.argmax(keep)])  # lost frames: any finite stand-in
    return to_canonical(lm)[0], keep


def expert_sync(mel: np.ndarray, landmarks: np.ndarray, valid=None, expert=None, smooth: bool = True) -> dict:
    """Sync expert scores of one video: log-mel (4T, 80) of its audio and landmarks
    (T, 68, 2) detected on its frames (any pixel frame; each frame is aligned to the
    canonical template here) -> sync_conf (s(0) - median_d s(d)), sync_offset (argmax_d
    s(d), frames, + = mouth lags audio), sync_offset_conf (s(best) - median_d s(d)).
    Definitions in docs/METRICS.md; our measure, not SyncNet's LSE-C / LSE-D. smooth: as
    _canonical (False for an expert trained on unsmoothed tracks)."""
    prep = _canonical(landmarks, valid, smooth)
    if prep is None:
        nan = float("nan")
        return {"sync_conf": nan, "sync_offset": nan, "sync_offset_conf": nan}
    s = sync_scores(mel, prep[0], prep[1], model=expert)
    return {k: s[k] for k in ("sync_conf", "sync_offset", "sync_offset_conf")}


def own_offset(mel: np.ndarray, landmarks: np.ndarray, valid=None, expert=None, rule=None) -> dict:
    """A real clip's own AV offset, measured as for the cache's offsets table
    (data.offsets.clip_offset with the shipped expert unless `expert`) -> {"offset", "z",
    "windows", "confidence", "applied"}: applied is the OffsetRule's verdict (0 when the
    estimate is not confident), the sign the expert's (+ = the mouth lags the audio)."""
    prep = _canonical(landmarks, valid)
    if prep is None:
        m = {"offset": None, "confidence": float("nan"), "z": float("nan"), "windows": 0}
    else:
        m = clip_offset(expert or default_expert(), mel, prep[0], valid=prep[1])
    return {**m, "applied": (rule or OffsetRule()).applied(m["offset"], m["z"], m["windows"])}
