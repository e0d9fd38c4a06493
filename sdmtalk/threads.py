"""Thread helpers shared by the offline pipeline and the stream: how many cores to use,
torch's thread count for a block, and an iterator run in a worker thread."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np


def default_threads() -> int:
    """Cores this process may use, at most 2: rendering and encoding overlap on two."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


@contextmanager
def torch_threads(n: int):
    """torch intra-op threads for a block. The motion models are small: one thread is as fast
    as two on an idle machine and does not collapse (60 s instead of 1 s) when another
    process keeps the cores busy; it also makes the motion identical on every machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def in_background(frames: Iterator[np.ndarray], maxsize: int = 8) -> Iterator[np.ndarray]:
    """Run the `frames` iterator in a worker thread (rendering on one core while the caller
    encodes on another). Bounded queue: memory stays flat. Errors re-raise in the caller;
    when the caller stops early (error, Ctrl-C, SIGTERM) the worker stops too."""
    q: queue.Queue = queue.Queue(maxsize)
    stop, done = threading.Event(), object()

    def work():
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        q.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as err:  # handed to the caller, which raises it
            q.put(err)

    worker = threading.Thread(target=work, name="sdmtalk-render", daemon=True)
    worker.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


class ThreadResult:
    """The outcome of fn(stop) run in a worker thread: result() waits, then returns or raises.
    `stop` is set when the caller gives up (an error, Ctrl-C): fn should then end early."""

    def __init__(self, fn: Callable[[threading.Event], object]):
        self._value, self._error, self.stop = None, None, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fn,), name="sdmtalk-features", daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            self._value = fn(self.stop)
        except BaseException as err:  # re-raised in the caller by result()
            self._error = err

    def abandon(self, wait: bool = True) -> None:
        """Tell fn to stop, and wait until it has (not for a Ctrl-C: the process is ending)."""
        self.stop.set()
        if wait:
            self._thread.join()

    def result(self, poll: Callable[[], object] | None = None):
        """Wait in steps of 0.1 s, calling poll() after each (a Ctrl-C acts within a step)."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.1)
                if poll is not None:
                    poll()
        except BaseException:
            self.stop.set()
            raise
        if self._error is not None:
            raise self._error
        return self._value


def in_thread(fn: Callable[[threading.Event], object]) -> ThreadResult:
    """Start fn(stop) in a worker thread now (a stage that overlaps the caller's work)."""
    return ThreadResult(fn)
