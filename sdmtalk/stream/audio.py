"""Audio that arrives in chunks -> the speech features of recent frames, computed by the
offline functions (compute_features, phoneme_posteriors) over a sliding window.

Log-mel rows are local (a 25 ms window), so inside the window they equal the offline ones;
prosody's per-clip references (median F0, loudest frame, strongest onset) come from the
window; the phoneme recogniser hears `phoneme_context_s` before a span and whatever
look-ahead the stream has after it.
"""

from __future__ import annotations

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio import AudioFeatures, compute_features, num_frames_for
from sdmtalk.audio.phonemes import phoneme_posteriors

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS


class AudioWindow:
    """The last seconds of a stream's audio (16 kHz mono float32) and features of its frames."""

    def __init__(self, phonemes: bool = False, feature_context_s: float = 2.0,
                 phoneme_context_s: float = 0.32, max_window_frames: int = 50):
        self.phonemes = phonemes
        self.context = int(round(feature_context_s * FPS))
        self.phoneme_context = int(round(phoneme_context_s * FPS))
        self._keep = (max(self.context, self.phoneme_context) + max_window_frames) * SAMPLES_PER_FRAME
        self._samples = np.zeros(0, np.float32)
        self._offset = 0  # stream index of _samples[0]
        self.total = 0  # samples received
        self.ended = False

    def push(self, wav: np.ndarray) -> None:
        """Append (N,) float32 samples in [-1, 1] (any N, e.g. 640 = 40 ms)."""
        wav = np.asarray(wav, np.float32).reshape(-1)
        self._samples = np.concatenate([self._samples, wav])
        self.total += len(wav)
        drop = max(0, len(self._samples) - self._keep)
        if drop:
            self._samples = self._samples[drop:]
            self._offset += drop

    def end(self) -> None:
        """No more audio: the last partial frame counts (as offline: round(N / 640) frames)."""
        frames = num_frames_for(self.total)
        self.push(np.zeros(max(0, frames * SAMPLES_PER_FRAME - self.total), np.float32))
        self.total = frames * SAMPLES_PER_FRAME
        self.ended = True

    @property
    def frames(self) -> int:
        """Frames whose audio has fully arrived."""
        return self.total // SAMPLES_PER_FRAME

    def features(self, start: int, end: int) -> AudioFeatures:
        """AudioFeatures of frames [start, end) (end <= frames), from the window before `end`."""
        lo = max(0, end - self.context, -(-self._offset // SAMPLES_PER_FRAME))  # oldest whole frame held
        lo = min(lo, start)
        feats = compute_features(self._slice(lo, end), num_frames=end - lo)
        i = start - lo
        post = None
        if self.phonemes:
            plo = max(lo, start - self.phoneme_context)
            post = phoneme_posteriors(self._slice(plo, end), end - plo)[start - plo:]
        return AudioFeatures(mel=feats.mel[4 * i:], prosody=feats.prosody[i:], energy=feats.energy[i:],
                             phonemes=post)

    def _slice(self, start_frame: int, end_frame: int) -> np.ndarray:
        a = start_frame * SAMPLES_PER_FRAME - self._offset
        b = end_frame * SAMPLES_PER_FRAME - self._offset
        if a < 0:
            raise ValueError(f"frame {start_frame} is no longer in the audio window")
        return self._samples[a:b]
