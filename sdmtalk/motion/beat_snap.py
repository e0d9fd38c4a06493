"""The rhythmic branch's say in where the head pauses: its speed dips on the speech's accents.

A head's "kinematic beats" are the local minima of its speed, where one movement ends and
the next begins; beat alignment (BAS) scores how close they are to the audio's onsets. The
sampled head has beats, but anywhere and fewer than a real head (dev chance BAS 0.550
against 0.580, docs/RESULTS.md, Head motion). This stage reads the finished head pose on a clock
that slows around each accent and catches up right after it: the head pauses briefly on a
stressed onset, then moves on. Its path, amplitude and seed are kept, only the timing
shifts (by at most MAX_LAG frames, back on time CATCH_UP[1] frames after an accent); the
lips are never warped.

Accents are the local peaks of the prosody's spectral-flux onset strength (the rhythmic
branch's own input) of at least `threshold`, at least `gap` frames apart. A frame's clock
depends on accents up to DIP_HALF frames ahead, known PEAK_HALF frames after them, and
reads no pose after its own frame, so a stream with that much look-ahead warps exactly as
offline. The strength is calibrated by calibrate/calibrate_beat_snap.py to the real heads'
chance BAS and BAS over chance.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

PEAK_HALF = 2  # an accent is the largest onset strength within +-2 frames (80 ms)
DIP_HALF = 2  # frames either side of an accent whose clock slows
CATCH_UP = (3, 8)  # frames after an accent over which the clock catches up (a longer catch-up
#   spilled into the pauses after speech: pause / speech head speed +0.06 with (3, 20), +0.02 with this)
MAX_LAG = 6  # frames the clock may fall behind (a stream keeps 8 emitted frames for it)
MAX_STRENGTH = 1.25  # the clock never stops (rate >= 1 - 0.75 x 1.25 > 0)


class BeatSnap(NamedTuple):
    """strength: 0 = off; the head's speed at an accent is (1 - 0.75 strength) of its own (at
    most MAX_STRENGTH). gap: least frames between accents. threshold: least onset strength
    (0..1 of the clip's peak) of an accent."""

    strength: float = 0.0
    gap: int = 4
    threshold: float = 0.3

    @classmethod
    def of(cls, cfg, scale: float = 1.0) -> BeatSnap | None:
        """The config's snap at this rhythm scale (None when off)."""
        snap = cls(min(float(cfg.beat_snap) * float(scale), MAX_STRENGTH), int(cfg.beat_snap_gap),
                   float(cfg.beat_snap_threshold))
        return snap if snap.strength != 0.0 else None


def accent_frames(onset: np.ndarray, snap: BeatSnap, after: int = -10**9, start: int = 0) -> np.ndarray:
    """Onset strength (T,) -> accent frames (K,): local maxima over +-PEAK_HALF frames at or
    above the threshold, from frame `start` on, greedily at least `gap` apart, the first at
    least `gap` after the accent `after` (a stream's last one)."""
    onset = np.asarray(onset, np.float64)
    if len(onset) == 0:
        return np.zeros(0, int)
    padded = np.pad(onset, PEAK_HALF, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * PEAK_HALF + 1)
    peaks = np.flatnonzero((onset >= windows.max(axis=1)) & (onset >= snap.threshold))
    peaks = peaks[peaks >= start]
    kept, last = [], after
    for p in peaks:
        if p - last >= snap.gap:
            kept.append(p)
            last = p
    return np.asarray(kept, int)


def _slowdown() -> np.ndarray:
    """The clock's slow-down r(u) for u = -DIP_HALF .. CATCH_UP[1] frames from an accent: a
    dip around it (Gaussian, sigma 1 frame, 1 at u = 0) and after it a catch-up (Hann window
    over CATCH_UP) of the same area, so each accent delays the head a little and time is back
    on t CATCH_UP[1] frames later. Nothing before u = -DIP_HALF: a stream knows an accent
    PEAK_HALF frames after it, so a look-ahead of DIP_HALF + PEAK_HALF frames gives offline's warp."""
    u = np.arange(-DIP_HALF, CATCH_UP[1] + 1, dtype=np.float64)
    dip = np.exp(-(u**2) / 2) * (np.abs(u) <= DIP_HALF)
    span = CATCH_UP[1] - CATCH_UP[0] + 2
    catch = np.where(u >= CATCH_UP[0], np.sin(np.pi * (u - CATCH_UP[0] + 1) / span) ** 2, 0.0)
    return dip - catch * dip.sum() / catch.sum()


def warp_times(num_frames: int, accents: np.ndarray, strength: float) -> np.ndarray:
    """Source time (T,) of each output frame: the clock runs at 1 - strength x r(t - a) summed
    over the accents a (frame indices; a stream passes its recent ones, before frame 0 too),
    so the head's speed dips on each accent; never ahead of t."""
    accents = np.asarray(accents, int)
    origin = min(0, int(accents.min(initial=0)) - DIP_HALF)  # frame of rate[0]
    rate = np.zeros(num_frames - origin)
    kernel = _slowdown()
    for a in accents:
        lo = a - DIP_HALF - origin
        rate[lo: lo + len(kernel)] += kernel[: max(0, len(rate) - lo)]
    shift = np.cumsum(rate)[-origin:]  # frame t's shift: its rates up to t
    t = np.arange(num_frames)
    tau = np.maximum(t - strength * shift, t - MAX_LAG)  # a run of close accents delays no further
    tau = np.maximum.accumulate(tau)  # ... and waits, never rewinds
    return np.clip(tau, 0, max(num_frames - 1, 0))


def warp_pose(pose: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """The pose (T, 4) read at fractional source times tau (T,), tau_t <= t: the parabola
    through frames i - 1, i, i + 1 with i + 1 = ceil(tau_t), so frame t never reads a frame
    after t (a stream's later frames are not final yet: reading them left seams at span
    edges) and small reversals of the head survive (linear interpolation averages
    neighbours and smooths them away)."""
    pose = np.asarray(pose, np.float64)
    padded = np.concatenate([[2 * pose[0] - pose[1]], pose])  # straight on before frame 0
    i = np.clip(np.ceil(tau).astype(int) - 1, 0, len(pose) - 2)
    f = (tau - i)[:, None]
    before, here, after = padded[i], padded[i + 1], padded[i + 2]
    out = here + 0.5 * f * (after - before) + 0.5 * f * f * (after - 2 * here + before)
    return out.astype(np.float32)


def snap_pose(pose: np.ndarray, accents: np.ndarray | None, snap: BeatSnap | None) -> np.ndarray:
    """A finished head pose (T, 4) and accent frames (relative to its frame 0) -> the pose
    with its speed dipping on each accent (the same pose when either is None)."""
    if snap is None or accents is None or len(pose) < 2:
        return pose
    return warp_pose(pose, warp_times(len(pose), accents, snap.strength))
