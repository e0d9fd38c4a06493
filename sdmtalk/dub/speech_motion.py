"""The new speech's mouth motion, made a segment at a time as the dub reaches it.

Speech up to LONG frames is one segment: features and lips model over the whole speech, as
`generate` does. Longer speech is cut into equal segments of at most SEGMENT frames, each
made from its own audio with MARGIN frames of context on either side and cross-faded into
the next over 2 * FADE frames; the next segment is made on a worker thread while the
current one is rendered. Memory is then that of one segment whatever the length: the whole
clip's features and motion of 10 minutes took ~0.3 GB more than those of 10 s. The speech
itself may be read from disk as it is used (audio.loading.SpooledAudio).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from sdmtalk import FPS
from sdmtalk.audio.features import SAMPLES_PER_FRAME, num_frames_for
from sdmtalk.audio.loading import SpooledAudio
from sdmtalk.motion.types import MotionControls
from sdmtalk.threads import ThreadResult, in_thread

SEGMENT = 20 * FPS  # frames of speech per segment (at most): lip sync as one piece (probes/probe_dub_segments.py)
LONG = 90 * FPS  # speech up to 90 s is made in one piece, like generate's (segments: +8 % time at 60 s)
MARGIN = 4 * FPS  # context either side: well past the lips model's reach (content 16 frames)
FADE = FPS // 2  # half-width of the cross-fade at each segment boundary


class SpeechMotion:
    """delta(i): the speech's mouth delta (68, 2) at output frame i of a video at `fps`.

    features(wav, progress, stop) -> AudioFeatures; motion(features, canonical, controls,
    report) -> Motion (report: show its progress; only the first segment does). The first
    segment's features start at once (they overlap the face tracking); its motion waits for
    `begin(canonical)`, the face the lips model animates."""

    def __init__(self, wav: np.ndarray | SpooledAudio, features: Callable, motion: Callable, controls: MotionControls,
                 fps: Fraction):
        self.wav, self.features, self.motion, self.controls = wav, features, motion, controls
        self.fps, self.total = fps, max(1, num_frames_for(len(wav)))
        count = 1 if self.total <= LONG else math.ceil(self.total / SEGMENT)
        self.length = math.ceil(self.total / count)  # frames per segment (the last may be shorter)
        self.count, self.canonical = count, None
        self._made: dict[int, np.ndarray] = {}
        self._pending: dict[int, ThreadResult] = {}
        self._first = in_thread(lambda stop: self.features(self._audio(0), None, stop))

    def begin(self, canonical: np.ndarray) -> None:
        self.canonical = canonical

    def delta(self, i: int) -> np.ndarray:
        """Output frame i's delta: linear in time between the speech's frames (past its end,
        its last frame)."""
        time = i / float(self.fps) * FPS
        lo = min(math.floor(time), self.total - 1)
        hi = min(lo + 1, self.total - 1)
        w = np.float32(time - math.floor(time))
        return (1 - w) * self._at(lo) + w * self._at(hi)

    def stop(self) -> None:
        """End the worker threads (none may outlive the dub)."""
        for job in [self._first, *self._pending.values()]:
            job.abandon(wait=True)

    def _span(self, k: int) -> tuple[int, int]:
        if self.count == 1:
            return 0, self.total
        return max(0, k * self.length - MARGIN), min(self.total, (k + 1) * self.length + MARGIN)

    def _audio(self, k: int) -> np.ndarray:
        if self.count == 1:
            return self.wav[:]  # the whole speech, as generate reads it
        a, b = self._span(k)
        return self.wav[a * SAMPLES_PER_FRAME:b * SAMPLES_PER_FRAME]

    def _at(self, t: int) -> np.ndarray:
        """Speech frame t's delta, cross-faded with the neighbouring segment near a boundary."""
        k = min(t // self.length, self.count - 1)
        d = self._frame(k, t)
        upper = (k + 1) * self.length
        if k + 1 < self.count and t >= upper - FADE:
            w = np.float32((t - upper + FADE + 0.5) / (2 * FADE))
            d = (1 - w) * d + w * self._frame(k + 1, t)
        elif k > 0 and t < k * self.length + FADE:
            w = np.float32((t - k * self.length + FADE + 0.5) / (2 * FADE))
            d = (1 - w) * self._frame(k - 1, t) + w * d
        return d

    def _frame(self, k: int, t: int) -> np.ndarray:
        return self._segment(k)[t - self._span(k)[0]]

    def _segment(self, k: int) -> np.ndarray:
        """Segment k's delta over its span, made now or taken from its worker; starts the
        next one's worker and forgets those behind the previous."""
        if k not in self._made:
            job = self._pending.pop(k, None)
            self._made[k] = job.result() if job is not None else self._make(k, None)
            for old in [j for j in self._made if j < k - 1]:
                del self._made[old]
            if k + 1 < self.count and k + 1 not in self._pending and k + 1 not in self._made:
                self._pending[k + 1] = in_thread(lambda stop, n=k + 1: self._make(n, stop))
        return self._made[k]

    def _make(self, k: int, stop) -> np.ndarray:
        features = self._first.result() if k == 0 else self.features(self._audio(k), None, stop)
        return self.motion(features, self.canonical, self.controls, k == 0).delta
