"""Streaming features and FaceStream: the sliding-window features equal the offline ones,
a stream of a photo gives one frame per 40 ms of speech in order, a slow consumer loses
frames instead of falling behind (pacing), errors are the CLI's."""

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
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline, load_motion_model, validate_request
from sdmtalk.stream import AudioWindow, StreamConfig, hold_skipped
from sdmtalk.stream.pacing import FramePacer, PushClock
from sdmtalk.stream.session import SpeechToMotion

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

    every = StreamConfig(max_latency_s=None)  # pushed faster than real time: keep every frame
    stream = pipe.open_stream(folder / "face.png", on_frame, MotionControls(seed=1), config=every)
    wav = speech[: 2 * SAMPLE_RATE]
    for i in range(0, len(wav), 640):
        stream.push(wav[i:i + 640])
    stream.close()
    assert [i for i, _ in frames] == list(range(50)) and frames[0][1] == (256, 256, 3)
    assert set(stream.stage_seconds) == {"features", "motion", "render", "callback"}
    stats = stream.stats()
    assert stats["frames"] == 50 and stats["dropped"] == 0
    assert 0 <= stats["latency_p50"] <= stats["latency_p95"] <= stats["latency_max"]
    stream = pipe.open_stream(folder / "face.png", on_frame, MotionControls(seed=1))
    for _ in range(0, 10 * SAMPLE_RATE, 640):
        stream.push(np.zeros(640, np.float32))
    t0 = time.monotonic()
    stream.abort(timeout=600)  # a stuck stream would hold it to the end; one step is well under 60 s
    assert time.monotonic() - t0 < 60 and not stream.running


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


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_pacer_skips_to_the_newest_frame_once_the_oldest_is_past_the_budget():
    now = FakeClock()
    clock = PushClock(now)
    pacer = FramePacer(clock, 0.5, now=now)
    for i in range(12):  # frame i's audio arrives at 40 ms i
        now.t = 0.04 * i
        clock.pushed(640)
    now.t = 0.3
    pacer.put(0, ["a0", "a1", "a2", "a3"])
    now.t = 0.5  # frame 0 is 0.5 s old: within the budget
    assert pacer.next() == (0, "a0")
    pacer.sent(0)
    assert pacer.next() == (1, "a1")  # 0.46 s
    now.t = 0.6
    pacer.put(4, ["a4", "a5", "a6", "a7"])
    assert pacer.next() == (7, "a7") and pacer.dropped == 5  # frame 2: 0.52 s old, 0.3 s waiting
    pacer.sent(7)
    now.t = 9.0  # the motion lags: frames made late but not waiting go out in order
    pacer.put(8, ["a8", "a9", "a10", "a11"])
    assert [pacer.next()[0] for _ in range(3)] == [8, 9, 10] and pacer.dropped == 5
    pacer.sent(8)
    pacer.finish()
    assert pacer.next() == (11, "a11") and pacer.next() is None
    stats = pacer.stats()
    assert stats["frames"] == 3 and stats["dropped"] == 5
    assert stats["latency_max"] == pytest.approx(9.0 - 0.32)  # latencies 0.5, 0.32, 8.68
    assert stats["latency_p50"] == pytest.approx(0.5)


def test_the_pacer_keeps_every_frame_in_time_or_without_a_budget():
    now = FakeClock()
    clock = PushClock(now)
    clock.pushed(1000)  # frames 0 and 1 start in it
    now.t = 1.0
    clock.pushed(300)  # frame 2's first sample (1280) is in this one
    assert [clock.at(i) for i in range(3)] == [0.0, 0.0, 1.0]
    in_time, no_budget = FramePacer(clock, 5.0, now=now), FramePacer(clock, None, now=now)
    for pacer in (in_time, no_budget):
        pacer.put(0, ["f0", "f1", "f2"])
        pacer.finish(ValueError("motion failed"))
        now.t = 3.0 if pacer is in_time else 100.0
        assert [pacer.next()[0] for _ in range(3)] == [0, 1, 2] and pacer.dropped == 0
        with pytest.raises(ValueError, match="motion failed"):  # after the frames made before it
            pacer.next()
    assert FramePacer(clock, 0.5, now=now).stats()["latency_p95"] is None


def test_held_frames_put_a_stream_back_on_the_audio_clock():
    assert list(hold_skipped([(2, "c"), (3, "d"), (6, "g")])) == ["c", "c", "c", "d", "d", "d", "g"]


def test_a_slow_consumer_loses_frames_instead_of_falling_behind(stream_media):
    """on_frame takes 0.25 s (4 frames/s) while speech comes at 25 frames/s: kept in order,
    frames are dropped and the latency stays near the budget (every frame would leave the
    last one 75 x 0.25 - 3 = 15.75 s late); the last frame always comes."""
    folder, speech = stream_media
    pipe = TalkingFacePipeline(weights=folder / "tiny.safetensors", quiet=True)
    indices = []

    def on_frame(frame, index):
        indices.append(index)
        time.sleep(0.25)

    stream = pipe.open_stream(folder / "face.png", on_frame, MotionControls(seed=1),
                              config=StreamConfig(max_latency_s=0.5))
    wav = np.tile(speech, 2)[: 3 * SAMPLE_RATE]
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, len(wav), 640)):  # real-time pace
        time.sleep(max(0.0, t0 + 0.04 * k - time.perf_counter()))
        stream.push(wav[i:i + 640])
    stream.close()
    stats = stream.stats()
    assert indices == sorted(set(indices)) and indices[-1] == 74
    assert stats["frames"] == len(indices) and stats["frames"] + stats["dropped"] == 75 and stats["dropped"] > 30
    assert stats["latency_max"] < 10.0, stats  # generous: a loaded machine stays far below 15 s


def test_motion_that_fell_behind_catches_up_in_longer_steps(stream_media):
    """Audio heard but not yet stepped (the motion thread was busy) is committed in steps of
    up to catch_up_frames, every frame once, in order; one span per step otherwise. A single
    push longer than the audio window (4 s) still gives every frame."""
    folder, speech = stream_media
    model = load_motion_model("sdm", folder / "tiny.safetensors")
    steps = SpeechToMotion(model, CANONICAL_TEMPLATE.copy(), MotionControls(seed=1), StreamConfig(catch_up_frames=12))
    wav = speech[: 2 * SAMPLE_RATE]
    for i in range(0, len(wav), 640):
        steps.hear(wav[i:i + 640])
    spans = [(start, len(m)) for start, m in steps.catch_up()] + [(start, len(m)) for start, m in steps.end()]
    assert [n for _, n in spans] == [12, 12, 12, 8, 4, 2]
    assert [start for start, _ in spans] == [0, 12, 24, 36, 44, 48]
    steps = SpeechToMotion(model, CANONICAL_TEMPLATE.copy(), MotionControls(seed=1), StreamConfig(catch_up_frames=12))
    assert {len(m) for i in range(0, len(wav), 640) for _, m in steps.push(wav[i:i + 640])} == {4}

    pipe = TalkingFacePipeline(weights=folder / "tiny.safetensors", quiet=True)
    indices = []
    stream = pipe.open_stream(folder / "face.png", lambda frame, index: indices.append(index),
                              MotionControls(seed=1), config=StreamConfig(max_latency_s=None))
    stream.push(np.tile(speech, 3)[: 4 * SAMPLE_RATE])
    stream.close()
    assert indices == list(range(100)) and stream.stats()["dropped"] == 0
