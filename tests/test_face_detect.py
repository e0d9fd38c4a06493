"""detect_face on the public-domain astronaut photo and on variants of it."""

import cv2
import dlib
import numpy as np
import pytest
from PIL import Image
from skimage import data

from sdmtalk.assets import HOG_FACE_DETECTOR
from sdmtalk.errors import InputError, NoFaceError
from sdmtalk.face.detect import (
    box_from_landmarks,
    detect_face,
    hog_detector,
    predict_landmarks,
    shape_predictor,
    shape_residual,
    to_gray,
)
from sdmtalk.face.image import load_image


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def reference(astronaut):
    return detect_face(astronaut)


def _mean_error(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1).mean())


def test_astronaut_landmarks_are_a_face(reference):
    lm = reference.landmarks
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    assert reference.num_faces == 1 and reference.index == 0 and reference.detector == "hog"
    x0, y0, x1, y1 = reference.box
    assert 60 < x1 - x0 < 120  # her face is ~90 px wide in the 512 px photo
    margin = 0.25 * (x1 - x0)
    assert (lm[:, 0] > x0 - margin).all() and (lm[:, 0] < x1 + margin).all()
    assert (lm[:, 1] > y0 - margin).all() and (lm[:, 1] < y1 + margin).all()
    inner = lm[17:]  # brows, eyes, nose, mouth: inside the box itself
    assert (inner[:, 0] > x0).all() and (inner[:, 0] < x1).all() and (inner[:, 1] > y0).all()
    eyes, nose, mouth, chin = lm[36:48, 1].mean(), lm[30, 1], lm[48:68, 1].mean(), lm[8, 1]
    assert eyes < nose < mouth < chin
    assert lm[36, 0] < lm[45, 0]  # her right eye (36) is on the image's left
    assert shape_residual(lm) < 0.1


def test_models_are_loaded_once():
    assert hog_detector() is hog_detector()
    assert shape_predictor() is shape_predictor()


def test_shipped_hog_detector_is_dlibs(tmp_path, astronaut):
    # The copy in sdmtalk/assets is dlib's own detector: the same bytes, the same faces.
    built = dlib.get_frontal_face_detector()
    built.save(str(tmp_path / "built.svm"))
    assert (tmp_path / "built.svm").read_bytes() == HOG_FACE_DETECTOR.read_bytes()
    gray = to_gray(_two_faces(astronaut))
    for upsample in (0, 1):
        ours, theirs = hog_detector().run(gray, upsample, 0.0), built.run(gray, upsample, 0.0)
        assert [str(r) for r in ours[0]] == [str(r) for r in theirs[0]]
        assert ours[1] == theirs[1] and ours[2] == theirs[2]


def test_box_from_landmarks_is_consistent(astronaut, reference):
    # Predicting in the box derived from landmarks reproduces them (a fixed point).
    box = box_from_landmarks(reference.landmarks)
    again = predict_landmarks(to_gray(astronaut), box, subpixel=2)
    assert _mean_error(again, reference.landmarks) < 1.0


@pytest.mark.parametrize("variant", ["gray", "rgba", "16bit"])
def test_photo_variants_give_the_same_landmarks(tmp_path, astronaut, reference, variant):
    path = tmp_path / f"{variant}.png"
    if variant == "gray":
        Image.fromarray(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)).save(path)
    elif variant == "rgba":
        alpha = np.full(astronaut.shape[:2], 255, np.uint8)
        alpha[:, :60] = 0
        Image.fromarray(np.dstack([astronaut, alpha])).save(path)
    else:
        cv2.imwrite(str(path), astronaut[..., ::-1].astype(np.uint16) * 257)
    face = detect_face(path)
    assert face.num_faces == 1
    assert _mean_error(face.landmarks, reference.landmarks) < 2.0


def test_huge_photo(tmp_path, astronaut, reference):
    big = cv2.resize(astronaut, (6000, 6000), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((6000, 8000, 3), 90, np.uint8)
    canvas[:, 2000:] = big
    path = tmp_path / "huge.jpg"
    Image.fromarray(canvas).save(path, quality=90)
    image = load_image(path)
    scale = image.shape[1] / 8000
    face = detect_face(image)
    expected = (reference.landmarks * 6000 / 512 + [2000, 0]) * scale
    iod = np.linalg.norm(expected[45] - expected[36])
    assert face.num_faces == 1
    assert _mean_error(face.landmarks, expected) < 0.04 * iod


def _two_faces(astronaut):
    """The astronaut at full size on the left and at 0.7x on the right."""
    small = cv2.resize(astronaut, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + small.shape[1], 3), 128, np.uint8)
    canvas[:, :512] = astronaut
    canvas[: small.shape[0], 512:] = small
    return canvas


def test_two_faces_largest_by_default_and_face_index(astronaut, reference):
    canvas = _two_faces(astronaut)
    face = detect_face(canvas)
    assert face.num_faces == 2 and face.index == 0  # the large one, on the left
    assert _mean_error(face.landmarks, reference.landmarks) < 2.0
    other = detect_face(canvas, face_index=1)
    assert other.index == 1 and other.num_faces == 2
    expected = reference.landmarks * 0.7 + [512, 0]
    assert _mean_error(other.landmarks, expected) < 2.0
    with pytest.raises(InputError, match=r"2 face\(s\) found") as err:
        detect_face(canvas, face_index=2, name="group.jpg")
    assert "group.jpg" in str(err.value)


def test_rolled_face_found_by_cnn_fallback(astronaut, reference):
    # 45 degrees of roll: the HOG detector gives up, the CNN finds it, and the predictor
    # runs on an upright crop.
    matrix = cv2.getRotationMatrix2D((222.0, 130.0), 45, 1.0)
    rolled = cv2.warpAffine(astronaut, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT)
    face = detect_face(rolled)
    assert face.detector == "cnn"
    expected = reference.landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert _mean_error(face.landmarks, expected) < 2.0
    with pytest.raises(NoFaceError):
        detect_face(rolled, use_cnn=False)


def test_no_face_raises_no_face_error(tmp_path):
    path = tmp_path / "bricks.png"
    Image.fromarray(data.brick()).save(path)
    with pytest.raises(NoFaceError, match="no face found in .*bricks.png: use a photo") as err:
        detect_face(path)
    assert "\n" not in str(err.value)


def test_rejects_non_uint8_arrays(astronaut):
    with pytest.raises(ValueError, match="uint8"):
        detect_face(astronaut.astype(np.float32))
