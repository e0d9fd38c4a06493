"""Which steps of the speech path grow with the speech's length? In-process memory peaks.

    python probes/probe_long_speech_memory.py [--seconds 600]

The bundled speech tiled to --seconds, then each step that runs over the whole clip, alone:
decoding (load_audio, from a wav written first), log-mel, frame energy, pitch, onset flux,
the phoneme recogniser, and the ridge's lips (the window matrix). For each: wall time and the
resident memory's peak above what the process held before it (sampled every 3 ms). Run at
an older commit for the "before" column. Feeds docs/RESULTS.md, Speed and memory.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from sdmtalk import SAMPLE_RATE
from sdmtalk.assets import DEMO_SPEECH
from sdmtalk.audio import compute_features, load_audio
from sdmtalk.audio import features as F
from sdmtalk.audio.phonemes import phoneme_posteriors
from sdmtalk.motion.linear import LinearBaseline


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 1e6


class PeakWatch:
    """The resident memory's peak during measure(), above its level when it began."""

    def __init__(self):
        self.base = self.peak = resident_mb()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            self.peak = max(self.peak, resident_mb())
            time.sleep(0.003)

    def measure(self, name: str, fn):
        self.base = self.peak = resident_mb()
        t0 = time.perf_counter()
        out = fn()
        print(f"{name:22s} {time.perf_counter() - t0:6.2f} s   peak +{self.peak - self.base:5.0f} MB", flush=True)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=600)
    args = ap.parse_args()
    speech = load_audio(DEMO_SPEECH)
    wav = np.tile(speech, args.seconds * SAMPLE_RATE // len(speech) + 1)[: args.seconds * SAMPLE_RATE]
    ridge = LinearBaseline.load()
    watch = PeakWatch()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        sf.write(path, wav, SAMPLE_RATE)
        watch.measure("load_audio", lambda: load_audio(path))
    fitted = F.fit_length(wav, F.num_frames_for(len(wav)) * F.SAMPLES_PER_FRAME)
    mel = watch.measure("log_mel", lambda: F.log_mel(fitted))
    watch.measure("frame_rms", lambda: F.frame_rms(fitted))
    watch.measure("pitch_track", lambda: F.pitch_track(fitted))
    watch.measure("onset_strength", lambda: F.onset_strength(mel[: F.MEL_PER_FRAME * F.num_frames_for(len(fitted))]))
    watch.measure("phoneme_posteriors", lambda: phoneme_posteriors(fitted, F.num_frames_for(len(fitted))))
    features = compute_features(wav, phonemes=True)
    watch.measure("ridge lips", lambda: ridge.predict_shape(features))


if __name__ == "__main__":
    main()
