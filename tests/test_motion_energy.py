"""EnergyBaseline: loud frames open the mouth, silence keeps it closed, the head sways a little."""

import numpy as np
import pytest

from sdmtalk.audio import AudioFeatures, compute_features
from sdmtalk.errors import InputError
from sdmtalk.face.align import lip_gap
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.motion.energy import MAX_GAP, EnergyBaseline
from sdmtalk.motion.types import MotionControls, MotionModel

SRC = CANONICAL_TEMPLATE.astype(np.float32)


def bursts_wav(seconds: float = 4.0) -> np.ndarray:
    """Alternating 0.5 s of a loud vowel-like tone and 0.5 s of silence, 16 kHz."""
    t = np.arange(int(16000 * seconds)) / 16000
    tone = 0.3 * (np.sin(2 * np.pi * 150 * t) + 0.5 * np.sin(2 * np.pi * 300 * t))
    gate = (np.floor(t / 0.5) % 2 == 0).astype(np.float32)
    return (tone * gate).astype(np.float32)


def test_loud_opens_silence_closed():
    feats = compute_features(bursts_wav())
    model = EnergyBaseline()
    assert isinstance(model, MotionModel)
    motion = model.generate(feats, SRC, MotionControls(seed=0))
    T = feats.num_frames
    assert motion.pose.shape == (T, 4) and motion.delta.shape == (T, 68, 2)
    gap = lip_gap(SRC + motion.delta) - lip_gap(SRC)
    frame_t = (np.arange(T) + 0.5) / 25
    loud = (np.floor(frame_t / 0.5) % 2 == 0) & (frame_t % 0.5 > 0.1) & (frame_t % 0.5 < 0.4)
    silent = (np.floor(frame_t / 0.5) % 2 == 1) & (frame_t % 0.5 > 0.1) & (frame_t % 0.5 < 0.4)
    assert gap[loud].min() > 0.1  # clearly open (IOD units)
    assert np.abs(gap[silent]).max() < 1e-6  # closed = the photo's own mouth
    assert gap.max() <= MAX_GAP + 1e-6  # plausible amplitude
    chin = motion.delta[:, 8, 1]
    assert chin[loud].min() > 0.02  # the jaw drops with the lips


def test_head_sway_small_slow_seeded():
    feats = AudioFeatures(mel=np.zeros((1000, 80), np.float32), prosody=np.zeros((250, 4), np.float32),
                          energy=np.zeros(250, np.float32))
    model = EnergyBaseline()
    a, b = (model.generate(feats, SRC, MotionControls(seed=7)) for _ in range(2))
    c = model.generate(feats, SRC, MotionControls(seed=8))
    assert np.array_equal(a.pose, b.pose) and not np.allclose(a.pose, c.pose)
    assert not a.pose[0].any()  # frame 0 is the photo
    assert 0.005 < np.abs(a.pose[:, 1]).max() < 0.1  # a few degrees at most
    assert np.abs(np.diff(a.pose, axis=0)).max() < 0.01  # slow
    assert not a.delta.any()  # silence: the mouth stays as in the photo
    assert not model.generate(feats, SRC, MotionControls(seed=7, still=True)).pose.any()
    half = model.generate(feats, SRC, MotionControls(seed=7, pose_scale=0.5))
    np.testing.assert_allclose(half.pose, 0.5 * a.pose, atol=1e-7)


def test_lip_scale_and_ablation_refused():
    feats = compute_features(bursts_wav(2.0))
    model = EnergyBaseline()
    full = model.generate(feats, SRC, MotionControls(seed=0))
    half = model.generate(feats, SRC, MotionControls(seed=0, lip_scale=0.5))
    np.testing.assert_allclose(half.delta, 0.5 * full.delta, atol=1e-7)
    with pytest.raises(InputError, match="SDM"):
        model.generate(feats, SRC, MotionControls(ablation="no_pose"))
