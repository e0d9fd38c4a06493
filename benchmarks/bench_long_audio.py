"""Seams and memory on long audio: head-pose steps at diffusion window edges vs elsewhere.

    python benchmarks/bench_long_audio.py [--seconds 60] [--weights W] [--set pose_k=100]

Generates SDM motion for N seconds of espeak-ng speech and prints, per pose dim, the 95th
percentile of frame-to-frame steps, the largest step within 3 frames of a window edge and
the largest step anywhere (a seam would show as edge steps above the rest), plus the time
and peak memory of the motion stage; then the head per minute (roll in degrees, position in
canonical units: mean and std), where a drift would show as a mean that wanders off.
Feeds docs/RESULTS.md, "Speed and memory" (long audio) and "Head motion" (5 minutes of
speech: drift and seams):

    python benchmarks/bench_long_audio.py --seconds 300
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import compute_features, synthesize_speech
from sdmtalk.evaluate.bench_support import apply_overrides, print_seams
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.motion.sdm_sampling import window_spans
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import load_motion_model

TEXT = "Now this is a longer talk about the weather, the markets and the news of the day. " * 6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_motion_model("sdm", args.weights)
    apply_overrides(model, args.overrides)
    speech = synthesize_speech(TEXT)
    n = int(args.seconds * SAMPLE_RATE)
    feats = compute_features(np.tile(speech, n // len(speech) + 1)[:n], phonemes=model.needs_phonemes)
    t0 = time.perf_counter()
    pose = model.generate(feats, CANONICAL_TEMPLATE.copy(), MotionControls(seed=0)).pose
    took = time.perf_counter() - t0
    T = len(pose)
    spans = window_spans(T, model.cfg.infer_window, model.cfg.infer_overlap)
    edges = sorted({e for _, e in spans[:-1]} | {s + model.cfg.infer_overlap for s, _ in spans[1:]})
    near = np.zeros(T - 1, bool)
    for e in edges:
        near[max(0, e - 3):e + 3] = True
    print(f"{args.seconds:.0f} s audio, {T} frames, {len(spans)} windows: motion {took:.2f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    mean, std = (b[:4].numpy() for b in (model.motion_mean, model.motion_std))
    near_limit = (np.abs((pose - mean) / std) > 2.5).any(axis=1).mean()
    print(f"frames with a pose dim beyond 2.5 training stds (soft limit {model.cfg.pose_limit}): "
          f"{100 * near_limit:.1f} %")
    print_seams(pose, near)
    print_drift(pose)


def print_drift(pose: np.ndarray, fps: int = 25) -> None:
    """Mean and std of roll (deg) and position per minute of the generated head."""
    minute = 60 * fps
    for i in range(0, len(pose), minute):
        p = pose[i:i + minute]
        roll = np.degrees(p[:, 1])
        print(f"minute {i // minute + 1}: roll mean {roll.mean():+.2f} std {roll.std():.2f} max |{np.abs(roll).max():.1f}| deg; "
              f"tx mean {p[:, 2].mean():+.3f} std {p[:, 2].std():.3f}; ty mean {p[:, 3].mean():+.3f} "
              f"std {p[:, 3].std():.3f}")


if __name__ == "__main__":
    main()
