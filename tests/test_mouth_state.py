"""The photo's own mouth (face/mouth_state.py, render/renderer.py rest_mouth_image): an open
photo mouth is closed to rest before any motion, pressed lips part as the speech opens them,
a resting mouth is left alone, and the renderer paints the closed mouth with lip texture."""

import cv2
import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image

from sdmtalk.face import detect_face, from_canonical, to_canonical
from sdmtalk.face.mouth_state import (
    PART_SPAN,
    bundled_basis,
    inner_gap,
    mouth_opening,
    part_pressed_lips,
    rest_mouth,
    sealed_lips,
    teeth_showing,
)
from sdmtalk.render import Renderer
from sdmtalk.render import mouth as mouth_module


@pytest.fixture(scope="module")
def photo():
    image = skimage.data.astronaut()
    return image, detect_face(image).landmarks.astype(np.float32)


def opened(landmarks, gap):
    """Landmarks with the inner-lip gap set to `gap` (canonical units) along the basis."""
    basis = bundled_basis()
    canon, sims = to_canonical(landmarks[None])
    shape = canon[0].astype(np.float64) + (gap - inner_gap(canon[0])) * basis.basis
    return from_canonical(shape[None], sims)[0]


@pytest.fixture(scope="module")
def open_photo(photo):
    """The astronaut rendered with her mouth wide open (teeth and cavity painted), and the
    landmarks dlib finds on that picture: an open-mouthed photo we may ship."""
    image, lm = photo
    renderer = Renderer(image, lm, size=256, crop="full")
    wide = opened(lm, 0.35)
    picture = renderer.render(wide)
    return picture, detect_face(picture).landmarks.astype(np.float32)


def test_the_basis_opens_the_mouth_downward():
    b = bundled_basis()
    assert 0.0 < b.cfg.rest_gap < b.cfg.open_gap < 0.15
    assert b.basis[[65, 66, 67], 1].mean() > 0.3  # the lower lip drops
    assert b.basis[8, 1] > 0.2  # and the chin with it
    assert abs(b.basis[36:48]).max() < 0.05  # the eyes stay


@pytest.mark.parametrize("gap", [0.2, 0.4])
def test_rest_mouth_closes_an_open_mouth_to_rest(photo, gap):
    rest_gap = bundled_basis().cfg.rest_gap
    lm = opened(photo[1], gap)
    rest = rest_mouth(lm)
    assert mouth_opening(rest) == pytest.approx(rest_gap, abs=1e-3)
    moved = np.abs(rest - lm).max(axis=1)
    assert moved[36:48].max() < 0.5  # eyes stay where they are (pixels)


@pytest.mark.parametrize("gap", [-0.02, 0.0, 0.06, 0.08])
def test_a_closed_or_resting_mouth_is_left_as_it_is(photo, gap):
    lm = opened(photo[1], gap)
    np.testing.assert_array_equal(rest_mouth(lm), lm.astype(np.float32))


def _openings(basis, gaps):
    """Motion deltas (T, 68, 2) that open a mouth by each of `gaps` along the basis."""
    return (np.asarray(gaps)[:, None, None] * basis.basis[None]).astype(np.float32)


def test_speech_parts_pressed_lips(photo):
    """Pressed lips (gap 0) stay pressed in a pause and on a closing (bilabial) motion, and
    part by the shortfall from the resting gap as the speech opens the mouth, all of it once
    the opening reaches PART_SPAN resting gaps: loud speech does not leave them shut."""
    basis = bundled_basis()
    rest = basis.cfg.rest_gap
    pressed = opened(photo[1], 0.0)
    wanted = np.array([-0.02, 0.0, rest, PART_SPAN * rest, 0.3])
    asked = _openings(basis, wanted)
    parted = part_pressed_lips(pressed, asked, basis)
    canon = to_canonical(pressed[None])[0][0].astype(np.float64)
    g0 = inner_gap(canon)
    before = np.array([inner_gap(canon + d) for d in asked])
    after = np.array([inner_gap(canon + d) for d in parted])
    assert g0 < 0.01
    np.testing.assert_array_equal(parted[:2], asked[:2])  # pause and closing: as asked
    share = np.minimum((before[2:] - g0) / (PART_SPAN * rest), 1.0)
    # (near crossed lips the gap is not linear along the basis: within 0.006 of the shortfall)
    np.testing.assert_allclose(after[2:] - before[2:], share * (rest - g0), atol=6e-3)
    assert np.abs(parted - _openings(basis, wanted))[:, 36:48].max() < 1e-6  # only the mouth moves


@pytest.mark.parametrize("gap", [None, 0.06, 0.3])
def test_a_resting_or_open_mouth_moves_as_the_speech_says(photo, gap):
    basis = bundled_basis()
    lm = photo[1] if gap is None else opened(photo[1], gap)
    delta = _openings(basis, [0.0, 0.05, 0.1])
    assert part_pressed_lips(rest_mouth(lm), delta, basis) is delta


def test_sealed_lips_meet_with_the_overlap(photo):
    sealed = sealed_lips(opened(photo[1], 0.3), overlap=1.0)
    for a, b in ((61, 67), (62, 66), (63, 65)):
        assert sealed[b, 1] - sealed[a, 1] == pytest.approx(-1.0, abs=0.05)  # lower lip above by 1 px


def test_open_photo_is_seen_open_with_teeth(open_photo):
    image, lm = open_photo
    assert mouth_opening(lm) > 0.2
    assert teeth_showing(image, lm) > 0.05


def test_teeth_of_the_smiling_astronaut_and_none_once_closed(photo):
    image, lm = photo
    assert teeth_showing(image, lm) > 0.2  # her smile shows her teeth
    rest = rest_mouth(lm)
    renderer = Renderer(image, lm, size=256, rest_landmarks=rest)
    assert teeth_showing(renderer.render(rest), renderer.to_crop(rest)) < 0.1


def test_the_rest_frame_closes_the_photo_mouth_with_lip_texture(open_photo):
    """Rendering the rest landmarks of an open photo: the pixels that were the mouth opening
    now look like the lips (not dark cavity, not bright teeth)."""
    image, lm = open_photo
    rest = rest_mouth(lm)
    renderer = Renderer(image, lm, size=256, rest_landmarks=rest)
    frame = renderer.render(rest)
    crop_rest = renderer.to_crop(rest)
    lips = _region(frame, crop_rest[48:60], crop_rest[60:68])
    seam = _region(frame, crop_rest[[60, 61, 62, 63, 64, 65, 66, 67]])
    assert teeth_showing(image, lm) > 0.05 and teeth_showing(frame, crop_rest) < 0.15
    if len(seam):
        assert abs(np.median(seam @ [0.299, 0.587, 0.114]) - np.median(lips @ [0.299, 0.587, 0.114])) < 40


def test_lips_closed_from_an_open_photo_meet_in_a_dark_line(open_photo, monkeypatch):
    """Lips sealed from an open photo show the dark line real closed lips have where they
    meet (darker than the lips on either side), and only while they are closed."""
    image, lm = open_photo
    rest = rest_mouth(lm)
    renderer = Renderer(image, lm, size=256, rest_landmarks=rest)
    crop_rest = renderer.to_crop(rest)
    width = np.linalg.norm(crop_rest[64] - crop_rest[60])

    def luma_across(frame, offset):
        """Mean luma along the lips' meeting line (middle half), `offset` mouth widths below."""
        line = (0.5 * (crop_rest[[61, 62, 63]] + crop_rest[[67, 66, 65]]) + [0, offset * width]).astype(np.float32)
        luma = frame.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
        return float(cv2.remap(luma, line[:, 0:1], line[:, 1:2], cv2.INTER_LINEAR).mean())

    closed = renderer.render(rest)
    seam = luma_across(closed, -0.025)
    assert seam < 0.85 * luma_across(closed, -0.12) and seam < 0.85 * luma_across(closed, 0.12)  # both lips
    wide = opened(lm, 0.3)
    with_seam = renderer.render(wide)
    monkeypatch.setattr(mouth_module, "draw_seam", lambda frame, landmarks, strength: frame)
    assert luma_across(renderer.render(rest), -0.025) > seam + 10  # the line is the seam's
    np.testing.assert_array_equal(renderer.render(wide), with_seam)  # open: no seam


def test_a_closed_photo_renders_as_before():
    """Rest landmarks equal to the photo's (a closed mouth is left as it is): the renderer is
    the one without them, frame for frame."""
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        image = np.asarray(Image.open(f).convert("RGB"))
    lm = detect_face(image).landmarks
    assert np.array_equal(rest_mouth(lm), lm)
    target = opened(lm, 0.2)
    np.testing.assert_array_equal(Renderer(image, lm, rest_landmarks=rest_mouth(lm)).render(target),
                                  Renderer(image, lm).render(target))


def _region(frame, polygon, hole=None):
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    if hole is not None:
        cv2.fillPoly(mask, [np.round(hole).astype(np.int32)], 0)
    return frame[mask > 0].astype(np.float64)


def _bright_rows(frame, crop_lm, lip_luma):
    """Rows of teeth-bright pixels straight below the upper inner lip's middle (62)."""
    x, y = np.round(crop_lm[62]).astype(int)
    column = frame[y:int(np.ceil(crop_lm[66][1])), x - 1:x + 2].astype(np.float64) @ [0.299, 0.587, 0.114]
    return int((column.mean(1) > lip_luma + 15).sum())


def test_the_photo_teeth_come_back_at_their_own_height(photo):
    """A toothy photo: its own teeth show when the mouth opens from rest, under the upper lip,
    as tall at a wide opening as at a small one (not stretched with the opening)."""
    image, lm = photo
    rest = rest_mouth(lm)
    renderer = Renderer(image, lm, size=256, rest_landmarks=rest)
    assert renderer.mouth.teeth is not None
    lip_luma = np.median(_region(renderer.source_crop, renderer.to_crop(rest)[48:60],
                                 renderer.to_crop(rest)[60:68]) @ [0.299, 0.587, 0.114])
    rows = []
    for gap in (0.22, 0.4):
        target = opened(lm, gap)
        rows.append(_bright_rows(renderer.render(target), renderer.to_crop(target), lip_luma))
    assert rows[0] >= 2 and abs(rows[1] - rows[0]) <= 2, rows


def test_generate_starts_from_the_mouth_at_rest(open_photo):
    """Silence on an open-mouthed photo: the video's mouth is closed (at rest), not the
    photo's; the still photo (`static`) keeps the photo's mouth."""
    from sdmtalk.pipeline import TalkingFacePipeline

    image, lm = open_photo
    wav = np.zeros(16000, np.float32)
    for motion, closed in (("energy", True), ("static", False)):
        result = TalkingFacePipeline(motion=motion, quiet=True, blink=False).animate(image, wav)
        gaps = [mouth_opening(x) for x in result.landmarks]
        assert (max(gaps) <= bundled_basis().cfg.open_gap) == closed, (motion, max(gaps))


def test_the_stream_starts_from_the_mouth_at_rest(open_photo, tmp_path):
    """The live stream animates the face at rest as `generate` does: in silence its frames show
    the closed mouth, not the photo's open one."""
    from PIL import Image

    from sdmtalk.motion.types import MotionControls
    from sdmtalk.pipeline import TalkingFacePipeline

    image, lm = open_photo
    path = tmp_path / "open.png"
    Image.fromarray(image).save(path)
    pipe = TalkingFacePipeline(quiet=True, blink=False)
    frames = {}
    stream = pipe.open_stream(path, lambda frame, index: frames.setdefault(index, frame),
                              MotionControls(seed=0, still=True))
    for _ in range(25):
        stream.push(np.zeros(640, np.float32))
    stream.close(timeout=300)
    rest = rest_mouth(lm)
    np.testing.assert_allclose(stream.rest, rest)
    renderer = Renderer(image, lm, size=256, rest_landmarks=rest)
    box = np.round(renderer.to_crop(lm)[48:68]).astype(int)
    (x0, y0), (x1, y1) = box.min(0) - 4, box.max(0) + 4
    last = frames[max(frames)][y0:y1, x0:x1].astype(np.float64)
    closed = renderer.render(rest)[y0:y1, x0:x1].astype(np.float64)
    photo = Renderer(image, lm, size=256).source_crop[y0:y1, x0:x1].astype(np.float64)
    assert np.abs(last - closed).mean() < 0.5 * np.abs(last - photo).mean()


def test_generate_and_the_stream_part_pressed_lips_alike(photo):
    """TalkingFacePipeline.face_landmarks (which generate, the server and the stream put every
    motion through) parts pressed lips with the speech; the photo's own mouth (mouth_at_rest
    off) and the still photo do not."""
    from sdmtalk.motion.types import Motion, apply_motion
    from sdmtalk.pipeline import TalkingFacePipeline

    basis = bundled_basis()
    pressed = opened(photo[1], 0.0)
    motion = Motion(np.zeros((3, 4), np.float32), _openings(basis, [0.0, 0.05, 0.15]))
    plain = apply_motion(pressed, motion)
    parted = TalkingFacePipeline(motion="energy", quiet=True).face_landmarks(pressed, motion)
    gaps = [mouth_opening(x) - mouth_opening(y) for x, y in zip(parted, plain, strict=True)]
    assert gaps[0] == pytest.approx(0.0, abs=1e-6) and 0.01 < gaps[1] < gaps[2]
    for pipe in (TalkingFacePipeline(motion="energy", quiet=True, mouth_at_rest=False),
                 TalkingFacePipeline(motion="static", quiet=True)):
        np.testing.assert_array_equal(pipe.face_landmarks(pressed, motion), plain)
