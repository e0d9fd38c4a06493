"""Renderer settings A/B on open-photo dev runs, fast: the motion made once, 40 frames a clip.

    python probes/probe_mouth_variants.py --cache /work/cache/dev --data-root ../shared/data --work DIR [VARIANT ...]

A VARIANT sets module constants for one run, e.g. `sdmtalk.render.renderer:PAINT_GROW=0.01`
(several joined by commas); `base` is the code as it is, `closedbase` the same from the
most closed frames, and `closed:VARIANT` a variant from the most closed frames. The first run caches in --work, per dev clip, what the rendered bench
(benchmarks/bench_source_mouth_rendered.py) would animate: its most open and most closed
frame, their faces and SDM's landmarks for the clip's audio (seed 0); and the real mouth
crops' Inception features (FRAMES per clip, as the bench picks them). Each variant then
renders only FRAMES frames a clip, aligns and re-detects them as the bench does, and prints
mouth FID against the real mouths: overall, and split at an inner-lip gap of SHUT_PX
(shut frames against real shut ones, open against open), with the share of shut frames.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_source_mouth_rendered import mouth_features, photo_frames  # noqa: E402

from sdmtalk.evaluate import image_metrics, lip_metrics  # noqa: E402
from sdmtalk.evaluate.runner import IOD_FRAC, find_clips, load_real_clip, to_metric_size, warp  # noqa: E402
from sdmtalk.face import LandmarkTracker, detect_face  # noqa: E402
from sdmtalk.motion.types import MotionControls  # noqa: E402
from sdmtalk.pipeline import TalkingFacePipeline  # noqa: E402

FRAMES, SIZE, SECONDS = 40, 256, 6.0
SHUT_PX = 3.33  # inner-lip gap on the 256 px crops: the real dev mouths' 40th percentile


def cache_clips(args, pipe, tracker, side: int) -> None:
    for clip in find_clips(args.cache, "val", args.data_root)[: args.max_clips]:
        out = Path(args.work) / (clip.name.replace("/", "_") + ".pkl")
        if out.exists():
            continue
        real = load_real_clip(clip, SECONDS, SIZE, tracker)
        kept: dict = {}
        mouth_features(real.crops, real.landmarks, real.valid, side, kept, "real", FRAMES)
        record = {"n": len(real.crops), "alignment": real.alignment, "real_mouths": kept["real"],
                  "real_gap": kept["real_gap"]}
        for src, photo in photo_frames(clip, real, SECONDS).items():
            face = detect_face(photo)
            landmarks = pipe.landmarks_for(photo, real.wav, MotionControls(seed=0), face)[0]
            record[src] = (photo, face, landmarks)
        with open(out, "wb") as f:
            pickle.dump(record, f)
        print("cached", clip.name, flush=True)


def _records(work: Path):
    for path in sorted(work.glob("*.pkl")):
        with open(path, "rb") as f:
            yield pickle.load(f)


def real_mouths(work: Path) -> tuple[np.ndarray, np.ndarray]:
    """(the real mouths' features, their gaps) over the cached clips: the same for every variant."""
    records = list(_records(work))
    return (np.concatenate([image_metrics.inception_features(r["real_mouths"]) for r in records]),
            np.concatenate([r["real_gap"] for r in records]))


def render_mouths(work: Path, pipe, tracker, side: int, src: str) -> tuple[np.ndarray, np.ndarray]:
    """(generated mouth features, their gaps) over the cached clips."""
    feats, gaps = [], []
    for record in _records(work):
        photo, face, landmarks = record[src]
        n = min(record["n"], len(landmarks))
        renderer = pipe.renderer(photo, face)
        frames = [renderer.render(landmarks[i]) for i in np.linspace(1, n - 1, FRAMES).round().astype(int)]
        crops = to_metric_size(np.stack([warp(f, record["alignment"]) for f in frames]), SIZE)
        found = np.asarray(tracker.track(crops)[0])
        ok = np.isfinite(found).all(axis=(1, 2))
        feats.append(image_metrics.inception_features(image_metrics.mouth_crops(crops[ok], found[ok], side)))
        gaps.append(lip_metrics.inner_lip_gap(found[ok]))
    return np.concatenate(feats), np.concatenate(gaps)


def with_constants(variant: str) -> list:
    """Set the variant's constants; returns what to put back."""
    saved = []
    for part in variant.split(","):
        target, _, value = part.partition("=")
        module_name, _, name = target.partition(":")
        module = importlib.import_module(module_name)
        old = getattr(module, name)
        saved.append((module, name, old))
        setattr(module, name, type(old)(value))
    return saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--work", required=True, help="folder for the per-clip cache")
    ap.add_argument("--max-clips", type=int, help="the first N dev clips only (a trial)")
    ap.add_argument("variants", nargs="*", default=["base"])
    args = ap.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    pipe, tracker = TalkingFacePipeline(crop="full", quiet=True), LandmarkTracker(quiet=True)
    side = image_metrics.mouth_crop_side(SIZE, IOD_FRAC)
    cache_clips(args, pipe, tracker, side)
    real, real_gap = real_mouths(Path(args.work))
    for variant in args.variants:
        closed = variant == "closedbase" or variant.startswith("closed:")
        constants = variant.removeprefix("closed:")
        saved = [] if variant in ("base", "closedbase") else with_constants(constants)
        try:
            gen, gap = render_mouths(Path(args.work), pipe, tracker, side, "closed" if closed else "open")
        finally:
            for module, name, old in saved:
                setattr(module, name, old)
        shut, real_shut = gap < SHUT_PX, real_gap < SHUT_PX
        fid = image_metrics.fid
        print(f"{variant}: mouth FID {fid(gen, real):.1f}; shut {shut.mean():.2f} of frames, FID shut "
              f"{fid(gen[shut], real[real_shut]):.1f}, open {fid(gen[~shut], real[~real_shut]):.1f}", flush=True)


if __name__ == "__main__":
    main()
