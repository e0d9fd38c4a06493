"""Fixtures shared by several test modules."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import synthesize_speech
from sdmtalk.motion.sdm import build_model
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.train.checkpoint import export_weights


@pytest.fixture(scope="session")
def stream_media(tmp_path_factory):
    """(folder, speech) for the streaming tests: face.png (a face), wall.png (no face),
    tiny.safetensors (an untrained tiny SDM), speech.wav and its samples (16 kHz)."""
    d = tmp_path_factory.mktemp("media")
    Image.fromarray(data.astronaut()).save(d / "face.png")
    Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)).save(d / "wall.png")
    torch.manual_seed(0)
    export_weights(build_model(SDMConfig.tiny()).eval(), d / "tiny.safetensors")
    speech = synthesize_speech("Hello there, how are you today")
    sf.write(d / "speech.wav", speech, SAMPLE_RATE)
    return d, speech
