"""Dub a video: its frames and head stay, its lips say the new speech.

Three stages run at once, none holding the video in memory: the face is tracked on one
thread (grey frames, dub.video_face.FaceTrack), the frames are decoded again in colour and
their lower face re-rendered on a second (as soon as the tracking is WARMUP frames ahead,
after the new speech's features and mouth motion are made), and the caller encodes. An
audio longer than the video then plays it backward and forward again (ping-pong), read
through frame_source in bounded blocks. Nothing else grows with the length in memory either:
the speech may be read from its file as it is used (audio.loading.SpooledAudio, as
`TalkingFacePipeline.dub` does), the track spills to disk (dub.video_face.TrackRows), and
freed heap memory is handed back when the process has grown (memory.HeapWatch). Frames are
decoded into reused arrays (frame_source, frame_convert.PooledFrames): a frame-sized allocation on every
frame, by threads that pass the frames on, is what fragmented the heap.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio.loading import SpooledAudio
from sdmtalk.dub.lips import dub_target, median_rest, steady_rest
from sdmtalk.dub.speech_motion import SpeechMotion
from sdmtalk.dub.timeline import frames_for_audio, pingpong, plan_timeline
from sdmtalk.dub.video_face import FaceTrack
from sdmtalk.face.mouth_state import teeth_showing
from sdmtalk.frame_source import VideoFrames
from sdmtalk.memory import HeapWatch, limit_heap_arenas
from sdmtalk.motion.types import Motion, MotionControls
from sdmtalk.render.dub import DubRenderer
from sdmtalk.render.mouth import PhotoTeeth
from sdmtalk.render.renderer import TEETH_REUSE
from sdmtalk.threads import in_background
from sdmtalk.video import ReservedOutput, probe_video, write_mp4

Progress = Callable[[str, int, int], object]
WATCH_EVERY = 250  # frames between two looks at the resident size (sdmtalk.memory.HeapWatch)
HEAP_ARENAS = 2  # glibc heaps the dub's threads share (decoders, tracker, render, encoder)


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
class DubJob:
    """One dub under way. frames: output frames (None: the video's own count, known when
    tracking ends); order fills as frames are rendered (the source frame of each), and
    targets too (target landmarks, NaN where the face was not found) when it is a list."""

    path: Path
    video: VideoFrames  # the tracking pass's reader: it knows each frame's source, for ping-pong
    track: FaceTrack
    speech: np.ndarray | SpooledAudio  # as given
    wav: np.ndarray | SpooledAudio  # as encoded (with --keep-video-length: padded past the video's end)
    keep_video_length: bool
    frames: int | None
    lips: SpeechMotion
    order: array = field(default_factory=lambda: array("l"))
    targets: list[np.ndarray] | None = None
    timings: dict = field(default_factory=dict)

    def stop(self) -> None:
        """End the tracking and speech threads (they stop within a frame or a segment): none
        may outlive the dub, or a native library is torn down under it at exit."""
        self.track.stop()
        self.lips.stop()


class Dubber:
    """features(wav, progress, stop) -> AudioFeatures; motion(features, canonical, controls,
    report) -> Motion (the head still): the pipeline's own speech front-end and lips model."""

    def __init__(self, features: Callable, motion: Callable[..., Motion], threads: int = 2,
                 progress: Progress | None = None):
        self.features, self.motion, self.threads = features, motion, threads
        self.progress = progress or (lambda stage, done, total: None)
        # Each thread's arena keeps its own freed blocks: with glibc's 8 per core, a long dub's
        # resident size kept rising over them (docs/RESULTS.md, Dubbing, memory)
        limit_heap_arenas(HEAP_ARENAS)

    def start(self, video_path: Path, wav: np.ndarray | SpooledAudio, controls: MotionControls,
              face_index: int | None = None, keep_video_length: bool = False, fps=None) -> DubJob:
        """Open the video and start tracking its face and computing the speech's features
        (the output at `fps`; None: the video's own rate). wav: 16 kHz samples, in memory or
        read from disk as they are used."""
        video_path = Path(video_path)
        speech = wav if isinstance(wav, SpooledAudio) else np.asarray(wav, np.float32)
        video = VideoFrames(video_path, fps)
        frames = None if keep_video_length else frames_for_audio(len(wav), video.fps)
        if keep_video_length:  # padded with silence past the video's end; the encoder cuts it there
            length = max(len(speech), int((probe_video(video_path)["duration"] + 1) * SAMPLE_RATE))
            wav = speech.padded(length) if isinstance(speech, SpooledAudio) else np.pad(speech, (0, length - len(speech)))
        expected = frames or max(1, round(probe_video(video_path)["duration"] * float(video.fps)))
        track = FaceTrack(video.scan(frames, gray=True), str(video_path), face_index,
                          progress=lambda done: self.progress("video", done, expected)).start()
        lips = SpeechMotion(wav, self.features, self.motion, replace(controls, still=True), video.fps)
        return DubJob(video_path, video, track, speech, wav, keep_video_length, frames, lips)

    def frames(self, job: DubJob) -> Iterator[np.ndarray]:
        """The output frames, in order (even width and height, for H.264)."""
        try:
            t0 = time.perf_counter()
            job.track.warmed_up()
            landmarks, _ = job.track.tracked()
            median = median_rest(landmarks)
            job.lips.begin(median)
            job.lips.delta(0)  # the first segment of the speech's motion, before rendering starts
            renderer, heap = DubRenderer(*_mouth_looks(job)), HeapWatch()
            job.timings["start"] = time.perf_counter() - t0
            for i, (j, frame) in enumerate(self._source_frames(job)):
                lm, target = job.track.landmarks(j), np.full((68, 2), np.nan, np.float32)
                if np.isfinite(lm).all():
                    rest, steady, sims = steady_rest(lm, median)
                    target = dub_target(steady, sims, job.lips.delta(i))
                    frame = renderer.render(frame, lm, rest, target)
                job.order.append(j)
                if i % WATCH_EVERY == WATCH_EVERY - 1:
                    if job.track.done:
                        heap.settle()
                    heap.check()
                if job.targets is not None:
                    job.targets.append(target)
                yield frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
        finally:
            job.stop()

    def _source_frames(self, job: DubJob) -> Iterator[tuple[int, np.ndarray]]:
        """(source index, RGB frame) for each output frame: the video from its start (a
        second reader, in step with the tracking one), then, when the audio outlasts it,
        ping-pong over the tracked frames."""
        forward = 0
        for forward, frame in enumerate(VideoFrames(job.path, job.video.fps).scan(job.frames), start=1):
            yield forward - 1, frame
        if job.frames is None or job.frames <= forward:
            return
        order = pingpong(job.frames, job.track.count())[forward:]
        yield from zip(order.tolist(), job.video.read(order), strict=True)

    def write(self, job: DubJob, claim: ReservedOutput) -> DubResult:
        """Render and encode into the claimed output (rendering on a worker thread)."""
        t0, total, done = time.perf_counter(), job.frames, [0]

        def tick(n: int) -> None:
            done[0] += n
            if done[0] % 25 == 0 or done[0] == total:
                self.progress(f"render {claim.path.name}", done[0], total or done[0])

        frames = self.frames(job)
        if self.threads >= 2:
            frames = in_background(frames)
        try:
            write_mp4(claim.path, frames, job.wav, fps=job.video.fps, progress=tick, reserved=claim)
        finally:
            job.stop()
        timings = {**job.timings, "track_render_encode": time.perf_counter() - t0}
        return DubResult(claim.path, len(job.order), float(job.video.fps), dub_notes(job),
                         np.array(job.order), timings)


def _mouth_looks(job: DubJob) -> tuple[np.ndarray, np.ndarray, PhotoTeeth | None]:
    """(the first frame with the face, its landmarks, the video's own upper teeth from the
    widest-open mouth of the warm-up frames if it shows them): two frames read in colour."""
    (first, first_lm), (widest, widest_lm) = job.track.reference, job.track.widest
    wanted = sorted({first, widest})
    frames = dict(zip(wanted, job.video.read(wanted), strict=True))
    teeth = None
    if teeth_showing(frames[widest], widest_lm) >= TEETH_REUSE:
        teeth = PhotoTeeth(frames[widest], widest_lm)
    return frames[first], first_lm, teeth


def dub_notes(job: DubJob) -> list[str]:
    """One line for each thing the user should know about how the video was used."""
    video, path, fps = job.video, job.path, float(job.video.fps)
    scanned = len(video)
    if job.keep_video_length:
        total = scanned
    else:
        total = scanned if scanned < job.frames else max(scanned, round(probe_video(path)["duration"] * fps))
    notes = [plan_timeline(len(job.speech), total, Fraction(video.fps), job.keep_video_length).note]
    if job.track.tracker.most_faces > 1:
        notes.append(f"{path}: up to {job.track.tracker.most_faces} faces seen; dubbing one "
                     "(the largest unless --face-index)")
    lost = job.track.lost_spans()
    if lost:
        spans = ", ".join(f"{a / fps:.1f}-{b / fps:.1f} s" for a, b in lost[:5]) + (" ..." if len(lost) > 5 else "")
        notes.append(f"{path}: no face in {sum(b - a for a, b in lost)} of {scanned} frames ({spans}): "
                     "those frames pass through unchanged")
    if video.variable_rate:
        notes.append(f"{path} has a variable frame rate: written at a constant {fps:.3g} fps")
    h, w = video.size
    if h % 2 or w % 2:
        notes.append(f"{path} is {w}x{h}: the last pixel row/column is cut (H.264 needs even sides)")
    return [n for n in notes if n]
