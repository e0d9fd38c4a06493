"""Phoneme posteriors from hama's language-independent CTC phoneme recogniser (optional).

hama 1.7.0 (Apache-2.0) ships its acoustic model inside the wheel and runs on its own CPU
engine: nothing downloads at run time. Its CTC output is 20 ms frames over 191 IPA tokens
(blank included); two frames fall in each 40 ms video frame and are averaged.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.errors import InputError

HAMA_FRAMES_PER_VIDEO_FRAME = 2  # 20 ms CTC frames per 40 ms video frame
CHUNK_FRAMES = 500  # video frames (20 s) recognised at once: the recogniser's cost and memory
CONTEXT_FRAMES = 25  # grow faster than linearly with its input; 1 s of context on each side
_LOCK = threading.Lock()  # one recogniser per process; its native engine is not documented as
#                          thread-safe, and `sdmtalk serve` runs jobs in several threads


@lru_cache(maxsize=1)  # lru_cache: one model per process, loaded on first use
def _hama_model():
    try:
        import hama
    except ImportError:
        raise InputError("the phoneme front-end needs hama: pip install hama==1.7.0") from None
    return hama.ASRModel()


def phoneme_posteriors(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """(N,) float32 16 kHz mono -> (num_frames, V) float32 CTC posteriors per video frame
    (rows sum to 1; frames past the recogniser's output are left at 0).

    Long audio is recognised in 20 s chunks, each with 1 s of audio context on both sides
    that is dropped from its output, so memory stays flat at any length."""
    wav = np.asarray(wav, np.float32)
    spf = SAMPLE_RATE // FPS
    parts = []
    for start in range(0, max(num_frames, 1), CHUNK_FRAMES):
        end = min(start + CHUNK_FRAMES, num_frames)
        lo, hi = max(0, start - CONTEXT_FRAMES), min(num_frames, end + CONTEXT_FRAMES)
        post = _recognise(wav[lo * spf:hi * spf], hi - lo)
        parts.append(post[start - lo:end - lo])
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _recognise(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """One pass of the recogniser over (N,) samples -> (num_frames, V) posteriors."""
    model = _hama_model()
    feeds = {model._waveform_input_name: np.asarray(wav, np.float32)[None],
             model._waveform_lengths_input_name: np.array([len(wav)], np.int64)}
    with _LOCK:
        log_probs, _ = model.session.run([model._log_probs_output_name, model._out_lengths_output_name],
                                         feeds)
    post = np.exp(log_probs[0].astype(np.float64))  # (F, V)
    n = min(len(post), HAMA_FRAMES_PER_VIDEO_FRAME * num_frames)
    out = np.zeros((num_frames, post.shape[1]), np.float64)
    np.add.at(out, np.arange(n) // HAMA_FRAMES_PER_VIDEO_FRAME, post[:n])
    return (out / HAMA_FRAMES_PER_VIDEO_FRAME).astype(np.float32)
