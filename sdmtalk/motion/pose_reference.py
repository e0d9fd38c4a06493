"""A reference video's head motion style, for `--pose-reference` (issue 11's reference pose).

The head is still sampled by SDM for the user's speech; the reference sets how far and how
fast it moves: its slow-band amplitude and fast-band speed per pose dim, which scale the
calibrated pose gains (motion/pose_gain.py). A calm news anchor gives a calm head, an
animated vlogger a lively one. The reference's own trajectory is not copied: it belongs to
other words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sdmtalk import FPS
from sdmtalk.errors import InputError

MIN_REFERENCE_FRAMES = 2 * FPS  # a style needs some motion to measure: 2 s with a face


@dataclass(eq=False)
class PoseReference:
    """pose (T, 4) [log scale, angle, tx, ty] relative to the first frame (NaN rows where no
    face was found) and where it came from (for messages)."""

    pose: np.ndarray
    source: str = "reference"
    _stats: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.pose = np.asarray(self.pose, np.float64)
        if self.pose.ndim != 2 or self.pose.shape[1] != 4:
            raise InputError(f"{self.source}: a pose reference is a (T, 4) head pose track, got {self.pose.shape}")
        found = int(np.isfinite(self.pose).all(axis=1).sum())
        if found < MIN_REFERENCE_FRAMES:
            raise InputError(f"{self.source}: a face was found in {found} frame(s); a pose reference needs "
                             f"{MIN_REFERENCE_FRAMES / FPS:g} s or more of one face (use a video of a person talking)")

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.pose).all(axis=1)

    def band_stats(self, tau: float) -> np.ndarray:
        """(2, 4) pose_band_stats of the reference (computed once per band)."""
        from sdmtalk.motion.pose_gain import pose_band_stats

        if tau not in self._stats:
            self._stats[tau] = pose_band_stats(self.pose, self.valid, tau)
        return self._stats[tau]


def pose_reference_from_landmarks(landmarks: np.ndarray, source: str = "reference") -> PoseReference:
    """(T, 68, 2) landmarks (NaN where no face) -> the head pose from the first face on."""
    from sdmtalk.motion.types import motion_from_landmarks

    landmarks = np.asarray(landmarks, np.float64)
    found = np.flatnonzero(np.isfinite(landmarks).all(axis=(1, 2)))
    if len(found) == 0:
        raise InputError(f"{source}: no face found; a pose reference needs a video of one person talking")
    motion, _, _ = motion_from_landmarks(landmarks[found[0]:])
    return PoseReference(np.asarray(motion.pose, np.float64), source)


def pose_reference_from_video(path, max_seconds: float = 60.0, quiet: bool = True) -> PoseReference:
    """A video file -> its head motion (landmarks tracked and smoothed with `prepare`'s
    settings, as the stats the gains were fitted on; the first max_seconds). InputError
    naming the file when it cannot be read or shows no face."""
    from itertools import islice

    from sdmtalk.data.prepare import PrepareConfig
    from sdmtalk.face.track import LandmarkTracker, smooth_landmarks
    from sdmtalk.video import iter_video_frames

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--pose-reference {path}: no such file (give a video of a person talking)")
    frames = islice(iter_video_frames(path, max_side=640), int(max_seconds * FPS))
    cfg = PrepareConfig()
    tracker = LandmarkTracker(detect_every=cfg.detect_every, detect_max_side=cfg.detect_max_side, quiet=quiet)
    landmarks, valid, _ = tracker.track(frames)
    landmarks = smooth_landmarks(landmarks, valid, cfg.smooth_window, cfg.smooth_polyorder)
    landmarks[~np.asarray(valid, bool)] = np.nan
    return pose_reference_from_landmarks(landmarks, f"--pose-reference {path}")


def check_pose_reference_motion(motion: str) -> None:
    """A reference scales SDM's calibrated gains: other motions have none (cheap, up front)."""
    if motion != "sdm":
        raise InputError(f"--pose-reference works with --motion sdm, not {motion}")


def with_pose_reference(controls, path, quiet: bool = True):
    """controls with the head style of the video at `path` (the CLI and `serve` alike)."""
    from dataclasses import replace

    return replace(controls, pose_reference=pose_reference_from_video(path, quiet=quiet))
