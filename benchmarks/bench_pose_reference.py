"""Does --pose-reference carry a video's head style? Dev clips of 2 s or more, 3 seeds.

    python benchmarks/bench_pose_reference.py --cache /work/cache/shared [--weights W]

Each clip is generated three ways: no reference, its own real head track as reference, and
another clip's (the cache's tracked landmarks stand in for tracking the video again). Prints
the mean roll std / position std / head speed and, over clips, the correlation of each with
the real clip's: a reference that works makes the generated head follow its own clip.
Feeds docs/RESULTS.md, "Head motion" (current numbers; "A reference video's head style"):

    python benchmarks/bench_pose_reference.py --cache /work/cache/shared
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sdmtalk.evaluate.landmark_bench import load_scored_clips, score_clip
from sdmtalk.motion.pose_reference import pose_reference_from_landmarks
from sdmtalk.motion.types import MIN_REFERENCE_FRAMES
from sdmtalk.pipeline import load_motion_model

STATS = ("roll_std", "pos_std", "pos_speed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights)
    _, clips = load_scored_clips(args.cache, "val")
    clips = [d for d in clips if (np.asarray(d["valid"]) > 0.5).sum() >= MIN_REFERENCE_FRAMES]
    refs = []
    for d in clips:
        landmarks = np.asarray(d["landmarks"], np.float64).copy()
        landmarks[np.asarray(d["valid"]) < 0.5] = np.nan
        refs.append(pose_reference_from_landmarks(landmarks, "dev clip"))
    ways = {"none": lambda i: {}, "the clip's own": lambda i: {"pose_reference": refs[i]},
            "another clip's": lambda i: {"pose_reference": refs[(i + 7) % len(refs)]}}
    print(f"{len(clips)} dev clips of 2 s or more, seeds {args.seeds}")
    print("| reference | mean roll std / pos std / speed | per-clip r with the real clip's: roll std / pos std / speed | lip r |")
    print("|---|---|---|---:|")
    seeds = list(range(args.seeds))
    for name, kw in ways.items():
        rows = [score_clip(model, kw(i), d, seeds)[0] for i, d in enumerate(clips)]
        gen = np.array([[r[s] for s in STATS] for r in rows])
        real = np.array([[r["real_" + s] for s in STATS] for r in rows])
        ok = np.isfinite(gen).all(1) & np.isfinite(real).all(1)
        r = [np.corrcoef(gen[ok, j], real[ok, j])[0, 1] for j in range(len(STATS))]
        lips = np.nanmean([row["lip_r"] for row in rows])
        print(f"| {name} | {' / '.join(f'{v:.2f}' for v in gen[ok].mean(0))} | "
              f"{' / '.join(f'{v:.2f}' for v in r)} | {lips:.3f} |", flush=True)
    print(f"| real clips | {' / '.join(f'{v:.2f}' for v in real[ok].mean(0))} | | |")


if __name__ == "__main__":
    main()
