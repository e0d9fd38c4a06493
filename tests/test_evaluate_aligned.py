"""The *_aligned lip-sync columns of `sdmtalk evaluate`: the real lip gap re-aligned by the real
clip's own AV offset (sync expert + OffsetRule), in the sign of data.offsets.shift_audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdmtalk.data.offsets import shift_audio
from sdmtalk.evaluate import lip_metrics, sync_metrics
from sdmtalk.evaluate.report import group_summary, markdown
from sdmtalk.evaluate.runner import ClipSource, RealClip, Track, paired_metrics

T = 60


def _smooth(rng, n: int) -> np.ndarray:
    return np.convolve(rng.normal(size=n + 4), np.ones(5) / 5, mode="valid") + 3.0


def _landmarks(gap: np.ndarray, rng) -> np.ndarray:
    """(T, 68, 2) landmarks whose inner-lip gap is `gap`: 65-67 = 63-61 moved down by it."""
    lm = np.repeat(rng.uniform(20, 40, size=(1, 68, 2)), len(gap), axis=0)
    lm[:, [67, 66, 65]] = lm[:, [61, 62, 63]] + np.stack([np.zeros_like(gap), gap], -1)[:, None]
    return lm


@pytest.mark.parametrize("d", [-4, 0, 3])
def test_realign_pairs_frames_as_shift_audio_does(d):
    """realign(gen, real, d) pairs the same frames as shift_audio(clip, d) pairs audio
    (here the generated series, which follows the audio) with video (the real lips)."""
    rng = np.random.default_rng(0)
    gen, lm = rng.normal(size=T), _landmarks(np.abs(rng.normal(size=T)), rng)
    clip = {"landmarks": lm, "valid": np.ones(T, np.float32), "energy": gen, "mel": np.zeros((4 * T, 80))}
    moved = shift_audio(clip, d)
    g, r, keep = lip_metrics.realign(gen, lip_metrics.inner_lip_gap(lm), d)
    assert keep.all() and len(g) == T - abs(d)
    np.testing.assert_array_equal(g, moved["energy"])
    np.testing.assert_allclose(r, lip_metrics.inner_lip_gap(moved["landmarks"]))


@pytest.mark.parametrize("d", [-5, 3, 7])
def test_real_series_delayed_by_d_realigned_by_d_gives_the_undelayed_r(d):
    """real[t] = base[t - d] (the real mouth lags its audio by d frames: the expert's +d);
    the generated lips follow base with noise. Aligned r = r(gen, base) on the kept frames."""
    rng = np.random.default_rng(1)
    full = _smooth(rng, T + 20)
    base, real = full[10:10 + T], full[10 - d:10 - d + T]
    gen = base + 0.3 * rng.normal(size=T)
    t = np.arange(max(0, -d), T - max(d, 0))
    undelayed = np.corrcoef(gen[t], base[t])[0, 1]
    out = lip_metrics.aligned_lip_sync(gen, real, d)
    assert out["lip_gap_corr_aligned"] == pytest.approx(undelayed, abs=1e-12)
    assert out["lip_amp_ratio_aligned"] == pytest.approx(gen[t].std() / base[t].std(), abs=1e-12)
    assert lip_metrics.lip_gap_correlation(gen, real) < undelayed - 0.2  # as recorded: penalised
    assert lip_metrics.aligned_lip_sync(gen, real, -d)["lip_gap_corr_aligned"] < undelayed - 0.2  # wrong sign


def test_realign_drops_frames_invalid_on_either_side():
    gen_valid, real_valid = np.ones(10, bool), np.ones(10, bool)
    gen_valid[4], real_valid[2] = False, False
    _, _, keep = lip_metrics.realign(np.arange(10.0), np.arange(10.0), 2, gen_valid, real_valid)
    assert len(keep) == 8 and keep.sum() == 6
    assert not keep[4] and not keep[0]  # gen frame 4 lost; gen frame 0 pairs with the lost real frame 2


def _real_clip(gap: np.ndarray, rng) -> RealClip:
    n = len(gap)
    crops = np.zeros((n, 16, 16, 3), np.uint8)
    return RealClip(ClipSource("c", Path("c.mp4")), 0, crops[0], None, crops, np.zeros(n * 640, np.float32),
                    _landmarks(gap, rng), np.ones(n, bool))


def test_paired_metrics_aligned_columns():
    rng = np.random.default_rng(2)
    full = _smooth(rng, T + 20)
    d = 4
    real = _real_clip(full[10 - d:10 - d + T], rng)  # real mouth lags by d
    gen = Track(_landmarks(full[10:10 + T], rng), np.ones(T, bool))
    same = paired_metrics(real, real.crops, gen)
    assert same["lip_gap_corr_aligned"] == same["lip_gap_corr"]  # offset 0: as recorded, source frame out
    assert same["lip_amp_ratio_aligned"] == same["lip_amp_ratio"]
    moved = paired_metrics(real, real.crops, gen, own_offset=d)
    assert moved["lip_gap_corr_aligned"] == pytest.approx(1.0)
    assert moved["lip_gap_corr"] == same["lip_gap_corr"] < 0.9  # the as-recorded column is unchanged


def test_own_offset_measures_once_and_applies_the_rule(monkeypatch):
    seen = []

    def fake(model, mel, canonical, valid=None, max_shift=None):
        seen.append((canonical.shape, valid.sum()))
        return dict(result)

    monkeypatch.setattr(sync_metrics, "clip_offset", fake)
    lm, mel = _landmarks(np.ones(T), np.random.default_rng(3)), np.zeros((4 * T, 80))
    result = {"offset": -4, "confidence": 0.2, "z": 5.0, "windows": 50}
    assert sync_metrics.own_offset(mel, lm, expert=object())["applied"] == -4
    assert seen == [((T, 68, 2), T)]
    for bad in ({"z": 2.0}, {"offset": 1}, {"offset": 14}, {"windows": 10}, {"offset": None}):
        result = {"offset": -4, "confidence": 0.2, "z": 5.0, "windows": 50, **bad}
        assert sync_metrics.own_offset(mel, lm, expert=object())["applied"] == 0, bad
    out = sync_metrics.own_offset(mel, lm, np.zeros(T, bool), expert=object())  # no face: no estimate
    assert out["applied"] == 0 and out["offset"] is None and len(seen) == 6


def _report() -> dict:
    def clip(path, applied, r, ra):
        mean = {"lip_gap_corr": r, "lip_gap_corr_aligned": ra, "lip_amp_ratio": 0.5, "lip_amp_ratio_aligned": 0.5}
        return {"clip": path, "path": f"/d/{path}.mp4", "frames": 50, "real_face_lost": 0,
                "real_offset_applied": applied, "methods": {"sdm": {"mean": mean}}}

    clips = [clip("ted-a/x", 3, 0.2, 0.6), clip("ted-b/y", 0, 0.4, 0.4), clip("grid-s1/z", 0, 0.8, 0.8)]
    return {"settings": {"source": "dev", "methods": ["sdm"], "seeds": 1, "max_seconds": 8, "size": 256,
                         "iod_px": 77, "fid_frames_per_clip": 25},
            "aggregate": {"sdm": {"lip_gap_corr": 0.47, "lip_gap_corr_aligned": 0.6}, "real": {}},
            "clips": clips, "failed": [], "timing": {"clips_scored": 3}}


def test_group_summary_and_markdown_show_the_aligned_column():
    report = _report()
    groups = group_summary(report["clips"], ["sdm"])
    talks = groups["talks"]
    assert talks["clips"] == 2 and talks["clips_realigned"] == 1
    assert talks["methods"]["sdm"]["lip_gap_corr"] == pytest.approx(0.3)
    assert talks["methods"]["sdm"]["lip_gap_corr_aligned"] == pytest.approx(0.5)
    md = markdown(report)
    assert "lip-gap r aligned‡" in md and "| 0.47 | 0.60 |" in md
    assert "talks (2; 1 re-aligned)" in md and "0.30 / 0.50 / 0.50" in md
    assert "1 of 3 clip(s) re-aligned" in md and "2-12 frames, z >= 3, >= 20 windows" in md
    assert "as-recorded column unchanged" in md
