"""Face detection and 68-point landmarks with dlib (HOG detector, CNN fallback).

Model files come from the face-recognition-models package; it is located with importlib
and never imported, because its __init__ needs pkg_resources (gone in new setuptools).
Models are loaded once per process.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np

from sdmtalk.assets import HOG_FACE_DETECTOR
from sdmtalk.errors import InputError, NoFaceError
from sdmtalk.face.align import fit_similarity, sim_apply
from sdmtalk.face.image import load_image
from sdmtalk.face.template import CANONICAL_TEMPLATE, DLIB_MEAN_SHAPE

_LOG = logging.getLogger(__name__)

HOG_MAX_SIDE = 1024  # HOG runs on a copy downscaled to this long side
HOG_MAX_UPSAMPLED = 2048  # upsampling stops before the HOG image passes this long side
HOG_MIN_SCORE = 0.3  # texture hits score ~0-0.15 in our tests; faces >= 0.8 (weaker -> CNN)
CNN_MAX_SIDE = 640  # the CNN costs ~1.3 s per 512^2 pass on one core
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) pixels


@dataclass(frozen=True)
class FaceDetection:
    """One detected face: landmarks (68, 2) float32 pixels, box (x0, y0, x1, y1),
    num_faces found in the image, index of this face (faces numbered left to right)."""

    landmarks: np.ndarray
    box: Box
    num_faces: int
    index: int
    score: float = 0.0
    detector: str = "hog"


def model_path(name: str) -> Path:
    """Path of a dlib model file shipped by face-recognition-models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("dlib model files are missing: pip install face-recognition-models==0.3.0")
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise InputError(f"dlib model file {path} is missing: reinstall face-recognition-models")
    return path


@lru_cache(maxsize=1)
def hog_detector():
    """dlib's frontal face detector, read from the copy in sdmtalk/assets (bit-identical,
    ~200x faster to load than dlib.get_frontal_face_detector, which is the fallback)."""
    try:
        return dlib.fhog_object_detector(str(HOG_FACE_DETECTOR))
    except RuntimeError as err:  # missing or unreadable copy
        _LOG.warning("%s: %s; building dlib's detector instead", HOG_FACE_DETECTOR, err)
        return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def cnn_detector():
    return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))


@lru_cache(maxsize=1)
def shape_predictor():
    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB or (H, W) -> contiguous uint8 (H, W)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(
            f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}"
        )
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image)


def _resized(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale so the long side is <= max_side; returns (image, scale factor applied)."""
    long_side = max(image.shape[:2])
    if long_side <= max_side:
        return image, 1.0
    scale = max_side / long_side
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _rect_to_box(rect, scale: float) -> Box:
    return (
        rect.left() / scale,
        rect.top() / scale,
        (rect.right() + 1) / scale,
        (rect.bottom() + 1) / scale,
    )


def hog_faces(
    gray: np.ndarray,
    max_side: int = HOG_MAX_SIDE,
    max_upsampled: int = HOG_MAX_UPSAMPLED,
    min_score: float = HOG_MIN_SCORE,
) -> list[tuple[Box, float]]:
    """HOG faces in a uint8 (H, W) image -> [(box, score)] in its pixels.

    Tries upsampling 0, 1, 2, ... (each finds faces half the size of the previous one, the
    HOG window is 80 px) while the upsampled image stays <= max_upsampled, and stops at the
    first level that finds a face: big faces are found fast and with fewer false hits.
    """
    small, scale = _resized(gray, max_side)
    upsample = 0
    while True:
        rects, scores, _ = hog_detector().run(small, upsample, 0.0)
        found = [
            (_rect_to_box(r, scale), float(s))
            for r, s in zip(rects, scores, strict=True)
            if s >= min_score
        ]
        if found or max(small.shape) * 2 ** (upsample + 1) > max_upsampled:
            return found
        upsample += 1


def cnn_faces(image: np.ndarray, max_side: int = CNN_MAX_SIDE) -> list[tuple[Box, float]]:
    """CNN (mmod) faces in a uint8 image -> [(box, confidence)]; slow (~1-2 s)."""
    small, scale = _resized(image, max_side)
    upsample = 1 if max(small.shape[:2]) < 400 else 0  # its window is 80 px as well
    return [
        (_rect_to_box(d.rect, scale), float(d.confidence)) for d in cnn_detector()(small, upsample)
    ]


def _predict_raw(gray: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shape = shape_predictor()(gray, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def predict_landmarks(
    gray: np.ndarray, box: Box, subpixel: int = 1, roll: float = 0.0
) -> np.ndarray:
    """68 landmarks (68, 2) float32 for a face box in a uint8 (H, W) image.

    subpixel > 1: the predictor returns integer pixels, so it runs on a crop upscaled by
    this factor (landmarks quantised to 1/subpixel px). roll (rad): the face's in-plane
    rotation; the crop is turned upright first (the predictor fails beyond ~25 degrees).
    One warpAffine does crop, rotation and upscaling; pixel centres map exactly.
    """
    if subpixel <= 1 and roll == 0.0:
        return _predict_raw(gray, box).astype(np.float32)
    w, h = box[2] - box[0], box[3] - box[1]
    centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
    side = int(np.ceil(2 * max(w, h) * subpixel))  # the box plus half a box each side
    c, s = subpixel * np.cos(roll), subpixel * np.sin(roll)
    linear = np.array([[c, s], [-s, c]])  # scale * R(-roll)
    to_crop = np.hstack([linear, (side / 2 - linear @ centre)[:, None]])
    crop = cv2.warpAffine(
        gray, to_crop, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    half_w, half_h = w * subpixel / 2, h * subpixel / 2
    points = _predict_raw(
        crop, (side / 2 - half_w, side / 2 - half_h, side / 2 + half_w, side / 2 + half_h)
    )
    back = cv2.invertAffineTransform(to_crop)
    return (points @ back[:, :2].T + back[:, 2]).astype(np.float32)


def box_from_landmarks(landmarks: np.ndarray) -> Box:
    """The HOG-detector-style box (x0, y0, x1, y1) that would produce these landmarks.

    dlib's mean shape lives in the unit square of the detector box; fitting it to the
    landmarks and mapping the unit square back gives the box (rotation ignored: the
    predictor takes axis-aligned boxes).
    """
    sim = fit_similarity(DLIB_MEAN_SHAPE, landmarks)
    cx, cy = sim_apply(sim, np.array([[0.5, 0.5]]))[0]
    half = 0.5 * float(np.exp(sim[0]))
    return (cx - half, cy - half, cx + half, cy + half)


def estimate_roll(landmarks: np.ndarray) -> float:
    """In-plane rotation (rad) of (68, 2) landmarks relative to the upright mean face."""
    return float(fit_similarity(DLIB_MEAN_SHAPE, landmarks)[1])


def shape_residual(landmarks: np.ndarray) -> float:
    """RMS distance (inter-ocular units) of (68, 2) landmarks from the aligned template:
    ~0.05-0.1 for faces, larger when the predictor ran on something that is not a face."""
    sim = fit_similarity(landmarks, CANONICAL_TEMPLATE)
    aligned = sim_apply(sim, landmarks)
    return float(np.sqrt(np.mean(np.sum((aligned - CANONICAL_TEMPLATE) ** 2, axis=-1))))


def refine_landmarks(
    gray: np.ndarray, box: Box, subpixel: int = 2, iterations: int = 2, initial_rolls=(0.0,)
) -> np.ndarray:
    """Landmarks from a detector box: predict, then re-box and turn upright from the
    landmarks `iterations` times, so that every face ends in the box convention the
    tracker uses. Several initial rolls: keep the most face-like result."""
    best, best_residual = None, np.inf
    for roll in initial_rolls:
        landmarks = predict_landmarks(gray, box, subpixel, roll)
        for _ in range(iterations):
            roll = estimate_roll(landmarks)
            landmarks = predict_landmarks(gray, box_from_landmarks(landmarks), subpixel, roll)
        residual = shape_residual(landmarks)
        if residual < best_residual:
            best, best_residual = landmarks, residual
    return best


def find_faces(image: np.ndarray, use_cnn: bool = True) -> tuple[list[tuple[Box, float]], str]:
    """All faces in a uint8 image, numbered left to right -> ([(box, score)], detector name).

    HOG first; the CNN runs only when HOG finds nothing (it is ~50x slower).
    """
    faces, detector = hog_faces(to_gray(image)), "hog"
    if not faces and use_cnn:
        faces, detector = cnn_faces(image), "cnn"
    faces.sort(key=lambda face: face[0][0] + face[0][2])
    return faces, detector


def _area(box: Box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def detect_face(
    image: np.ndarray | str | Path,
    face_index: int | None = None,
    *,
    name: str | None = None,
    use_cnn: bool = True,
    logger: logging.Logger | None = None,
    verbose: bool = False,
) -> FaceDetection:
    """Detect the face in a photo and its 68 landmarks.

    image: uint8 (H, W, 3) RGB / (H, W), or a path (read with load_image). name: how
    error messages call the photo. Several faces: the largest, unless face_index (faces
    numbered left to right). Raises NoFaceError, or InputError for a bad face_index.
    """
    if isinstance(image, (str, Path)):
        name = name or str(image)
        image = load_image(image)
    where = name or "the photo"
    log = (logger or _LOG).info if verbose else (logger or _LOG).debug
    try:
        faces, detector = find_faces(image, use_cnn=use_cnn)
    except RuntimeError as err:  # dlib refuses images it cannot scan (odd sizes, slivers)
        raise NoFaceError(
            f"face detection failed on {where} ({str(err).splitlines()[0][:80]}): "
            "use a photo where one face is clearly visible and frontal"
        ) from None
    log("%s: %d face(s) found by the %s detector: %s", where, len(faces), detector, faces)
    if not faces:
        raise NoFaceError(
            f"no face found in {where}: use a photo where one face is clearly visible and frontal"
        )
    if face_index is None:
        index = max(range(len(faces)), key=lambda i: _area(faces[i][0]))
    elif 0 <= face_index < len(faces):
        index = face_index
    else:
        raise InputError(
            f"face index {face_index} is out of range for {where}: {len(faces)} face(s) found, "
            f"numbered 0..{len(faces) - 1} from left to right"
        )
    box, score = faces[index]
    # The CNN also finds faces rolled beyond what HOG accepts (~30 degrees): try those too.
    rolls = (0.0,) if detector == "hog" else (0.0, np.pi / 4, -np.pi / 4)
    landmarks = refine_landmarks(to_gray(image), box, initial_rolls=rolls)
    return FaceDetection(landmarks, box, len(faces), index, score, detector)
