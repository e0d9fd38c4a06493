"""Audio stage: decode any speech file to 16 kHz mono, then log-mel + prosody at 25 fps."""

from sdmtalk.audio.features import AudioFeatures, compute_features, num_frames_for, speech_activity
from sdmtalk.audio.loading import load_audio
from sdmtalk.audio.speech import synthesize_speech

__all__ = [
    "AudioFeatures",
    "compute_features",
    "load_audio",
    "num_frames_for",
    "speech_activity",
    "synthesize_speech",
]
