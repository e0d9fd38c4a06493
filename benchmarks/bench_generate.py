"""Seconds per stage and real-time factor of `generate` for a 10 s clip (prints numbers).

    python benchmarks/bench_generate.py [--motion sdm|energy] [--threads 2] [--seconds 10]

Real-time factor = processing seconds / audio seconds (below 1 is faster than real time).
Prints, per output size (256, 512), each stage's seconds, the total and the real-time factor.
Feeds docs/RESULTS.md, "Speed and memory" (its current table; "First `generate` and renderer
timings"; "Threads and a busy machine"), e.g.

    python benchmarks/bench_generate.py --threads 1 --seconds 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio import compute_features
from sdmtalk.evaluate.bench_support import speech_of_length
from sdmtalk.face import detect_face, to_canonical
from sdmtalk.motion.types import MotionControls, apply_motion
from sdmtalk.pipeline import load_motion_model
from sdmtalk.render import Renderer, add_blinks
from sdmtalk.video import write_mp4


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(size: int, motion: str, wav: np.ndarray, image: np.ndarray) -> dict:
    model = load_motion_model(motion)
    face, t_face = timed(lambda: detect_face(image))
    feats, t_feat = timed(lambda: compute_features(wav, phonemes=bool(getattr(model, "needs_phonemes", False))))
    canonical = to_canonical(face.landmarks[None])[0][0]
    mot, t_motion = timed(lambda: model.generate(feats, canonical, MotionControls(seed=0)))
    lms = add_blinks(apply_motion(face.landmarks, mot), seed=0, fps=FPS)
    renderer = Renderer(image, face.landmarks, size=size, crop="face")
    frames, t_render = timed(lambda: list(renderer.render_sequence(lms)))
    with tempfile.TemporaryDirectory() as tmp:
        _, t_encode = timed(lambda: write_mp4(Path(tmp) / "b.mp4", frames, wav, fps=FPS))
    return {"face": t_face, "features": t_feat, "motion": t_motion, "render": t_render, "encode": t_encode}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--motion", default="sdm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wav = speech_of_length(args.seconds)
    image = data.astronaut()
    run(256, args.motion, wav[: SAMPLE_RATE], image)  # warm-up: numba, dlib models, torch
    print(f"motion={args.motion} threads={args.threads} audio={args.seconds:.1f}s")
    for size in (256, 512):
        t = run(size, args.motion, wav, image)
        total = sum(t.values())
        stages = "  ".join(f"{k} {v:.2f}s" for k, v in t.items())
        print(f"size {size}: {stages}  total {total:.2f}s  real-time factor {total / args.seconds:.2f}")


if __name__ == "__main__":
    main()
