"""Per-clip lip-sync scores from the SyncExpert (our own measure; definitions in docs/METRICS.md).

s(d) = mean over frames t of cos(audio window at t, mouth window at t + d), for offsets
d = -max_shift .. +max_shift (frames; only pairs where both windows exist and the mouth
window holds no lost frame). Positive d: the mouth follows (lags) the audio.

- sync confidence = s(0) - median_d s(d): how much better the clip's own alignment is than
  a typical misalignment (high = in sync AS GIVEN; a shifted clip scores low).
- AV offset = argmax_d s(d), with offset confidence s(best) - median_d s(d) (SyncNet's
  confidence form, but of our cosine similarity, not SyncNet's distances: not LSE-C/LSE-D).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from sdmtalk import MEL_PER_FRAME
from sdmtalk.sync.expert import (
    SyncExpert,
    audio_input,
    gather_audio,
    gather_mouth,
    load_expert,
    mouth_input,
    window_starts,
)

MAX_SHIFT = 15
MIN_WINDOWS = 5  # an offset with fewer window pairs than this is left out (NaN)


@lru_cache(maxsize=2)
def default_expert(path: str | None = None) -> SyncExpert:
    """The shipped expert (cached: loaded once per process)."""
    return load_expert(path)


@torch.inference_mode()
def clip_embeddings(model: SyncExpert, audio: np.ndarray, mouth: np.ndarray,
                    batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Prepared audio (4T_a, A) and mouth (T_v, 20, 2) -> embeddings (T_a, E), (T_v, E)
    per centre frame; NaN rows where the window is out of range or holds a lost frame."""
    w, e = model.cfg.window, model.cfg.embed
    t_a, t_v = len(audio) // MEL_PER_FRAME, len(mouth)
    ea, ev = np.full((t_a, e), np.nan, np.float32), np.full((t_v, e), np.nan, np.float32)
    ca = window_starts(t_a, w)
    cv = window_starts(t_v, w)
    if len(cv):
        wins = gather_mouth(mouth, cv, w)
        ok = np.isfinite(wins).all(axis=(1, 2, 3))
        cv, wins = cv[ok], wins[ok]
    for i in range(0, len(ca), batch):
        c = ca[i:i + batch]
        ea[c] = model.embed_audio(torch.from_numpy(gather_audio(audio, c, w))).numpy()
    for i in range(0, len(cv), batch):
        ev[cv[i:i + batch]] = model.embed_mouth(torch.from_numpy(wins[i:i + batch])).numpy()
    return ea, ev


def similarity_curve(ea: np.ndarray, ev: np.ndarray, max_shift: int = MAX_SHIFT,
                     min_windows: int = MIN_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (T_a, E), (T_v, E) -> (shifts (2S+1,), s(d) (2S+1,)), NaN where fewer
    than min_windows pairs exist."""
    ok_a, ok_v = np.isfinite(ea).all(1), np.isfinite(ev).all(1)
    sim = np.nan_to_num(ea) @ np.nan_to_num(ev).T  # (T_a, T_v) cosines (unit vectors)
    shifts = np.arange(-max_shift, max_shift + 1)
    curve = np.full(len(shifts), np.nan)
    for i, d in enumerate(shifts):
        t = np.arange(max(0, -d), min(len(ea), len(ev) - d))
        t = t[ok_a[t] & ok_v[t + d]]
        if len(t) >= min_windows:
            curve[i] = sim[t, t + d].mean()
    return shifts, curve


def sync_scores(mel: np.ndarray, mouth: np.ndarray, valid=None, max_shift: int = MAX_SHIFT,
                model: SyncExpert | None = None, extra: np.ndarray | None = None) -> dict:
    """One clip: log-mel (4T, 80) and canonical landmarks (T, 68, 2) or mouth points
    (T, 20, 2) (NaN or valid=False where the face was lost) -> dict with
    sync_conf (s(0) - median), sync_offset (argmax_d s(d), frames, + = mouth lags audio),
    sync_offset_conf (s(best) - median), sync_sim (s(0)); NaN where undefined. A mouth that
    does not move (every mouth window embeds alike) gets confidences 0 and offset NaN."""
    model = model or default_expert()
    ea, ev = clip_embeddings(model, audio_input(mel, extra), mouth_input(mouth, valid))
    shifts, curve = similarity_curve(ea, ev, max_shift)
    nan = float("nan")
    zero = curve[max_shift]
    if not np.isfinite(zero) or np.isfinite(curve).sum() < 3:
        return {"sync_conf": nan, "sync_offset": nan, "sync_offset_conf": nan, "sync_sim": nan}
    med = float(np.nanmedian(curve))
    best = int(np.nanargmax(curve))
    if np.nanstd(ev, axis=0).max() < 1e-4:  # a still mouth: nothing to sync, no offset to find
        return {"sync_conf": 0.0, "sync_offset": nan, "sync_offset_conf": 0.0, "sync_sim": float(zero)}
    return {"sync_conf": float(zero - med), "sync_offset": int(shifts[best]),
            "sync_offset_conf": float(curve[best] - med), "sync_sim": float(zero)}


def sync_confidence(mel: np.ndarray, mouth: np.ndarray, valid=None, max_shift: int = MAX_SHIFT,
                    model: SyncExpert | None = None) -> float:
    """s(0) - median_d s(d) of one clip (see sync_scores)."""
    return sync_scores(mel, mouth, valid, max_shift, model)["sync_conf"]


def av_offset(mel: np.ndarray, mouth: np.ndarray, valid=None, max_shift: int = MAX_SHIFT,
              model: SyncExpert | None = None) -> dict:
    """{'offset': argmax_d s(d) in frames (+ = mouth lags audio), 'confidence':
    s(best) - median_d s(d)} of one clip (see sync_scores)."""
    s = sync_scores(mel, mouth, valid, max_shift, model)
    return {"offset": s["sync_offset"], "confidence": s["sync_offset_conf"]}


def shifted_pair(mel: np.ndarray, mouth: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop a clip so that its true offset becomes `shift` frames (+ = mouth lags audio):
    audio frames [a0, a0 + L) with mouth frames [v0, v0 + L), a0 - v0 = shift."""
    t = min(len(mel) // MEL_PER_FRAME, len(mouth))
    a0, v0 = max(shift, 0), max(-shift, 0)
    n = t - abs(shift)
    if n <= 0:
        raise ValueError(f"clip of {t} frames is too short for a shift of {shift}")
    return mel[MEL_PER_FRAME * a0:MEL_PER_FRAME * (a0 + n)], mouth[v0:v0 + n]


def clip_offset(model, mel: np.ndarray, canonical: np.ndarray, valid=None,
                max_shift: int | None = None) -> dict:
    """One clip as recorded -> {"offset": argmax_d s(d) or None, "confidence": s(best) -
    median, "z": evidence that s(best) > s(0) in standard errors (0 at d = 0), "windows":
    audio/mouth window pairs behind s(best)}. None / NaN where the clip gives no estimate
    (too short, no detected mouth window, a mouth that never moves)."""
    max_shift = MAX_SHIFT if max_shift is None else max_shift
    none = {"offset": None, "confidence": float("nan"), "z": float("nan"), "windows": 0}
    ea, ev = clip_embeddings(model, audio_input(mel), mouth_input(canonical, valid))
    shifts, curve = similarity_curve(ea, ev, max_shift)
    if not np.isfinite(curve[max_shift]) or np.isfinite(curve).sum() < 3:
        return none
    if np.nanstd(ev, axis=0).max() < 1e-4:  # a still mouth: nothing to align
        return none
    best = int(np.nanargmax(curve))
    d = int(shifts[best])
    ok_a, ok_v = np.isfinite(ea).all(1), np.isfinite(ev).all(1)
    t = np.arange(max(0, -d), min(len(ea), len(ev) - max(d, 0)))
    t = t[ok_a[t] & ok_v[t + d] & ok_v[t]]
    z = 0.0
    if d != 0 and len(t) >= 2:
        diff = np.einsum("ij,ij->i", ea[t], ev[t + d] - ev[t])  # sim(t, t + d) - sim(t, t)
        se = diff.std() / np.sqrt(max(len(t) / model.cfg.window, 1.0))
        z = float(diff.mean() / se) if se > 0 else float(np.sign(diff.mean())) * 1e6  # finite: JSON
    return {"offset": d, "confidence": float(curve[best] - np.nanmedian(curve)), "z": z, "windows": int(len(t))}
