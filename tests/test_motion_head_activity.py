"""The rhythmic branch's head-activity envelope (sdmtalk.motion.head_activity)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sdmtalk.motion.head_activity import (
    ENVELOPE_RANGE,
    activity_inputs,
    coupling_slope,
    fit_head_activity,
    head_activity,
    log_pose_speed,
)
from sdmtalk.motion.pose_gain import apply_pose_gain
from sdmtalk.motion.sdm import build_model
from sdmtalk.motion.sdm_config import SDMConfig

E, P = SDMConfig.tiny().rhythm_dim, SDMConfig.tiny().prosody_dim


def activity_cfg(gain: float = 1.0, weights=None) -> SDMConfig:
    weights = np.r_[1.0, np.zeros(E + P - 1), 0.0] if weights is None else weights
    return dataclasses.replace(SDMConfig.tiny(), head_activity=tuple(float(w) for w in weights),
                               head_activity_gain=gain)


def loud_quiet(T: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(M~, prosody) whose first embedding dim is +1 for 50 frames, -1 for the next 50..."""
    emb = np.zeros((T, E))
    emb[:, 0] = np.where((np.arange(T) // 50) % 2 == 0, 1.0, -1.0)
    return emb, np.zeros((T, P))


def test_envelope_follows_the_readout_and_is_bounded():
    emb, pros = loud_quiet()
    env = head_activity(activity_cfg(0.5), emb, pros)
    assert env.shape == (200,) and (env > 0).all()
    assert env[20] == pytest.approx(np.exp(0.5), rel=1e-3) and env[70] == pytest.approx(np.exp(-0.5), rel=1e-3)
    huge = head_activity(activity_cfg(100.0), emb, pros)
    assert huge.max() <= np.exp(ENVELOPE_RANGE[1]) + 1e-9 and huge.min() >= np.exp(ENVELOPE_RANGE[0]) - 1e-9


@pytest.mark.parametrize("cfg,scale", [(activity_cfg(0.0), 1.0), (activity_cfg(1.0), 0.0),
                                       (dataclasses.replace(SDMConfig.tiny(), head_activity_gain=1.0), 1.0)])
def test_no_envelope_when_off_without_readout_or_without_rhythm(cfg, scale):
    """Gain 0, no readout, or the no_rhythm ablation (scale 0): the pose is left as it was."""
    emb, pros = loud_quiet()
    assert head_activity(cfg, emb, pros, scale) is None


def test_envelope_scales_only_the_fast_band():
    rng = np.random.default_rng(0)
    pose = np.cumsum(rng.normal(0, 0.01, (300, 4)), 0)
    cfg = dataclasses.replace(activity_cfg(), pose_band=8.0, pose_gain=(2.0,) * 4, pose_gain_slow=(3.0,) * 4)
    plain, low, _ = apply_pose_gain(pose, cfg)
    scaled, low2, _ = apply_pose_gain(pose, cfg, activity=np.full(300, 0.5))
    np.testing.assert_allclose(low, low2)
    np.testing.assert_allclose(scaled - 3.0 * low, 0.5 * (plain - 3.0 * low), atol=1e-6)


def test_fit_recovers_a_relation_and_standardizes():
    rng = np.random.default_rng(1)
    samples, truth = [], []
    for _ in range(12):
        emb, pros = rng.normal(size=(150, E)), rng.normal(size=(150, P))
        y = 0.3 * emb[:, 1] - 0.2 * pros[:, 0] + rng.normal(0, 0.3, 150)
        samples.append((activity_inputs(emb, pros), y - y.mean(), 1.0))
        truth.append((emb, pros, y))
    weights, std = fit_head_activity(samples)
    assert weights.shape == (E + P + 1,) and std > 0.2
    pred = np.concatenate([activity_inputs(e, p) @ weights for e, p, _ in truth])
    assert pred.std() == pytest.approx(1.0, rel=0.05) and abs(pred.mean()) < 0.05
    assert np.corrcoef(pred, np.concatenate([y for *_, y in truth]))[0, 1] > 0.7


def test_coupling_slope_sees_a_head_that_moves_when_told():
    rng = np.random.default_rng(2)
    activity = np.repeat(rng.choice([-1.0, 1.0], 20), 30)
    steps = rng.normal(0, 0.01, (600, 4)) * np.exp(0.8 * activity)[:, None]
    moving, still = np.cumsum(steps, 0), np.cumsum(rng.normal(0, 0.01, (600, 4)), 0)
    assert coupling_slope(log_pose_speed(moving), activity) > 0.4
    assert abs(coupling_slope(log_pose_speed(still), activity)) < 0.15


def test_a_readout_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="head_activity"):
        build_model(dataclasses.replace(SDMConfig.tiny(), head_activity=(1.0, 2.0)))
