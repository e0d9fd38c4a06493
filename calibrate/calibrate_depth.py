"""Does the shallow-diffusion depth predictor predict? Fit the depth from the prior's uncertainty.

    python calibrate/calibrate_depth.py --cache CACHE [--weights W] [--split val] [--windows 512]
                                     [--set k_tau_infer=30] [--fit-prior [--median-k 3] [--write OUT]]

On windows of the split (the trainer's own val windows: same references and re-alignment)
the coarse motion F* comes from the inference path (z from the prior). For each window the
target meeting step is where q(F^t | F*) and q(F^t | F^0) meet (step_predictor.py, the
model's training tau, no clamp; over the dims its kpred_target names), the predicted step is
the step predictor's. Prints the Spearman correlation of predicted and target step over
windows (does k track how far the coarse motion is from the real one?), both distributions,
and the auto k the model would use at inference (k_tau_infer conversion and clamp) with the
share of windows at its clamp.

With k_prior_fit in the weights (or --fit-prior) the same for the depth from the pose-mode
prior's uncertainty (SDMConfig.k_prior_fit). --fit-prior fits it on train windows: log of
the window's squared coarse-real gap = a + b log sigma (least squares), and k_tau_infer so
that the train windows' median depth is --median-k (the middle of the flat part of the lip
sync / k curve, docs/RESULTS.md, Lips, "The depth curve"). --write copies the weights with
both in the config (the command noted as depth_command). Feeds docs/RESULTS.md, "Lips"
(current numbers; "Depth from the prior's uncertainty"). The shipped sdm_base was written by

    python calibrate/calibrate_depth.py --cache /work/cache/shared --windows 256 --fit-prior \
        --median-k 3 --write sdmtalk/weights/sdm_base.safetensors

and its dev report alone is `python calibrate/calibrate_depth.py --cache /work/cache/shared --windows 256`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from sdmtalk.data.cache import CacheReader
from sdmtalk.data.windows import MotionWindows
from sdmtalk.diffusion.step_predictor import (
    meet_step_targets,
    rescale_meet_step,
    resolve_k,
    tau_for_step,
    window_sq_gap,
)
from sdmtalk.evaluate.bench_support import apply_overrides, write_calibrated
from sdmtalk.motion.sdm_config import POSE_DIM
from sdmtalk.pipeline import BUNDLED_WEIGHTS, load_motion_model
from sdmtalk.train.trainer import offset_table, phoneme_table


def window_steps(model, batch: dict) -> dict[str, np.ndarray]:
    """Per window of a batch: the network's predicted k and the target k (steps of the
    model's T), the pose-mode prior's sigma and the squared coarse-real gap."""
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
    return {"target": meet_step_targets(model.schedule, coarse_t, x_t, mask, cfg.k_tau, cfg.diffusion_steps
                                        ).numpy().astype(float),
            "pred": (model.k_predictor(content, coarse, mask) * cfg.diffusion_steps).numpy(),
            "sigma": model.prior_sigma(content, mask).numpy(),
            "gap": window_sq_gap(coarse_t, x_t, mask).numpy()}


def collect(model, cache: str, split: str, windows: int) -> dict[str, np.ndarray]:
    cfg = model.cfg
    data = MotionWindows(CacheReader(cache), split, window=50, seed=0, speaker_power=0.0, length=windows,
                         phonemes=phoneme_table(cache, cfg), reference=cfg.delta_ref,
                         pose_reference=cfg.pose_ref, offsets=offset_table(cache))
    parts = [window_steps(model, b) for b in torch.utils.data.DataLoader(data, batch_size=64)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def fit_prior_depth(model, cache: str, median_k: int, windows: int = 1024) -> tuple[tuple, float]:
    """((a, b), k_tau_infer) of k_prior_fit from train windows (see the module doc)."""
    train = collect(model, cache, "train", windows)
    b, a = np.polyfit(np.log(train["sigma"]), np.log(np.maximum(train["gap"], 1e-12)), 1)
    gap = np.exp(a + b * np.log(train["sigma"]))
    tau = tau_for_step(model.schedule, float(np.median(gap)), median_k)
    print(f"k_prior_fit on {len(gap)} train windows: log gap = {a:.4f} + {b:.4f} log sigma "
          f"(Spearman sigma / meeting step {spearman(train['sigma'], train['target']):.3f}); "
          f"k_tau_infer {tau:.6g} puts their median depth at {median_k}")
    return (round(float(a), 5), round(float(b), 5)), float(f"{tau:.6g}")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def describe(name: str, k: np.ndarray) -> str:
    lo, mid, hi = np.percentile(k, [10, 50, 90])
    return f"{name}: median {mid:.1f} (10-90 %: {lo:.1f}-{hi:.1f}), std {k.std():.2f}"


def report(model, res: dict[str, np.ndarray], split: str) -> None:
    cfg = model.cfg
    clamp = cfg.k_auto_max or cfg.k_max
    print(f"{len(res['pred'])} windows of split '{split}'; training tau {cfg.k_tau}, inference tau "
          f"{cfg.k_tau_infer or cfg.k_tau}, clamp {clamp}")
    print(describe("target meeting step (coarse from the prior vs real)", res["target"]))
    print(describe("step predictor network", res["pred"]))
    print(f"Spearman r (network, target) over windows: {spearman(res['pred'], res['target']):.3f}")
    if cfg.k_prior_fit:
        a, b = cfg.k_prior_fit
        gap = np.exp(a + b * np.log(res["sigma"]))
        print(f"Spearman r (prior's predicted gap, target) over windows: {spearman(gap, res['target']):.3f}; "
              f"(predicted gap, real gap) {spearman(gap, res['gap']):.3f}")
        steps = model.prior_depth_of_sigma(torch.as_tensor(res["sigma"])).numpy()
        auto = np.array([resolve_k(float(k), clamp, 0)[0] for k in steps])
    else:
        ratio = cfg.k_tau_infer / cfg.k_tau if cfg.k_tau_infer > 0 else 1.0
        auto = np.array([resolve_k(rescale_meet_step(model.schedule, p, ratio), clamp, 0)[0] for p in res["pred"]])
    print(describe("auto k at inference", auto.astype(float)) + f"; {100 * np.mean(auto >= clamp):.1f} % at the clamp")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", default=None, help="SDM weights (default: the bundled sdm_base)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--windows", type=int, default=512)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--fit-prior", action="store_true", help="fit k_prior_fit and k_tau_infer on train windows")
    ap.add_argument("--median-k", type=int, default=3, help="--fit-prior: the train windows' median depth")
    ap.add_argument("--write", default=None, help="--fit-prior: write the weights with the fit (.safetensors)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights).eval()
    apply_overrides(model, args.overrides)
    if args.fit_prior:
        fit, tau = fit_prior_depth(model, args.cache, args.median_k)
        model.cfg = dataclasses.replace(model.cfg, k_prior_fit=fit, k_tau_infer=tau)
    report(model, collect(model, args.cache, args.split, args.windows), args.split)
    if args.write:
        write_calibrated(model, Path(args.weights or BUNDLED_WEIGHTS), Path(args.write), sys.argv[1:],
                         key="depth_command", script="calibrate/calibrate_depth.py")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    with torch.no_grad():
        main()
