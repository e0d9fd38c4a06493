"""Stopping a run at every stage without waiting for the phoneme recogniser: its chunks run in
threads that a stop (a stop event, Ctrl-C) abandons, and its progress is reported per chunk.

The recogniser is replaced by a fake whose first chunk returns at once and whose others wait
for a gate that opens only when the test ends: a call that waited for them would not return
before the gate's (generous) timeout, which the tests tell from the fake's own record."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import phonemes as P
from sdmtalk.errors import Cancelled
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline

SECONDS = 45  # 4 recogniser chunks


class GatedRecogniser:
    """Stands in for hama's engine: chunk 1 returns at once, the others wait for `gate`."""

    def __init__(self):
        self.gate, self.lock = threading.Event(), threading.Lock()
        self.started, self.finished = 0, 0

    def __call__(self, model, wav):
        with self.lock:
            self.started += 1
            first = self.started == 1
        if not first:
            self.gate.wait(120)
        with self.lock:
            self.finished += 1
        return np.zeros((1, 2 * len(wav) // 640, 191), np.float32)


@pytest.fixture
def recogniser(monkeypatch):
    fake = GatedRecogniser()
    monkeypatch.setattr(P, "_run", fake)
    monkeypatch.setattr(P, "_hama_model", lambda slot=0: None)
    yield fake
    fake.gate.set()  # the abandoned threads end with the test


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("stop")
    Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR).save(d / "face.png")
    t = np.arange(SECONDS * SAMPLE_RATE) / SAMPLE_RATE
    sf.write(d / "speech.wav", (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)), SAMPLE_RATE)
    return d


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_event_ends_the_recogniser_without_waiting_for_its_chunks(recogniser, workers):
    stop, seen = threading.Event(), []

    def progress(done, total):
        seen.append((done, total))
        stop.set()  # after the first chunk, as another thread would

    with pytest.raises(Cancelled):
        P.phoneme_posteriors(np.zeros(SECONDS * SAMPLE_RATE, np.float32), SECONDS * 25, workers, progress, stop)
    assert seen == [(1, 4)]
    assert recogniser.finished == 1, "the call waited for a chunk it did not need"
    assert recogniser.started <= 1 + workers  # the abandoned threads start no further chunk


def test_progress_is_reported_per_chunk(monkeypatch):
    monkeypatch.setattr(P, "_run", lambda model, wav: np.zeros((1, 2 * len(wav) // 640, 191), np.float32))
    monkeypatch.setattr(P, "_hama_model", lambda slot=0: None)
    seen = []
    post = P.phoneme_posteriors(np.zeros(SECONDS * SAMPLE_RATE, np.float32), SECONDS * 25, 2,
                                progress=lambda done, total: seen.append((done, total)))
    assert post.shape == (SECONDS * 25, 191)
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize("threads", [1, 2])
def test_ctrl_c_in_the_audio_stage_ends_generate_at_once(recogniser, inputs, tmp_path, threads):
    seen = []

    def progress(stage, done, total):  # Ctrl-C once the bar shows the first chunk done
        seen.append((stage, done, total))
        if stage == "audio" and done >= 1:
            raise KeyboardInterrupt

    pipe = TalkingFacePipeline(motion="sdm", threads=threads, progress=progress)
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        pipe.generate(inputs / "face.png", inputs / "speech.wav", out, MotionControls())
    assert recogniser.finished == 1, "generate waited for the recogniser's other chunks"
    assert ("audio", 1, 4) in seen
    assert list(tmp_path.iterdir()) == []  # no output, no temp file
