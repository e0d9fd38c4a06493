"""Renderer on a real face photo (skimage's astronaut, landmarks from sdmtalk.face)."""

import cv2
import numpy as np
import pytest
import skimage.data

from sdmtalk.face import detect_face
from sdmtalk.face.mouth_state import rest_mouth
from sdmtalk.render import Renderer
from sdmtalk.render.mouth import MouthFiller, cavity_weight, mouth_opening

# Points that open the mouth: jaw (weighted toward the chin) and the whole lower lip.
_JAW_WEIGHTS = {5: 0.3, 6: 0.6, 7: 0.9, 8: 1.0, 9: 0.9, 10: 0.6, 11: 0.3}
_LOWER_LIP = (55, 56, 57, 58, 59, 65, 66, 67)


@pytest.fixture(scope="module")
def photo():
    image = skimage.data.astronaut()
    return image, detect_face(image).landmarks.astype(np.float32)


@pytest.fixture(scope="module")
def renderer(photo):
    return Renderer(*photo, size=256)


def open_jaw(landmarks, pixels):
    out = landmarks.copy()
    for i, w in _JAW_WEIGHTS.items():
        out[i, 1] += w * pixels
    out[list(_LOWER_LIP), 1] += pixels
    return out


def similarity(landmarks, degrees=0.0, shift=(0.0, 0.0), scale=1.0):
    th = np.deg2rad(degrees)
    rot = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    centre = landmarks.mean(0)
    return ((landmarks - centre) @ rot.T + centre + shift).astype(np.float32)


def polygon_mask(shape, points):
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def luma(pixels):
    return pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_source_landmarks_give_the_source_crop(renderer, photo):
    frame = renderer.render(photo[1])
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    assert np.abs(frame.astype(int) - renderer.source_crop).mean() < 0.5


def test_crop_is_centred_on_the_face(renderer, photo):
    x0, y0, side = renderer.box
    lm = photo[1]
    extent = (lm.max(0) - lm.min(0)).max()
    assert 1.8 * extent <= side <= 2.2 * extent
    crop_lm = renderer.to_crop(lm)
    assert (crop_lm > 0.1 * 256).all() and (crop_lm < 0.9 * 256).all()
    # The crop really shows the photo there: crop pixel at the nose tip ~ photo pixel.
    nx, ny = np.round(crop_lm[30]).astype(int)
    px, py = np.round(lm[30]).astype(int)
    assert np.abs(renderer.source_crop[ny, nx].astype(int) - photo[0][py, px]).max() < 30


def test_open_jaw_changes_the_mouth_and_not_far_pixels(renderer, photo):
    lm = photo[1]
    frame = renderer.render(open_jaw(lm, 12))
    diff = np.abs(frame.astype(int) - renderer.source_crop).sum(-1)
    crop_lm = renderer.to_crop(lm)
    mouth = polygon_mask(frame.shape, crop_lm[48:60])
    assert diff[mouth].mean() > 20
    # Far from the face (outside the face hull grown 1.6x) nothing moves, bit for bit.
    hull = cv2.convexHull(crop_lm.astype(np.float32))[:, 0]
    centre = crop_lm.mean(0)
    near = polygon_mask(frame.shape, centre + 1.6 * (hull - centre))
    assert (~near).sum() > 0.3 * near.size
    assert (diff[~near] == 0).all()


def test_crop_border_stays_fixed_under_head_motion(renderer, photo):
    frame = renderer.render(similarity(open_jaw(photo[1], 6), degrees=7, shift=(5, -3)))
    src = renderer.source_crop
    assert np.abs(frame.astype(int) - src).mean() > 3  # the face did move
    for a, b in (
        (frame[0], src[0]),
        (frame[-1], src[-1]),
        (frame[:, 0], src[:, 0]),
        (frame[:, -1], src[:, -1]),
    ):
        np.testing.assert_array_equal(a, b)


def test_face_follows_moved_landmarks(renderer, photo):
    lm = photo[1]
    shift = np.array([9.0, 6.0])  # photo pixels
    moved = similarity(lm, degrees=4, shift=shift)
    frame = renderer.render(moved)
    src = renderer.source_crop

    def patch(image, point, r=6):
        x, y = np.round(point).astype(int)
        return image[y - r : y + r + 1, x - r : x + r + 1].astype(np.float64)

    nose_src, nose_dst = renderer.to_crop(lm)[30], renderer.to_crop(moved)[30]
    followed = np.abs(patch(frame, nose_dst) - patch(src, nose_src)).mean()
    stayed = np.abs(patch(frame, nose_src) - patch(src, nose_src)).mean()
    assert followed < 6 and stayed > 2 * followed


def test_mouth_interior_is_darker_than_the_lips(renderer, photo):
    lm = photo[1]
    target = open_jaw(lm, 12)
    assert cavity_weight(mouth_opening(lm), mouth_opening(target)) > 0.5
    frame = renderer.render(target)
    crop_lm = renderer.to_crop(target)
    inner = polygon_mask(frame.shape, crop_lm[60:68])
    inner = cv2.erode(inner.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    lips = polygon_mask(frame.shape, crop_lm[48:60]) & ~polygon_mask(frame.shape, crop_lm[60:68])
    assert inner.sum() > 100
    assert luma(frame[inner]).mean() < 0.75 * luma(frame[lips]).mean()
    # Reddish dark cavity, not grey: red dominates blue in the deepest part.
    deep = frame[inner][luma(frame[inner]) < np.percentile(luma(frame[inner]), 30)]
    assert deep[:, 0].mean() > deep[:, 2].mean()


def test_cavity_only_where_the_mouth_opens_wider():
    assert cavity_weight(0.2, 0.2) == 0.0 and cavity_weight(0.2, 0.1) == 0.0
    assert cavity_weight(0.0, 0.3) == 1.0
    assert 0.0 < cavity_weight(0.2, 0.25) < 1.0


def test_sealed_photo_lips_part_into_a_softer_slit(renderer, photo):
    """A photo's lips sealed at rest part into a lighter slit than a photo's own closed mouth
    (no black line between barely parted lips); the slit is still darker than the lips."""
    crop, lm = renderer.source_crop, rest_mouth(renderer.to_crop(photo[1]))  # closed lips
    parted = open_jaw(lm, 4)
    own, sealed = MouthFiller(crop, lm), MouthFiller(crop, lm, sealed=True)
    inner = cv2.erode(polygon_mask(crop.shape, parted[60:68]).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    lips = polygon_mask(crop.shape, parted[48:60]) & ~polygon_mask(crop.shape, parted[60:68])
    assert inner.sum() > 20
    dark_own = luma(own.apply(crop.copy(), parted)[inner]).mean()
    dark_sealed = luma(sealed.apply(crop.copy(), parted)[inner]).mean()
    assert dark_own < dark_sealed < luma(crop[lips]).mean()


def test_full_crop_pastes_back_without_touching_far_pixels(photo):
    image, lm = photo
    odd = cv2.copyMakeBorder(image, 0, 3, 0, 5, cv2.BORDER_REFLECT)  # 515 x 517
    renderer = Renderer(odd, lm, crop="full")
    frame = renderer.render(similarity(open_jaw(lm, 10), degrees=5, shift=(4, 2)))
    assert frame.shape == (514, 516, 3)
    x0, y0, side = renderer.box
    outside = np.ones(frame.shape[:2], bool)
    outside[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side] = False
    np.testing.assert_array_equal(frame[outside], odd[:514, :516][outside])
    assert np.abs(frame.astype(int) - odd[:514, :516])[~outside].mean() > 2
    # No seam: the box outline in the photo keeps the photo's pixels.
    ring = np.zeros_like(outside)
    ring[y0 - 1 : y0 + side + 1, x0 - 1 : x0 + side + 1] = True
    ring[y0 + 1 : y0 + side - 1, x0 + 1 : x0 + side - 1] = False
    np.testing.assert_array_equal(frame[ring], odd[:514, :516][ring])


def test_render_sequence_and_progress(renderer, photo):
    lm = photo[1]
    seq = np.stack([open_jaw(lm, p) for p in (0, 4, 8)])
    calls = []
    frames = list(renderer.render_sequence(seq, progress=lambda d, t: calls.append((d, t))))
    assert len(frames) == 3 and calls == [(1, 3), (2, 3), (3, 3)]
    np.testing.assert_array_equal(frames[2], renderer.render(seq[2]))


def test_size_512(photo):
    renderer = Renderer(*photo, size=512)
    frame = renderer.render(open_jaw(photo[1], 8))
    assert frame.shape == (512, 512, 3)


def test_bad_arguments_are_rejected(photo):
    image, lm = photo
    with pytest.raises(ValueError, match="crop"):
        Renderer(image, lm, crop="head")
    with pytest.raises(ValueError, match="uint8"):
        Renderer(image.astype(np.float32), lm)
    with pytest.raises(ValueError, match="source_landmarks"):
        Renderer(image, lm[:60])
    renderer = Renderer(image, lm, size=64)
    with pytest.raises(ValueError, match="landmarks"):
        renderer.render(np.full((68, 2), np.nan))
    with pytest.raises(ValueError, match=r"\(T, 68, 2\)"):
        list(renderer.render_sequence(lm))


@pytest.mark.parametrize("crop", ["face", "full"])
def test_face_at_the_photo_edge_keeps_the_box_inside(photo, crop):
    image, lm = photo
    cut = np.ascontiguousarray(image[70:301, 160:401])  # face touches the top-left edge
    renderer = Renderer(cut, lm - [160, 70], size=128, crop=crop)
    x0, y0, side = renderer.box
    assert x0 == 0 and y0 == 0 and side <= 230  # shifted and shrunk into the 230 x 240 photo
    np.testing.assert_array_equal(
        renderer.source_crop[0],
        cv2.resize(
            cut[:side, :side],
            (128, 128) if crop == "face" else (side, side),
            interpolation=cv2.INTER_AREA,
        )[0],
    )
    frame = renderer.render(open_jaw(lm - [160, 70], 8))
    expected = (128, 128, 3) if crop == "face" else (230, 240, 3)
    assert frame.shape == expected
    assert np.abs(frame.astype(int) - renderer.render(lm - [160, 70])).mean() > 0.5
