"""Training the ridge (linear) motion baseline (`sdmtalk.motion.linear.LinearBaseline`).

`python -m sdmtalk.train.linear --data CACHE --out RUN` is one pass over the train split
accumulating weighted sufficient statistics (X'WX, X'WY), speaker-balanced frame weights
(each speaker weighs (its frames) ** speaker_power in total), then the ridge solution for a
grid of regularisations; the one with the best val lip-gap correlation is kept. When the
cache has an offsets table (sdmtalk.data.offsets) each clip's audio is re-aligned to its
video first (train and val rows; `--no-offsets` to fit the clips as recorded).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sdmtalk.data.cache import CacheReader
from sdmtalk.data.offsets import OffsetTable, shift_audio
from sdmtalk.data.phonemes import PhonemeTable
from sdmtalk.errors import InputError, exit_code_of
from sdmtalk.face.align import lip_gap
from sdmtalk.motion.linear import (
    WEIGHTS_NAME,
    LinearBaseline,
    LinearConfig,
    phoneme_log_features,
    speech_feature_matrix,
)

ALPHAS = tuple(float(a) for a in 10.0 ** np.arange(-4, 1.01, 0.5))  # ridge grid, see fit_ridge

@dataclass
class RidgeClip:
    """Training rows of one clip: x (T, D) features, y (T, 136) shape minus the clip mean,
    ok (T,) frames to use (landmarks detected and finite), mean (68, 2) the clip's mean shape,
    quiet (T,) the usable frames without speech."""

    clip_id: str
    speaker: str
    x: np.ndarray
    y: np.ndarray
    ok: np.ndarray
    mean: np.ndarray
    quiet: np.ndarray | None = None


def clip_rows(clip_id: str, speaker: str, mel: np.ndarray, canonical: np.ndarray, valid,
              cfg: LinearConfig, extra=None, speech=None) -> RidgeClip:
    x = speech_feature_matrix(mel, cfg.context, cfg.pool_mel, extra)
    canon = np.asarray(canonical, np.float64)[: len(x)]
    ok = np.isfinite(canon).all(axis=(1, 2)) & (np.asarray(valid)[: len(x)] > 0)
    y, mean = np.zeros((len(x), 136), np.float32), np.zeros((68, 2), np.float32)
    if ok.any():
        mean = canon[ok].mean(axis=0)
        y = (canon - mean).reshape(len(x), -1).astype(np.float32)
    quiet = None if speech is None else ok & (np.asarray(speech)[: len(ok)] < 0.5)
    return RidgeClip(clip_id, speaker, x[: len(canon)], y, ok, np.asarray(mean, np.float32), quiet)


def resting_face(clips: list[RidgeClip]) -> np.ndarray | None:
    """(136,) median target over the frames without speech (the SDM's delta_rest, for the
    ridge), None with fewer than 50 such frames."""
    rows = [c.y[c.quiet] for c in clips if c.quiet is not None and c.quiet.any()]
    quiet = np.concatenate(rows) if rows else np.zeros((0, 136), np.float32)
    return np.median(quiet, 0).astype(np.float32) if len(quiet) >= 50 else None


def speaker_weights(clips: list[RidgeClip], power: float) -> list[float]:
    """Per-frame weight of each clip: a speaker's frames share (its frames) ** power."""
    frames = defaultdict(int)
    for c in clips:
        frames[c.speaker] += int(c.ok.sum())
    return [(frames[c.speaker] ** power) / max(frames[c.speaker], 1) for c in clips]


def fit_ridge(clips: list[RidgeClip], cfg: LinearConfig, alphas=ALPHAS) -> dict[float, tuple]:
    """Weighted ridge on standardised inputs for every alpha: {alpha: (weight, bias, mean, std)}.
    One pass over the clips accumulates the weighted moments; each alpha is then a solve of
    (R + alpha I) w = c, R the inputs' weighted correlation matrix (unit diagonal), c their
    covariance with the (centred) targets: alpha is relative to a unit input variance."""
    d = clips[0].x.shape[1]
    sw, sx, sy = 0.0, np.zeros(d), np.zeros(136)
    sxx, sxy = np.zeros((d, d)), np.zeros((d, 136))
    for c, w in zip(clips, speaker_weights(clips, cfg.speaker_power), strict=True):
        if not c.ok.any():
            continue
        x, y = c.x[c.ok].astype(np.float64), c.y[c.ok].astype(np.float64)
        sw += w * len(x)
        sx += w * x.sum(0)
        sy += w * y.sum(0)
        sxx += w * (x.T @ x)
        sxy += w * (x.T @ y)
    mean_x, mean_y = sx / sw, sy / sw
    cov = sxx / sw - np.outer(mean_x, mean_x)
    cxy = sxy / sw - np.outer(mean_x, mean_y)
    std = np.sqrt(np.maximum(np.diag(cov), 1e-8))
    cov_s = cov / np.outer(std, std)
    cxy_s = cxy / std[:, None]
    evals, evecs = np.linalg.eigh(cov_s)
    proj = evecs.T @ cxy_s
    out = {}
    for a in alphas:
        wgt = evecs @ (proj / (evals + a)[:, None])
        out[float(a)] = (wgt.astype(np.float32), mean_y.astype(np.float32),
                         mean_x.astype(np.float32), std.astype(np.float32))
    return out


def val_lip_correlation(model: LinearBaseline, clips: list[RidgeClip]) -> dict:
    """Lip-gap r and amplitude ratio of the prediction vs the real canonical shapes, per
    clip (frames ok), canonical units; means over clips."""
    rs, amps = [], []
    for c in clips:
        pred = ((c.x - model.x_mean) / model.x_std) @ model.weight + model.bias
        g_pred = lip_gap(c.mean + pred.reshape(-1, 68, 2)[c.ok])  # gaps of shapes, not of deviations
        g_real = lip_gap(c.mean + c.y.reshape(-1, 68, 2)[c.ok])
        if len(g_real) >= 3 and g_real.std() > 1e-9 and g_pred.std() > 1e-9:
            rs.append(float(np.corrcoef(g_pred, g_real)[0, 1]))
            amps.append(float(g_pred.std() / g_real.std()))
    return {"lip_r": float(np.mean(rs)) if rs else float("nan"),
            "lip_amp": float(np.mean(amps)) if amps else float("nan"), "clips": len(rs)}


def load_rows(reader, split: str, cfg: LinearConfig, offsets=None) -> list[RidgeClip]:
    """Rows of every clip of `split`; offsets (a data.offsets.OffsetTable): re-align each
    clip's audio to its video first (shift_audio)."""
    table = PhonemeTable.required(reader.cache_dir, "the linear baseline reads phonemes") \
        if cfg.needs_phonemes else None
    out = []
    for rec in reader.clips(split):
        d = reader.load(rec)
        if table is not None:
            d["phonemes"] = phoneme_log_features(table.get(rec))
        if offsets is not None:
            d = shift_audio(d, offsets.get(rec))
        out.append(clip_rows(rec.clip_id, rec.speaker, d["mel"], d["canonical"], d["valid"], cfg,
                             d.get("phonemes"), d.get("speech")))
    return out


def train_linear(cache, out_dir, cfg: LinearConfig | None = None, quiet: bool = False,
                 train_clips=None, val_clips=None, offsets: bool = True) -> tuple[Path, dict]:
    """Fit on the train split, choose alpha on val lip-gap r, write
    out_dir/linear_baseline.safetensors (+ .json). Returns (path, val results per alpha).
    offsets: re-align the clips' audio by the cache's offsets.json when it has one."""
    cfg = cfg or LinearConfig()
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    corrected = None
    if train_clips is None or val_clips is None:
        reader = CacheReader(cache)
        table = OffsetTable(cache) if offsets else None
        if table is not None and table.available:
            corrected = table.corrected()
            log(f"audio re-aligned to the video by {table.cache_dir / 'offsets.json'}: {corrected} clip(s)")
        else:
            table = None
        train_clips = load_rows(reader, "train", cfg, table) if train_clips is None else train_clips
        val_clips = load_rows(reader, "val", cfg, table) if val_clips is None else val_clips
    if not train_clips or not val_clips:
        raise InputError(f"{cache}: the linear baseline needs clips in the train and val splits")
    fits = fit_ridge(train_clips, cfg)
    rest = resting_face(train_clips)
    results, best = {}, None
    for a, params in fits.items():
        model = LinearBaseline(replace(cfg, alpha=a), *params, rest=rest)
        results[a] = val_lip_correlation(model, val_clips)
        log(f"alpha {a:g}: val lip r {results[a]['lip_r']:.3f}, amplitude {results[a]['lip_amp']:.2f}")
        if best is None or results[a]["lip_r"] > results[best[0]]["lip_r"]:
            best = (a, model)
    a, model = best
    extra = {"data": str(cache), "train_clips": len(train_clips), "val_clips": len(val_clips),
             "train_speakers": len({c.speaker for c in train_clips}),
             "train_frames": int(sum(c.ok.sum() for c in train_clips)),
             "val_lip_r": results[a]["lip_r"], "val_lip_amp": results[a]["lip_amp"],
             "alpha_grid": {f"{k:g}": v["lip_r"] for k, v in results.items()},
             "offsets_corrected": corrected,
             "seconds": round(time.perf_counter() - t0, 1)}
    path = model.save(out / f"{WEIGHTS_NAME}.safetensors", extra)
    log(f"wrote {path}: alpha {a:g}, val lip r {results[a]['lip_r']:.3f} ({extra['seconds']} s)")
    return path, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdmtalk.train.linear",
                                description="train the ridge (linear) motion baseline on a cache")
    p.add_argument("--data", required=True, metavar="CACHE", help="cache folder from `sdmtalk prepare`")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--context", type=int, default=LinearConfig.context, help="frames of speech each side")
    p.add_argument("--full-mel", action="store_true",
                   help="keep the 4 mel rows of each frame (default: their mean; the same val lip r "
                        "on the shared data at 4x the features and 20x the time)")
    p.add_argument("--speaker-power", type=float, default=LinearConfig.speaker_power)
    p.add_argument("--phonemes", type=int, default=0, metavar="V",
                   help="also read the cache's phoneme posteriors (V = 191 for hama 1.7.0)")
    p.add_argument("--no-offsets", action="store_true",
                   help="ignore the cache's offsets.json (default: re-align each clip's audio by it)")
    args = p.parse_args(argv)
    cfg = LinearConfig(context=args.context, pool_mel=not args.full_mel, speaker_power=args.speaker_power,
                       extra_dims=args.phonemes)
    return exit_code_of(train_linear, args.data, args.out, cfg, offsets=not args.no_offsets)


if __name__ == "__main__":
    sys.exit(main())
