"""What one speech segment of a long dub adds to the resident size, part by part.

    python probes/probe_dub_segment_memory.py --speech SPEECH.wav [--rounds 3]

A dub of speech over dub.speech_motion.LONG makes a segment (SEGMENT frames and MARGIN either
side) on a worker thread while the frames render, so whatever a segment allocates lands on top
of the render's memory. This makes the first segment of SPEECH as the dub does (features with
the phoneme posteriors on 2 workers, then the lips model's still motion), each part alone and
then together, sampling the resident size every 3 ms (probe_long_speech_memory.PeakWatch),
and prints each part's time and rise above where it started. The first round includes first-use costs (the recogniser, the model's buffers);
later rounds are what every further segment adds. Feeds docs/RESULTS.md, Dubbing (memory).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from probe_long_speech_memory import PeakWatch

from sdmtalk import FPS
from sdmtalk.audio import features as audio_features
from sdmtalk.audio.loading import load_audio
from sdmtalk.audio.phonemes import phoneme_posteriors
from sdmtalk.dub.speech_motion import MARGIN, SEGMENT
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--speech", required=True, help="speech at least (SEGMENT + 2 MARGIN) frames long")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    pipe = TalkingFacePipeline(quiet=True, threads=2, blink=False)
    seconds = (SEGMENT + 2 * MARGIN) / FPS
    segment = load_audio(args.speech)[: int(seconds * audio_features.SAMPLE_RATE)]
    frames = audio_features.num_frames_for(len(segment))
    wav = audio_features.fit_length(segment, frames * audio_features.SAMPLES_PER_FRAME)
    controls = replace(MotionControls(), still=True)
    print(f"one segment: {len(segment) / audio_features.SAMPLE_RATE:.0f} s of speech, {frames} frames")
    watch = PeakWatch()
    for i in range(args.rounds):
        print(f"round {i}")
        watch.measure("log-mel", lambda: audio_features.log_mel(wav))
        watch.measure("pitch", lambda: audio_features.pitch_track(wav))
        watch.measure("phoneme posteriors (2 workers)", lambda: phoneme_posteriors(wav, frames, workers=2))
        features = watch.measure("features, all", lambda: pipe.features(segment, None, None))
        watch.measure("motion (SDM and ridge)", lambda f=features: pipe._still_motion(f, CANONICAL_TEMPLATE, controls, False))


if __name__ == "__main__":
    main()
