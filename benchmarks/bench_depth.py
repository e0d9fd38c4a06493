"""Does the shallow-diffusion depth predictor predict? (issue 11, item 3)

    python benchmarks/bench_depth.py --cache CACHE --weights W [--split val] [--windows 512]
                                     [--set k_tau_infer=30]

On windows of the split (the trainer's own val windows: same references and re-alignment)
the coarse motion F* comes from the inference path (z from the prior). For each window the
target meeting step is where q(F^t | F*) and q(F^t | F^0) meet (step_predictor.py, the
model's training tau, no clamp; over the dims its kpred_target names), the predicted step is the step predictor's. Prints the
Spearman correlation of predicted and target step over windows (does k track how far the
coarse motion is from the real one?), both distributions, and the auto k the model would
use at inference (k_tau_infer conversion and clamp) with the share of windows at its clamp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_motion import apply_overrides  # noqa: E402

from sdmtalk.data.cache import CacheReader  # noqa: E402
from sdmtalk.data.windows import MotionWindows  # noqa: E402
from sdmtalk.diffusion.step_predictor import meet_step_targets, rescale_meet_step, resolve_k  # noqa: E402
from sdmtalk.motion.sdm import POSE_DIM  # noqa: E402
from sdmtalk.pipeline import load_motion_model  # noqa: E402
from sdmtalk.train.trainer import offset_table, phoneme_table  # noqa: E402


def window_steps(model, batch: dict) -> tuple[np.ndarray, np.ndarray]:
    """(predicted k, target k) per window of a batch, both in steps of the model's T."""
    cfg = model.cfg
    mask = batch["valid"].float()
    x = model.normalize(batch["pose"], batch["delta"])
    mel, prosody = model.batch_speech(batch)
    content = model.content(mel)
    coarse, _ = model._coarse_prior(content, model.rhythm(prosody)[1], torch.Generator().manual_seed(0))
    if cfg.kpred_target == "prior_lips":  # the meeting step of the landmark dims only
        coarse_t, x_t = coarse[..., POSE_DIM:], x[..., POSE_DIM:]
    else:
        coarse_t, x_t = coarse, x
    target = meet_step_targets(model.schedule, coarse_t, x_t, mask, cfg.k_tau, cfg.diffusion_steps)
    pred = model.k_predictor(content, coarse, mask) * cfg.diffusion_steps
    return pred.numpy(), target.numpy().astype(float)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def describe(name: str, k: np.ndarray) -> str:
    lo, mid, hi = np.percentile(k, [10, 50, 90])
    return f"{name}: median {mid:.1f} (10-90 %: {lo:.1f}-{hi:.1f}), std {k.std():.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--windows", type=int, default=512)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights).eval()
    apply_overrides(model, args.overrides)
    cfg = model.cfg
    reader = CacheReader(args.cache)
    windows = MotionWindows(reader, args.split, window=50, seed=0, speaker_power=0.0, length=args.windows,
                            phonemes=phoneme_table(args.cache, cfg), reference=cfg.delta_ref,
                            pose_reference=cfg.pose_ref, offsets=offset_table(args.cache))
    loader = torch.utils.data.DataLoader(windows, batch_size=64)
    pred, target = (np.concatenate(v) for v in zip(*(window_steps(model, b) for b in loader), strict=True))
    ratio = cfg.k_tau_infer / cfg.k_tau if cfg.k_tau_infer > 0 else 1.0
    clamp = cfg.k_auto_max or cfg.k_max
    auto = np.array([resolve_k(rescale_meet_step(model.schedule, p, ratio), clamp, 0)[0] for p in pred])
    print(f"{len(pred)} windows of split '{args.split}'; training tau {cfg.k_tau}, inference tau "
          f"{cfg.k_tau_infer or cfg.k_tau}, clamp {clamp}")
    print(describe("target meeting step (coarse from the prior vs real)", target))
    print(describe("predicted meeting step", pred))
    print(f"Spearman r (predicted, target) over windows: {spearman(pred, target):.3f}")
    print(describe("auto k at inference", auto.astype(float)) + f"; {100 * np.mean(auto >= clamp):.1f} % at the clamp")


if __name__ == "__main__":
    with torch.no_grad():
        main()
