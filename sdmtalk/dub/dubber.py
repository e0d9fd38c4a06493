"""Dub a video: its frames and head stay, its lips say the new speech.

Two passes over the video, neither holding it in memory: the first tracks the face (while
the new speech's features are computed on another thread), the second renders each frame's
lower face (frame_source gives the frames in the output's order, ping-pong included) while
the encoder writes the mp4 at the video's own size and frame rate with the new audio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sdmtalk.dub.lips import delta_at_frames, dub_targets, rest_faces, steady_rest
from sdmtalk.dub.timeline import frames_for_audio, pingpong, plan_timeline
from sdmtalk.dub.video_face import VideoFace, track_video_face
from sdmtalk.face.mouth_state import teeth_showing
from sdmtalk.frame_source import VideoFrames
from sdmtalk.motion.types import Motion, MotionControls
from sdmtalk.render.dub import DubRenderer
from sdmtalk.render.mouth import PhotoTeeth
from sdmtalk.render.renderer import TEETH_REUSE
from sdmtalk.threads import in_background, in_thread
from sdmtalk.video import ReservedOutput, probe_video, write_mp4

Progress = Callable[[str, int, int], object]


@dataclass
class DubResult:
    """path written, frames, fps, notes (one line each: lengths, lost face, ...), the
    source frame shown at each output frame, timings (s) per stage."""

    path: Path
    frames: int
    fps: float
    notes: list[str] = field(default_factory=list)
    order: np.ndarray | None = None
    timings: dict = field(default_factory=dict)


@dataclass
class DubPlan:
    """Everything the render pass needs: the frames in output order, their landmarks."""

    video: VideoFrames
    face: VideoFace
    order: np.ndarray  # (N,) source frame per output frame
    rest: np.ndarray  # (T, 68, 2) source frames' faces at rest
    targets: np.ndarray  # (N, 68, 2) output landmarks (NaN: frame passes through)
    audio: np.ndarray
    notes: list[str]
    timings: dict
    reference: tuple[np.ndarray, np.ndarray]  # a frame with the face and its landmarks: mouth colours
    teeth: PhotoTeeth | None  # the video's own upper teeth, if it shows them


class Dubber:
    """features(wav, progress, stop) -> AudioFeatures; motion(features, canonical, controls)
    -> Motion: the pipeline's own speech front-end and lips model."""

    def __init__(self, features: Callable, motion: Callable[..., Motion], threads: int = 2,
                 progress: Progress | None = None):
        self.features, self.motion, self.threads = features, motion, threads
        self.progress = progress or (lambda stage, done, total: None)

    def plan(self, video_path: Path, wav: np.ndarray, controls: MotionControls,
             face_index: int | None = None, keep_video_length: bool = False, fps=None) -> DubPlan:
        """Track the video's face and make the new mouth motion for every output frame
        (at `fps`; None: the video's own rate)."""
        t0 = time.perf_counter()
        video = VideoFrames(video_path, fps)
        speech = in_thread(lambda stop: self.features(wav, None, stop))
        try:
            limit = None if keep_video_length else frames_for_audio(len(wav), video.fps)
            header = round(probe_video(video_path)["duration"] * float(video.fps))
            expected = min(limit or header, header) or limit or 1
            face = track_video_face(video.scan(limit, gray=True), str(video_path), face_index,
                                    progress=lambda done: self.progress("video", done, expected))
            features = speech.result()
        except BaseException:
            speech.abandon(wait=False)
            raise
        timings = {"track_features": time.perf_counter() - t0}
        scanned = len(video)
        total = scanned if limit is None or scanned < limit else max(scanned, header)
        timeline = plan_timeline(wav, total, video.fps, keep_video_length)
        order = pingpong(timeline.frames, scanned)
        rest, median = steady_rest(rest_faces(face.landmarks, face.valid), face.valid)
        t1 = time.perf_counter()
        self.progress("motion", 0, 1)
        motion = self.motion(features, median, replace(controls, still=True))
        self.progress("motion", 1, 1)
        delta = delta_at_frames(motion.delta, timeline.frames, video.fps)
        targets = dub_targets(rest[order], delta)
        timings["motion"] = time.perf_counter() - t1
        notes = [n for n in (timeline.note, *_video_notes(video, face, video_path)) if n]
        looks = _mouth_looks(video, face)
        return DubPlan(video, face, order, rest, targets, timeline.audio, notes, timings, *looks)

    def render(self, plan: DubPlan) -> Iterator[np.ndarray]:
        """The output frames, in order (even width and height, for H.264)."""
        renderer = DubRenderer(*plan.reference, teeth=plan.teeth)
        landmarks, valid = plan.face.landmarks, plan.face.valid
        h, w = plan.video.size
        for i, frame in enumerate(plan.video.read(plan.order)):
            j = plan.order[i]
            if valid[j]:
                frame = renderer.render(frame, landmarks[j], plan.rest[j], plan.targets[i])
            yield frame[: h - h % 2, : w - w % 2]

    def write(self, plan: DubPlan, claim: ReservedOutput) -> DubResult:
        """Render and encode into the claimed output (rendering on a worker thread)."""
        t0, total, done = time.perf_counter(), len(plan.order), [0]

        def tick(n: int) -> None:
            done[0] += n
            if done[0] % 25 == 0 or done[0] == total:
                self.progress(f"render {claim.path.name}", done[0], total)

        frames = self.render(plan)
        if self.threads >= 2:
            frames = in_background(frames)
        write_mp4(claim.path, frames, plan.audio, fps=plan.video.fps, progress=tick, reserved=claim)
        timings = {**plan.timings, "render_encode": time.perf_counter() - t0}
        return DubResult(claim.path, total, float(plan.video.fps), plan.notes, plan.order, timings)


def _mouth_looks(video: VideoFrames, face: VideoFace) -> tuple[tuple, PhotoTeeth | None]:
    """(the first frame with the face and its landmarks, the video's own upper teeth from its
    widest-open sampled frame if it shows them): two frames read again, in colour."""
    (first, first_lm), (widest, widest_lm) = face.reference, face.widest
    frames = dict(zip(sorted({first, widest}), video.read(sorted({first, widest})), strict=True))
    teeth = None
    if teeth_showing(frames[widest], widest_lm) >= TEETH_REUSE:
        teeth = PhotoTeeth(frames[widest], widest_lm)
    return (frames[first], first_lm), teeth


def _video_notes(video: VideoFrames, face: VideoFace, path: Path) -> list[str]:
    """One line for each thing the user should know about how the video was read."""
    fps, notes = float(video.fps), []
    if face.num_faces > 1:
        notes.append(f"{path}: up to {face.num_faces} faces seen; dubbing one (the largest unless --face-index)")
    lost = face.lost_spans()
    if lost:
        spans = ", ".join(f"{a / fps:.1f}-{b / fps:.1f} s" for a, b in lost[:5]) + (" ..." if len(lost) > 5 else "")
        count = sum(b - a for a, b in lost)
        notes.append(f"{path}: no face in {count} of {len(video)} frames ({spans}): those frames pass through "
                     "unchanged")
    if video.variable_rate:
        notes.append(f"{path} has a variable frame rate: written at a constant {fps:.3g} fps")
    h, w = video.size
    if h % 2 or w % 2:
        notes.append(f"{path} is {w}x{h}: the last pixel row/column is cut (H.264 needs even sides)")
    return notes
