"""Canonical template and similarity alignment: invariants and exact inverses."""

import numpy as np
import pytest

from sdmtalk.face.align import (
    ALIGN_WEIGHTS,
    Similarity,
    fit_similarity,
    from_canonical,
    interocular_distance,
    sim_apply,
    sim_compose,
    sim_inverse,
    to_canonical,
    umeyama,
)
from sdmtalk.face.detect import model_path
from sdmtalk.face.template import (
    CANONICAL_TEMPLATE,
    DLIB_MEAN_SHAPE,
    FLIP_PERMUTATION,
    mirror_shape,
    read_dlib_mean_shape,
)

T = CANONICAL_TEMPLATE.astype(np.float64)


def _random_sim(rng, scale=100.0, shift=300.0):
    return Similarity(
        scale * np.exp(rng.normal(0, 0.2)),
        rng.uniform(-np.pi, np.pi),
        *rng.uniform(-shift, shift, 2),
    )


def _sequence(rng, frames=30, noise=0.03):
    """(frames, 68, 2) pixel landmarks: the template, deformed and moved around ~500 px."""
    shapes = T + rng.normal(0, noise, (frames, 68, 2))
    sims = [
        Similarity(120 * np.exp(rng.normal(0, 0.1)), rng.normal(0, 0.3), *rng.uniform(200, 500, 2))
        for _ in range(frames)
    ]
    return np.stack([s.apply(x) for s, x in zip(sims, shapes, strict=True)]).astype(np.float32)


def test_template_matches_the_dlib_model_it_came_from():
    parsed = read_dlib_mean_shape(model_path("shape_predictor_68_face_landmarks.dat"))
    np.testing.assert_allclose(parsed, DLIB_MEAN_SHAPE, atol=1e-6)


def test_template_is_centred_unit_iod_symmetric_upright():
    assert CANONICAL_TEMPLATE.shape == (68, 2) and CANONICAL_TEMPLATE.dtype == np.float32
    np.testing.assert_allclose(T.mean(axis=0), 0, atol=1e-6)
    assert interocular_distance(T) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(mirror_shape(T), T, atol=1e-6)
    assert T[36, 1] == pytest.approx(T[45, 1], abs=1e-6)  # eye line horizontal
    assert T[19, 1] < T[37, 1] < T[30, 1] < T[51, 1] < T[57, 1] < T[8, 1]  # y points down
    assert sorted(FLIP_PERMUTATION) == list(range(68))
    np.testing.assert_array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(68))


def test_similarity_apply_inverse_compose():
    rng = np.random.default_rng(0)
    a, b = _random_sim(rng), _random_sim(rng)
    pts = rng.normal(0, 50, (68, 2))
    np.testing.assert_allclose(a.inverse().apply(a.apply(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(a.compose(b).apply(pts), a.apply(b.apply(pts)), atol=1e-8)
    np.testing.assert_allclose(Similarity.from_vector(a.to_vector()).to_vector(), a.to_vector())
    m = a.matrix()
    np.testing.assert_allclose(pts @ m[:, :2].T + m[:, 2], a.apply(pts), atol=1e-9)
    assert a.to_vector()[0] == pytest.approx(np.log(a.scale))
    with pytest.raises(ValueError):
        Similarity(0.0)


def test_batch_functions_match_the_class():
    rng = np.random.default_rng(1)
    sims = [_random_sim(rng) for _ in range(5)]
    vecs = np.stack([s.to_vector() for s in sims])
    pts = rng.normal(0, 1, (5, 68, 2))
    np.testing.assert_allclose(
        sim_apply(vecs, pts), np.stack([s.apply(p) for s, p in zip(sims, pts, strict=True)])
    )
    np.testing.assert_allclose(sim_inverse(vecs), np.stack([s.inverse().to_vector() for s in sims]))
    composed = sim_compose(vecs, vecs[::-1])
    expected = np.stack([a.compose(b).to_vector() for a, b in zip(sims, sims[::-1], strict=True)])
    np.testing.assert_allclose(composed, expected, atol=1e-12)


def test_umeyama_recovers_an_exact_similarity():
    rng = np.random.default_rng(2)
    truth = _random_sim(rng)
    got = umeyama(T, truth.apply(T))
    np.testing.assert_allclose(got.to_vector(), truth.to_vector(), atol=1e-9)


def test_umeyama_is_the_least_squares_similarity():
    rng = np.random.default_rng(3)
    # Independent check: x' = a x - b y + tx, y' = b x + a y + ty is linear in (a, b, tx, ty).
    src, dst = rng.normal(0, 1, (68, 2)), rng.normal(0, 1, (68, 2))
    rows_x = np.stack([src[:, 0], -src[:, 1], np.ones(68), np.zeros(68)], axis=1)
    rows_y = np.stack([src[:, 1], src[:, 0], np.zeros(68), np.ones(68)], axis=1)
    coef, *_ = np.linalg.lstsq(
        np.vstack([rows_x, rows_y]), np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None
    )
    got = umeyama(src, dst)
    assert got.scale == pytest.approx(np.hypot(coef[0], coef[1]))
    assert got.angle == pytest.approx(np.arctan2(coef[1], coef[0]))
    assert (got.tx, got.ty) == pytest.approx((coef[2], coef[3]))


def test_umeyama_never_reflects():
    mirrored = T * [-1, 1]  # a reflection is not a similarity: the fit must be a rotation
    got = umeyama(T, mirrored)
    assert got.scale < 1.0  # the best rotation cannot match a mirror image at full scale
    assert np.linalg.det(got.matrix()[:, :2]) > 0


def test_weights_ignore_zero_weight_points():
    rng = np.random.default_rng(4)
    truth = _random_sim(rng)
    dst = truth.apply(T)
    dst[48:68] += rng.normal(0, 20, (20, 2))  # wild mouth: no weight in ALIGN_WEIGHTS
    np.testing.assert_allclose(
        umeyama(T, dst, ALIGN_WEIGHTS).to_vector(), truth.to_vector(), atol=1e-9
    )


def test_to_canonical_roundtrip_is_exact():
    rng = np.random.default_rng(5)
    landmarks = _sequence(rng)
    canonical, sims = to_canonical(landmarks)
    assert (
        canonical.shape == (30, 68, 2) and canonical.dtype == np.float32 and sims.shape == (30, 4)
    )
    back = from_canonical(canonical, sims)
    assert back.dtype == np.float32
    assert np.abs(back - landmarks).max() < 1e-4
    single, sim = to_canonical(landmarks[3])
    np.testing.assert_allclose(single, canonical[3], atol=1e-6)
    np.testing.assert_allclose(sim, sims[3], atol=1e-12)


def test_canonical_removes_pose_and_keeps_the_mouth():
    rng = np.random.default_rng(6)
    shape = T.copy()
    shape[[56, 57, 58, 65, 66, 67]] += [0, 0.2]  # open the mouth
    truth = _random_sim(rng)
    canonical, sims = to_canonical(truth.apply(shape))
    np.testing.assert_allclose(canonical, shape, atol=1e-5)  # the rigid points anchor it
    np.testing.assert_allclose(sims, truth.inverse().to_vector(), atol=1e-9)


def test_degenerate_landmarks_raise():
    with pytest.raises(ValueError, match="one point"):
        fit_similarity(np.ones((68, 2)), T)


def test_nan_frames_stay_nan():
    rng = np.random.default_rng(7)
    landmarks = _sequence(rng, frames=4)
    landmarks[2] = np.nan
    canonical, sims = to_canonical(landmarks)
    assert np.isnan(canonical[2]).all() and np.isfinite(canonical[[0, 1, 3]]).all()
    assert np.isfinite(sims[[0, 1, 3]]).all()
