"""Landmarks through a video: detect now and then, track the face box in between.

The 68-point predictor runs on every frame at full resolution (~1 ms). The HOG detector
(the slow part) runs on a downscaled copy every `detect_every` frames, or whenever no face
is tracked. Between detections the box and roll come from the previous frame's landmarks;
detection frames only confirm that the tracked face is still there, so every box follows
one convention (`box_from_landmarks`) and nothing jumps every `detect_every` frames.

dlib's predictor is not smooth in its box: moving the box by a fraction of a pixel moves
landmarks by ~1 px on a still face. So the box (and roll) is kept until the face has moved
by `box_hysteresis`: a still face gives still landmarks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from sdmtalk.face.align import fit_similarity, interocular_distance, sim_compose
from sdmtalk.face.detect import (
    Box,
    box_from_landmarks,
    estimate_roll,
    hog_faces,
    predict_landmarks,
    refine_landmarks,
    shape_residual,
    to_gray,
)
from sdmtalk.face.template import CANONICAL_TEMPLATE

_PATCH = 32  # side of the aligned face patch compared between frames (cut detection)


@dataclass(frozen=True)
class TrackSettings:
    """How a video's landmarks are tracked and smoothed: `prepare`'s cache, a pose reference
    and `evaluate` use the same settings, so the stats fitted on one hold for the others."""

    # Savitzky-Golay window chosen by measurement on 48 real clips (docs/CACHE_FORMAT.md):
    # 7 frames cut jitter by 2/3 and gave the best lip-gap/loudness correlation on GRID.
    smooth_window: int = 7
    smooth_polyorder: int = 2
    detect_every: int = 5
    detect_max_side: int = 320


TRACKING = TrackSettings()


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def face_patch(gray: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face, aligned to the template, as a float32 (32, 32) patch with zero mean, unit norm."""
    to_canonical = fit_similarity(landmarks, CANONICAL_TEMPLATE)
    scale = _PATCH / 2.4  # the template spans about [-1.1, 1.1] x [-0.9, 1.3]
    to_patch = sim_compose(np.array([np.log(scale), 0.0, 1.2 * scale, 1.1 * scale]), to_canonical)
    c, s = np.exp(to_patch[0]) * np.cos(to_patch[1]), np.exp(to_patch[0]) * np.sin(to_patch[1])
    matrix = np.array([[c, -s, to_patch[2]], [s, c, to_patch[3]]])
    patch = cv2.warpAffine(gray, matrix, (_PATCH, _PATCH), flags=cv2.INTER_AREA).astype(np.float32)
    patch -= patch.mean()
    return patch / max(float(np.linalg.norm(patch)), 1e-6)


@dataclass
class _Track:
    """The face being followed: its landmarks, the box/roll the predictor uses, its patch."""

    landmarks: np.ndarray
    box: Box
    roll: float
    patch: np.ndarray


class LandmarkTracker:
    """68 landmarks for every frame of a video.

    detect_every: run the detector every N frames (and whenever the face is lost).
    detect_max_side: the detector sees frames downscaled to this long side (faces must be
        ~80 px there, or ~40 px with one upsampling, tried when nothing is found).
    subpixel: the predictor returns integer pixels; the face crop is upscaled by this
        factor first so the landmarks are quantised to 1/subpixel px.
    box_hysteresis: move the predictor's box only when the face moved or resized by more
        than this fraction of the box, or turned by more than this many radians.
    min_patch_corr: correlation of the aligned face patch with the previous frame's below
        which the face counts as lost (a cut) and the detector runs at once.
    max_residual: landmarks further than this from the template shape (inter-ocular units,
        see `shape_residual`) are rejected as a lost face.
    """

    def __init__(
        self,
        detect_every: int = 5,
        detect_max_side: int = 320,
        subpixel: int = 2,
        box_hysteresis: float = 0.02,
        min_patch_corr: float = 0.5,
        max_residual: float = 0.3,
        min_iou: float = 0.3,
        quiet: bool = False,
    ):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.detect_every = detect_every
        self.detect_max_side = detect_max_side
        self.subpixel = subpixel
        self.box_hysteresis = box_hysteresis
        self.min_patch_corr = min_patch_corr
        self.max_residual = max_residual
        self.min_iou = min_iou
        self.quiet = quiet

    def track(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """frames: uint8 (H, W, 3) RGB or (H, W) -> (landmarks (T, 68, 2) float32 (NaN where
        invalid), valid (T,) bool, num_faces_seen (T,) int: faces found by the latest
        detection at or before each frame)."""
        total = len(frames) if hasattr(frames, "__len__") else None
        disable = self.quiet or not sys.stderr.isatty()
        out_landmarks, out_faces = [], []
        bar = tqdm(frames, total=total, desc="landmarks", unit="frame", disable=disable)
        for found, num_faces in self.follow(bar):
            out_landmarks.append(np.full((68, 2), np.nan, np.float32) if found is None else found)
            out_faces.append(num_faces)
        landmarks = np.stack(out_landmarks) if out_landmarks else np.zeros((0, 68, 2), np.float32)
        valid = np.isfinite(landmarks).all(axis=(1, 2))
        return landmarks, valid, np.array(out_faces, dtype=np.int64)

    def follow(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray | None, int]]:
        """The same tracking, a frame at a time and keeping nothing: for each frame (landmarks
        (68, 2) float32 or None where the face is lost, faces found by the latest detection).
        A dub of hours tracks this way: lists of every frame's landmarks grew by 1.3 KB a frame."""
        track, since_detect, num_faces = None, 0, 0
        for frame in frames:
            gray = to_gray(frame)
            followed = None
            if track is not None and since_detect < self.detect_every:
                followed = self._follow(gray, track)
            if followed is None:  # a detection frame, or the face was lost since the last one
                faces = self._detect(gray)
                num_faces, since_detect = len(faces), 0
                followed = self._confirm(gray, track, faces)
            since_detect += 1
            track = followed
            yield (None if track is None else track.landmarks), num_faces

    def _detect(self, gray: np.ndarray) -> list[Box]:
        # One upsampling at most: frames are small and this runs often.
        return [box for box, _ in hog_faces(gray, self.detect_max_side, 2 * self.detect_max_side)]

    def _confirm(self, gray: np.ndarray, track: _Track | None, faces: list[Box]) -> _Track | None:
        """On a detection frame: go on with the tracked face if a detection overlaps it,
        else start a new track on the largest face (None when there is none)."""
        if not faces:
            return None
        if track is not None and max(_iou(f, track.box) for f in faces) >= self.min_iou:
            followed = self._follow(gray, track)
            if followed is not None:
                return followed
        largest = max(faces, key=lambda f: (f[2] - f[0]) * (f[3] - f[1]))
        landmarks = refine_landmarks(gray, largest, self.subpixel)
        box, roll = box_from_landmarks(landmarks), estimate_roll(landmarks)
        landmarks = predict_landmarks(gray, box, self.subpixel, roll)  # the track's own box
        if not self._plausible(landmarks, gray.shape):
            return None
        return _Track(landmarks, box, roll, face_patch(gray, landmarks))

    def _follow(self, gray: np.ndarray, track: _Track) -> _Track | None:
        """This frame's landmarks from the previous frame's box; None if the face is lost."""
        box, roll = self._stable_box(track)
        landmarks = predict_landmarks(gray, box, self.subpixel, roll)
        if not self._plausible(landmarks, gray.shape):
            return None
        patch = face_patch(gray, landmarks)
        if float(np.sum(patch * track.patch)) < self.min_patch_corr:
            return None
        return _Track(landmarks, box, roll, patch)

    def _stable_box(self, track: _Track) -> tuple[Box, float]:
        """The previous box and roll, unless the landmarks moved out of the hysteresis band."""
        box, roll = box_from_landmarks(track.landmarks), estimate_roll(track.landmarks)
        size = track.box[2] - track.box[0]
        moved = np.max(np.abs(np.subtract(box, track.box))) / size
        turned = abs((roll - track.roll + np.pi) % (2 * np.pi) - np.pi)
        if moved > self.box_hysteresis or turned > self.box_hysteresis:
            return box, roll
        return track.box, track.roll

    def _plausible(self, landmarks: np.ndarray, shape: tuple[int, ...]) -> bool:
        h, w = shape[:2]
        cx, cy = landmarks.mean(axis=0)
        inside = 0 <= cx < w and 0 <= cy < h
        big_enough = interocular_distance(landmarks) >= 8.0
        return bool(inside and big_enough and shape_residual(landmarks) <= self.max_residual)


def smooth_landmarks(
    landmarks: np.ndarray, valid: np.ndarray | None = None, window: int = 5, polyorder: int = 2
) -> np.ndarray:
    """Savitzky-Golay smoothing of (T, 68, 2) landmarks along time, within runs of valid frames.

    window: odd number of frames (1 = no smoothing); runs shorter than it use the longest
    odd window that fits (left as they are below polyorder + 2). Invalid frames are kept.
    """
    landmarks = np.asarray(landmarks, dtype=np.float32)
    valid = np.isfinite(landmarks).all(axis=(1, 2)) if valid is None else np.asarray(valid, bool)
    out = landmarks.copy()
    if window <= 1:
        return out
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        length = min(window, stop - start)
        length -= 1 - length % 2  # largest odd value <= length
        if length >= polyorder + 2:
            out[start:stop] = savgol_interp(landmarks[start:stop], length, polyorder)
    return out


@lru_cache(maxsize=16)
def _poly_fit_matrix(length: int, polyorder: int) -> np.ndarray:
    """(length, length) hat matrix of a least-squares polynomial fit over `length` samples:
    row i gives the fitted value at sample i."""
    vander = np.vander(np.arange(length, dtype=np.float64) - length // 2, polyorder + 1)
    return vander @ np.linalg.pinv(vander)


def savgol_interp(x: np.ndarray, length: int, polyorder: int) -> np.ndarray:
    """scipy.signal.savgol_filter(x, length, polyorder, axis=0, mode="interp") in NumPy
    (scipy.signal costs ~1.2 s to import): each sample gets the centre value of the
    polynomial fitted to its window; the first and last length // 2 samples get the fit of
    the first / last window. length: odd, <= len(x). Same dtype as x (float32 or float64)."""
    data = np.asarray(x, np.float64)
    fit, half, n = _poly_fit_matrix(length, polyorder), length // 2, len(data)
    out = np.empty_like(data)
    out[half : n - half] = sliding_window_view(data, length, axis=0) @ fit[half]
    out[:half] = np.tensordot(fit[:half], data[:length], axes=1)
    out[n - half :] = np.tensordot(fit[half + 1 :], data[n - length :], axes=1)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    return out.astype(dtype, copy=False)


def landmark_jitter(landmarks: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean frame-to-frame acceleration |L[t+1] - 2 L[t] + L[t-1]| per point, in inter-ocular
    units, over triples of valid frames (NaN if there are none). Lower = steadier."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    valid = np.isfinite(landmarks).all(axis=(1, 2)) if valid is None else np.asarray(valid, bool)
    if len(landmarks) < 3:
        return float("nan")
    ok = valid[:-2] & valid[1:-1] & valid[2:]
    if not ok.any():
        return float("nan")
    accel = landmarks[2:] - 2 * landmarks[1:-1] + landmarks[:-2]
    per_frame = np.linalg.norm(accel, axis=-1).mean(axis=-1) / interocular_distance(landmarks[1:-1])
    return float(per_frame[ok].mean())
