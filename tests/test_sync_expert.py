"""The lip-sync expert: inputs, scores on a known relation, training on tiny synthetic
clips (seconds), weights round trip, and (realdata) the shipped weights on the dev cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_clips import synthetic_clip

from sdmtalk.sync.expert import (
    BUNDLED_SYNC_WEIGHTS,
    SyncExpertConfig,
    audio_input,
    load_expert,
    mouth_input,
    save_expert,
)
from sdmtalk.sync.score import shifted_pair, similarity_curve, sync_scores
from sdmtalk.train.sync_expert import SyncTrainConfig, benchmark, prepare_clip, train

CACHE = Path("/work/cache/shared")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


TINY = SyncExpertConfig(hidden=32, embed=16)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    clips = [prepare_clip(f"c{i}", f"spk{i % 6}", *synthetic_clip(i), np.ones(120, bool), TINY.window)
             for i in range(24)]
    val = [prepare_clip(f"v{i}", f"vs{i}", *synthetic_clip(100 + i), np.ones(120, bool), TINY.window)
           for i in range(6)]
    out = tmp_path_factory.mktemp("sync")
    cfg = SyncTrainConfig(steps=150, batch=64, warmup=20, val_every=75, threads=1, model=TINY)
    path = train(None, out, cfg, quiet=True, train_clips=clips, val_clips=val)
    return path, val, out, cfg, clips


def test_inputs_remove_identity_and_channel():
    mel, canon = synthetic_clip(0)
    a = audio_input(mel + 7.0)  # a louder / other microphone: a constant log offset
    assert np.allclose(a, audio_input(mel), atol=1e-4) and np.allclose(a.mean(0), 0, atol=1e-4)
    big = canon * 3.0 + 5.0  # another face size and position in the canonical frame
    assert np.allclose(mouth_input(big), mouth_input(canon), atol=1e-4)
    valid = np.ones(len(canon), bool)
    valid[10] = False
    assert np.isnan(mouth_input(canon, valid)[10]).all()
    extra = np.ones((len(canon), 3), np.float32)
    assert audio_input(mel, extra).shape == (len(mel), 83)


def test_similarity_curve_and_shifted_pair():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(50, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    shifts, curve = similarity_curve(e[3:], e[:-3], max_shift=5)  # audio[t] = e[t+3] = mouth[t+3]
    assert shifts[np.nanargmax(curve)] == 3  # the mouth lags the audio by 3 frames
    mel, canon = np.zeros((400, 80)), np.zeros((100, 68, 2))
    a, v = shifted_pair(mel, canon, 4)
    assert len(a) == 4 * 96 and len(v) == 96


def test_tiny_training_learns_the_relation(tiny_run):
    path, val, _, _, _ = tiny_run
    model = load_expert(path)
    res = benchmark(model, val)
    assert res["rank_acc"] >= 5 / 6
    assert res["offset_acc"] >= 0.8
    mel, canon = synthetic_clip(100)
    s = sync_scores(mel, canon, model=model)
    assert s["sync_offset"] == 0 and s["sync_conf"] > 0.1


def test_weights_round_trip_and_kind(tiny_run, tmp_path):
    path, _, _, _, _ = tiny_run
    model = load_expert(path)
    again = load_expert(save_expert(model, tmp_path / "x.safetensors"))
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    from sdmtalk.errors import InputError

    with pytest.raises(InputError, match="not found"):
        load_expert(tmp_path / "missing.safetensors")


def test_resume_continues_to_the_same_weights(tiny_run, tmp_path):
    _, val, out, cfg, clips = tiny_run
    assert train(None, tmp_path, cfg, quiet=True, train_clips=clips, val_clips=val, stop_after=75) is None
    from sdmtalk.errors import InputError

    with pytest.raises(InputError, match="--resume"):  # a fresh run never mixes with an old one
        train(None, tmp_path, cfg, quiet=True, train_clips=clips, val_clips=val)
    path = train(None, tmp_path, cfg, resume=True, quiet=True, train_clips=clips, val_clips=val)
    ref = load_expert(out / "sync_expert.safetensors").state_dict()
    got = load_expert(path).state_dict()
    assert all(torch.allclose(ref[k], got[k]) for k in ref)  # same seed, same data: same weights


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "dev").is_dir(), reason=f"real clips not found at {DATA / 'dev'}")
@pytest.mark.skipif(not (CACHE / "index.jsonl").is_file(),
                    reason=f"no prepared cache at {CACHE}: run `sdmtalk prepare {DATA} --out {CACHE}`")
def test_shipped_expert_on_dev_cache():
    from sdmtalk.data.cache import CacheReader
    from sdmtalk.train.sync_expert import load_clips

    torch.set_num_threads(1)
    assert BUNDLED_SYNC_WEIGHTS.is_file(), "the package must ship sync_expert.safetensors"
    model = load_expert()
    res = benchmark(model, load_clips(CacheReader(CACHE), "val", model.cfg.window))
    assert res["clips"] >= 20
    assert res["rank_acc"] >= 0.95  # the goal (measured 96.4 %, docs/RESULTS.md, Sync expert and AV offsets)
    assert res["offset_rel_acc"] >= 0.90  # known shifts found relative to each clip's own offset
    # absolute: several dev recordings carry their own AV offset (2-6 frames by the expert),
    # so every shift of them misses by that much; measured 63 %, the goal (90 %) is not met
    assert res["offset_acc"] >= 0.55


def test_evaluate_expert_sync_on_detected_landmarks(tiny_run):
    """evaluate's wrapper: landmarks in crop pixels (scaled, moved, a lost frame) -> scores."""
    from sdmtalk.evaluate.sync_metrics import clip_log_mel, expert_sync

    path = tiny_run[0]
    model = load_expert(path)
    mel, canon = synthetic_clip(101)
    pixels = canon * 80.0 + np.array([128.0, 140.0])
    valid = np.ones(len(pixels), bool)
    valid[40] = False
    pixels[40] = np.nan
    # the tiny expert learned raw synthetic tracks, not prepare's smoothed ones
    s = expert_sync(mel, pixels, valid, expert=model, smooth=False)
    assert s["sync_offset"] == 0 and s["sync_conf"] > 0.1
    late = expert_sync(*shifted_pair(mel, pixels, 3), expert=model, smooth=False)  # mouth 3 frames late
    assert abs(late["sync_offset"] - 3) <= 1
    assert np.isnan(expert_sync(mel, pixels, np.zeros(len(pixels), bool), expert=model)["sync_conf"])
    assert clip_log_mel(np.zeros(16000, np.float32), 25).shape == (100, 80)


def test_still_mouth_has_no_offset(tiny_run):
    model = load_expert(tiny_run[0])
    mel, canon = synthetic_clip(102)
    still = np.repeat(canon[:1], len(canon), 0)
    s = sync_scores(mel, still, model=model)
    assert np.isnan(s["sync_offset"]) and abs(s["sync_conf"]) < 1e-5
