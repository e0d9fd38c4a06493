"""Phoneme posteriors from hama's language-independent CTC phoneme recogniser (optional).

hama 1.7.0 (Apache-2.0) ships its acoustic model inside the wheel and runs on its own CPU
engine: nothing downloads at run time. Its CTC output is 20 ms frames over 191 IPA tokens
(blank included); two frames fall in each 40 ms video frame and are averaged.
"""

from __future__ import annotations

import queue
from functools import lru_cache

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.errors import InputError

HAMA_FRAMES_PER_VIDEO_FRAME = 2  # 20 ms CTC frames per 40 ms video frame
CHUNK_FRAMES = 500  # video frames (20 s) recognised at once: the recogniser's cost and memory
CONTEXT_FRAMES = 25  # grow faster than linearly with its input; 1 s of context on each side
MAX_WORKERS = 2  # recognisers that may run at once, each its own native session: the engine is
#                 not documented as thread-safe, and `sdmtalk serve` runs jobs in several threads
_FREE_SLOTS: queue.Queue = queue.Queue()
for _slot in range(MAX_WORKERS):
    _FREE_SLOTS.put(_slot)


@lru_cache(maxsize=MAX_WORKERS)  # lru_cache: one model per slot and process, loaded on first use
def _hama_model(slot: int = 0):
    try:
        import hama
    except ImportError:
        raise InputError("the phoneme front-end needs hama: pip install hama==1.7.0") from None
    return hama.ASRModel()


def phoneme_posteriors(wav: np.ndarray, num_frames: int, workers: int = 1) -> np.ndarray:
    """(N,) float32 16 kHz mono -> (num_frames, V) float32 CTC posteriors per video frame
    (rows sum to 1; frames past the recogniser's output are left at 0).

    Long audio is recognised in chunks of at most 20 s (chunk_frames), each with 1 s of
    audio context on both sides that is dropped from its output, so memory stays flat at
    any length. workers > 1:
    chunks run on up to MAX_WORKERS threads at once, each with its own recogniser (the
    native engine releases the GIL), with the same numbers as one worker."""
    wav = np.asarray(wav, np.float32)
    spf = SAMPLE_RATE // FPS
    spans = []
    size = chunk_frames(num_frames)
    for start in range(0, max(num_frames, 1), size):
        end = min(start + size, num_frames)
        spans.append((start, end, max(0, start - CONTEXT_FRAMES), min(num_frames, end + CONTEXT_FRAMES)))

    def chunk(span):
        start, end, lo, hi = span
        return _recognise(wav[lo * spf:hi * spf], hi - lo)[start - lo:end - lo]

    workers = max(1, min(int(workers), MAX_WORKERS, len(spans)))
    if workers == 1:
        parts = [chunk(span) for span in spans]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="sdmtalk-phonemes") as pool:
            parts = list(pool.map(chunk, spans))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def chunk_frames(num_frames: int) -> int:
    """Frames per recogniser chunk: audio up to CHUNK_FRAMES is one chunk; longer audio is cut
    into an even number of equal chunks of at most CHUNK_FRAMES, so two recognisers finish
    together (60 s: 4 x 15 s, not 20 + 20 + 20 s with one recogniser idle for the last).
    It depends on the length only: the same posteriors at any number of workers."""
    if num_frames <= CHUNK_FRAMES:
        return max(num_frames, 1)
    pairs = -(-num_frames // (2 * CHUNK_FRAMES))
    return -(-num_frames // (2 * pairs))


def _recognise(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """One pass of the recogniser over (N,) samples -> (num_frames, V) posteriors, on the
    first free recogniser slot."""
    slot = _FREE_SLOTS.get()  # waits while every recogniser is busy
    try:
        log_probs = _run(_hama_model(slot), wav)
    finally:
        _FREE_SLOTS.put(slot)
    return _frame_posteriors(log_probs, num_frames)


def _run(model, wav: np.ndarray) -> np.ndarray:
    feeds = {model._waveform_input_name: np.asarray(wav, np.float32)[None],
             model._waveform_lengths_input_name: np.array([len(wav)], np.int64)}
    log_probs, _ = model.session.run([model._log_probs_output_name, model._out_lengths_output_name], feeds)
    return log_probs


def _frame_posteriors(log_probs: np.ndarray, num_frames: int) -> np.ndarray:
    """CTC log-probabilities (1, F, V) -> (num_frames, V) posteriors per video frame."""
    post = np.exp(log_probs[0].astype(np.float64))  # (F, V)
    n = min(len(post), HAMA_FRAMES_PER_VIDEO_FRAME * num_frames)
    out = np.zeros((num_frames, post.shape[1]), np.float64)
    np.add.at(out, np.arange(n) // HAMA_FRAMES_PER_VIDEO_FRAME, post[:n])
    return (out / HAMA_FRAMES_PER_VIDEO_FRAME).astype(np.float32)
