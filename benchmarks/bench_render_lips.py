"""Where rendered lip sync is lost: the real track, the motion, the rendering (prints a table).

    python benchmarks/bench_render_lips.py --cache CACHE [--data ../shared/data] [--seconds 6]

`sdmtalk evaluate`'s own path on the dev clips that the cache also holds (source = the
first frame with a face, the clip's audio as recorded, SDM seed 0 rendered at 512 px and
re-detected at 256 px). Per clip and per dev group, within-clip r of the inner-lip gap:
- real track: evaluate's dlib track of the real video against prepare's cached track;
- motion vs real: the lip gap the motion asked for against the real one (before rendering);
- re-detected vs motion: what dlib finds on the rendered frames against what was asked for;
- re-detected vs real: what `evaluate` scores (its lip-gap r, seed 0).
Feeds docs/RESULTS.md, "Lips" ("Where rendered lip sync is lost"):

    python benchmarks/bench_render_lips.py --cache /work/cache/shared
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from sdmtalk.data.cache import CacheReader
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.evaluate.lip_metrics import inner_lip_gap
from sdmtalk.evaluate.methods import METHODS, MethodRunner
from sdmtalk.evaluate.runner import find_clips, generated_crops, load_real_clip
from sdmtalk.face import LandmarkTracker

COLUMNS = ("real track", "motion vs real", "re-detected vs motion", "re-detected vs real")


def _r(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> float:
    n = min(len(a), len(b), len(keep))
    ok = keep[:n] & np.isfinite(a[:n]) & np.isfinite(b[:n])
    return float(np.corrcoef(a[:n][ok], b[:n][ok])[0, 1]) if ok.sum() > 2 else float("nan")


def clip_row(clip, cached: dict, runner, tracker, seconds: float) -> tuple[float, ...]:
    real = load_real_clip(clip, seconds, 256, tracker)
    start = real.source_index
    cache_gap = inner_lip_gap(cached["landmarks"])[start:start + len(real.crops)]
    cache_ok = np.asarray(cached["valid"][start:start + len(real.crops)]) > 0.5
    crops, result = generated_crops(runner, METHODS["sdm"], real, 0, 256)
    landmarks, valid = tracker.track(crops)[:2]
    asked = inner_lip_gap(np.asarray(result.landmarks[: len(real.crops)], np.float64))
    found = inner_lip_gap(np.asarray(landmarks, np.float64))
    real_gap, both = inner_lip_gap(real.landmarks), np.asarray(valid, bool) & real.valid
    return (_r(real_gap, cache_gap, real.valid & np.resize(cache_ok, len(real.valid))),
            _r(asked, real_gap, real.valid), _r(found, asked, np.asarray(valid, bool)), _r(found, real_gap, both))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    reader = CacheReader(args.cache)
    records = {r.source: r for r in reader.clips("val")}
    runner, tracker = MethodRunner([METHODS["sdm"]], size=512), LandmarkTracker(quiet=True)
    rows: dict[str, list] = {}
    print("| clip | group | " + " | ".join(COLUMNS) + " |\n|---|---|" + "---:|" * len(COLUMNS))
    for clip in find_clips(Path(args.data) / "dev"):
        rec = records.get(os.path.relpath(clip.path, args.data))
        if rec is None:
            continue  # not in the cache: no prepared track to compare with
        row = clip_row(clip, reader.load(rec), runner, tracker, args.seconds)
        rows.setdefault(clip_group(rec.speaker), []).append(row)
        print(f"| {Path(clip.path).stem} | {clip_group(rec.speaker)} | " + " | ".join(f"{v:.3f}" for v in row) + " |",
              flush=True)
    print("\nmeans per group: " + ", ".join(COLUMNS))
    for group, group_rows in sorted(rows.items()):
        print(f"  {group} ({len(group_rows)}): " + " / ".join(f"{v:.3f}" for v in np.nanmean(group_rows, 0)))


if __name__ == "__main__":
    main()
