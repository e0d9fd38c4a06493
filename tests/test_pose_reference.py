"""--pose-reference: a video's head motion style scales the calibrated pose gains."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_data_media import make_clip, render_frames, speech, write_video

from sdmtalk.audio import compute_features
from sdmtalk.errors import InputError
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.motion.pose_gain import apply_pose_gain, pose_band_stats, reference_style
from sdmtalk.motion.pose_reference import PoseReference, pose_reference_from_video
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import load_motion_model


def sway(amplitude: float, seconds: float = 3.0, fps: float = 25.0) -> np.ndarray:
    """(T, 3) (s, tx, ty) of a face swaying sideways and nodding with `amplitude` px."""
    t = np.arange(int(seconds * fps)) / fps
    tx = 32 + amplitude * np.sin(2 * np.pi * 0.7 * t)
    ty = 16 + 0.5 * amplitude * np.sin(2 * np.pi * 1.3 * t + 1.0)
    return np.stack([np.ones_like(t), tx, ty], 1)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    return {name: make_clip(d / f"{name}.mp4", seconds=3.0, motion=sway(amp))[0]
            for name, amp in (("calm", 1.5), ("lively", 10.0))}


def test_a_livelier_video_gives_a_livelier_style(references):
    calm, lively = (pose_reference_from_video(references[n]) for n in ("calm", "lively"))
    assert calm.valid.mean() > 0.9 and lively.valid.mean() > 0.9
    tx = 2  # the sideways sway shows in tx, in both bands
    assert (lively.band_stats(8.0)[:, tx] > 3 * calm.band_stats(8.0)[:, tx]).all()
    cfg = dataclasses.replace(SDMConfig.tiny(), pose_band=8.0,
                              pose_target=tuple(np.ravel(calm.band_stats(8.0)) + 1e-6))
    np.testing.assert_allclose(reference_style(cfg, calm)[:, 2:], 1.0, atol=1e-3)
    assert (reference_style(cfg, lively)[:, tx] > 3).all()


def test_style_multiplies_the_gains():
    rng = np.random.default_rng(0)
    pose = np.cumsum(rng.normal(0, 0.01, (200, 4)), 0)
    cfg = dataclasses.replace(SDMConfig.tiny(), pose_band=8.0, pose_gain=(1.5,) * 4, pose_gain_slow=(2.0,) * 4)
    style = np.array([[2.0, 1.0, 0.5, 1.0], [1.0, 3.0, 1.0, 0.25]])
    styled, _, _ = apply_pose_gain(pose, cfg, style=style)
    direct, _, _ = apply_pose_gain(pose, dataclasses.replace(
        cfg, pose_gain_slow=tuple(2.0 * style[0]), pose_gain=tuple(1.5 * style[1])))
    np.testing.assert_allclose(styled, direct, atol=1e-6)


def test_band_stats_skip_frames_without_a_face():
    rng = np.random.default_rng(1)
    pose = np.cumsum(rng.normal(0, 0.01, (300, 4)), 0)
    holed = pose.copy()
    holed[100:110] = np.nan
    valid = np.isfinite(holed).all(1)
    stats = pose_band_stats(holed, valid, 8.0)
    assert np.isfinite(stats).all()
    np.testing.assert_allclose(stats, pose_band_stats(pose, valid, 8.0), rtol=0.35)


def test_bad_references_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        pose_reference_from_video(tmp_path / "missing.mp4")
    blank = write_video(tmp_path / "blank.mp4", np.full((60, 288, 320, 3), 90, np.uint8), 25.0, None)
    with pytest.raises(InputError, match="blank.mp4.*no face"):
        pose_reference_from_video(blank)
    short = write_video(tmp_path / "short.mp4", render_frames(sway(4.0, seconds=1.0)), 25.0, None)
    with pytest.raises(InputError, match=r"short.mp4.*needs 2 s or more"):
        pose_reference_from_video(short)
    with pytest.raises(InputError, match="MotionControls|PoseReference"):
        MotionControls(pose_reference="video.mp4")
    reference = PoseReference(np.zeros((60, 4)), "ref.mp4")
    with pytest.raises(InputError, match="ref.mp4: these weights have no pose_target"):
        reference_style(SDMConfig.tiny(), reference)


def test_generate_with_a_pose_reference(references, tmp_path):
    """The bundled model, calm against lively reference: the lively head moves more;
    the same seed and reference give the same motion."""
    model = load_motion_model("sdm")
    feats = compute_features(speech()[: 16000 * 3], phonemes=model.needs_phonemes)
    stds = {}
    for name, path in references.items():
        controls = MotionControls(seed=3, pose_reference=pose_reference_from_video(path))
        pose = model.generate(feats, CANONICAL_TEMPLATE, controls).pose
        again = model.generate(feats, CANONICAL_TEMPLATE, controls).pose
        np.testing.assert_array_equal(pose, again)
        stds[name] = pose[:, 2].std()
    assert stds["lively"] > 2 * stds["calm"]
