"""Pacing of a live stream: when each frame's audio was pushed, which committed frame is
rendered next, and the latency and drop counts of what went out.

A frame is due once its audio has been pushed (frame i shows samples [640 i, 640 (i + 1)));
its lateness is measured from the push of its first sample. The motion thread hands every
committed frame to a FramePacer; the render thread takes them in order while it keeps up.
Once the oldest waiting frame is later than the budget (StreamConfig.max_latency_s) and has
waited for the renderer more than half the budget (the renderer or the consumer fell
behind) while a newer frame waits, the waiting frames but the newest are skipped (counted
in `dropped`): the stream sheds frames instead of piling up latency. The audio and the
motion are never skipped, and a skipped index is simply absent from on_frame (the last frame
always comes). When the motion itself lags, frames are late as they are made but wait only
briefly: skipping them would cut the frame rate and hardly the latency, so they go out in
order (the motion catches up by itself: SpeechToMotion.steps, StreamConfig.catch_up_frames).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from sdmtalk.stream.audio import SAMPLES_PER_FRAME

Clock = Callable[[], float]


def behind(late_s: float, waited_s: float, budget_s: float | None) -> bool:
    """Skip the oldest waiting frame (late_s after its audio was pushed, waited_s in the
    queue) for a newer one? Yes when it is past the budget and has waited half of it."""
    return budget_s is not None and late_s > budget_s and waited_s > budget_s / 2


class PushClock:
    """When the first sample of each frame was pushed (one float per frame: 200 B/s)."""

    def __init__(self, now: Clock = time.perf_counter):
        self._now = now
        self._times = array("d")
        self._samples = 0
        self._ended: float | None = None

    def pushed(self, samples: int) -> None:
        """`samples` more samples arrived now (the caller's thread)."""
        t = self._now()
        self._samples += int(samples)
        new = -(-self._samples // SAMPLES_PER_FRAME) - len(self._times)
        if new > 0:
            self._times.extend([t] * new)

    def ended(self) -> None:
        """No more audio (a frame the end pads out counts as pushed now)."""
        self._ended = self._now()

    def at(self, index: int) -> float:
        """The time frame `index`'s first sample was pushed."""
        if index < len(self._times):
            return self._times[index]
        return self._ended if self._ended is not None else self._now()


class LatencyLog:
    """Latencies (s) of the frames that went out -> p50, p95, max (None before any)."""

    def __init__(self):
        self._seconds = array("d")

    def add(self, seconds: float) -> None:
        self._seconds.append(seconds)

    def __len__(self) -> int:
        return len(self._seconds)

    def summary(self) -> dict:
        if not self._seconds:
            return {"latency_p50": None, "latency_p95": None, "latency_max": None}
        s = np.array(self._seconds.tolist())  # a snapshot: the stream may append meanwhile
        return {"latency_p50": round(float(np.percentile(s, 50)), 4),
                "latency_p95": round(float(np.percentile(s, 95)), 4), "latency_max": round(float(s.max()), 4)}


class FramePacer:
    """Committed frames between the motion thread (put, finish) and the render thread
    (next, sent). budget_s None: never skip (every frame, however late)."""

    def __init__(self, clock: PushClock, budget_s: float | None, now: Clock = time.perf_counter):
        self.clock, self.budget_s, self._now = clock, budget_s, now
        self._waiting: deque = deque()
        self._cond = threading.Condition()
        self._finished = False
        self._error: BaseException | None = None
        self.dropped = 0
        self.latency = LatencyLog()

    def put(self, start: int, frames) -> None:
        """Frames start, start + 1, ... (one item each) are committed."""
        with self._cond:
            if not self._finished:
                t = self._now()
                self._waiting.extend((start + i, f, t) for i, f in enumerate(frames))
                self._cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        """No more frames (error: raised by next() once the waiting frames are out)."""
        with self._cond:
            self._finished = True
            self._error = self._error or error
            self._cond.notify_all()

    def next(self) -> tuple[int, object] | None:
        """The next frame to render, waiting for one; None at the end."""
        with self._cond:
            while not self._waiting and not self._finished:
                self._cond.wait()
            if not self._waiting:
                if self._error is not None:
                    raise self._error
                return None
            first, _, put_at = self._waiting[0]
            now = self._now()
            if len(self._waiting) > 1 and behind(now - self.clock.at(first), now - put_at, self.budget_s):
                self.dropped += len(self._waiting) - 1
                item = self._waiting.pop()
                self._waiting.clear()
            else:
                item = self._waiting.popleft()
            return item[:2]

    def sent(self, index: int) -> None:
        """Frame `index` goes out now: its latency is logged."""
        self.latency.add(self._now() - self.clock.at(index))

    def stats(self) -> dict:
        """frames (out), dropped, latency p50 / p95 / max (s)."""
        return {"frames": len(self.latency), "dropped": self.dropped, **self.latency.summary()}


def hold_skipped(indexed: Iterable[tuple[int, np.ndarray]]) -> Iterator[np.ndarray]:
    """(index, frame) in increasing index -> one frame per index from 0, a skipped index
    showing the frame before it (the first frame stands in for any skipped before it): the
    frames of a stream that dropped some, on the audio's clock again (e.g. for an mp4)."""
    expected, held = 0, None
    for index, frame in indexed:
        for _ in range(expected, index):
            yield frame if held is None else held
        yield frame
        expected, held = index + 1, frame
