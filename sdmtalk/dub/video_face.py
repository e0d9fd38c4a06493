"""The face through the video to dub, tracked on a thread of its own while frames are rendered.

Tracked as `prepare` tracks its clips (face.track.LandmarkTracker with TRACKING settings,
Savitzky-Golay smoothing within runs of found frames); the smoothing is applied as the track
grows, so a frame's landmarks are final once the few frames after it are tracked
(`landmarks(j)` waits for that), and rendering runs beside tracking on the other core. One
face: the largest, or the `face_index`-th from the left on every detection. The first frame
with the face and the widest-open mouth among the first WARMUP frames are noted (the mouth's
colours and the video's own teeth come from them).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable

import numpy as np

from sdmtalk.errors import InputError, NoFaceError
from sdmtalk.face.align import interocular_distance, lip_gap
from sdmtalk.face.detect import Box
from sdmtalk.face.track import TRACKING, LandmarkTracker, smooth_landmarks

WARMUP = 25  # frames tracked before rendering starts (the resting mouth and teeth are read from them)
PUBLISH_EVERY = 8  # frames tracked between two smoothing passes over the track's new end
HALF = TRACKING.smooth_window // 2  # frames after a frame that its smoothing reads
SUBPIXEL_BELOW_PX = 160  # faces narrower than this are tracked on a 2x upscaled crop (as in
#                          prepare); a larger face is fine at 1 px, and upscaling it costs most of the tracking


class TrackRows:
    """The final track: (68, 2) float32 rows, appended in order. Full blocks of BLOCK rows go
    to an unlinked temporary file (the track of a 2 h video is 0.1 GB), the last two stay in
    memory (rendering reads right behind tracking); `valid` is a byte per row. The file closes
    with the object. Not thread-safe: FaceTrack holds its lock around every call."""

    BLOCK = 1024
    ROW_BYTES = 68 * 2 * 4

    def __init__(self):
        self.valid = bytearray()
        self._tail = np.empty((self.BLOCK, 68, 2), np.float32)
        self._previous: np.ndarray | None = None  # the last block written to the file
        self._file = None

    def __len__(self) -> int:
        return len(self.valid)

    def extend(self, rows: np.ndarray) -> None:
        for row in rows:
            n = len(self.valid)
            self._tail[n % self.BLOCK] = row
            self.valid.append(bool(np.isfinite(row).all()))
            if (n + 1) % self.BLOCK == 0:
                self._spill()

    def __getitem__(self, j: int) -> np.ndarray:
        block, full = j // self.BLOCK, len(self.valid) // self.BLOCK
        if block == full:
            return self._tail[j % self.BLOCK].copy()
        if block == full - 1:
            return self._previous[j % self.BLOCK].copy()
        data = os.pread(self._file.fileno(), self.ROW_BYTES, j * self.ROW_BYTES)
        return np.frombuffer(data, np.float32).reshape(68, 2).copy()

    def all(self) -> np.ndarray:
        """(T, 68, 2): every row so far (a copy)."""
        return np.stack([self[j] for j in range(len(self))]) if len(self) else np.zeros((0, 68, 2), np.float32)

    def _spill(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="sdmtalk-track-")
        self._file.write(self._tail)  # the array's own bytes, no copy
        self._file.flush()
        # the block before the previous one is on file only now: its array becomes the new tail
        spare = self._previous if self._previous is not None else np.empty_like(self._tail)
        self._previous, self._tail = self._tail, spare


class _ChosenFaceTracker(LandmarkTracker):
    """Tracks the face_index-th face from the left (None: the largest, as LandmarkTracker)."""

    def __init__(self, face_index: int | None, **kwargs):
        super().__init__(**kwargs)
        self.face_index, self.most_faces = face_index, 0

    def _detect(self, gray: np.ndarray) -> list[Box]:
        faces = super()._detect(gray)
        self.most_faces = max(self.most_faces, len(faces))
        if self.face_index is None:
            return faces
        faces = sorted(faces, key=lambda f: f[0] + f[2])
        return [faces[self.face_index]] if self.face_index < len(faces) else []

    def _confirm(self, gray, track, faces):
        found = super()._confirm(gray, track, faces)
        if found is not None:
            self.subpixel = 2 if found.box[2] - found.box[0] < SUBPIXEL_BELOW_PX else 1
        return found


class FaceTrack:
    """frames: the video's frames (grey is enough) in order; name: the video, for messages.
    start() tracks them on a daemon thread; landmarks(j) gives frame j's final (68, 2)
    landmarks (NaN: no face there), waiting for them; the first error is raised there."""

    def __init__(self, frames: Iterable[np.ndarray], name: str, face_index: int | None = None,
                 progress: Callable[[int], object] | None = None):
        self.frames, self.name, self.face_index, self.progress = frames, name, face_index, progress
        cfg = TRACKING
        self.tracker = _ChosenFaceTracker(face_index, detect_every=cfg.detect_every,
                                          detect_max_side=cfg.detect_max_side, quiet=True)
        self._raw: list[np.ndarray] = []  # the raw track from frame _raw_base on (older ones are final)
        self._raw_base = 0
        self._final = TrackRows()
        self.done, self.error = False, None
        self.reference: tuple[int, np.ndarray] | None = None  # first frame with the face
        self.widest: tuple[int, np.ndarray] | None = None  # widest mouth of WARMUP frames from there
        self._best = -1.0
        self._cond, self._stop = threading.Condition(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdmtalk-track", daemon=True)

    def start(self) -> FaceTrack:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop tracking (the render side gave up) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            for i, (landmarks, _) in enumerate(self.tracker.follow(self._until_stopped())):
                self._add(i, landmarks)
            if self.reference is None and not self._stop.is_set():
                raise self._no_face()
        except BaseException as err:  # raised in the render thread by landmarks()
            self.error = err
        finally:
            with self._cond:
                self._publish(end=True)
                self.done = True
                self._cond.notify_all()

    def _until_stopped(self):
        """The frames for the tracker, until stop()."""
        for frame in self.frames:
            if self._stop.is_set():
                return
            yield frame

    def _add(self, i: int, found: np.ndarray | None) -> None:
        landmarks = np.full((68, 2), np.nan, np.float32) if found is None else found
        self._raw.append(landmarks)
        if found is not None:
            if self.reference is None:
                self.reference = (i, landmarks.copy())
            gap = float(lip_gap(landmarks) / max(float(interocular_distance(landmarks)), 1e-6))
            if i - self.reference[0] < WARMUP and gap > self._best:
                self.widest, self._best = (i, landmarks.copy()), gap
        if self.progress is not None:
            self.progress(i + 1)
        if (self._raw_base + len(self._raw)) % PUBLISH_EVERY == 0:
            with self._cond:
                self._publish(end=False)
                self._cond.notify_all()

    def _publish(self, end: bool) -> None:
        """Smooth the track's new end; frames with HALF tracked frames after them (all, at
        the end) become final. Smoothing reads 2 * HALF frames before the first new one, so
        each final frame gets what smoothing the whole track would give it."""
        n, lo = self._raw_base + len(self._raw), len(self._final)
        hi = n if end else n - HALF
        if hi <= lo:
            return
        start = max(0, lo - 2 * HALF)
        raw = np.stack(self._raw[start - self._raw_base:])
        valid = np.isfinite(raw).all(axis=(1, 2))
        smooth = smooth_landmarks(raw, valid, TRACKING.smooth_window, TRACKING.smooth_polyorder)
        smooth[~valid] = np.nan
        self._final.extend(smooth[lo - start : hi - start])
        keep = max(0, len(self._final) - 2 * HALF)  # what the next smoothing reads: memory stays flat
        del self._raw[: keep - self._raw_base]
        self._raw_base = keep

    def _no_face(self) -> InputError:
        if self.face_index is not None and self.tracker.most_faces:
            return InputError(f"--face-index {self.face_index} is out of range for {self.name}: at most "
                              f"{self.tracker.most_faces} face(s) seen at once, numbered from the left from 0")
        return NoFaceError(f"no face found in {self.name}: dub a video where one face is clearly visible "
                           "and frontal")

    def _wait(self, ready: Callable[[], bool]) -> None:
        with self._cond:
            while not (ready() or self.done):
                self._cond.wait(0.1)
        if self.error is not None:
            raise self.error

    def landmarks(self, j: int) -> np.ndarray:
        """Frame j's (68, 2) landmarks, NaN where the face is not found."""
        self._wait(lambda: len(self._final) > j)
        with self._cond:
            return self._final[j]

    def warmed_up(self) -> None:
        """Wait for WARMUP frames from the first with the face (or the whole track, if shorter)."""
        self._wait(lambda: self.reference is not None and len(self._final) >= self.reference[0] + WARMUP)

    def count(self) -> int:
        """Frames in the video (waits for the end of tracking)."""
        self._wait(lambda: False)
        return len(self._final)

    def tracked(self) -> tuple[np.ndarray, np.ndarray]:
        """(landmarks (T, 68, 2), valid (T,)) of the frames final so far."""
        with self._cond:
            landmarks = self._final.all()
        return landmarks, np.isfinite(landmarks).all(axis=(1, 2))

    def lost_spans(self) -> list[tuple[int, int]]:
        """[start, stop) frame ranges without the face (after the end of tracking)."""
        with self._cond:
            valid = np.frombuffer(bytes(self._final.valid), np.uint8)
        edges = np.flatnonzero(np.diff(np.concatenate([[1], valid.astype(np.int8), [1]])))
        return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
