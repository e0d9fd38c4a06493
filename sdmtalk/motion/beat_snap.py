"""The rhythmic branch's say in where head movements start: beats snapped to speech accents.

Real heads start a movement (a local minimum of head speed, a "kinematic beat") near the
onsets of stressed syllables a little more often than chance (dev: beat alignment 0.573
against 0.547 with the onsets shifted at random, RESULTS §20). The sampled head has beats
too, but anywhere. This stage time-warps the finished head pose locally so that the
slowest frame within `radius` of each accent moves `strength` of the way onto the accent:
the head's path, amplitude and seed are kept, only the timing of its pauses shifts by a
few frames. Lips are never warped (they keep their sync).

Accents are the local maxima of the prosody's spectral-flux onset strength (the rhythmic
branch's own input) above `threshold`, at least `width` frames apart. Each accent moves
the time axis by a tent of half-width `width` around it, so a frame's warp depends on the
speech and pose at most width + radius frames ahead: a stream gets offline's warp with that
much look-ahead. The strength is fitted on train clips by benchmarks/calibrate_beat_snap.py
so that the generated heads' beat alignment over chance matches the real heads'.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

PEAK_HALF = 2  # an accent is the largest onset strength within +-2 frames (80 ms)
DIP_HALF = 2  # frames either side of an accent whose clock slows
CATCH_UP = (3, 20)  # frames after an accent over which the clock catches up
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

    @property
    def reach(self) -> int:
        """Frames of speech after a frame that its warp depends on."""
        return DIP_HALF + PEAK_HALF


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
    """The pose (T, 4) read at fractional source times tau (T,): Catmull-Rom, which keeps the
    head's small reversals (linear interpolation averages neighbours and smooths them away)
    and needs only the two frames either side (a stream has them)."""
    pose = np.asarray(pose, np.float64)
    ends = ([2 * pose[0] - pose[1]], [2 * pose[-1] - pose[-2]])  # straight on past either end
    padded = np.concatenate([ends[0], pose, ends[1]])
    i = np.clip(np.floor(tau).astype(int), 0, len(pose) - 2)  # tau = T - 1 is i = T - 2, f = 1
    f = (tau - i)[:, None]
    p0, p1, p2, p3 = (padded[i + k] for k in range(4))
    out = p1 + 0.5 * f * (p2 - p0 + f * (2 * p0 - 5 * p1 + 4 * p2 - p3 + f * (3 * (p1 - p2) + p3 - p0)))
    return out.astype(np.float32)


def snap_pose(pose: np.ndarray, accents: np.ndarray | None, snap: BeatSnap | None) -> np.ndarray:
    """A finished head pose (T, 4) and accent frames (relative to its frame 0) -> the pose
    with its speed dipping on each accent (the same pose when either is None)."""
    if snap is None or accents is None or len(pose) < 2:
        return pose
    return warp_pose(pose, warp_times(len(pose), accents, snap.strength))
