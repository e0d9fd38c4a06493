"""Speech features at the video clock: log-mel (content) and prosody (rhythm).

One video frame i (25 fps) spans samples [640 i, 640 (i + 1)) of the 16 kHz signal and owns
mel frames 4i .. 4i+3 (10 ms hop, centred windows), so every feature lines up with frame i.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import parselmouth

from sdmtalk import FPS, MEL_PER_FRAME, SAMPLE_RATE
from sdmtalk.audio.mel import slaney_mel_filters
from sdmtalk.audio.phonemes import phoneme_posteriors

N_MELS = 80
PROSODY_ONSET = 3  # prosody's column of the spectral-flux onset strength
N_FFT = 400  # 25 ms window
HOP = SAMPLE_RATE // (FPS * MEL_PER_FRAME)  # 160 samples = 10 ms
F_MIN, F_MAX = 55.0, 7600.0
LOG_FLOOR = 1e-5
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
PITCH_FLOOR, PITCH_CEILING = 75.0, 600.0
ENERGY_RANGE_DB = 60.0
ONSET_RANGE_DB = 80.0
BLOCK_ROWS = 4096  # rows per block of a long clip's arrays (video frames: 164 s of audio)
STFT_ROWS = 1024  # STFT frames per block (10 s of audio, ~4 MB of spectrum): a long dub makes one segment's
# features while it renders, and 4096 rows added ~16 MB to its peak
_ENERGY_REF_FLOOR = 1e-5  # -100 dBFS: all-silent clips get energy 0, not 1


@dataclass
class AudioFeatures:
    """Per-clip audio features at 25 fps (T video frames).

    mel: (4T, 80) float32 natural-log mel magnitude.
    prosody: (T, 4) float32 [F0 semitones re. the clip's median voiced F0 (0 unvoiced),
        voiced 0/1, energy dB re. clip max mapped [-60, 0] -> [0, 1], onset strength 0..1].
    energy: (T,) float32 frame RMS of the waveform (full-scale sine = 0.707).
    phonemes: (T, V) float32 phoneme posteriors (sdmtalk.audio.phonemes), or None when the
        motion model does not use them.
    """

    mel: np.ndarray
    prosody: np.ndarray
    energy: np.ndarray
    phonemes: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.energy.shape[0])


def num_frames_for(num_samples: int) -> int:
    """Video frames covered by `num_samples` of 16 kHz audio: round(N / 640), halves up."""
    return (int(num_samples) + SAMPLES_PER_FRAME // 2) // SAMPLES_PER_FRAME


def compute_features(wav: np.ndarray, num_frames: int | None = None,
                     phonemes: bool = False, phoneme_workers: int = 1,
                     phoneme_progress: Callable[[int, int], object] | None = None,
                     stop: threading.Event | None = None) -> AudioFeatures:
    """(N,) float32 16 kHz mono -> AudioFeatures for T = num_frames (default num_frames_for(N)).

    The waveform is cut or zero-padded to T * 640 samples first, so every output has
    exactly T (or 4T) rows. phonemes: also run the phoneme recogniser (about 0.1-0.2 s
    per second of audio on one core), for models that take its posteriors; on audio over
    20 s its chunks run on up to `phoneme_workers` threads (the same numbers), calling
    phoneme_progress(done, total) as each ends; a set `stop` event ends it (Cancelled).
    """
    num_frames = num_frames_for(len(wav)) if num_frames is None else int(num_frames)
    wav = fit_length(_as_mono(wav), num_frames * SAMPLES_PER_FRAME)
    mel = log_mel(wav)[: num_frames * MEL_PER_FRAME]
    energy = frame_rms(wav)
    f0 = pitch_track(wav)
    prosody = np.stack(
        [semitones(f0), (f0 > 0).astype(np.float32), relative_energy(energy), onset_strength(mel)],
        axis=1,
    )
    post = None
    if phonemes:
        post = phoneme_posteriors(wav, num_frames, workers=phoneme_workers,
                                  progress=phoneme_progress, stop=stop)
    return AudioFeatures(mel=mel, prosody=prosody.astype(np.float32), energy=energy, phonemes=post)


def fit_length(wav: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad (N,) to (length,)."""
    if len(wav) >= length:
        return wav[:length]
    return np.pad(wav, (0, length - len(wav)))


def _as_mono(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected mono audio of shape (N,), got {wav.shape}")
    return wav


@lru_cache(maxsize=1)
def _mel_basis() -> tuple[np.ndarray, np.ndarray]:
    basis = slaney_mel_filters(SAMPLE_RATE, N_FFT, N_MELS, F_MIN, F_MAX)  # librosa's, without librosa
    # scipy.signal.get_window("hann", N_FFT, fftbins=True), bit for bit (scipy.signal costs ~1 s to import)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    return basis.T.astype(np.float32), window  # (201, 80), (400,)


def log_mel(wav: np.ndarray) -> np.ndarray:
    """(N,) -> (1 + N // 160, 80) float32 log mel magnitude, windows centred on k * 160.

    Same numbers as librosa.feature.melspectrogram(power=1, center=True), without the
    second-long numba warm-up of the librosa STFT path.
    """
    basis, window = _mel_basis()
    padded = np.pad(_as_mono(wav), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    out = np.empty((len(frames), N_MELS), np.float32)
    for s in range(0, len(frames), STFT_ROWS):  # the whole spectrum of 10 min is ~0.4 GB
        spectrum = np.abs(np.fft.rfft(frames[s:s + STFT_ROWS] * window, axis=1))  # (M, 201)
        out[s:s + len(spectrum)] = np.log(np.maximum(spectrum @ basis, LOG_FLOOR))
    return out


def frame_rms(wav: np.ndarray) -> np.ndarray:
    """(T * 640,) -> (T,) float32 RMS of each video frame's samples."""
    blocks = wav[: len(wav) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME].reshape(-1, SAMPLES_PER_FRAME)
    out = np.empty(len(blocks), np.float32)
    for s in range(0, len(blocks), BLOCK_ROWS):  # float64 squares of 10 min would be 77 MB
        out[s:s + BLOCK_ROWS] = np.sqrt(np.mean(np.square(blocks[s:s + BLOCK_ROWS], dtype=np.float64), axis=1))
    return out


def relative_energy(rms: np.ndarray) -> np.ndarray:
    """(T,) RMS -> (T,) dB re. the clip's loudest frame, [-60, 0] dB mapped to [0, 1]."""
    ref = max(float(rms.max(initial=0.0)), _ENERGY_REF_FLOOR)
    db = 20 * np.log10(np.maximum(rms, 1e-12) / ref)
    return (np.clip(db, -ENERGY_RANGE_DB, 0.0) / ENERGY_RANGE_DB + 1.0).astype(np.float32)


def pitch_track(wav: np.ndarray) -> np.ndarray:
    """(T * 640,) -> (T,) float32 F0 in Hz per video frame, 0 where unvoiced.

    Praat autocorrelation pitch every 10 ms (75-600 Hz); a video frame is voiced when at
    least half of its pitch frames are, and its F0 is their geometric mean.
    """
    num_frames = len(wav) // SAMPLES_PER_FRAME
    if len(wav) < 4 * SAMPLE_RATE / PITCH_FLOOR:  # Praat needs a few periods of the floor
        return np.zeros(num_frames, np.float32)
    sound = parselmouth.Sound(wav.astype(np.float64), sampling_frequency=SAMPLE_RATE)
    pitch = sound.to_pitch(
        time_step=HOP / SAMPLE_RATE, pitch_floor=PITCH_FLOOR, pitch_ceiling=PITCH_CEILING
    )
    hz = pitch.selected_array["frequency"]
    index = np.minimum((pitch.xs() * FPS).astype(np.int64), num_frames - 1)
    voiced = hz > 0
    count = np.bincount(index, minlength=num_frames)
    n_voiced = np.bincount(index, weights=voiced, minlength=num_frames)
    log_sum = np.bincount(index, weights=np.log(np.where(voiced, hz, 1.0)), minlength=num_frames)
    is_voiced = (n_voiced > 0) & (2 * n_voiced >= count)
    f0 = np.where(is_voiced, np.exp(log_sum / np.maximum(n_voiced, 1)), 0.0)
    return f0.astype(np.float32)


def semitones(f0: np.ndarray) -> np.ndarray:
    """(T,) Hz -> (T,) semitones re. the median voiced F0; 0 where unvoiced."""
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros_like(f0, dtype=np.float32)
    median = np.median(f0[voiced])
    return np.where(voiced, 12 * np.log2(np.where(voiced, f0, median) / median), 0.0).astype(
        np.float32
    )


def onset_strength(mel: np.ndarray) -> np.ndarray:
    """(4T, 80) log-mel -> (T,) spectral-flux onset strength, 0..1 within the clip.

    Mean over bands of the rise in log-mel from one 10 ms frame to the next (what
    librosa.onset.onset_strength computes with lag=1, max_size=1), then the strongest
    rise inside each video frame, divided by the clip's strongest. Bands are first floored
    80 dB below the clip's peak (librosa's top_db) so hiss near the floor adds no onsets.
    """
    if mel.size == 0:
        return np.zeros(0, np.float32)
    floor = mel.max() - ONSET_RANGE_DB / 20 * np.log(10)
    flux = np.empty(len(mel), np.result_type(mel, floor))
    for s in range(0, len(mel), BLOCK_ROWS):  # in blocks: the whole clip's copies were ~0.1 GB at 10 min
        block = np.maximum(mel[max(s - 1, 0):s + BLOCK_ROWS], floor)  # with the row before, for the rise
        rise = np.diff(block, axis=0, prepend=block[:1]) if s == 0 else np.diff(block, axis=0)
        flux[s:s + len(rise)] = np.maximum(rise, 0.0).mean(axis=1)
    per_frame = flux.reshape(-1, MEL_PER_FRAME).max(axis=1)
    peak = float(per_frame.max(initial=0.0))
    return (per_frame / peak if peak > 1e-6 else np.zeros_like(per_frame)).astype(np.float32)


def speech_activity(wav: np.ndarray, num_frames: int | None = None) -> np.ndarray:
    """(N,) 16 kHz -> (T,) bool: frames whose energy is within 35 dB of the clip's loudest
    frame and above -55 dBFS, with pauses under 0.2 s bridged and blips under 0.12 s dropped.
    """
    num_frames = num_frames_for(len(wav)) if num_frames is None else int(num_frames)
    rms = frame_rms(fit_length(_as_mono(wav), num_frames * SAMPLES_PER_FRAME))
    db = 20 * np.log10(np.maximum(rms, 1e-12))
    active = db > max(float(db.max(initial=-240.0)) - 35.0, -55.0)
    active = _fill_runs(active, value=False, shorter_than=5)  # 5 frames = 0.2 s
    return _fill_runs(active, value=True, shorter_than=3)  # 3 frames = 0.12 s


def _fill_runs(mask: np.ndarray, value: bool, shorter_than: int) -> np.ndarray:
    """Flip runs of `value` shorter than `shorter_than` frames; runs of False (pauses) only
    between two runs of speech, since leading/trailing silence is not a pause."""
    mask = mask.copy()
    if mask.size == 0:
        return mask
    change = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [len(mask)]])
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        interior = start > 0 and end < len(mask)
        if mask[start] == value and end - start < shorter_than and (interior or value):
            mask[start:end] = not value
    return mask
