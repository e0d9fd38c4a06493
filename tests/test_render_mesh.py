"""Face mesh triangulation and the piecewise-affine warp, on synthetic data."""

import cv2
import numpy as np
import pytest
from scipy.spatial import Delaunay

from sdmtalk.face.template import DLIB_MEAN_SHAPE
from sdmtalk.render.mesh import (
    INNER_LIPS,
    LIP_TRIANGLES,
    MOUTH_TRIANGLES,
    FaceMesh,
    PiecewiseAffineWarp,
    fit_similarity,
)

SIZE = 200


def face_in_crop(mouth_gap=0.0, degrees=0.0):
    """Mean dlib face (68, 2) in a SIZE crop as the renderer frames it (extent = SIZE / 2),
    mouth closed, then opened by mouth_gap px (lower lip and jaw down), then rotated."""
    mean = np.asarray(DLIB_MEAN_SHAPE, np.float64)
    lm = (mean - mean.mean(0)) / np.ptp(mean, 0).max() * SIZE * 0.5
    mid = (lm[[61, 62, 63]] + lm[[67, 66, 65]]) / 2
    lm[[61, 62, 63]], lm[[67, 66, 65]] = mid, mid
    lm[[55, 56, 57, 58, 59, 65, 66, 67], 1] += mouth_gap
    lm[5:12, 1] += mouth_gap * np.array([0.3, 0.6, 0.9, 1.0, 0.9, 0.6, 0.3])
    th = np.deg2rad(degrees)
    return lm @ np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]]) + SIZE / 2


def areas(points, triangles):
    a, b, c = (points[triangles[:, i]] for i in range(3))
    return 0.5 * ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])


@pytest.mark.parametrize("gap,degrees", [(0.0, 0.0), (6.0, 0.0), (0.0, 20.0), (12.0, -15.0)])
def test_mesh_keeps_the_mouth_a_clean_hole(gap, degrees):
    lm = face_in_crop(gap, degrees)
    mesh = FaceMesh(lm, SIZE, SIZE)
    skin = mesh.skin_triangles
    # No skin triangle touches the inner lips: only the fixed lip/mouth strips do.
    assert not np.isin(skin, INNER_LIPS).any()
    # Skin + lips + mouth tile the crop exactly: no holes, no overlaps.
    pts = mesh.source_points.astype(np.float64)
    total = np.abs(areas(pts, mesh.triangles)).sum()
    assert total == pytest.approx((SIZE - 1) ** 2, rel=1e-6)
    hull = Delaunay(pts).convex_hull
    assert len(hull) == len(mesh.source_points) - len(mesh.source_points[:68]) - len(
        mesh.extra_source
    )  # the convex hull is made of the border anchors only
    # Lip triangles keep their orientation on the real face (a fold would smear lips).
    signs = np.sign(areas(lm, LIP_TRIANGLES))
    assert (signs == signs[0]).all()


def test_mouth_and_lip_triangles_are_fixed_strips():
    assert len(MOUTH_TRIANGLES) == 6 and set(MOUTH_TRIANGLES.ravel()) == set(range(60, 68))
    assert len(LIP_TRIANGLES) == 20 and set(LIP_TRIANGLES.ravel()) == set(range(48, 68))


def test_extra_points_follow_the_head_rigidly():
    lm = face_in_crop(4.0)
    mesh = FaceMesh(lm, SIZE, SIZE)
    rot = fit_similarity(lm, lm)  # identity
    np.testing.assert_allclose(rot, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    moved = lm + [3.0, -2.0]
    points = mesh.points_for(moved)
    n = 68 + len(mesh.extra_source)
    follow = mesh._border_falloff(mesh.extra_source)
    far = follow == 1.0  # away from the crop border: the full head motion
    assert far.sum() >= 5
    np.testing.assert_allclose(points[68:n][far], mesh.extra_source[far] + [3.0, -2.0], atol=1e-4)
    # Near the border they follow less (down to 0 at the margin), never past the crop.
    step = points[68:n] - mesh.extra_source
    np.testing.assert_allclose(step, follow[:, None] * [3.0, -2.0], atol=1e-4)
    np.testing.assert_array_equal(points[n:], mesh.source_points[n:])  # border anchors fixed


def test_piecewise_affine_warp_matches_a_global_affine():
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    image = np.stack([xx, yy, (xx + yy) / 2], -1).astype(np.uint8)  # smooth ramps
    grid = np.stack(np.meshgrid(np.linspace(20, 180, 5), np.linspace(20, 180, 5)), -1)
    src = grid.reshape(-1, 2)
    tris = Delaunay(src).simplices
    affine = np.array([[0.95, 0.1, 6.0], [-0.08, 1.05, -4.0]])
    dst = src @ affine[:, :2].T + affine[:, 2]
    warp = PiecewiseAffineWarp(image, src, tris)
    out = warp.warp(dst)
    expected = cv2.warpAffine(image, affine, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    inside = cv2.erode(
        cv2.fillConvexPoly(
            np.zeros((SIZE, SIZE), np.uint8),
            np.round(cv2.convexHull(dst.astype(np.float32))).astype(np.int32),
            1,
        ),
        np.ones((5, 5), np.uint8),
    ).astype(bool)
    assert inside.sum() > 10000
    assert np.abs(out.astype(int) - expected)[inside].max() <= 1


def test_identity_warp_is_exact():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mesh = FaceMesh(face_in_crop(3.0), SIZE, SIZE)
    warp = PiecewiseAffineWarp(image, mesh.source_points, mesh.triangles)
    np.testing.assert_array_equal(warp.warp(mesh.source_points), image)
