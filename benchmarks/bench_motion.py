"""Motion-stage numbers on a prepared cache, in landmark space (no rendering; prints a table).

    python benchmarks/bench_motion.py --cache CACHE [--split val] [--weights W] [--seeds 5] [--no-offsets]
        [--methods linear --linear-weights RUN/linear_baseline.safetensors]

For each clip of the split the source is the clip's first frame and the driving audio its own
track (cached features). Generated and real landmarks go through the same fixed alignment
(the real first frame's similarity to the canonical template, inter-ocular = 0.3 x 256 px),
then: mouth and face LMD (px), lip-gap correlation with the real clip, lip amplitude ratio
(the mouth columns: mean over seeds; the head's std and speed: seed 0), head-pose diversity
across seeds (roll degrees, position px), real-vs-generated head motion
std, motion-stage seconds per second of audio, and the shallow diffusion depth used.
When the cache has an offsets table (sdmtalk.data.offsets) each clip's audio is re-aligned to
its video first, so that the real lips are scored against in-sync speech (--no-offsets: the
clips as recorded). The scoring itself is sdmtalk/evaluate/landmark_bench.py. Prints the table,
the real clips' row, beat alignment over seeds and lip r per dev group. Feeds docs/RESULTS.md,
"Lips" and "Head motion" (their current numbers and most experiments), e.g.

    python benchmarks/bench_motion.py --cache /work/cache/shared --seeds 5 --methods linear,sdm
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sdmtalk.evaluate.bench_support import apply_overrides
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.evaluate.landmark_bench import load_scored_clips, nan_mean, score_clip
from sdmtalk.pipeline import load_motion_model

METHODS = {  # name: (motion, controls)
    "static": ("static", {}),
    "energy": ("energy", {}),
    "linear": ("linear", {}),
    "sdm": ("sdm", {}),
    "sdm-no-pose": ("sdm", {"ablation": "no_pose"}),
    "sdm-no-rhythm": ("sdm", {"ablation": "no_rhythm"}),
    "sdm-no-diffusion (k=0)": ("sdm", {"diffusion_steps": 0}),
    "sdm-k15": ("sdm", {"diffusion_steps": 15}),
    "sdm-full-diffusion (k=T)": ("sdm", {"ablation": "full_diffusion"}),
}


def method_spec(name: str) -> tuple[str, dict]:
    """(motion, controls) of a method name: one of METHODS, or "sdm-k<N>" for a fixed
    shallow-diffusion depth N (a point of the lip sync / head motion curve against k)."""
    if name in METHODS:
        return METHODS[name]
    if name.startswith("sdm-k") and name[5:].isdigit():
        return "sdm", {"diffusion_steps": int(name[5:])}
    raise SystemExit(f"unknown method {name!r}: use {', '.join(METHODS)} or sdm-k<N>")


def bas_interval_lines(seed_bas: dict) -> list[str]:
    """Beat alignment over seeds (each seed's mean over clips): mean and 95 % interval, and
    for every other method the paired difference from "sdm" (same seeds, same clips)."""
    def interval(x):
        half = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
        return f"{x.mean():.4f} ({x.mean() - half:.4f} to {x.mean() + half:.4f})"

    lines = ["beat alignment over seeds, mean (95 % interval):"]
    for name, x in seed_bas.items():
        line = f"  {name}: {interval(x)}"
        ref = seed_bas.get("sdm")
        if ref is not None and name != "sdm" and len(ref) == len(x) > 1:
            line += f"; minus sdm, paired: {interval(x - ref)}"
        lines.append(line)
    return lines


def window_k_text(model, ks: list[int]) -> str:
    """Each diffusion window's own k (before the clip takes the median): median, 10-90 %
    range and the share of windows pinned at the "auto" clamp."""
    if not ks:
        return "-"
    cfg = getattr(model, "cfg", None)
    clamp = (getattr(cfg, "k_auto_max", 0) or getattr(cfg, "k_max", 0)) if cfg else 0
    lo, mid, hi = np.percentile(ks, [10, 50, 90])
    pinned = f", {100 * np.mean(np.asarray(ks) >= clamp):.0f} % at {clamp}" if clamp else ""
    return f"{mid:.0f} ({lo:.0f}-{hi:.0f}){pinned}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated; sdm-k<N> = SDM at a fixed diffusion depth N")
    ap.add_argument("--no-offsets", action="store_true", help="ignore the cache's offsets.json")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override an inference setting of the SDM config, e.g. --set k_tau_infer=0.3")
    ap.add_argument("--linear-weights", default=None,
                    help="weights of the linear method (default: the shipped linear_baseline)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records, clips = load_scored_clips(args.cache, args.split, not args.no_offsets)
    cols = ["lmd_mouth", "lmd_mouth_shape", "lmd_face", "lip_r", "lip_r_fast", "lip_r_slow", "lip_amp", "sil_std", "roll_std",
            "pos_std", "pos_speed", "div_roll", "div_pos", "bas", "bas_chance", "pause_speed", "coupling", "sec_per_audio_sec"]
    group_lines = []
    print(f"{len(clips)} clips of split '{args.split}', seeds {args.seeds}, {args.threads} thread(s)")
    print("| method | " + " | ".join(cols) + " | window k: median (10-90 %), share at the clamp |")
    print("|---" * (len(cols) + 2) + "|")
    real_rows, seed_bas = [], {}
    for name in args.methods.split(","):
        motion, kw = method_spec(name)
        if motion == "linear" and args.linear_weights:
            from sdmtalk.motion.linear import LinearBaseline

            model = LinearBaseline.load(args.linear_weights)
        else:
            model = load_motion_model(motion, args.weights)
            if motion == "sdm":
                apply_overrides(model, args.overrides)
        seeds = [0] if motion in ("static", "linear") else list(range(args.seeds))
        rows, ks = [], []
        for data in clips:
            row, k = score_clip(model, kw, data, seeds)
            rows.append(row)
            ks += k
        real_rows = rows
        seed_bas[name] = np.array([nan_mean([r["bas_seeds"][i] for r in rows]) for i in range(len(seeds))])
        group_lines.append(f"{name}: " + "  ".join(
            f"{g} r {nan_mean([r['lip_r'] for r, rec in zip(rows, records, strict=True) if clip_group(rec.speaker) == g]):.3f}"
            for g in sorted({clip_group(rec.speaker) for rec in records})))
        means = [nan_mean([r.get(c, np.nan) for r in rows]) for c in cols]
        k_txt = window_k_text(model, ks)
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {k_txt} |", flush=True)
    real = [nan_mean([r[c] for r in real_rows])
            for c in ("real_sil_std", "real_roll_std", "real_pos_std", "real_pos_speed")]
    bas = [nan_mean([r[c] for r in real_rows]) for c in ("real_bas", "real_bas_chance", "real_pause_speed",
                                                       "real_coupling")]
    print("| real clips | | | | 1 | 1 | 1 | 1 | " + " | ".join(f"{v:.3f}" for v in real) + " | | | "
          + " | ".join(f"{v:.3f}" for v in bas) + " | | |")
    print("bas_chance: the beat alignment of the same head with the onsets shifted at random "
          "(what BAS gives for motion unrelated to the audio)")
    print("\n" + "\n".join(bas_interval_lines(seed_bas)))
    print("\nlip-gap r per dev group (mean over clips):")
    print("\n".join(group_lines))


if __name__ == "__main__":
    main()
