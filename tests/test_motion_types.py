"""Motion representation: exact round trip, meaning of pose/delta, controls, lip gap."""

import numpy as np
import pytest

from sdmtalk.face.align import Similarity, lip_gap
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.motion.types import (
    INNER_LIP,
    MOUTH,
    Motion,
    MotionControls,
    MotionModel,
    apply_motion,
    motion_from_landmarks,
)

T = CANONICAL_TEMPLATE.astype(np.float64)


def _talking_sequence(rng, frames=50):
    """(frames, 68, 2) pixels: a moving head (random similarities) with a deforming face."""
    shapes = T + rng.normal(0, 0.02, (frames, 68, 2))
    shapes[:, [56, 57, 58, 65, 66, 67], 1] += rng.uniform(0, 0.3, (frames, 1))  # jaw drop
    sims = [
        Similarity(150 * np.exp(rng.normal(0, 0.15)), rng.normal(0, 0.3), *rng.uniform(150, 600, 2))
        for _ in range(frames)
    ]
    return np.stack([s.apply(x) for s, x in zip(sims, shapes, strict=True)]).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_apply_motion_inverts_motion_from_landmarks(seed):
    landmarks = _talking_sequence(np.random.default_rng(seed))
    motion, canonical0, sim0 = motion_from_landmarks(landmarks)
    assert motion.pose.dtype == np.float32 and motion.delta.dtype == np.float32
    assert len(motion) == 50 and canonical0.shape == (68, 2)
    np.testing.assert_allclose(motion.pose[0], 0, atol=1e-7)
    np.testing.assert_allclose(motion.delta[0], 0, atol=1e-7)
    np.testing.assert_allclose(sim0.apply(landmarks[0]), canonical0, atol=1e-5)
    assert np.abs(apply_motion(landmarks[0], motion) - landmarks).max() < 1e-4


def test_pose_is_relative_similarity_in_canonical_units():
    face = Similarity(100.0, 0.0, 300.0, 200.0).apply(T)  # inter-ocular distance 100 px
    moved = [
        face,
        face + [50.0, 0.0],
        Similarity(1.0, 0.2, 0, 0).apply(face - face.mean(0)) + face.mean(0),
        2 * (face - face.mean(0)) + face.mean(0),
    ]
    motion, _, _ = motion_from_landmarks(np.stack(moved))
    np.testing.assert_allclose(motion.pose[1], [0, 0, 0.5, 0], atol=1e-6)  # 50 px = 0.5 IOD
    np.testing.assert_allclose(
        motion.pose[2], [0, 0.2, 0, 0], atol=1e-6
    )  # turned about the face centre
    np.testing.assert_allclose(motion.pose[3], [np.log(2), 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(motion.delta, 0, atol=1e-6)  # rigid motion only


def test_mouth_opening_goes_to_delta_not_pose():
    open_mouth = T.copy()
    open_mouth[[56, 57, 58, 65, 66, 67], 1] += 0.2
    sim = Similarity(80.0, 0.1, 250.0, 260.0)
    motion, _, _ = motion_from_landmarks(np.stack([sim.apply(T), sim.apply(open_mouth)]))
    np.testing.assert_allclose(motion.pose[1], 0, atol=1e-6)
    np.testing.assert_allclose(motion.delta[1][:, 1][[56, 57, 58, 65, 66, 67]], 0.2, atol=1e-5)
    assert lip_gap(motion.delta[1] + T) - lip_gap(T) == pytest.approx(0.2, abs=1e-4)


def test_motion_transfers_to_another_face():
    rng = np.random.default_rng(3)
    # Driving a similarity-transformed source reproduces the transformed sequence.
    landmarks = _talking_sequence(rng)
    motion, _, _ = motion_from_landmarks(landmarks)
    other = Similarity(0.5, -0.3, 40.0, 90.0)
    np.testing.assert_allclose(
        apply_motion(other.apply(landmarks[0]), motion), other.apply(landmarks), atol=1e-3
    )


def test_still_motion_repeats_the_source():
    rng = np.random.default_rng(4)
    source = _talking_sequence(rng, frames=1)[0]
    out = apply_motion(source, Motion.still(5))
    assert out.shape == (5, 68, 2)
    np.testing.assert_allclose(out, np.broadcast_to(source, out.shape), atol=1e-4)


def test_nan_frames_and_bad_inputs():
    rng = np.random.default_rng(5)
    landmarks = _talking_sequence(rng, frames=5)
    landmarks[3] = np.nan
    motion, _, _ = motion_from_landmarks(landmarks)
    assert np.isnan(motion.delta[3]).all() and np.isfinite(motion.delta[[0, 1, 2, 4]]).all()
    landmarks[0] = np.nan
    with pytest.raises(ValueError, match="first frame"):
        motion_from_landmarks(landmarks)
    with pytest.raises(ValueError, match=r"\(T, 68, 2\)"):
        motion_from_landmarks(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="delta"):
        Motion(np.zeros((4, 4)), np.zeros((5, 68, 2)))
    with pytest.raises(ValueError):
        apply_motion(np.zeros((5, 68, 2)), Motion.still(5))


def test_lip_gap_shapes_and_units():
    assert MOUTH == slice(48, 68) and INNER_LIP == slice(60, 68)
    closed = T.copy()
    closed[[65, 66, 67]] = closed[[63, 62, 61]]  # lower inner lip onto the upper one
    assert lip_gap(closed) == pytest.approx(0.0, abs=1e-9)
    opened = closed.copy()
    opened[[65, 66, 67], 1] += [0.1, 0.2, 0.3]
    assert lip_gap(opened) == pytest.approx(0.2)
    batch = np.stack([closed, opened, 10 * opened])
    np.testing.assert_allclose(lip_gap(batch), [0.0, 0.2, 2.0], atol=1e-9)
    assert lip_gap(batch[None]).shape == (1, 3)


def test_motion_controls_defaults_and_validation():
    c = MotionControls()
    assert (c.seed, c.pose_scale, c.lip_scale, c.rhythm_scale, c.still) == (0, 1.0, 1.0, 1.0, False)
    assert c.diffusion_steps == "auto" and c.ablation is None
    assert MotionControls(ablation="no-pose").ablation == "no_pose"
    assert MotionControls(diffusion_steps=0).diffusion_steps == 0
    for bad in (
        dict(ablation="no_audio"),
        dict(diffusion_steps=-1),
        dict(diffusion_steps="deep"),
        dict(diffusion_steps=True),
        dict(pose_scale=-1.0),
        dict(lip_scale=float("nan")),
    ):
        with pytest.raises(ValueError):
            MotionControls(**bad)


def test_motion_model_protocol():
    class Still:
        def generate(self, features, source_canonical, controls):
            return Motion.still(len(features))

    assert isinstance(Still(), MotionModel)
    assert not isinstance(object(), MotionModel)
    assert len(Still().generate([0] * 7, T, MotionControls())) == 7
