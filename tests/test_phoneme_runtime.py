"""hama's recogniser network on torch (sdmtalk.audio.phoneme_net) against hama's own engine,
the reference: the same arg-max token on at least 99 % of 20 ms frames and posteriors within
1e-2, on the bundled espeak-ng demo speech (always) and on real speech (the dev clips, when
../shared/data is there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdmtalk.assets import DEMO_SPEECH
from sdmtalk.audio import load_audio
from sdmtalk.audio import phonemes as P
from sdmtalk.audio.features import num_frames_for
from sdmtalk.audio.phoneme_net import (
    hama_log_probs,
    hama_weight_bytes,
    num_output_frames,
    phoneme_net,
    read_hama_package,
)

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dev"
REAL_CLIPS = ["lrs3-av2av-4", "ted-avse-e3", "vox-00098", "hdtf-wda-katiehill", "restaurant",
              "tedx-fr-transface-2"]  # English talks and interviews, noisy speech, French


def _compare(wav: np.ndarray) -> tuple[float, float, float]:
    """(arg-max agreement, largest posterior difference, mean KL(hama || torch))."""
    ref, new = hama_log_probs(wav), phoneme_net().log_probs(wav)
    assert new.shape == ref.shape == (num_output_frames(len(wav)), 191) and new.dtype == np.float32
    kl = (np.exp(ref) * (ref - new)).sum(1).mean()
    return float((ref.argmax(1) == new.argmax(1)).mean()), float(np.abs(np.exp(ref) - np.exp(new)).max()), kl


def test_the_torch_runtime_gives_hamas_posteriors_on_the_demo_speech():
    agree, diff, kl = _compare(load_audio(DEMO_SPEECH))
    assert agree >= 0.99 and diff < 1e-2 and kl < 1e-5, (agree, diff, kl)


def test_the_torch_runtime_gives_hamas_posteriors_on_noise_and_short_audio():
    rng = np.random.default_rng(0)
    for n in (201, 401, 1000, 16000):  # from the shortest hama reads within its buffer
        agree, diff, _ = _compare((0.1 * rng.standard_normal(n)).astype(np.float32))
        assert agree == 1.0 and diff < 1e-2, n


@pytest.mark.skipif(not DEV.is_dir(), reason=f"no real speech here: {DEV} (../shared/data) is absent")
def test_the_torch_runtime_gives_hamas_posteriors_on_real_speech():
    paths = [p for name in REAL_CLIPS for p in sorted((DEV / name).glob("*.mp4"))[:1]]
    assert paths, f"none of {REAL_CLIPS} under {DEV}"
    wavs = [load_audio(p) for p in paths]
    results = [_compare(wav) for wav in wavs]
    agree = np.average([r[0] for r in results], weights=[num_output_frames(len(w)) for w in wavs])
    assert agree >= 0.99, results
    assert max(r[1] for r in results) < 1e-2 and max(r[2] for r in results) < 1e-5, results


def test_the_chunked_posteriors_are_the_same_at_any_worker_count(monkeypatch):
    wav = load_audio(DEMO_SPEECH)
    T = num_frames_for(len(wav))
    monkeypatch.setattr(P, "CHUNK_FRAMES", 30)  # several chunks over the demo
    one, two = P.phoneme_posteriors(wav, T, workers=1), P.phoneme_posteriors(wav, T, workers=2)
    assert len(P.chunk_spans(T)) >= 4 and np.array_equal(one, two)
    again = P.phoneme_posteriors(wav, T, workers=2)
    assert np.array_equal(one, again)


def test_the_weight_file_is_read_as_hama_stores_it():
    weights = read_hama_package(hama_weight_bytes())
    assert weights["mel_fb"].shape == (201, 80) and weights["onnx::Conv_801"].shape == (144, 80, 3)
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in weights.values())
    assert len(weights) == 119
