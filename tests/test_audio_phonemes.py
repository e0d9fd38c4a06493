"""The phoneme front-end: hama posteriors per video frame, chunked for long audio."""

from __future__ import annotations

import numpy as np
import pytest

from sdmtalk.audio import compute_features, synthesize_speech
from sdmtalk.audio import phonemes as P
from sdmtalk.audio.features import num_frames_for


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize_speech("Open the window, then move the blue chair over to the wall.")


def test_posteriors_per_video_frame(speech):
    T = num_frames_for(len(speech))
    post = P.phoneme_posteriors(speech, T)
    assert post.shape == (T, 191) and post.dtype == np.float32
    assert np.allclose(post[:-1].sum(1), 1.0, atol=0.02)
    blank = post.mean(0).argmax()  # CTC: blank dominates, and speech shows other tokens
    assert (post.argmax(1) != blank).sum() >= 10
    feats = compute_features(speech, phonemes=True)
    assert feats.phonemes.shape == (feats.num_frames, 191)
    assert compute_features(speech).phonemes is None  # only when asked: it costs time


def test_long_audio_is_recognised_in_chunks_that_agree(speech, monkeypatch):
    T = num_frames_for(len(speech))
    whole = P._recognise(speech, T)
    monkeypatch.setattr(P, "CHUNK_FRAMES", 40)  # several chunks over a few seconds
    chunked = P.phoneme_posteriors(speech, T)
    assert chunked.shape == whole.shape
    assert np.mean(chunked.argmax(1) == whole.argmax(1)) > 0.8


@pytest.mark.parametrize("frames", [1, 320, 500, 501, 1500, 2001, 15000])
def test_long_audio_is_cut_into_an_even_number_of_equal_chunks(frames):
    size = P.chunk_frames(frames)
    count = -(-frames // size)
    assert size <= P.CHUNK_FRAMES
    if frames <= P.CHUNK_FRAMES:
        assert count == 1  # clips up to 20 s: one pass, as the cache was prepared
    else:  # two recognisers finish together: no chunk is left for one of them alone
        assert count % 2 == 0 and frames - (count - 1) * size >= size - count
