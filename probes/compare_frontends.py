"""Which speech front-end tells the lips most? A ridge probe on the prepared cache.

    python probes/compare_frontends.py --cache CACHE --data-root ../shared/data \
        [--per-speaker 8] [--frontends mel,mel_cmn,hama,mel_cmn+hama]

The same model (ridge regression, lambda chosen on val) and the same clips for every
front-end: up to --per-speaker train clips per speaker (speaker-balanced) and all val clips.
Target: the clip-centred canonical mouth shape (points 48-67) per frame; a window of +-4
video frames of features. Printed per val group: lip-gap r (predicted vs real) and the
amplitude ratio std(pred gap) / std(real gap).

Front-ends (per video frame, 25 fps):
  mel       the 4 log-mel rows of the frame, averaged (80)
  mel_cmn   the same minus the clip's mean per band (channel / gain normalisation)
  hama      hama 1.7.0 phoneme-recogniser posteriors (191 IPA tokens + blank, 20 ms
            frames, two per video frame averaged), language-independent

Feeds docs/RESULTS.md, "Lips" ("Phoneme front-end and the retrained SDM"), measured with

    python probes/compare_frontends.py --cache /work/cache/shared --data-root ../shared/data --per-speaker 8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from sdmtalk import FPS, MEL_PER_FRAME
from sdmtalk.audio.phonemes import phoneme_posteriors
from sdmtalk.data.cache import CacheReader
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.face.align import lip_gap

HALF = 4  # +-4 frames of context
LAMBDAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def clip_audio(data_root: Path, record) -> np.ndarray:
    from sdmtalk.audio.loading import load_audio
    from sdmtalk.video import align_audio, video_start_time

    path = data_root / record.source
    return align_audio(load_audio(path), -video_start_time(path), record.frames, FPS)


def frame_features(arrays: dict, kind: str, hama_post=None) -> np.ndarray:
    T = len(arrays["valid"])
    mel = arrays["mel"][: MEL_PER_FRAME * T].reshape(T, MEL_PER_FRAME, -1).mean(1)
    parts = []
    if kind.startswith("mel"):
        parts.append(mel - mel.mean(0) if kind.startswith("mel_cmn") else mel)
    if "hama" in kind:
        parts.append(np.log(hama_post + 1e-4))
    return np.concatenate(parts, 1)


def windowed(x: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((HALF, HALF), (0, 0)), mode="edge")
    return np.concatenate([padded[i:i + len(x)] for i in range(2 * HALF + 1)], 1)


def target(arrays: dict) -> np.ndarray:
    mouth = arrays["canonical"][:, 48:68].reshape(len(arrays["valid"]), -1)
    return mouth - mouth.mean(0)


def ridge_fit(X: np.ndarray, Y: np.ndarray, lam: float):
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Z = (X - mu) / sd
    W = np.linalg.solve(Z.T @ Z + lam * len(Z) / 1000 * np.eye(Z.shape[1]), Z.T @ Y)
    return mu, sd, W


def score(pred_mouth: np.ndarray, arrays: dict) -> tuple[float, float]:
    T = len(arrays["valid"])
    ref = arrays["canonical"][:, 48:68].mean(0)
    face = np.zeros((T, 68, 2), np.float32)
    face[:, 48:68] = ref + pred_mouth.reshape(T, 20, 2)
    real = np.zeros_like(face)
    real[:, 48:68] = arrays["canonical"][:, 48:68]
    g, r = lip_gap(face), lip_gap(real)
    ok = arrays["valid"] > 0
    if ok.sum() < 10 or r[ok].std() < 1e-6 or g[ok].std() < 1e-9:
        return float("nan"), float("nan")
    return float(np.corrcoef(g[ok], r[ok])[0, 1]), float(g[ok].std() / r[ok].std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--per-speaker", type=int, default=8)
    ap.add_argument("--frontends", default="mel,mel_cmn,hama,mel_cmn+hama")
    args = ap.parse_args()
    reader = CacheReader(args.cache)
    rng = np.random.default_rng(0)
    train = []
    for spk in reader.speakers("train"):
        recs = [r for r in reader.clips("train") if r.speaker == spk]
        train += [recs[i] for i in rng.permutation(len(recs))[: args.per_speaker]]
    val = reader.clips("val")
    kinds = args.frontends.split(",")
    need_hama = any("hama" in k for k in kinds)
    data, t_hama, secs = {}, 0.0, 0.0
    for rec in train + val:
        arrays = reader.load(rec)
        post = None
        if need_hama:
            wav = clip_audio(Path(args.data_root), rec)
            t0 = time.perf_counter()
            post = phoneme_posteriors(wav, rec.frames)
            t_hama += time.perf_counter() - t0
            secs += rec.frames / FPS
        data[rec.clip_id] = (arrays, post)
    print(f"{len(train)} train clips ({len(reader.speakers('train'))} speakers), {len(val)} val clips")
    if need_hama:
        print(f"hama: {t_hama / max(secs, 1e-9):.3f} s per audio second")
    for kind in kinds:
        X = np.concatenate([windowed(frame_features(data[r.clip_id][0], kind, data[r.clip_id][1]))
                            for r in train])
        Y = np.concatenate([target(data[r.clip_id][0]) for r in train])
        best = None
        for lam in LAMBDAS:
            mu, sd, W = ridge_fit(X, Y, lam)
            per_clip = {}
            for r in val:
                arrays, post = data[r.clip_id]
                pred = ((windowed(frame_features(arrays, kind, post)) - mu) / sd) @ W
                per_clip[r.clip_id] = (score(pred, arrays), r.speaker)
            mean_r = np.nanmean([v[0][0] for v in per_clip.values()])
            if best is None or mean_r > best[0]:
                best = (mean_r, lam, per_clip)
        groups: dict[str, list] = {}
        for (r_, amp), spk in best[2].values():
            for g in (clip_group(spk), "all"):
                groups.setdefault(g, []).append((r_, amp))
        cells = "  ".join(f"{g}: r {np.nanmean([a for a, _ in v]):.3f} amp {np.nanmedian([b for _, b in v]):.2f} (n={len(v)})"
                          for g, v in sorted(groups.items()))
        print(f"{kind:14s} lambda {best[1]:g}  {cells}")


if __name__ == "__main__":
    main()
