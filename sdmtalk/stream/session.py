"""FaceStream: one photo that talks while its speech is still arriving.

    push(samples) ─► inbox ─► [motion thread] AudioWindow ─► MotionStream ─► landmarks + blinks
                 ─► FramePacer ─► [stream thread] Renderer ─► on_frame(frame, index)

Motion of the next span is made while this span renders, and it keeps pace with the audio
(it is cheap): the motion thread never waits for rendering. push() never blocks; on_frame
runs on the stream thread and should return quickly. When rendering or on_frame falls
behind by more than StreamConfig.max_latency_s, frames are skipped (the next one rendered is
the newest committed one; stream/pacing.py has the rule): latency stays bounded, the audio is never
skipped, and a skipped index is absent from on_frame. stats(): frames, dropped, latency.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from sdmtalk import FPS
from sdmtalk.face import FaceDetection, to_canonical
from sdmtalk.motion.types import Motion, MotionControls
from sdmtalk.render.blinks import blink_closure, close_eyes
from sdmtalk.stream.audio import SAMPLES_PER_FRAME, AudioWindow
from sdmtalk.stream.motion import MotionStream, StreamConfig
from sdmtalk.stream.pacing import FramePacer, PushClock
from sdmtalk.threads import torch_threads

_END, _STOP = object(), object()
FrameCallback = Callable[[np.ndarray, int], object]


class BlinkTrack:
    """The offline blink schedule of a seed (render.blinks), handed out frame range by range."""

    def __init__(self, seed: int):
        self.seed, self._closure = seed, np.zeros(0)

    def between(self, start: int, end: int) -> np.ndarray:
        if end > len(self._closure):  # the schedule of a seed never changes its past
            self._closure = blink_closure(max(end, 2 * len(self._closure), 10 * FPS), self.seed, FPS)
        return self._closure[start:end]


class SpeechToMotion:
    """AudioWindow + MotionStream without threads: push audio, get (first frame, Motion) of
    each span as soon as it can be committed (the logic FaceStream runs on its motion thread)."""

    def __init__(self, model, source_canonical: np.ndarray, controls: MotionControls,
                 config: StreamConfig | None = None):
        self.config = config or StreamConfig()
        self.motion = MotionStream(model, source_canonical, controls, self.config)
        self.audio = AudioWindow(model.needs_phonemes, self.config.feature_context_s, self.config.phoneme_context_s,
                                 self.config.longest_step + self.config.latency_frames + 1)
        self.timings = {"features": 0.0, "motion": 0.0}

    def warm_up(self) -> None:
        """One throwaway step on silence: the recogniser and torch pay their first-call cost
        here, not on the stream's first frame."""
        scratch = SpeechToMotion(self.motion.model, self.motion.source, self.motion.controls, self.config)
        list(scratch.push(np.zeros(self.config.latency_frames * SAMPLES_PER_FRAME, np.float32)))

    def push(self, samples: np.ndarray) -> Iterator[tuple[int, Motion]]:
        """Audio in -> the spans it completes, one span per step."""
        self.audio.push(samples)
        return self._steps(self.config.span)

    def hear(self, samples: np.ndarray) -> None:
        """Audio in, no step yet (catch_up steps later)."""
        self.audio.push(samples)

    @property
    def behind(self) -> int:
        """Frames heard but not committed."""
        return self.audio.frames - self.motion.done

    def catch_up(self) -> Iterator[tuple[int, Motion]]:
        """The spans the audio heard so far completes, in steps of up to
        config.longest_step frames when more than one span is ready (fewer, cheaper steps)."""
        return self._steps(self.config.longest_step)

    def end(self) -> Iterator[tuple[int, Motion]]:
        """No more audio: the remaining frames (the last without look-ahead)."""
        self.audio.end()
        return self._steps(self.config.span)

    def _steps(self, longest: int) -> Iterator[tuple[int, Motion]]:
        while (commit := self._ready(longest)) > 0:
            start = self.motion.done
            t0 = time.perf_counter()
            feats = self.audio.features(start, min(self.audio.frames, start + commit + self.config.lookahead))
            t1 = time.perf_counter()
            with torch_threads(1):
                motion = self.motion.step(feats, commit)
            self.timings["features"] += t1 - t0
            self.timings["motion"] += time.perf_counter() - t1
            yield start, motion

    def _ready(self, longest: int) -> int:
        """Frames the next step commits, whole spans up to `longest` (0: wait for more audio)."""
        left = self.audio.frames - self.motion.done
        if left <= 0:
            return 0
        if self.audio.ended:
            return min(self.config.span, left)
        ready = (left - self.config.lookahead) // self.config.span * self.config.span
        return min(longest, ready) if ready > 0 else 0


def stream_motion(model, wav: np.ndarray, source_canonical: np.ndarray, controls: MotionControls,
                  config: StreamConfig | None = None, chunk: int = 640,
                  steps: SpeechToMotion | None = None) -> Motion:
    """The motion a stream makes of (N,) 16 kHz `wav` pushed in `chunk`-sample pieces
    (evaluation: compare with model.generate on the same audio). steps: a SpeechToMotion of
    these arguments to run instead of a new one (a benchmark that swaps some of its parts)."""
    steps = steps or SpeechToMotion(model, source_canonical, controls, config)
    parts = [m for i in range(0, len(wav), chunk) for _, m in steps.push(wav[i:i + chunk])]
    parts += [m for _, m in steps.end()]
    return Motion(np.concatenate([m.pose for m in parts]), np.concatenate([m.delta for m in parts]))


class FaceStream:
    """Frames of `face` in `image` speaking the audio pushed so far. Build it with
    TalkingFacePipeline.open_stream (which checks the inputs as `generate` does)."""

    def __init__(self, pipeline, image: np.ndarray, face: FaceDetection, controls: MotionControls,
                 on_frame: FrameCallback, config: StreamConfig | None = None):
        self.config = config or StreamConfig()
        self.rest = pipeline.rest_landmarks(face)  # motion starts from the mouth at rest
        self._face_landmarks = pipeline.face_landmarks
        canonical = to_canonical(self.rest[None])[0][0]
        self.speech = SpeechToMotion(pipeline.model, canonical, controls, self.config)
        self.speech.warm_up()
        self.renderer = pipeline.renderer(image, face)
        self.face, self.on_frame = face, on_frame
        self._blinks = BlinkTrack(controls.seed) if pipeline.blink else None
        self._inbox: queue.Queue = queue.Queue()
        self._aborted = threading.Event()
        self.error: BaseException | None = None
        self.frames_out = 0
        self.timings = {"render": 0.0, "callback": 0.0}
        self._start()

    def _start(self) -> None:
        self._clock = PushClock()
        self._pacer = FramePacer(self._clock, self.config.max_latency_s)
        self._motion = threading.Thread(target=self._make_motion, name="sdmtalk-motion", daemon=True)
        self._thread = threading.Thread(target=self._run, name="sdmtalk-stream", daemon=True)
        self._motion.start()
        self._thread.start()

    # ---- the caller's side ------------------------------------------------------------
    def push(self, samples: np.ndarray) -> None:
        """Queue (N,) float32 16 kHz mono samples; returns at once (the frames they show are
        due from now: their latency counts from here)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self._clock.pushed(len(samples))
        piece = SAMPLES_PER_FRAME * self.config.span  # the audio window holds a few steps: a span at a time
        for i in range(0, len(samples), piece):
            self._inbox.put(samples[i:i + piece])

    def close(self, timeout: float | None = None) -> None:
        """End of speech: wait until the last frame went to on_frame (frames later than the
        budget may be skipped on the way); re-raise a stream error."""
        self._clock.ended()
        self._inbox.put(_END)
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def abort(self, timeout: float = 5.0) -> None:
        """Stop now (a client went away): no more frames; returns within about one step."""
        self._stop()
        self._thread.join(timeout)

    def stats(self) -> dict:
        """frames (out so far), dropped (skipped to keep the latency budget), latency p50,
        p95, max (s, push of a frame's first sample -> its on_frame call; None before any)."""
        return self._pacer.stats()

    def pushed_at(self, index: int) -> float:
        """time.perf_counter() when frame `index`'s first sample was pushed (its lateness
        counts from there)."""
        return self._clock.at(index)

    @property
    def stage_seconds(self) -> dict:
        """Seconds spent so far in features, motion, render and on_frame."""
        return {**self.speech.timings, **self.timings}

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # ---- the stream thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._aborted.is_set() and (item := self._pacer.next()) is not None:
                index, landmarks = item
                t0 = time.perf_counter()
                frame = self.renderer.render(landmarks)
                self.timings["render"] += time.perf_counter() - t0
                if not self._aborted.is_set():
                    self._emit(frame, index)
        except BaseException as err:  # handed to close(); a server logs it
            self.error = err
        finally:  # the motion thread stops too (at once when it waits for audio)
            self._stop()
            self._motion.join()

    def _stop(self) -> None:
        self._aborted.set()
        self._inbox.put(_STOP)
        self._pacer.finish()

    def _emit(self, frame: np.ndarray, index: int) -> None:
        t0 = time.perf_counter()
        self._pacer.sent(index)
        self.on_frame(frame, index)
        self.timings["callback"] += time.perf_counter() - t0
        self.frames_out += 1

    def _make_motion(self) -> None:
        """The motion thread: every committed span to the pacer, as soon as it is made."""
        try:
            for start, landmarks in self._spans():
                self._pacer.put(start, landmarks)
            self._pacer.finish()
        except BaseException as err:  # raised on the stream thread
            self._pacer.finish(err)

    def _spans(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first frame, landmarks (n, 68, 2) photo pixels) of each committed span. Audio
        that waits in the inbox is heard first: a motion that fell behind catches up in
        longer steps (SpeechToMotion.catch_up)."""
        while not self._aborted.is_set():
            item = self._inbox.get()
            if item is _STOP:
                return
            if item is not _END:
                self.speech.hear(item)
                if not self._inbox.empty() and self.speech.behind < self.config.longest_step + self.config.lookahead:
                    continue
            for start, motion in self._steps(ended=item is _END):
                if self._aborted.is_set():
                    return
                yield start, self._landmarks(motion, start)
            if item is _END:
                return

    def _steps(self, ended: bool) -> Iterator[tuple[int, Motion]]:
        yield from self.speech.catch_up()
        if ended:
            yield from self.speech.end()

    def _landmarks(self, motion: Motion, start: int) -> np.ndarray:
        landmarks = self._face_landmarks(self.rest, motion)
        if self._blinks is not None:
            landmarks = close_eyes(landmarks, self._blinks.between(start, start + len(motion)))
        return landmarks
