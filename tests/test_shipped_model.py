"""The shipped SDM weights: load, seeded reproducibility, diverse heads with shared lips, controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdmtalk.audio import compute_features, synthesize_speech
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.face.align import lip_gap
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import BUNDLED_WEIGHTS, load_motion_model


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    assert BUNDLED_WEIGHTS.is_file(), "the package must ship sdm_base.safetensors"
    return load_motion_model("sdm")


@pytest.fixture(scope="module")
def features(model):
    text = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."
    return compute_features(synthesize_speech(text), phonemes=model.needs_phonemes)


def gen(model, features, **kw):
    return model.generate(features, CANONICAL_TEMPLATE.copy(), MotionControls(**kw))


def corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_same_seed_same_motion(model, features):
    a, b = gen(model, features, seed=3), gen(model, features, seed=3)
    assert np.array_equal(a.pose, b.pose) and np.array_equal(a.delta, b.delta)
    assert a.pose.shape == (features.num_frames, 4)


def test_seeds_change_head_but_keep_lips(model, features):
    a, b = gen(model, features, seed=0), gen(model, features, seed=1)
    assert np.abs(a.pose - b.pose).mean() > 1e-3  # different pose modes
    gap_a = lip_gap(CANONICAL_TEMPLATE + a.delta)
    gap_b = lip_gap(CANONICAL_TEMPLATE + b.delta)
    assert corr(gap_a, gap_b) > 0.5  # the same words drive the same lips


def test_lips_follow_speech_not_silence(model, features):
    silent = compute_features(np.zeros(3 * 16000, np.float32) + 1e-4 * np.random.default_rng(0).standard_normal(3 * 16000).astype(np.float32),
                              phonemes=model.needs_phonemes)
    speech_gap = lip_gap(CANONICAL_TEMPLATE + gen(model, features).delta)
    silent_gap = lip_gap(CANONICAL_TEMPLATE + gen(model, silent).delta)
    assert speech_gap.std() > 1.5 * silent_gap.std()


def test_diffusion_depth_controls(model, features):
    gen(model, features, diffusion_steps="auto")
    k_max = model.cfg.k_max
    assert model.last_k and all(1 <= k <= k_max for k in model.last_k)
    coarse = gen(model, features, diffusion_steps=0)
    shallow = gen(model, features, diffusion_steps=10)
    assert not np.allclose(coarse.delta, shallow.delta)


def test_still_and_scales(model, features):
    still = gen(model, features, still=True)
    assert np.allclose(still.pose, 0)
    base = gen(model, features, seed=2)
    bigger = gen(model, features, seed=2, pose_scale=2.0)
    assert np.abs(bigger.pose).mean() > 1.5 * np.abs(base.pose).mean()
