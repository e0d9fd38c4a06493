"""Seeded eye blinks on landmark sequences."""

import numpy as np
import pytest

from sdmtalk.face.template import DLIB_MEAN_SHAPE
from sdmtalk.render import add_blinks
from sdmtalk.render.blinks import blink_closure, blink_profile


def eye_aspect_ratio(landmarks):
    """(T,) mean eye aspect ratio of both eyes."""

    def ear(p):
        vertical = np.linalg.norm(p[:, 1] - p[:, 5], axis=-1) + np.linalg.norm(
            p[:, 2] - p[:, 4], axis=-1
        )
        return vertical / (2 * np.linalg.norm(p[:, 0] - p[:, 3], axis=-1))

    return (ear(landmarks[:, 36:42]) + ear(landmarks[:, 42:48])) / 2


@pytest.fixture
def still_face():
    face = np.asarray(DLIB_MEAN_SHAPE, np.float32) * 200 + 50
    return np.repeat(face[None], 25 * 20, 0)  # 20 s at 25 fps


def test_blinks_close_the_eyes_sometimes(still_face):
    out = add_blinks(still_face, seed=3)
    assert out.shape == still_face.shape and out.dtype == np.float32
    ear, ear0 = eye_aspect_ratio(out), eye_aspect_ratio(still_face)[0]
    closed = ear < 0.2 * ear0
    assert closed.any() and closed.mean() < 0.15  # blinks are brief
    assert (ear <= ear0 + 1e-5).all()
    # Only eyelid points move.
    lids = [37, 38, 40, 41, 43, 44, 46, 47]
    others = np.setdiff1d(np.arange(68), lids)
    np.testing.assert_array_equal(out[:, others], still_face[:, others])


def test_blink_rate_and_intervals(still_face):
    closure = blink_closure(len(still_face), seed=7, fps=25, rate_per_min=15)
    shut = closure >= 0.999
    starts = np.flatnonzero(shut[1:] & ~shut[:-1]) + 1
    assert 3 <= len(starts) <= 10  # 20 s at 15 per minute, intervals 2-6 s
    gaps = np.diff(starts) / 25
    assert (gaps >= 2 - 0.1).all() and (gaps <= 6 + 0.1).all()


def test_blinks_are_reproducible_per_seed(still_face):
    a, b = add_blinks(still_face, seed=11), add_blinks(still_face, seed=11)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, add_blinks(still_face, seed=12))


def test_blink_profile_shape():
    t = np.linspace(-0.1, 0.5, 601)
    p = blink_profile(t)
    assert p.max() == pytest.approx(1.0) and p.min() == 0.0
    closing_end = t[np.argmax(p >= 1.0)]
    reopened = t[(p > 0) & (t > closing_end)].max()
    assert 0.05 < closing_end < 0.15 and 0.2 < reopened < 0.35


def test_no_blinks_at_zero_rate_and_bad_shape(still_face):
    np.testing.assert_array_equal(add_blinks(still_face, seed=0, rate_per_min=0), still_face)
    with pytest.raises(ValueError, match=r"\(T, 68, 2\)"):
        add_blinks(still_face[0], seed=0)
