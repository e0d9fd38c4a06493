"""The face through the video to dub: landmarks per frame, where it is lost, its teeth.

Tracked as `prepare` tracks its clips (face.track.LandmarkTracker with TRACKING settings,
Savitzky-Golay smoothing within runs of found frames). One face: the largest, or the
`face_index`-th from the left on every detection. While the frames pass, the frame with the
widest mouth is kept (the video's own teeth, if it shows them) and the first frame with a
face (the mouth interior's colours): two frames, not the video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from sdmtalk.errors import InputError, NoFaceError
from sdmtalk.face.align import interocular_distance, lip_gap
from sdmtalk.face.detect import Box
from sdmtalk.face.track import TRACKING, LandmarkTracker, smooth_landmarks

TEETH_EVERY = 5  # frames between looks for the widest mouth
SUBPIXEL_BELOW_PX = 160  # faces narrower than this are tracked on a 2x upscaled crop (as in
#                          prepare); a larger face is fine at 1 px, and upscaling it costs most of the tracking


@dataclass
class VideoFace:
    """landmarks (T, 68, 2) float32, smoothed, NaN where no face; valid (T,) bool;
    num_faces: most faces seen at once; reference: (frame index, landmarks) of the first face;
    widest: (frame index, landmarks) of the widest-open mouth seen."""

    landmarks: np.ndarray
    valid: np.ndarray
    num_faces: int
    reference: tuple[int, np.ndarray]
    widest: tuple[int, np.ndarray]

    def lost_spans(self) -> list[tuple[int, int]]:
        """[start, stop) frame ranges without the face."""
        edges = np.flatnonzero(np.diff(np.concatenate([[1], self.valid.astype(np.int8), [1]])))
        return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class _ChosenFaceTracker(LandmarkTracker):
    """Tracks the face_index-th face from the left (None: the largest, as LandmarkTracker);
    `last` holds the landmarks found in the latest frame (None: no face)."""

    def __init__(self, face_index: int | None, **kwargs):
        super().__init__(**kwargs)
        self.face_index, self.most_faces, self.last = face_index, 0, None

    def _detect(self, gray: np.ndarray) -> list[Box]:
        faces = super()._detect(gray)
        self.most_faces = max(self.most_faces, len(faces))
        if self.face_index is None:
            return faces
        faces = sorted(faces, key=lambda f: f[0] + f[2])
        return [faces[self.face_index]] if self.face_index < len(faces) else []

    def _follow(self, gray, track):
        self.last = super()._follow(gray, track)
        return self.last

    def _confirm(self, gray, track, faces):
        self.last = super()._confirm(gray, track, faces)
        if self.last is not None:
            self.subpixel = 2 if self.last.box[2] - self.last.box[0] < SUBPIXEL_BELOW_PX else 1
        return self.last


class _Keeper:
    """Hands the frames to the tracker and, after each, looks at what it found: notes the
    first frame with the face and the widest-open mouth (sampled every TEETH_EVERY frames)."""

    def __init__(self, frames: Iterable[np.ndarray], tracker: _ChosenFaceTracker,
                 progress: Callable[[int], object] | None):
        self.frames, self.tracker, self.progress = frames, tracker, progress
        self.reference = self.widest = None
        self._best = -1.0

    def __iter__(self):
        for i, frame in enumerate(self.frames):
            self.tracker.last = None
            yield frame
            found = self.tracker.last
            if found is not None:
                self._look(i, found.landmarks)
            if self.progress is not None:
                self.progress(i + 1)

    def _look(self, i: int, landmarks: np.ndarray) -> None:
        if self.reference is None:
            self.reference = (i, landmarks.copy())
        if i % TEETH_EVERY == 0:
            gap = float(lip_gap(landmarks) / max(float(interocular_distance(landmarks)), 1e-6))
            if gap > self._best:
                self.widest, self._best = (i, landmarks.copy()), gap


def track_video_face(frames: Iterable[np.ndarray], name: str, face_index: int | None = None,
                     progress: Callable[[int], object] | None = None) -> VideoFace:
    """Landmarks of the chosen face in every frame (RGB or grey frames); NoFaceError naming
    the video when no frame shows it."""
    cfg = TRACKING
    tracker = _ChosenFaceTracker(face_index, detect_every=cfg.detect_every,
                                 detect_max_side=cfg.detect_max_side, quiet=True)
    keeper = _Keeper(frames, tracker, progress)
    landmarks, valid, _ = tracker.track(keeper)
    if keeper.reference is None:
        if face_index is not None and tracker.most_faces:
            raise InputError(f"--face-index {face_index} is out of range for {name}: at most "
                             f"{tracker.most_faces} face(s) seen at once, numbered from the left from 0")
        raise NoFaceError(f"no face found in {name}: dub a video where one face is clearly visible and frontal")
    landmarks = smooth_landmarks(landmarks, valid, cfg.smooth_window, cfg.smooth_polyorder)
    landmarks[~valid] = np.nan
    return VideoFace(landmarks, valid, tracker.most_faces, keeper.reference, keeper.widest or keeper.reference)
