"""FaceStream: one photo that talks while its speech is still arriving.

    push(samples) ─► inbox ─► [motion thread] AudioWindow ─► MotionStream ─► landmarks + blinks
                                     ─► [stream thread] Renderer ─► on_frame(frame, index)

The two threads are the pipeline's own overlap (pipeline._in_background): motion of the next
span is made while this span renders. push() never blocks; on_frame runs on the stream
thread and should return quickly (a slow consumer slows the stream, never the caller).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from sdmtalk import FPS
from sdmtalk.face import FaceDetection, to_canonical
from sdmtalk.motion.types import Motion, MotionControls, apply_motion
from sdmtalk.render import Renderer
from sdmtalk.render.blinks import blink_closure, close_eyes
from sdmtalk.stream.audio import SAMPLES_PER_FRAME, AudioWindow
from sdmtalk.stream.motion import MotionStream, StreamConfig

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
        self.audio = AudioWindow(model.needs_phonemes, self.config.feature_context_s,
                                 self.config.phoneme_context_s, self.config.latency_frames + 1)
        self.timings = {"features": 0.0, "motion": 0.0}

    def warm_up(self) -> None:
        """One throwaway step on silence: the recogniser and torch pay their first-call cost
        here, not on the stream's first frame."""
        scratch = SpeechToMotion(self.motion.model, self.motion.source, self.motion.controls, self.config)
        list(scratch.push(np.zeros(self.config.latency_frames * SAMPLES_PER_FRAME, np.float32)))

    def push(self, samples: np.ndarray) -> Iterator[tuple[int, Motion]]:
        self.audio.push(samples)
        return self._steps()

    def end(self) -> Iterator[tuple[int, Motion]]:
        """No more audio: the remaining frames (the last without look-ahead)."""
        self.audio.end()
        return self._steps()

    def _steps(self) -> Iterator[tuple[int, Motion]]:
        from sdmtalk.pipeline import torch_threads

        while (commit := self._ready()) > 0:
            start = self.motion.done
            t0 = time.perf_counter()
            feats = self.audio.features(start, min(self.audio.frames, start + self.config.latency_frames))
            t1 = time.perf_counter()
            with torch_threads(1):
                motion = self.motion.step(feats, commit)
            self.timings["features"] += t1 - t0
            self.timings["motion"] += time.perf_counter() - t1
            yield start, motion

    def _ready(self) -> int:
        """Frames the next step commits (0: wait for more audio)."""
        left = self.audio.frames - self.motion.done
        if left <= 0:
            return 0
        if self.audio.ended:
            return min(self.config.span, left)
        return self.config.span if left >= self.config.latency_frames else 0


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
        canonical = to_canonical(face.landmarks[None])[0][0]
        self.speech = SpeechToMotion(pipeline.model, canonical, controls, self.config)
        self.speech.warm_up()
        self.renderer = Renderer(image, face.landmarks, size=pipeline.size, crop=pipeline.crop)
        self.face, self.on_frame = face, on_frame
        self._blinks = BlinkTrack(controls.seed) if pipeline.blink else None
        self._inbox: queue.Queue = queue.Queue()
        self._aborted = threading.Event()
        self.error: BaseException | None = None
        self.frames_out = 0
        self.timings = {"render": 0.0, "callback": 0.0}
        self._thread = threading.Thread(target=self._run, name="sdmtalk-stream", daemon=True)
        self._thread.start()

    # ---- the caller's side ------------------------------------------------------------
    def push(self, samples: np.ndarray) -> None:
        """Queue (N,) float32 16 kHz mono samples; returns at once."""
        self._inbox.put(np.asarray(samples, np.float32).reshape(-1))

    def close(self, timeout: float | None = None) -> None:
        """End of speech: wait until every frame went to on_frame; re-raise a stream error."""
        self._inbox.put(_END)
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error

    def abort(self, timeout: float = 5.0) -> None:
        """Stop now (a client went away): no more frames; returns within about one step."""
        self._aborted.set()
        self._inbox.put(_STOP)
        self._thread.join(timeout)

    @property
    def stage_seconds(self) -> dict:
        """Seconds spent so far in features, motion, render and on_frame."""
        return {**self.speech.timings, **self.timings}

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # ---- the stream thread ------------------------------------------------------------
    def _run(self) -> None:
        from sdmtalk.pipeline import _in_background

        try:
            for start, landmarks in _in_background(self._spans(), maxsize=4):
                for i, lm in enumerate(landmarks):
                    if self._aborted.is_set():
                        return
                    t0 = time.perf_counter()
                    frame = self.renderer.render(lm)
                    self.timings["render"] += time.perf_counter() - t0
                    self._emit(frame, start + i)
        except BaseException as err:  # handed to close(); a server logs it
            self.error = err

    def _emit(self, frame: np.ndarray, index: int) -> None:
        t0 = time.perf_counter()
        self.on_frame(frame, index)
        self.timings["callback"] += time.perf_counter() - t0
        self.frames_out += 1

    def _spans(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first frame, landmarks (n, 68, 2) photo pixels) of each committed span."""
        while True:
            item = self._inbox.get()
            if item is _STOP:
                return
            spans = self.speech.end() if item is _END else self.speech.push(item)
            for start, motion in spans:
                if self._aborted.is_set():
                    return
                yield start, self._landmarks(motion, start)
            if item is _END:
                return

    def _landmarks(self, motion: Motion, start: int) -> np.ndarray:
        landmarks = apply_motion(self.face.landmarks, motion)
        if self._blinks is not None:
            landmarks = close_eyes(landmarks, self._blinks.between(start, start + len(motion)))
        return landmarks
