"""Phoneme posteriors from hama's language-independent CTC phoneme recogniser (optional).

hama 1.7.0 (Apache-2.0) ships its acoustic model inside the wheel: nothing downloads at run
time. Its network runs here on torch (sdmtalk.audio.phoneme_net, under a tenth of the CPU
time of hama's own engine, which stays the reference in tests/test_phoneme_runtime.py). Its
CTC output is 20 ms frames over 191 IPA tokens (blank included); two frames fall in each
40 ms video frame and are averaged.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio.phoneme_net import phoneme_net
from sdmtalk.errors import Cancelled
from sdmtalk.threads import torch_threads

HAMA_FRAMES_PER_VIDEO_FRAME = 2  # 20 ms CTC frames per 40 ms video frame
CHUNK_FRAMES = 500  # video frames (20 s) recognised at once: the recogniser's cost and memory
CONTEXT_FRAMES = 25  # grow faster than linearly with its input; 1 s of context on each side
MAX_WORKERS = 2  # chunks recognised at once, across all calls (`sdmtalk serve` runs jobs in
#                 several threads); they share one network: inference only, no state
POLL_SECONDS = 0.1  # the caller looks for a stop (Ctrl-C, a stop event) this often
_FREE_SLOTS: queue.Queue = queue.Queue()
_WORKING: set = set()  # chunk workers running now (an abandoned one may still be in its chunk)
for _slot in range(MAX_WORKERS):
    _FREE_SLOTS.put(_slot)


def _hama_model(slot: int = 0):
    """The recogniser for a slot: hama's network on torch, one per process, loaded on first use."""
    return phoneme_net()


def phoneme_posteriors(wav: np.ndarray, num_frames: int, workers: int = 1,
                       progress: Callable[[int, int], object] | None = None,
                       stop: threading.Event | None = None) -> np.ndarray:
    """(N,) float32 16 kHz mono -> (num_frames, V) float32 CTC posteriors per video frame
    (rows sum to 1; frames past the recogniser's output are left at 0).

    Long audio is recognised in chunks of at most 20 s (chunk_frames), each with 1 s of
    audio context on both sides that is dropped from its output, so memory stays flat at
    any length. The chunks run on up to `workers` (at most MAX_WORKERS) daemon threads
    (torch releases the GIL), with the same numbers at any count; the calling thread waits
    for them in steps of POLL_SECONDS, calling progress(done, total) as each chunk ends. A
    Ctrl-C in that wait, or a set `stop` event (-> Cancelled), ends the call at once; a busy
    thread finishes its chunk (about 0.15 core-seconds for 22 s of audio), drops the result
    and starts no other. The interpreter waits for such a thread at exit (`_finish_chunks`):
    torch torn down under a running chunk aborts the process (std::terminate).
    Torch runs on one thread per chunk worker: its default pool (one thread per core)
    beside the other stages made one worker 5-15x slower on two busy cores
    (benchmarks/bench_generate.py); the workers are the parallelism."""
    with torch_threads(1):
        return _posteriors(wav, num_frames, workers, progress, stop)


def _posteriors(wav: np.ndarray, num_frames: int, workers: int = 1,
                progress: Callable[[int, int], object] | None = None,
                stop: threading.Event | None = None) -> np.ndarray:
    """phoneme_posteriors' work, on the caller's torch thread setting."""
    wav = np.asarray(wav, np.float32)
    spans = chunk_spans(num_frames)
    workers = max(1, min(int(workers), MAX_WORKERS, len(spans)))
    if stop is not None and stop.is_set():
        raise Cancelled("phoneme recognition was stopped before it started")
    results: queue.SimpleQueue = queue.SimpleQueue()
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for index in range(len(spans)):
        todo.put(index)
    given_up = threading.Event()
    threads = [threading.Thread(target=_chunk_worker, args=(wav, spans, todo, results, given_up),
                                name="sdmtalk-phonemes", daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    parts: list = [None] * len(spans)
    try:
        for done in range(1, len(spans) + 1):
            index, part = _next_chunk(results, stop)
            parts[index] = part
            if progress is not None:
                progress(done, len(spans))
    except BaseException:
        _lower_priority(threads)
        raise
    finally:  # an error or a stop: the workers start no further chunk
        given_up.set()
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def chunk_spans(num_frames: int) -> list[tuple[int, int, int, int]]:
    """The recogniser's chunks of num_frames video frames: (start, end, lo, hi) each, where
    [start, end) are the frames it gives and [lo, hi) the frames it hears (1 s of context)."""
    size = chunk_frames(num_frames)
    return [(start, min(start + size, num_frames), max(0, start - CONTEXT_FRAMES),
             min(num_frames, start + size + CONTEXT_FRAMES))
            for start in range(0, max(num_frames, 1), size)]


def _chunk_worker(wav, spans, todo, results, given_up: threading.Event) -> None:
    """Recognise chunks from `todo` until none is left or the caller gave up."""
    _WORKING.add(threading.current_thread())
    try:
        _recognise_chunks(wav, spans, todo, results, given_up)
    finally:
        _WORKING.discard(threading.current_thread())


@atexit.register
def _finish_chunks(timeout: float = 10.0) -> None:
    """At exit, let abandoned workers end their chunk (a fraction of a second) before torch
    is torn down. A Ctrl-C of the CLI exits with os._exit and skips this."""
    deadline = time.monotonic() + timeout
    for thread in list(_WORKING):
        thread.join(max(0.0, deadline - time.monotonic()))


def _recognise_chunks(wav, spans, todo, results, given_up: threading.Event) -> None:
    spf = SAMPLE_RATE // FPS
    while not given_up.is_set():
        try:
            index = todo.get_nowait()
        except queue.Empty:
            return
        start, end, lo, hi = spans[index]
        try:
            post = _recognise(wav[lo * spf:hi * spf], hi - lo, given_up)
            results.put((index, None if post is None else post[start - lo:end - lo], None))
        except BaseException as err:  # handed to the caller, which raises it
            results.put((index, None, err))
            return


def _lower_priority(threads: list[threading.Thread]) -> None:
    """Abandoned workers finish their chunk at the lowest CPU priority (nice 19; Linux sets it
    per thread), out of the way of the cleanup after a stop or of the jobs still running."""
    if not sys.platform.startswith("linux"):
        return
    for thread in threads:
        if thread.is_alive() and thread.native_id is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, thread.native_id, 19)
            except OSError:  # ended meanwhile
                pass


def _next_chunk(results: queue.SimpleQueue, stop: threading.Event | None):
    """The next finished chunk -> (index, posteriors), waiting in steps of POLL_SECONDS so
    that a signal is handled and `stop` is seen within one step; raises a worker's error."""
    while True:
        if stop is not None and stop.is_set():
            raise Cancelled("phoneme recognition was stopped")
        try:
            index, part, err = results.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        if err is not None:
            raise err
        return index, part


def chunk_frames(num_frames: int) -> int:
    """Frames per recogniser chunk: audio up to CHUNK_FRAMES is one chunk; longer audio is cut
    into an even number of equal chunks of at most CHUNK_FRAMES, so two recognisers finish
    together (60 s: 4 x 15 s, not 20 + 20 + 20 s with one recogniser idle for the last).
    It depends on the length only: the same posteriors at any number of workers."""
    if num_frames <= CHUNK_FRAMES:
        return max(num_frames, 1)
    pairs = -(-num_frames // (2 * CHUNK_FRAMES))
    return -(-num_frames // (2 * pairs))


def _recognise(wav: np.ndarray, num_frames: int,
               given_up: threading.Event | None = None) -> np.ndarray | None:
    """One pass of the recogniser over (N,) samples -> (num_frames, V) posteriors, on the
    first free recogniser slot (None when `given_up` was set while waiting for one)."""
    slot = _FREE_SLOTS.get()  # waits while every recogniser is busy
    try:
        if given_up is not None and given_up.is_set():
            return None
        log_probs = _run(_hama_model(slot), wav)
    finally:
        _FREE_SLOTS.put(slot)
    return _frame_posteriors(log_probs, num_frames)


def _run(model, wav: np.ndarray) -> np.ndarray:
    """(N,) samples -> (1, F, V) CTC log-probabilities (the shape hama's session returns)."""
    return model.log_probs(wav)[None]


def _frame_posteriors(log_probs: np.ndarray, num_frames: int) -> np.ndarray:
    """CTC log-probabilities (1, F, V) -> (num_frames, V) posteriors per video frame."""
    post = np.exp(log_probs[0].astype(np.float64))  # (F, V)
    n = min(len(post), HAMA_FRAMES_PER_VIDEO_FRAME * num_frames)
    out = np.zeros((num_frames, post.shape[1]), np.float64)
    np.add.at(out, np.arange(n) // HAMA_FRAMES_PER_VIDEO_FRAME, post[:n])
    return (out / HAMA_FRAMES_PER_VIDEO_FRAME).astype(np.float32)
