"""A reference video's head motion style, for `--pose-reference`.

The head is still sampled by SDM for the user's speech; the reference sets how far and how
fast it moves: its slow-band amplitude and fast-band speed per pose dim, which scale the
calibrated pose gains (motion/pose_gain.py). A calm news anchor gives a calm head, an
animated vlogger a lively one. The reference's own trajectory is not copied: it belongs to
other words.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import islice
from pathlib import Path

import numpy as np

from sdmtalk import FPS
from sdmtalk.errors import InputError
from sdmtalk.face.track import TRACKING, LandmarkTracker, smooth_landmarks
from sdmtalk.motion.types import PoseReference, motion_from_landmarks
from sdmtalk.video import iter_video_frames


def pose_reference_from_landmarks(landmarks: np.ndarray, source: str = "reference") -> PoseReference:
    """(T, 68, 2) landmarks (NaN where no face) -> the head pose from the first face on."""
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
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--pose-reference {path} is a folder: give a video file (mp4, mov, webm, ...) "
                         "of a person talking")
    if not path.is_file():
        raise InputError(f"--pose-reference {path}: no such file (give a video of a person talking)")
    frames = islice(iter_video_frames(path, max_side=640), int(max_seconds * FPS))
    cfg = TRACKING
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
    return replace(controls, pose_reference=pose_reference_from_video(path, quiet=quiet))
