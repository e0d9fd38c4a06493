"""Landmarks through a video: detect now and then, track the box from landmarks in between.

The 68-point predictor runs on every frame at full resolution (~1 ms). The HOG detector
(the slow part) runs on a downscaled copy every `detect_every` frames, or on every frame
while no face is tracked. Between detections the box comes from the previous frame's
landmarks (`box_from_landmarks`), and detection frames only confirm that the tracked face
is still there: all boxes then follow one convention, which avoids a periodic jump every
`detect_every` frames.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import cv2
import numpy as np
from scipy.signal import savgol_filter
from tqdm import tqdm

from sdmtalk.face.align import fit_similarity, interocular_distance, sim_apply
from sdmtalk.face.detect import Box, box_from_landmarks, hog_faces, predict_landmarks, to_gray
from sdmtalk.face.template import CANONICAL_TEMPLATE


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def shape_residual(landmarks: np.ndarray) -> float:
    """RMS distance (in inter-ocular units) of (68, 2) landmarks from the aligned template."""
    sim = fit_similarity(landmarks, CANONICAL_TEMPLATE)
    aligned = sim_apply(sim, landmarks)
    return float(np.sqrt(np.mean(np.sum((aligned - CANONICAL_TEMPLATE) ** 2, axis=-1))))


class LandmarkTracker:
    """68 landmarks for every frame of a video.

    detect_every: run the detector every N frames (and whenever the face is lost).
    detect_max_side: the detector sees frames downscaled to this long side (faces must be
        ~80 px there, or ~40 px with one upsampling, tried when nothing is found).
    refine_steps: extra predictor passes per frame with the box re-derived from the fresh
        landmarks (for fast heads; on a synthetic video moving ~9 px/frame it changed
        nothing measurable, so it is off by default).
    subpixel: the predictor returns integer pixels; the face crop is upscaled by this
        factor first so the landmarks are quantised to 1/subpixel px.
    max_residual: landmarks further than this from the template shape (inter-ocular units,
        see `shape_residual`) are rejected as a lost face.
    """

    def __init__(
        self,
        detect_every: int = 5,
        detect_max_side: int = 320,
        refine_steps: int = 0,
        subpixel: int = 2,
        max_residual: float = 0.3,
        min_iou: float = 0.3,
        quiet: bool = False,
    ):
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.detect_every = detect_every
        self.detect_max_side = detect_max_side
        self.refine_steps = refine_steps
        self.subpixel = subpixel
        self.max_residual = max_residual
        self.min_iou = min_iou
        self.quiet = quiet

    def track(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """frames: uint8 (H, W, 3) RGB or (H, W) -> (landmarks (T, 68, 2) float32 (NaN where
        invalid), valid (T,) bool, num_faces_seen (T,) int: faces found by the latest
        detection at or before each frame)."""
        total = len(frames) if hasattr(frames, "__len__") else None
        disable = self.quiet or not sys.stderr.isatty()
        out_landmarks, out_valid, out_faces = [], [], []
        previous, since_detect, num_faces = None, self.detect_every, 0
        for frame in tqdm(frames, total=total, desc="landmarks", unit="frame", disable=disable):
            gray = to_gray(frame)
            box = None if previous is None else box_from_landmarks(previous)
            if box is None or since_detect >= self.detect_every:
                faces = self._detect(gray)
                num_faces, since_detect = len(faces), 0
                box = self._choose(faces, box)
            since_detect += 1
            landmarks = None if box is None else self._landmarks(gray, box)
            if landmarks is not None and not self._plausible(landmarks, gray.shape):
                landmarks = None
            previous = landmarks
            out_valid.append(landmarks is not None)
            out_landmarks.append(np.full((68, 2), np.nan, np.float32) if landmarks is None else landmarks)
            out_faces.append(num_faces)
        landmarks = np.stack(out_landmarks) if out_landmarks else np.zeros((0, 68, 2), np.float32)
        return landmarks, np.array(out_valid, dtype=bool), np.array(out_faces, dtype=np.int64)

    def _detect(self, gray: np.ndarray) -> list[Box]:
        # One upsampling at most: frames are small and this runs often.
        return [box for box, _ in hog_faces(gray, self.detect_max_side, 2 * self.detect_max_side)]

    def _choose(self, faces: list[Box], tracked: Box | None) -> Box | None:
        """The detected face that overlaps the tracked box, else the largest (new track)."""
        if not faces:
            return None
        if tracked is not None:
            best = max(faces, key=lambda f: _iou(f, tracked))
            if _iou(best, tracked) >= self.min_iou:
                return tracked  # keep the landmark-derived box: one box convention
        return max(faces, key=lambda f: (f[2] - f[0]) * (f[3] - f[1]))

    def _landmarks(self, gray: np.ndarray, box: Box) -> np.ndarray:
        landmarks = predict_subpixel(gray, box, self.subpixel)
        for _ in range(self.refine_steps):
            landmarks = predict_subpixel(gray, box_from_landmarks(landmarks), self.subpixel)
        return landmarks

    def _plausible(self, landmarks: np.ndarray, shape: tuple[int, ...]) -> bool:
        h, w = shape[:2]
        cx, cy = landmarks.mean(axis=0)
        inside = 0 <= cx < w and 0 <= cy < h
        big_enough = interocular_distance(landmarks) >= 8.0
        return bool(inside and big_enough and shape_residual(landmarks) <= self.max_residual)


def predict_subpixel(gray: np.ndarray, box: Box, factor: int = 2) -> np.ndarray:
    """68 landmarks (68, 2) float32 with 1/factor px quantisation (dlib returns integers)."""
    if factor <= 1:
        return predict_landmarks(gray, box)
    # Crop the box plus a margin (the predictor samples pixels just outside the box).
    size = box[2] - box[0]
    cx0 = int(max(0, np.floor(box[0] - 0.5 * size)))
    cy0 = int(max(0, np.floor(box[1] - 0.5 * size)))
    cx1 = int(min(gray.shape[1], np.ceil(box[2] + 0.5 * size)))
    cy1 = int(min(gray.shape[0], np.ceil(box[3] + 0.5 * size)))
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return predict_landmarks(gray, box)
    crop = cv2.resize(gray[cy0:cy1, cx0:cx1], None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    scaled = ((box[0] - cx0) * factor, (box[1] - cy0) * factor, (box[2] - cx0) * factor, (box[3] - cy0) * factor)
    points = predict_landmarks(crop, scaled)
    # Pixel centres: upscaled pixel u sits at (u + 0.5) / factor - 0.5 in the crop.
    return ((points + 0.5) / factor - 0.5 + np.array([cx0, cy0], np.float32)).astype(np.float32)


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
    for start, stop in zip(edges[::2], edges[1::2]):
        length = min(window, stop - start)
        length -= 1 - length % 2  # largest odd value <= length
        if length >= polyorder + 2:
            out[start:stop] = savgol_filter(landmarks[start:stop], length, polyorder, axis=0, mode="interp")
    return out


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
