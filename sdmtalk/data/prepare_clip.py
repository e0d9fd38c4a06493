"""One clip of `sdmtalk prepare`: a video -> the cache's arrays, or the reason it is skipped.

Probe + decode with PyAV at 25 fps (nearest earlier source frame by timestamp), audio at
16 kHz mono lined up with frame 0, voice activity (silero-vad), 68 landmarks per frame
(LandmarkTracker: HOG on a downscaled frame every few frames, landmark-box tracking in
between), quality filters with reasons, Savitzky-Golay smoothing within runs of found faces,
linear interpolation over lost frames, canonical alignment with the per-frame similarity,
Motion(pose, delta), and the audio features of the generate pipeline. A clip that cannot be
used is skipped with its reason, never a crash.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import av
import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio.features import SAMPLES_PER_FRAME, compute_features, speech_activity
from sdmtalk.audio.loading import decode_audio
from sdmtalk.data.cache import (
    file_sha1,
)
from sdmtalk.data.layouts import ClipSource
from sdmtalk.errors import InputError
from sdmtalk.face.align import to_canonical
from sdmtalk.face.detect import box_from_landmarks
from sdmtalk.face.track import TRACKING, LandmarkTracker, landmark_jitter, smooth_landmarks
from sdmtalk.motion.types import motion_from_landmarks
from sdmtalk.video import align_audio, iter_video_frames, probe_video, video_start_time

SKIP_REASONS = ("corrupt", "too_short", "no_audio", "no_speech", "no_face", "face_too_small",
                "multiple_faces", "error")


@dataclass(frozen=True)
class PrepareConfig:
    """Every setting that changes the cache's content (its sha1 is the cache's settings key)."""

    min_seconds: float = 1.0  # shorter clips are skipped (too_short)
    min_face: float = 64.0  # median face box side in source pixels (face_too_small)
    min_valid: float = 0.5  # fraction of frames where the face was found (no_face)
    min_speech: float = 0.1  # fraction of frames with speech (no_speech)
    vad: str = "silero"  # silero | energy
    # A second face counts when its box side is >= second_face_ratio x the main face's and it
    # is seen in >= second_face_frac of the detection frames (multiple_faces); see docs.
    second_face_ratio: float = 0.6
    second_face_frac: float = 0.3
    # landmark tracking and smoothing: face.track.TRACKING (shared with pose references and evaluate)
    smooth_window: int = TRACKING.smooth_window
    smooth_polyorder: int = TRACKING.smooth_polyorder
    detect_every: int = TRACKING.detect_every
    detect_max_side: int = TRACKING.detect_max_side
    max_gap_frames: int = 0  # > 0: skip clips with a longer run of lost frames (0 = no limit)

    def __post_init__(self) -> None:
        if self.vad not in ("silero", "energy"):
            raise InputError(f"unknown --vad {self.vad!r}: use silero or energy")
        if self.smooth_window < 1 or self.smooth_window % 2 == 0:
            raise InputError(f"--smooth-window must be an odd number >= 1, got {self.smooth_window}")


@dataclass
class ClipOutcome:
    """The result of one clip: ``record`` + ``arrays`` when kept, ``skip`` when not."""

    clip: ClipSource
    sha1: str
    record: dict | None = None
    arrays: dict[str, np.ndarray] | None = None
    skip: dict | None = None
    frames_decoded: int = 0
    cpu_s: float = 0.0
    stats: dict = field(default_factory=dict)


class _Skip(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class _RecordingTracker(LandmarkTracker):
    """LandmarkTracker that keeps every detection's boxes (for the several-faces filter)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.detections: list[list[tuple[float, float, float, float]]] = []

    def _detect(self, gray):
        boxes = super()._detect(gray)
        self.detections.append(boxes)
        return boxes


def process_clip(clip: ClipSource, cfg: PrepareConfig) -> ClipOutcome:
    """Never raises for a bad clip: problems become ``skip = {reason, detail}``."""
    start = time.process_time()
    out = ClipOutcome(clip, sha1="")
    try:
        out.sha1 = file_sha1(clip.path)
        _process(clip, cfg, out)
    except _Skip as s:
        out.skip = {"reason": s.reason, "detail": s.detail}
    except (InputError, OSError, av.FFmpegError) as err:  # unreadable, corrupt or truncated
        out.skip = {"reason": "corrupt", "detail": str(err)}
    except Exception as err:  # one odd clip must not end a day-long run; reported
        out.skip = {"reason": "error", "detail": f"{type(err).__name__}: {err}"}
    if out.skip is not None:
        out.skip.update(clip_id=clip.clip_id, source=clip.rel, speaker=clip.speaker,
                        split=clip.split, sha1=out.sha1, frames=out.frames_decoded)
    out.cpu_s = time.process_time() - start
    return out


def _process(clip: ClipSource, cfg: PrepareConfig, out: ClipOutcome) -> None:
    info = probe_video(clip.path)
    if info["duration"] and info["duration"] < cfg.min_seconds - 0.5 / FPS:
        raise _Skip("too_short", f"{info['duration']:.2f} s < {cfg.min_seconds} s")
    if not info["has_audio"]:
        raise _Skip("no_audio", "the video has no sound track")
    track = decode_audio(clip.path)
    speech_ranges = _speech_ranges(track.samples, cfg.vad)
    speech_frac = _covered(speech_ranges, len(track.samples))
    if speech_frac < cfg.min_speech:
        raise _Skip("no_speech", f"speech in {speech_frac:.0%} of the audio < {cfg.min_speech:.0%}")
    video_start = video_start_time(clip.path)
    frames = _FrameCounter(iter_video_frames(clip.path))
    tracker = _RecordingTracker(detect_every=cfg.detect_every, detect_max_side=cfg.detect_max_side,
                                quiet=True)
    raw, valid, _ = tracker.track(frames)
    out.frames_decoded = n = len(raw)
    expected = info["duration"] * FPS
    if expected and n < 0.8 * expected - 2:  # FFmpeg stops quietly at a cut-off file
        raise _Skip("corrupt", f"truncated: decoded {n} of ~{expected:.0f} frames")
    if n < round(cfg.min_seconds * FPS):
        raise _Skip("too_short", f"{n} frames < {cfg.min_seconds} s at {FPS} fps")
    second = _check_faces(raw, valid, tracker.detections, cfg)
    wav = align_audio(track.samples, track.start_time - video_start, n)
    speech = _frame_mask(speech_ranges, int(round((track.start_time - video_start) * SAMPLE_RATE)), n)
    out.arrays, stats = _arrays(raw, valid, wav, speech, cfg)
    out.stats = stats
    out.record = dict(
        clip_id=clip.clip_id, speaker=clip.speaker, split=clip.split, frames=n, fps=float(FPS),
        source=clip.rel, sha1=out.sha1, src_fps=round(float(info["fps"]), 3),
        width=frames.width, height=frames.height, face_size=stats["face_size"],
        valid_frac=round(float(valid.mean()), 4), speech_frac=round(float(speech.mean()), 4),
        orig_split=clip.orig_split, jitter_raw=stats["jitter_raw"], jitter_smooth=stats["jitter_smooth"],
        second_face_frac=round(second, 4),
        max_faces=max((len(d) for d in tracker.detections), default=0),
    )


class _FrameCounter:
    """Passes frames through and remembers the frame size."""

    def __init__(self, frames):
        self.frames, self.width, self.height = frames, 0, 0

    def __iter__(self):
        for f in self.frames:
            self.height, self.width = f.shape[:2]
            yield f


@lru_cache(maxsize=1)
def _silero():
    from silero_vad import load_silero_vad

    return load_silero_vad()


def _speech_ranges(samples: np.ndarray, vad: str) -> list[tuple[int, int]]:
    """Speech as [(start, end)] sample ranges of the 16 kHz track."""
    if len(samples) == 0:
        return []
    if vad == "energy":
        mask = speech_activity(samples)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
        return [(a * SAMPLES_PER_FRAME, b * SAMPLES_PER_FRAME) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    import torch
    from silero_vad import get_speech_timestamps

    ts = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(samples)), _silero(),
                               sampling_rate=SAMPLE_RATE)
    return [(int(t["start"]), int(t["end"])) for t in ts]


def _covered(ranges: list[tuple[int, int]], n: int) -> float:
    return sum(min(b, n) - a for a, b in ranges) / n if n else 0.0


def _frame_mask(ranges: list[tuple[int, int]], offset: int, num_frames: int) -> np.ndarray:
    """(T,) bool: video frames whose 40 ms span is mostly speech (ranges shifted by offset)."""
    mask = np.zeros(num_frames * SAMPLES_PER_FRAME, bool)
    for a, b in ranges:
        mask[max(0, a + offset): max(0, b + offset)] = True
    return mask.reshape(num_frames, SAMPLES_PER_FRAME).mean(axis=1) >= 0.5


def face_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T, 4) detector-style face boxes (x0, y0, x1, y1), NaN where invalid."""
    boxes = np.full((len(landmarks), 4), np.nan, np.float32)
    for i, lm in enumerate(landmarks):
        if np.isfinite(lm).all():
            boxes[i] = box_from_landmarks(lm)
    return boxes


def second_face_fraction(detections: list[list[tuple]], ratio: float) -> float:
    """Fraction of detection frames that hold a second face whose box side is at least
    ``ratio`` x the largest face's (small background faces and one-off hits do not count)."""
    if not detections:
        return 0.0
    hits = 0
    for boxes in detections:
        sides = sorted((b[2] - b[0] for b in boxes), reverse=True)
        hits += len(sides) >= 2 and sides[1] >= ratio * sides[0]
    return hits / len(detections)


def _check_faces(raw, valid, detections, cfg: PrepareConfig) -> float:
    """Apply the face filters (raise _Skip); returns the second-face fraction of a kept clip."""
    if valid.mean() < cfg.min_valid:
        raise _Skip("no_face", f"face found in {valid.mean():.0%} of frames < {cfg.min_valid:.0%}")
    if cfg.max_gap_frames > 0 and _longest_run(~valid) > cfg.max_gap_frames:
        raise _Skip("no_face", f"face lost for {_longest_run(~valid)} frames in a row")
    boxes = face_boxes(raw[valid])
    size = float(np.median(boxes[:, 2] - boxes[:, 0]))
    if size < cfg.min_face:
        raise _Skip("face_too_small", f"face box {size:.0f} px < {cfg.min_face:.0f} px")
    frac = second_face_fraction(detections, cfg.second_face_ratio)
    if frac >= cfg.second_face_frac:
        raise _Skip("multiple_faces", f"a second face in {frac:.0%} of detections")
    return frac


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def interpolate_invalid(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid frames of (T, 68, 2) linearly from the valid ones (edges hold)."""
    if valid.all():
        return landmarks.astype(np.float32)
    t = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1)
    filled = np.stack([np.interp(t, t[valid], flat[valid, j]) for j in range(flat.shape[1])], 1)
    return filled.reshape(landmarks.shape).astype(np.float32)


def _arrays(raw, valid, wav, speech, cfg: PrepareConfig) -> tuple[dict, dict]:
    smooth = smooth_landmarks(raw, valid, cfg.smooth_window, cfg.smooth_polyorder)
    landmarks = interpolate_invalid(smooth, valid)
    canonical, sims = to_canonical(landmarks)
    motion, _, _ = motion_from_landmarks(landmarks)
    feats = compute_features(wav, num_frames=len(landmarks))
    boxes = face_boxes(landmarks)
    arrays = {
        "landmarks": landmarks, "canonical": canonical, "sims": sims.astype(np.float32),
        "pose": motion.pose, "delta": motion.delta, "mel": feats.mel, "prosody": feats.prosody,
        "energy": feats.energy, "valid": valid.astype(np.uint8), "box": boxes,
        "speech": speech.astype(np.uint8),
    }
    stats = {
        "face_size": round(float(np.median(boxes[valid, 2] - boxes[valid, 0])), 2),
        "jitter_raw": _round(landmark_jitter(raw, valid)),
        "jitter_smooth": _round(landmark_jitter(smooth, valid)),
    }
    return arrays, stats


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


def config_dict(cfg: PrepareConfig) -> dict:
    return asdict(cfg)
