"""Does the head-activity readout predict when a real head moves? (prints three lines)

    python benchmarks/bench_head_activity.py --cache CACHE [--weights W]

The readout of the weights' config (sdmtalk/motion/head_activity.py, fitted on train clips by
calibrate_pose_gain.py --activity) against the real head of every dev clip (split "val",
2 s or more with a face at frame 0): within-clip Pearson r of a_t with the real head's
centred log speed (head_activity.log_pose_speed), mean and median over clips, and the same
for the frame loudness alone (a baseline that needs no rhythmic branch). Feeds
docs/RESULTS.md, "Head motion" (current numbers; "Head-activity envelope from the rhythmic
branch"):

    python benchmarks/bench_head_activity.py --cache /work/cache/shared
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sdmtalk.evaluate.landmark_bench import load_scored_clips, real_pose
from sdmtalk.motion.head_activity import log_pose_speed, model_inputs, readout
from sdmtalk.pipeline import load_motion_model


def within_clip_r(a: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(y) & np.isfinite(a[: len(y)])
    return float(np.corrcoef(a[: len(y)][ok], y[ok])[0, 1]) if ok.sum() > 2 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", default=None, help="SDM weights with a head_activity readout (default: bundled)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights).eval()
    if not len(model.cfg.head_activity):
        raise SystemExit("these weights have no head_activity readout (calibrate_pose_gain.py --activity)")
    _, clips = load_scored_clips(args.cache, "val")
    rs, loud = [], []
    for data in clips:
        real = real_pose(data)
        if real is None or len(data["landmarks"]) < 50:
            continue
        y = log_pose_speed(real[0], real[1])
        rs.append(within_clip_r(readout(model.cfg.head_activity, *model_inputs(model, data["prosody"])), y))
        loud.append(within_clip_r(np.asarray(data["energy"], np.float64), y))
    print(f"{len(rs)} dev clips of 2 s or more; within-clip r with the real head's log speed:")
    print(f"  head-activity readout: mean {np.nanmean(rs):.3f}, median {np.nanmedian(rs):.3f}")
    print(f"  frame loudness alone:  mean {np.nanmean(loud):.3f}, median {np.nanmedian(loud):.3f}")


if __name__ == "__main__":
    main()
