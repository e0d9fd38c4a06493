"""Streaming features and FaceStream: the sliding-window features equal the offline ones,
a stream of a photo gives one frame per 40 ms of speech in order, errors are the CLI's."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import compute_features
from sdmtalk.audio import phonemes as P
from sdmtalk.errors import InputError
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline, validate_request
from sdmtalk.stream import AudioWindow

torch.set_num_threads(1)


def test_window_features_equal_the_offline_ones(stream_media):
    _, speech = stream_media
    offline = compute_features(speech)
    window = AudioWindow(feature_context_s=2.0)
    for i in range(0, len(speech), 640):
        window.push(speech[i:i + 640])
    a, b = window.frames - 12, window.frames - 4
    feats = window.features(a, b)
    np.testing.assert_allclose(feats.mel[:-4], offline.mel[4 * a:4 * b - 4], atol=1e-4)  # the last row sees the end
    np.testing.assert_allclose(feats.energy, offline.energy[a:b], atol=1e-6)
    assert np.abs(feats.prosody[:, 1] - offline.prosody[a:b, 1]).mean() < 0.2  # voicing
    window.end()
    assert window.frames == offline.num_frames


def test_phoneme_chunks_on_two_threads_give_the_same_numbers(stream_media, monkeypatch):
    _, speech = stream_media
    monkeypatch.setattr(P, "CHUNK_FRAMES", 20)  # many chunks of a short clip
    n = len(speech) // 640
    one = P.phoneme_posteriors(speech, n, workers=1)
    two = P.phoneme_posteriors(speech, n, workers=2)
    np.testing.assert_array_equal(one, two)


def test_a_face_stream_gives_every_frame_in_order_and_stops_at_once(stream_media):
    folder, speech = stream_media
    pipe = TalkingFacePipeline(weights=folder / "tiny.safetensors", quiet=True)
    frames, lock = [], threading.Lock()

    def on_frame(frame, index):
        with lock:
            frames.append((index, frame.shape))

    stream = pipe.open_stream(folder / "face.png", on_frame, MotionControls(seed=1))
    wav = speech[: 2 * SAMPLE_RATE]
    for i in range(0, len(wav), 640):
        stream.push(wav[i:i + 640])
    stream.close()
    assert [i for i, _ in frames] == list(range(50)) and frames[0][1] == (256, 256, 3)
    assert set(stream.stage_seconds) == {"features", "motion", "render", "callback"}
    stream = pipe.open_stream(folder / "face.png", on_frame, MotionControls(seed=1))
    for _ in range(0, 10 * SAMPLE_RATE, 640):
        stream.push(np.zeros(640, np.float32))
    t0 = time.monotonic()
    stream.abort()
    assert time.monotonic() - t0 < 5 and not stream.running


def test_stream_errors_are_the_generate_lines(stream_media, tmp_path):
    folder, _ = stream_media
    pipe = TalkingFacePipeline(weights=folder / "tiny.safetensors", quiet=True)

    def line(fn):
        with pytest.raises(InputError) as err:
            fn()
        return str(err.value)

    missing = tmp_path / "missing.png"
    expected = line(lambda: validate_request(missing, folder / "speech.wav", tmp_path / "o.mp4", MotionControls()))
    assert line(lambda: pipe.open_stream(missing, print)) == expected
    expected = line(lambda: pipe.generate(folder / "wall.png", folder / "speech.wav", tmp_path / "o.mp4"))
    assert line(lambda: pipe.open_stream(folder / "wall.png", print)) == expected
    expected = line(lambda: validate_request(folder / "face.png", folder / "speech.wav", tmp_path / "o.mp4",
                                             MotionControls(), face_index=-1))
    assert line(lambda: pipe.open_stream(folder / "face.png", print, face_index=-1)) == expected
    energy = TalkingFacePipeline(motion="energy", quiet=True)
    assert "--motion sdm" in line(lambda: energy.open_stream(folder / "face.png", print))
