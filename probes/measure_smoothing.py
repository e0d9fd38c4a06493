"""Choose the landmark smoothing window of `sdmtalk prepare` by measurement (prints a table).

    python probes/measure_smoothing.py [--data ../shared/data] [--clips 48]

For each Savitzky-Golay window: landmark jitter, correlation of the inner-lip gap with
loudness (GRID and other corpora apart) and the lip-opening range (5-95 percentile, in
inter-ocular units). Smoothing lowers jitter; too wide a window flattens lip motion.
Feeds docs/RESULTS.md, "Data preparation" (the window chosen for `prepare`).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from sdmtalk.audio.features import compute_features
from sdmtalk.audio.loading import decode_audio
from sdmtalk.errors import InputError
from sdmtalk.face.align import interocular_distance, lip_gap
from sdmtalk.face.track import LandmarkTracker, landmark_jitter, smooth_landmarks
from sdmtalk.video import align_audio, iter_video_frames, video_start_time

WINDOWS = [(1, 2), (3, 2), (5, 2), (7, 2), (9, 2), (11, 2), (9, 3)]


def pick_clips(root: Path, n: int) -> list[tuple[Path, bool]]:
    rows = [line.split("\t") for line in (root / "MANIFEST.tsv").read_text().splitlines()[1:]]
    rng = random.Random(0)
    grid = [r for r in rows if r[2] == "grid-s1"]
    other = [r for r in rows if r[2] != "grid-s1"]
    chosen = rng.sample(grid, n // 4) + rng.sample(other, n - n // 4)
    return [(root / r[0] / r[1], r[2] == "grid-s1") for r in chosen]


def track_clip(path: Path):
    lm, valid, _ = LandmarkTracker(quiet=True).track(iter_video_frames(path))
    audio = decode_audio(path)
    wav = align_audio(audio.samples, audio.start_time - video_start_time(path), len(lm))
    return lm, valid, compute_features(wav, len(lm)).prosody[:, 2]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--clips", type=int, default=48)
    args = ap.parse_args()
    tracks = []
    for path, is_grid in pick_clips(Path(args.data), args.clips):
        try:
            lm, valid, energy = track_clip(path)
        except InputError as err:
            print(f"skip {path}: {err}")
            continue
        if valid.mean() >= 0.8 and len(lm) >= 25:
            tracks.append((lm, valid, energy, is_grid))
    for w, order in WINDOWS:
        rows = []
        for lm, v, e, is_grid in tracks:
            s = smooth_landmarks(lm, v, w, order)
            gap = lip_gap(s) / np.nanmedian(interocular_distance(lm[v]))
            spread = np.percentile(gap[v], 95) - np.percentile(gap[v], 5)
            rows.append((landmark_jitter(s, v), corr(gap[v], e[v]), spread, is_grid))
        a = np.array([r[:3] for r in rows], float)
        g = np.array([r[3] for r in rows])
        print(f"window {w:2d} order {order}: jitter {np.nanmean(a[:, 0]):.4f} | lip-loudness r "
              f"GRID {np.nanmean(a[g, 1]):.3f} other {np.nanmean(a[~g, 1]):.3f} | "
              f"lip range {np.nanmean(a[:, 2]):.4f}  ({len(rows)} clips)")


if __name__ == "__main__":
    main()
