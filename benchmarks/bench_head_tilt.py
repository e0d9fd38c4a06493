"""Does the generated head lean one way? Mean roll relative to frame 0, dev (or train) clips.

    python benchmarks/bench_head_tilt.py --cache /work/cache/shared [--weights W] [--split val] [--set KEY=VALUE]

For each clip whose first frame has a face: the real clip's mean roll relative to its
first frame, and the generated one's (3 seeds) from the same first frame, plus the
generated roll at frame 0 (0 = the video starts at the photo's pose). A sampler that
tilts every head the same way shows as a generated mean far from the real one.
Prints one line: the clip count and the three mean rolls (deg). Feeds docs/RESULTS.md,
"Head motion" (current numbers; "Two-band pose gain calibrated on dev speakers"):

    python benchmarks/bench_head_tilt.py --cache /work/cache/shared
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sdmtalk.audio import AudioFeatures
from sdmtalk.evaluate.bench_support import apply_overrides
from sdmtalk.evaluate.landmark_bench import load_scored_clips
from sdmtalk.motion.types import MotionControls, motion_from_landmarks
from sdmtalk.pipeline import load_motion_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights)
    apply_overrides(model, args.overrides)
    _, clips = load_scored_clips(args.cache, args.split)
    rows = []
    for d in clips:
        landmarks = np.asarray(d["landmarks"], np.float64)
        ok = (np.asarray(d["valid"]) > 0.5) & np.isfinite(landmarks).all(axis=(1, 2))
        if not ok[0]:
            continue
        motion, source, _ = motion_from_landmarks(landmarks)
        feats = AudioFeatures(mel=d["mel"], prosody=d["prosody"], energy=d["energy"], phonemes=d.get("phonemes"))
        gen = [model.generate(feats, source, MotionControls(seed=s)).pose[:, 1] for s in range(args.seeds)]
        rows.append((np.degrees(np.asarray(motion.pose)[ok, 1]).mean(),
                     np.mean([np.degrees(g).mean() for g in gen]), np.mean([np.degrees(g[0]) for g in gen])))
    real, generated, first = np.mean(rows, 0)
    print(f"{len(rows)} clips of split '{args.split}', seeds {args.seeds}: mean roll relative to frame 0 "
          f"real {real:+.2f} deg, generated {generated:+.2f} deg; generated roll at frame 0 {first:+.2f} deg")


if __name__ == "__main__":
    main()
