"""Calibrated gain on the generated head pose, in a slow and a fast band.

The deep head-pose pass samples a head that jitters around one place: against real heads
it has about the right speed but too little slow wander (docs/RESULTS.md, Head motion). One
gain per pose dim cannot fix both (more amplitude means more speed), so the pose splits
into a slow band (a causal exponential moving average, time constant `tau` frames) and the
rest, each with its own per-dim gain (calibrate/calibrate_pose_gain.py measures them), after
the sampler's mean offset is taken off (it tilts every head the same way, docs/RESULTS.md, Head motion).
Causal so that a stream, which never sees the future, gets the same pose as generate: it
carries a PoseGainState from one span to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdmtalk.errors import InputError
from sdmtalk.motion.filters import exp_smooth


def slow_band(pose: np.ndarray, tau: float, start: int = 0, init: np.ndarray | None = None) -> np.ndarray:
    """Causal EMA of pose (T, D) from frame `start` on, its state before that frame `init`
    (default pose[start]: the band starts where the pose is). Frames before `start` are
    context the caller discards; they are returned as they are."""
    pose = np.asarray(pose, np.float64)
    low = pose.copy()
    if tau <= 0 or start >= len(pose):
        return low
    a = float(np.exp(-1.0 / tau))
    prev = pose[start] if init is None else np.asarray(init, np.float64)
    # y_t = a y_{t-1} + (1 - a) x_t, run on x - prev so that the filter's zero state is prev
    low[start:] = exp_smooth(pose[start:] - prev, a) + prev
    return low


@dataclass(frozen=True)
class PoseGainState:
    """What a stream carries from one span to the next (generate starts from None)."""

    low: np.ndarray  # slow band of the last emitted frame (4,)
    first: np.ndarray  # the gained pose of frame 0 (4,), eased out over the first frames
    frames: int  # frames emitted so far
    recent: np.ndarray | None = None  # gained pose (n, 4) of the last emitted frames, before the
    #   beat snap's time warp (motion/beat_snap.py), which reads a few frames back


def pose_band_stats(pose: np.ndarray, valid: np.ndarray, tau: float) -> np.ndarray:
    """(2, 4): [std of the slow band, mean frame-to-frame step of the rest] per pose dim with
    tau > 0, else [std, std] of the whole pose; over valid frames (steps between two valid
    frames). What the gains are calibrated on, and what a reference video's style is."""
    pose, valid = np.asarray(pose, np.float64), np.asarray(valid, bool)
    if tau <= 0:
        std = pose[valid].std(0)
        return np.stack([std, std])
    filled = np.where(np.isfinite(pose), pose, np.nanmean(np.where(valid[:, None], pose, np.nan), 0))
    low = slow_band(filled, tau)
    steps = valid[1:] & valid[:-1]
    return np.stack([low[valid].std(0), np.abs(np.diff(filled - low, axis=0))[steps].mean(0)])


STYLE_RANGE = (0.25, 4.0)  # a reference's gain multipliers are clipped to this


def reference_style(cfg, reference) -> np.ndarray:
    """(2, 4) multipliers of (pose_gain_slow, pose_gain) that give the head a reference
    video's amplitude and speed: its band stats over those the gains were fitted to
    (cfg.pose_target), clipped to STYLE_RANGE."""
    if len(cfg.pose_target) != 8:
        raise InputError(f"{reference.source}: these weights have no pose_target to compare it with; "
                         "use the bundled sdm_base or calibrate them with calibrate/calibrate_pose_gain.py")
    stats = reference.band_stats(cfg.pose_band)
    ratio = stats / np.maximum(np.asarray(cfg.pose_target, np.float64).reshape(2, 4), 1e-9)
    return np.clip(ratio, *STYLE_RANGE)


def apply_pose_gain(pose: np.ndarray, cfg, start: int = 0, state: PoseGainState | None = None,
                    sampled: bool = True, style: np.ndarray | None = None,
                    activity: np.ndarray | None = None):
    """pose (T, 4) -> (gained pose (T, 4) float32, low band (T, 4), frame 0's gained pose (4,)).

    cfg (SDMConfig): the sampler's mean offset `pose_bias` comes off first (no gain should
    enlarge it; only from a `sampled` pose, not G_c's coarse one). Then pose_gain_slow x the
    slow band (time constant `pose_band` frames) plus pose_gain x the rest, or pose_gain x
    everything with pose_band 0. With `pose_ease` > 0 frames, frame 0's offset from the
    photo's pose decays as exp(-t / pose_ease), so the video starts at the photo; `pose_range`
    (4) soft-limits the result (limit x tanh(pose / limit)). style (2, 4): multipliers of the
    slow and fast gains (a reference video's, reference_style). activity (T,): the rhythmic
    branch's envelope on the fast band (head_activity.py). Frames from `start` on are new (a
    stream's earlier frames are context: they take state.recent, what was emitted for them),
    continuing from `state`."""
    pose = np.asarray(pose, np.float64) - (np.asarray(cfg.pose_bias, np.float64) if sampled else 0.0)
    style = np.ones((2, 4)) if style is None else np.asarray(style, np.float64)
    fast = np.asarray(cfg.pose_gain, np.float64) * style[1]
    if activity is not None:  # (T, 4): the head moves when the rhythm says so
        fast = fast * np.asarray(activity, np.float64)[: len(pose), None]
    if cfg.pose_band > 0:
        low = slow_band(pose, cfg.pose_band, start, None if state is None else state.low)
        out = np.asarray(cfg.pose_gain_slow, np.float64) * style[0] * low + fast * (pose - low)
    else:
        low, out = pose, pose * fast
    first = out[min(start, len(out) - 1)].copy() if state is None else state.first
    if cfg.pose_ease > 0 and len(out):
        t = np.arange(len(out)) - start + (0 if state is None else state.frames)
        out[start:] -= first * np.exp(-t[start:, None] / cfg.pose_ease)
    if len(cfg.pose_range):  # soft limit at the real heads' range: a gain must not throw the head
        limit = np.asarray(cfg.pose_range, np.float64)
        out[start:] = limit * np.tanh(out[start:] / limit)
    if state is not None and state.recent is not None and start > 0:  # context frames: as emitted
        n = min(start, len(state.recent))
        out[start - n:start] = state.recent[len(state.recent) - n:]
    return out.astype(np.float32), low, first
