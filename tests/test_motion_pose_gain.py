"""The calibrated two-band head-pose gain (sdmtalk.motion.pose_gain)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sdmtalk.motion.pose_gain import PoseGainState, apply_pose_gain, slow_band
from sdmtalk.motion.sdm import build_model
from sdmtalk.motion.sdm_config import SDMConfig


def gain_cfg(fast=(1.0,) * 4, slow=(1.0,) * 4, band=0.0, bias=(0.0,) * 4, ease=0.0) -> SDMConfig:
    return dataclasses.replace(SDMConfig.tiny(), pose_gain=fast, pose_gain_slow=slow, pose_band=band,
                               pose_bias=bias, pose_ease=ease)


def random_walk(T: int = 400, seed: int = 0) -> np.ndarray:
    """A head-like pose (T, 4): slow wander plus frame jitter, 0 at frame 0."""
    rng = np.random.default_rng(seed)
    pose = np.cumsum(rng.normal(0, 0.01, (T, 4)), 0) + rng.normal(0, 0.005, (T, 4))
    return pose - pose[0]


def test_no_band_is_one_gain_per_dim():
    pose, gain = random_walk(), (1.5, 2.0, 1.2, 0.5)
    out, _, _ = apply_pose_gain(pose, gain_cfg(gain, (9.0,) * 4))
    np.testing.assert_allclose(out, pose * np.array(gain), rtol=1e-5, atol=1e-7)


def test_equal_gains_in_both_bands_are_one_gain():
    pose, gain = random_walk(seed=1), (1.5, 2.0, 1.2, 0.5)
    out, low, _ = apply_pose_gain(pose, gain_cfg(gain, gain, 12.0))
    np.testing.assert_allclose(out, pose * np.array(gain), rtol=1e-5, atol=1e-6)
    assert np.abs(low - pose).max() > 1e-3  # the band really splits


def test_bias_is_taken_off_before_the_gain():
    """A sampler's constant offset is removed, not enlarged with the head motion."""
    pose, offset = random_walk(seed=4), np.array([0.01, 0.03, -0.02, 0.0])
    out, _, _ = apply_pose_gain(pose + offset, gain_cfg((2.0,) * 4, (3.0,) * 4, 8.0, tuple(offset)))
    ref, _, _ = apply_pose_gain(pose, gain_cfg((2.0,) * 4, (3.0,) * 4, 8.0))
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_slow_gain_adds_wander_not_speed():
    pose = random_walk(seed=2)
    out, _, _ = apply_pose_gain(pose, gain_cfg(slow=(3.0,) * 4, band=12.0))
    std_ratio = out.std(0) / pose.std(0)
    step_ratio = np.abs(np.diff(out, axis=0)).mean(0) / np.abs(np.diff(pose, axis=0)).mean(0)
    assert (std_ratio > 2.0).all() and (step_ratio < 1.5).all()
    assert np.abs(out[0]).max() < 1e-7  # the first frame stays at the photo's pose


def test_band_is_causal_and_resumes_from_its_state():
    """Run in pieces, each from the state of the frame before it: the same band as in one go."""
    pose = random_walk(seed=3)
    whole = slow_band(pose, 10.0)
    parts, state = [], None
    for a, b in ((0, 37), (37, 38), (38, 200), (200, 400)):
        ctx = max(0, a - 4)  # context frames before the piece, as a stream passes them
        low = slow_band(pose[ctx:b], 10.0, start=a - ctx, init=state)
        parts.append(low[a - ctx:])
        state = low[-1]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-12)
    # causal: changing the future leaves the past alone
    changed = pose.copy()
    changed[300:] += 1.0
    np.testing.assert_array_equal(slow_band(changed, 10.0)[:300], whole[:300])


def test_ease_starts_at_the_photo_and_resumes_in_a_stream():
    """pose_ease: frame 0 is the photo's pose (0) even with an offset sampler, the offset
    fades within a few time constants; in pieces with a carried state, the same pose."""
    pose = random_walk(seed=5) + 0.05  # the sampler starts away from the photo
    cfg = gain_cfg((2.0,) * 4, (3.0,) * 4, 8.0, (0.0, 0.01, 0.0, 0.0), ease=10.0)
    whole, _, _ = apply_pose_gain(pose, cfg)
    plain, _, _ = apply_pose_gain(pose, dataclasses.replace(cfg, pose_ease=0.0))
    assert np.abs(whole[0]).max() < 1e-6 and np.abs(plain[0]).max() > 0.05
    np.testing.assert_allclose(whole[100:], plain[100:], atol=1e-5)
    parts, state = [], None
    for a, b in ((0, 5), (5, 9), (9, 150), (150, 400)):
        ctx = max(0, a - 4)
        out, low, first = apply_pose_gain(pose[ctx:b], cfg, start=a - ctx, state=state)
        parts.append(out[a - ctx:])
        state = PoseGainState(low[-1], first, b)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


@pytest.mark.parametrize("change", [{"pose_band": -1.0}, {"pose_gain_slow": (1.0, 1.0, 6.0, 1.0)},
                                    {"pose_gain_slow": (1.0, 1.0)}, {"pose_bias": (0.0, 0.9, 0.0, 0.0)},
                                    {"pose_ease": -2.0}, {"pose_range": (0.1, 0.0, 0.1, 0.1)}])
def test_bad_band_settings_are_refused(change):
    with pytest.raises(ValueError, match="pose_band|pose_gain_slow|pose_bias|pose_ease|pose_range"):
        build_model(dataclasses.replace(SDMConfig.tiny(), **change))


def test_bias_only_comes_off_a_sampled_pose():
    """G_c's coarse pose (no diffusion, or the no-pose ablation) has no sampler offset."""
    pose, offset = random_walk(seed=6), (0.0, 0.03, 0.0, 0.0)
    cfg = gain_cfg((2.0,) * 4, (3.0,) * 4, 8.0, offset)
    coarse, _, _ = apply_pose_gain(pose, cfg, sampled=False)
    plain, _, _ = apply_pose_gain(pose, dataclasses.replace(cfg, pose_bias=(0.0,) * 4))
    np.testing.assert_allclose(coarse, plain, atol=1e-7)


def test_range_soft_limits_the_gained_pose():
    """pose_range: small motion passes almost unchanged, no value passes the limit."""
    pose = random_walk(seed=7) * 20
    cfg = gain_cfg((2.0,) * 4, (3.0,) * 4, 8.0)
    free, _, _ = apply_pose_gain(pose, cfg)
    limit = 0.5 * np.abs(free).max(0)
    held, _, _ = apply_pose_gain(pose, dataclasses.replace(cfg, pose_range=tuple(limit)))
    assert (np.abs(held) < limit).all()
    small = np.abs(free) < 0.1 * limit
    np.testing.assert_allclose(held[small], free[small], rtol=0.01)
