"""Fit a stream's own pose-gain multipliers (SDMConfig.stream_pose_style) to offline's head.

A stream samples the head span by span with a few emitted frames held, where offline
denoises 100-frame windows: the streamed head wanders less on some pose dims and jitters
more (docs/RESULTS.md, Streaming). For each dev clip long enough (its own audio, decoded from
--data as `prepare` lines it up) and each seed, this runs offline `generate` and the stream
with the same model and seed, with no stream multipliers, and measures the pose's band
stats (pose_gain.pose_band_stats: slow-band std, fast-band mean step, per dim). The
multipliers are offline / stream of the means over clips and seeds, clipped to
STYLE_RANGE; the same fit on each half of the speakers shows how stable they are.
--write: the same tensors with stream_pose_style set (the command noted as
stream_pose_command). Prints the offline / stream ratios per band and pose dim and the same
fit on each half of the speakers. Feeds docs/RESULTS.md, "Streaming" ("The stream's own pose
gains"). The shipped sdm_base was written by

    python calibrate/calibrate_stream_pose.py --cache /work/cache/shared --data ../shared/data \
        --write sdmtalk/weights/sdm_base.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from sdmtalk.data.cache import CacheReader
from sdmtalk.evaluate.bench_support import dev_clip_inputs, write_calibrated
from sdmtalk.motion.pose_gain import STYLE_RANGE, pose_band_stats
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import load_motion_model
from sdmtalk.stream import StreamConfig, stream_motion


def clip_stats(model, data_root: Path, reader: CacheReader, rec, seeds: list[int]) -> list[tuple]:
    """[(offline band stats (2, 4), stream band stats (2, 4)) per seed] of one dev clip."""
    _, wav, source, _, feats = dev_clip_inputs(model, reader, rec, data_root)
    out = []
    for seed in seeds:
        controls = MotionControls(seed=seed)
        offline = model.generate(feats, source, controls).pose
        streamed = stream_motion(model, wav, source, controls, StreamConfig()).pose[: len(offline)]
        every = np.ones(len(offline), bool)
        out.append((pose_band_stats(offline, every, model.cfg.pose_band),
                    pose_band_stats(streamed, every, model.cfg.pose_band)))
    return out


def fit(pairs: list[tuple]) -> np.ndarray:
    """(2, 4) offline / stream of the mean band stats, clipped to STYLE_RANGE."""
    offline, streamed = (np.mean([p[i] for p in pairs], axis=0) for i in (0, 1))
    return np.clip(offline / np.maximum(streamed, 1e-9), *STYLE_RANGE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data", required=True, help="the sources the cache was prepared from")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--min-frames", type=int, default=75, help="shorter clips have no slow band to speak of")
    ap.add_argument("--write", default=None, metavar="SAFETENSORS")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights)
    model.cfg.stream_pose_style = ()  # measure the stream as it samples
    reader = CacheReader(args.cache)
    records = [r for r in reader.clips("val") if r.frames >= args.min_frames]
    per_clip = {r.clip_id: clip_stats(model, Path(args.data), reader, r, list(range(args.seeds))) for r in records}
    style = fit([p for pairs in per_clip.values() for p in pairs])
    print(f"{len(records)} dev clips of {args.min_frames} frames or more x {args.seeds} seeds")
    print("offline / stream band stats [log scale, angle, tx, ty]:")
    print("  slow std  " + " ".join(f"{x:.3f}" for x in style[0]))
    print("  fast step " + " ".join(f"{x:.3f}" for x in style[1]))
    speakers = sorted({r.speaker for r in records})
    for half in (speakers[0::2], speakers[1::2]):
        part = fit([p for r in records if r.speaker in half for p in per_clip[r.clip_id]])
        print(f"  on {len(half)} of the speakers: " + " ".join(f"{x:.2f}" for x in part.ravel()))
    if args.write:
        model.cfg.stream_pose_style = tuple(round(float(x), 4) for x in style.ravel())
        write_calibrated(model, Path(args.weights or args.write), Path(args.write), sys.argv[1:],
                         key="stream_pose_command", script="calibrate/calibrate_stream_pose.py")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
