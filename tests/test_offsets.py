"""Audio-video offsets of a cache (sdmtalk.data.offsets, measured by sdmtalk.train.offsets): shift_audio's sign and cropping on
synthetic arrays, measure -> table -> correction end to end on a tiny synthetic cache with a
tiny expert (seconds), the prepare hook, and (realdata) the shipped expert on the dev cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from synthetic_clips import synthetic_clip

from sdmtalk.cli.prepare import run_prepare_command
from sdmtalk.data.cache import ClipRecord, ShardResult, finalize, write_shard
from sdmtalk.data.offsets import OffsetRule, OffsetTable, offsets_file, shift_audio
from sdmtalk.sync.expert import SyncExpertConfig, load_expert
from sdmtalk.sync.score import clip_offset, shifted_pair
from sdmtalk.train.offsets import main, measure_offsets
from sdmtalk.train.sync_expert import SyncTrainConfig, prepare_clip, train

CACHE = Path("/work/cache/shared")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def indexed_clip(t: int, offset: int) -> dict:
    """Arrays whose values name their frame: video frame v holds v, audio frame a holds
    a + offset, so audio frame a belongs with video frame a + offset (the expert's sign:
    offset > 0 = the mouth lags the audio)."""
    v = np.arange(t, dtype=np.float32)
    a = v + offset
    return {
        "landmarks": np.repeat(v[:, None, None], 68, 1).repeat(2, 2),
        "canonical": np.repeat(v[:, None, None], 68, 1).repeat(2, 2),
        "valid": np.ones(t, np.float32), "pose": np.repeat(v[:, None], 4, 1),
        "mel": np.repeat(a, 4)[:, None].repeat(80, 1), "prosody": np.repeat(a[:, None], 4, 1),
        "energy": a.copy(), "speech": a.copy(), "phonemes": np.repeat(a[:, None], 3, 1),
        "_mean_shape": np.zeros((68, 2), np.float32), "note": "kept",
    }


@pytest.mark.parametrize("offset", [-5, -1, 0, 3, 7])
def test_shift_audio_pairs_each_video_frame_with_its_audio(offset):
    t = 40
    out = shift_audio(indexed_clip(t, offset), offset)
    n = t - abs(offset)
    assert len(out["valid"]) == n and len(out["mel"]) == 4 * n
    video = out["landmarks"][:, 0, 0]
    for key in ("prosody", "phonemes"):
        assert np.array_equal(out[key][:, 0], video), key
    assert np.array_equal(out["energy"], video) and np.array_equal(out["speech"], video)
    assert np.array_equal(out["mel"][::4, 0], video) and np.array_equal(out["mel"][3::4, 0], video)
    assert np.array_equal(out["pose"][:, 0], video) and np.array_equal(out["canonical"][:, 0, 0], video)
    assert out["note"] == "kept" and ("_mean_shape" in out) == (offset == 0)
    # every video frame kept has its own audio: nothing padded, nothing left without sound
    assert video.min() >= 0 and video.max() <= t - 1


def test_shift_audio_undoes_a_known_shift_and_keeps_none():
    t, s = 50, 4
    clip = indexed_clip(t, 0)  # in sync
    mel, canon = shifted_pair(clip["mel"], clip["canonical"], s)  # the mouth now lags by s
    assert mel[0, 0] == s and canon[0, 0, 0] == 0
    shifted = {"mel": mel, "canonical": canon, "valid": np.ones(len(canon)), "phonemes": None}
    back = shift_audio(shifted, s)
    assert np.array_equal(back["mel"][::4, 0], back["canonical"][:, 0, 0])  # in sync again
    assert back["phonemes"] is None and len(back["valid"]) == t - 2 * s
    with pytest.raises(ValueError, match="cannot be shifted"):
        shift_audio(indexed_clip(5, 0), 5)


# --- a tiny expert and a tiny cache -------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_expert(tmp_path_factory):
    torch.set_num_threads(1)
    cfg_m = SyncExpertConfig(hidden=32, embed=16)
    clips = [prepare_clip(f"c{i}", f"spk{i % 6}", *synthetic_clip(i), np.ones(120, bool), cfg_m.window)
             for i in range(24)]
    val = [prepare_clip(f"v{i}", f"vs{i}", *synthetic_clip(100 + i), np.ones(120, bool), cfg_m.window)
           for i in range(4)]
    cfg = SyncTrainConfig(steps=150, batch=64, warmup=20, val_every=150, threads=1, model=cfg_m)
    return train(None, tmp_path_factory.mktemp("expert"), cfg, quiet=True, train_clips=clips, val_clips=val)


TRUE_OFFSETS = {"a/0": 0, "a/1": 4, "b/0": -5, "b/1": 0, "c/0": 1}


def tiny_cache(root: Path) -> Path:
    """A cache of 5 synthetic clips (frames 200 -> 200 - |offset| after the recording's
    offset): a/1's mouth lags its audio by 4 frames, b/0's leads by 5."""
    shard = ShardResult(part="p000of001", number=0, sources=list(TRUE_OFFSETS))
    for i, (clip_id, off) in enumerate(TRUE_OFFSETS.items()):
        mel, canon = shifted_pair(*synthetic_clip(200 + i, 200), off)
        t = len(canon)
        shard.records.append(ClipRecord(clip_id, clip_id[0], "val" if clip_id[0] == "c" else "train", t, 25.0,
                                        f"{clip_id}.mp4", "0" * 40, shard.name))
        shard.arrays[clip_id] = {
            "landmarks": canon * 80 + 100, "canonical": canon, "sims": np.zeros((t, 4), np.float32),
            "pose": np.zeros((t, 4), np.float32), "delta": np.zeros((t, 68, 2), np.float32),
            "mel": mel, "prosody": np.zeros((t, 4), np.float32), "energy": mel.reshape(t, 4, 80).mean((1, 2)),
            "valid": np.ones(t, np.uint8), "box": np.zeros((t, 4), np.float32), "speech": np.ones(t, np.uint8),
        }
    write_shard(root, shard, "k", chunks=1)
    finalize(root, {}, "k")
    return root


def test_measure_table_and_correction_end_to_end(tiny_expert, tmp_path, monkeypatch):
    from sdmtalk.data.cache import CacheReader

    cache = tiny_cache(tmp_path / "cache")
    assert not OffsetTable(cache).available and OffsetTable(cache).get("a/1") == 0
    rule = OffsetRule(min_z=3.0)
    table = measure_offsets(cache, weights=tiny_expert, rule=rule, quiet=True)
    clips = table["clips"]
    for clip_id, true in TRUE_OFFSETS.items():
        assert abs(clips[clip_id]["offset"] - true) <= 1, (clip_id, clips[clip_id])
    assert clips["a/1"]["applied"] in (3, 4, 5) and clips["b/0"]["applied"] in (-6, -5, -4)
    assert clips["a/1"]["z"] >= 3 and clips["a/0"]["applied"] == 0 and clips["c/0"]["applied"] == 0
    assert table["summary"]["train"]["corrected"] == 2 and table["summary"]["val"]["clips"] == 1
    assert json.loads(offsets_file(cache).read_text())["clips"] == clips
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*.tmp"))

    offsets = OffsetTable(cache)
    reader = CacheReader(cache)
    assert offsets.available and offsets.corrected() == 2
    model = load_expert(tiny_expert)
    for rec in reader.clips():
        assert offsets.get(rec) == offsets.get(rec.clip_id) == clips[rec.clip_id]["applied"]
        fixed = shift_audio(reader.load(rec), offsets.get(rec))
        after = clip_offset(model, fixed["mel"], fixed["canonical"], fixed["valid"] > 0)
        assert abs(after["offset"]) <= 1, (rec.clip_id, after)
    assert offsets.get("no/such") == 0

    # a rerun measures nothing again; another rule re-decides on the kept measurements
    import sdmtalk.train.offsets as mod

    monkeypatch.setattr(mod, "clip_offset", lambda *a, **k: pytest.fail("measured again"))
    assert measure_offsets(cache, weights=tiny_expert, quiet=True)["clips"] == clips  # rule kept
    strict = measure_offsets(cache, weights=tiny_expert, rule=OffsetRule(min_z=1e9), quiet=True)
    assert strict["summary"]["train"]["corrected"] == 0 and OffsetTable(cache).corrected() == 0
    assert strict["clips"]["a/1"]["offset"] == clips["a/1"]["offset"]
    assert main(["--cache", str(cache), "--weights", str(tiny_expert), "--min-z", "3", "-q"]) == 0
    assert OffsetTable(cache).corrected() == 2  # min_z back to 3, the rest of the rule as before


def test_cross_fit_measures_train_clips_with_experts_that_never_saw_them(tmp_path, monkeypatch):
    import sdmtalk.train.offsets as mod

    monkeypatch.setattr(mod, "CROSS_FIT_STEPS", 20)  # the plumbing, not the experts' quality
    cache = tiny_cache(tmp_path / "cache")
    table = measure_offsets(cache, cross_fit=2, quiet=True)
    folds = json.loads((cache / mod.CROSS_FIT_DIR / "folds.json").read_text())
    assert table["cross_fit"] == 2 and folds == {"folds": 2, "speakers": {"a": 0, "b": 1}}
    for clip_id, e in table["clips"].items():
        assert e.get("expert") == {"a": "fold0", "b": "fold1", "c": None}[clip_id[0]]
    monkeypatch.setattr(mod, "clip_offset", lambda *a, **k: pytest.fail("measured again"))
    assert measure_offsets(cache, quiet=True) == table  # a rerun (prepare's) keeps the cross-fit
    with pytest.raises(mod.InputError, match="holds experts of 2 folds"):
        mod.cross_fit_experts(cache, 3)


def test_linear_rows_use_the_table(tiny_expert, tmp_path):
    from sdmtalk.data.cache import CacheReader
    from sdmtalk.motion.linear import LinearConfig
    from sdmtalk.train.linear import load_rows

    cache = tiny_cache(tmp_path / "cache")
    measure_offsets(cache, weights=tiny_expert, quiet=True)
    reader, table = CacheReader(cache), OffsetTable(cache)
    plain = {c.clip_id: c for c in load_rows(reader, "train", LinearConfig())}
    fixed = {c.clip_id: c for c in load_rows(reader, "train", LinearConfig(), table)}
    for clip_id, c in fixed.items():
        assert len(c.x) == len(plain[clip_id].x) - abs(table.get(clip_id))


def test_cli_errors_in_one_line(tmp_path, capsys):
    assert main(["--cache", str(tmp_path / "nothing"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sdmtalk: error:") and "\n" not in err and "manifest.json" in err


def test_prepare_writes_the_table_at_its_end(tmp_path, monkeypatch, capsys):
    import sdmtalk.data.prepare as prepare_module

    def fake_prepare(src, out, **kw):
        tiny_cache(Path(out))
        return SimpleNamespace(lines=lambda: ["prepared 5 clips"])

    monkeypatch.setattr(prepare_module, "prepare_dataset", fake_prepare)
    parser = argparse.ArgumentParser()
    prepare_module.add_prepare_arguments(parser)
    out = tmp_path / "c"
    assert run_prepare_command(parser.parse_args([str(tmp_path), "--out", str(out), "--no-phonemes"])) == 0
    assert "audio-video offsets (offsets.json): train:" in capsys.readouterr().out
    assert set(json.loads(offsets_file(out).read_text())["clips"]) == set(TRUE_OFFSETS)
    other = tmp_path / "d"
    args = parser.parse_args([str(tmp_path), "--out", str(other), "--no-phonemes", "--no-offsets", "-q"])
    assert run_prepare_command(args) == 0 and not offsets_file(other).exists()


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "dev").is_dir(), reason=f"real clips not found at {DATA / 'dev'}")
@pytest.mark.skipif(not (CACHE / "index.jsonl").is_file(),
                    reason=f"no prepared cache at {CACHE}: run `sdmtalk prepare {DATA} --out {CACHE}`")
def test_shipped_expert_offsets_of_the_dev_cache(tmp_path):
    """The shipped expert on the real cache (read through links: the shared cache's own table
    is left alone): the dev recordings with a clear offset of their own are corrected."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("manifest.json", "index.jsonl", "skipped.jsonl", "shards"):
        (cache / name).symlink_to(CACHE / name)
    table = measure_offsets(cache, quiet=True)
    clips = table["clips"]
    assert clips["dev/liveportrait-d20/d20"]["applied"] == -6  # docs/RESULTS.md: the mouth leads by 6
    assert clips["dev/retalk-5/retalking-5"]["applied"] == 3
    assert clips["dev/hdtf-wda-bobmenendez/wda-bobmenendez-000"]["applied"] == 0
    assert 3 <= table["summary"]["val"]["corrected"] <= 8
    assert table["summary"]["train"]["corrected"] <= 0.05 * table["summary"]["train"]["clips"]
