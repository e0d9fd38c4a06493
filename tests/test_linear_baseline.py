"""The ridge (linear) motion baseline: feature matrix, a known linear relation learnt from
tiny synthetic clips, Motion output, weights round trip and the pipeline's `linear` motion."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sdmtalk.errors import InputError
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.face.align import lip_gap
from sdmtalk.motion import linear as linear_module
from sdmtalk.motion.linear import (
    BUNDLED_LINEAR_WEIGHTS,
    LinearBaseline,
    LinearConfig,
    speech_feature_matrix,
)
from sdmtalk.motion.types import MotionControls, MotionModel
from sdmtalk.train.linear import clip_rows, resting_face, train_linear


def synthetic_clip(seed: int, frames: int = 100):
    """Mouth opening = a band's log-mel energy one frame later (a linear, causal relation)."""
    rng = np.random.default_rng(seed)
    env = np.convolve(rng.random(frames + 8), np.hanning(5) / 2.5, mode="same")[4:-4]
    mel = rng.normal(0, 0.2, (4 * frames, 80)).astype(np.float32) - 4
    mel[:, 20:30] += 2 * np.repeat(env, 4)[:, None]
    opening = np.concatenate([[env[0]], env[:-1]])  # frame t shows the sound of t - 1
    canonical = np.repeat(CANONICAL_TEMPLATE[None].astype(np.float64), frames, 0)
    canonical[:, 65:68, 1] += 0.2 * opening[:, None]
    canonical[:, 48:68] += rng.normal(0, 0.002, (frames, 20, 2))
    return mel, canonical.astype(np.float32)


CFG = LinearConfig(context=2, pool_mel=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rows = [clip_rows(f"c{i}", f"s{i % 5}", *synthetic_clip(i), np.ones(100), CFG) for i in range(20)]
    val = [clip_rows(f"v{i}", f"v{i}", *synthetic_clip(50 + i), np.ones(100), CFG) for i in range(4)]
    path, results = train_linear(None, tmp_path_factory.mktemp("lin"), CFG, quiet=True,
                                 train_clips=rows, val_clips=val)
    return path, results


def test_feature_matrix_shapes_and_context():
    mel = np.arange(4 * 6 * 80, dtype=np.float32).reshape(24, 80)
    x = speech_feature_matrix(SimpleNamespace(mel=mel), context=1, pool_mel=False)
    assert x.shape == (6, 3 * 320)
    assert np.allclose(x[2, 320:640], x[3, :320] * 0 + x[2, 320:640])  # centre block is frame 2
    assert np.allclose(x[0, :320], x[0, 320:640])  # edge frame repeated
    assert np.allclose(x[2, 640:960], x[3, 320:640])
    extra = np.ones((6, 3), np.float32)
    assert speech_feature_matrix(mel, 1, True, extra).shape == (6, 3 * 83)
    assert CFG.feature_dims() == 5 * 80


def test_ridge_learns_a_known_relation(trained):
    path, results = trained
    model = LinearBaseline.load(path)
    assert max(r["lip_r"] for r in results.values()) > 0.9
    mel, canon = synthetic_clip(99)
    motion = model.generate(SimpleNamespace(mel=mel), canon[0], MotionControls())
    assert isinstance(model, MotionModel)
    assert motion.delta.shape == (100, 68, 2) and np.allclose(motion.pose, 0)
    assert np.allclose(motion.delta[0], 0)
    r = np.corrcoef(lip_gap(canon[0] + motion.delta), lip_gap(canon))[0, 1]
    assert r > 0.9
    wide = model.generate(SimpleNamespace(mel=mel), canon[0], MotionControls(lip_scale=2.0))
    assert np.allclose(wide.delta, 2 * motion.delta, atol=1e-6)
    with pytest.raises(InputError, match="SDM model only"):
        model.generate(SimpleNamespace(mel=mel), canon[0], MotionControls(ablation="no_pose"))


def test_long_audio_is_predicted_in_blocks_with_the_same_numbers(trained, monkeypatch):
    """Ten minutes of windows would take ~0.8 GB at once: blocks of rows give the same shape."""
    model = LinearBaseline.load(trained[0])
    mel = synthetic_clip(7, frames=100)[0]
    x = speech_feature_matrix(mel, CFG.context, CFG.pool_mel)
    whole = (((x - model.x_mean) / model.x_std) @ model.weight + model.bias).reshape(-1, 68, 2)
    monkeypatch.setattr(linear_module, "PREDICT_ROWS", 16)  # 7 blocks, the last one short
    np.testing.assert_allclose(model.predict_shape(SimpleNamespace(mel=mel)), whole, atol=1e-6)


def test_weights_kind_is_checked(trained, tmp_path):
    from sdmtalk.sync.expert import SyncExpertConfig, build_expert, save_expert

    other = save_expert(build_expert(SyncExpertConfig(hidden=8, embed=4)), tmp_path / "sync.safetensors")
    with pytest.raises(InputError, match="no linear baseline"):
        LinearBaseline.load(other)
    with pytest.raises(InputError, match="not found"):
        LinearBaseline.load(tmp_path / "missing.safetensors")


def test_pipeline_linear_motion(trained):
    from sdmtalk.pipeline import load_motion_model

    if not BUNDLED_LINEAR_WEIGHTS.is_file():
        pytest.skip("linear baseline weights are not shipped yet")
    model = load_motion_model("linear")
    mel, canon = synthetic_clip(3)
    assert model.needs_phonemes  # the shipped baseline reads the same front-end as SDM
    with pytest.raises(ValueError, match="phonemes=True"):
        model.generate(SimpleNamespace(mel=mel, phonemes=None), canon[0], MotionControls())
    post = np.random.default_rng(0).dirichlet(np.ones(191), size=100).astype(np.float32)
    motion = model.generate(SimpleNamespace(mel=mel, phonemes=post), canon[0], MotionControls())
    assert motion.delta.shape == (100, 68, 2)


def test_the_photo_is_the_resting_face(tmp_path):
    """With speech marks the fit stores the resting face (median target over frames without
    speech) and generate takes the photo for it, as the SDM does: frame 0 no longer has to be
    a closed mouth. Weights without one keep the old frame-0 reference."""

    def rows(i):
        mel, canon = synthetic_clip(i)
        speech = (np.arange(100) % 40 >= 10).astype(np.uint8)  # 10 quiet frames in every 40
        return clip_rows(f"c{i}", f"s{i % 5}", mel, canon, np.ones(100), CFG, speech=speech)

    train = [rows(i) for i in range(20)]
    assert resting_face(train[:1]) is None  # 30 quiet frames are too few to call a face at rest
    rest = resting_face(train)
    quiet = np.concatenate([c.y[c.quiet] for c in train])
    assert rest.shape == (136,) and np.allclose(rest, np.median(quiet, 0))
    path, _ = train_linear(None, tmp_path, CFG, quiet=True, train_clips=train, val_clips=[rows(60)])
    model = LinearBaseline.load(path)
    assert np.allclose(model.rest, rest)
    mel, canon = synthetic_clip(99)
    feats = SimpleNamespace(mel=mel)
    motion = model.generate(feats, canon[0], MotionControls())
    assert np.allclose(motion.delta, model.predict_shape(feats) - rest.reshape(1, 68, 2), atol=1e-6)
    old = LinearBaseline(model.cfg, model.weight, model.bias, model.x_mean, model.x_std)
    assert np.allclose(old.generate(feats, canon[0], MotionControls()).delta[0], 0)


def test_loaded_weights_do_not_follow_the_file(trained, tmp_path):
    """safetensors maps the file it reads: a baseline already loaded keeps its weights when
    new ones are copied over the file (as the model card's `cp` does), instead of reading
    whatever bytes now lie there."""
    import shutil

    path, _ = trained
    copy = tmp_path / "linear_baseline.safetensors"
    shutil.copy(path, copy)
    model = LinearBaseline.load(copy)
    before = model.weight.copy()
    with open(copy, "r+b") as f:  # overwrite the same file in place, as cp does
        f.seek(-4096, 2)
        f.write(b"\x7f" * 4096)
    assert np.array_equal(model.weight, before)
