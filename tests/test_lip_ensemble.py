"""The SDM's lips mixed with the ridge baseline's (motion/lip_ensemble.py): the mix itself,
its config checks, that the shipped model mixes only the mouth, and that a stream keeps the
SDM's own lips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdmtalk.audio import compute_features, synthesize_speech
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.face.align import lip_gap
from sdmtalk.motion.lip_ensemble import mix_ridge_lips
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.motion.types import MOUTH, MotionControls
from sdmtalk.pipeline import load_motion_model


def test_mix_moves_the_mouth_only():
    rng = np.random.default_rng(0)
    sdm, ridge = rng.normal(size=(30, 68, 2)).astype(np.float32), rng.normal(size=(30, 68, 2)).astype(np.float32)
    assert mix_ridge_lips(sdm, ridge, 0.0, 2.0) is sdm
    assert mix_ridge_lips(sdm, None, 0.5, 2.0) is sdm
    half = mix_ridge_lips(sdm, ridge, 0.5, 2.0)
    assert np.allclose(half[:, MOUTH], 0.5 * sdm[:, MOUTH] + ridge[:, MOUTH])
    keep = np.ones(68, bool)
    keep[MOUTH] = False
    assert np.array_equal(half[:, keep], sdm[:, keep])
    assert np.allclose(mix_ridge_lips(sdm, ridge, 1.0, 3.0)[:, MOUTH], 3.0 * ridge[:, MOUTH])
    with pytest.raises(ValueError, match="does not match"):
        mix_ridge_lips(sdm, ridge[:10], 0.5, 1.0)


@pytest.mark.parametrize("bad", [{"ridge_mix": -0.1}, {"ridge_mix": 1.5}, {"ridge_gain": 0.0}])
def test_config_checks_the_mix(bad):
    from sdmtalk.motion.sdm import build_model

    with pytest.raises(ValueError, match="ridge_mix"):
        build_model(SDMConfig(**bad))


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_motion_model("sdm")


@pytest.fixture(scope="module")
def features(model):
    text = "Please call Stella and ask her to bring these things with her from the store."
    return compute_features(synthesize_speech(text), phonemes=True)


def test_shipped_model_mixes_the_ridge_into_the_lips_only(model, features):
    assert 0 < model.cfg.ridge_mix < 1 and model.cfg.ridge_gain > 1
    mixed = model.generate(features, CANONICAL_TEMPLATE.copy(), MotionControls(seed=2))
    share = model.cfg.ridge_mix
    try:
        model.cfg.ridge_mix = 0.0
        alone = model.generate(features, CANONICAL_TEMPLATE.copy(), MotionControls(seed=2))
    finally:
        model.cfg.ridge_mix = share
    assert np.array_equal(mixed.pose, alone.pose)
    keep = np.ones(68, bool)
    keep[MOUTH] = False
    assert np.array_equal(mixed.delta[:, keep], alone.delta[:, keep])
    gap_mixed, gap_alone = lip_gap(CANONICAL_TEMPLATE + mixed.delta), lip_gap(CANONICAL_TEMPLATE + alone.delta)
    assert np.abs(gap_mixed - gap_alone).max() > 1e-3  # the ridge changed the lips...
    assert np.corrcoef(gap_mixed, gap_alone)[0, 1] > 0.6  # ...and both read the same words
    assert 0.6 < gap_mixed.std() / gap_alone.std() < 1.4  # at the SDM's amplitude (ridge_gain)


def test_the_stream_keeps_the_sdms_own_lips(model, features):
    """The ridge needs 8 frames of speech ahead and a stream has 4: streamed lips are the
    SDM's whatever ridge_mix says (mixing drew seams at the span edges)."""
    from sdmtalk.stream.motion import MotionStream, _rows

    def streamed(share):
        model.cfg.ridge_mix, out = share, []
        stream = MotionStream(model, CANONICAL_TEMPLATE.copy(), MotionControls(seed=0))
        n, span, ahead = features.num_frames, stream.config.span, stream.config.lookahead
        while stream.done < n:
            end = min(stream.done + span + ahead, n)
            commit = min(span, n - stream.done) if end < n else n - stream.done
            out.append(stream.step(_rows(features, stream.done, end), commit).delta)
        return np.concatenate(out)

    share = model.cfg.ridge_mix
    try:
        assert np.array_equal(streamed(share), streamed(0.0))
    finally:
        model.cfg.ridge_mix = share
