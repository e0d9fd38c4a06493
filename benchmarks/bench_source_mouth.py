"""Does the video's mouth depend on the photo's? Source invariance in landmark space (prints tables).

    python benchmarks/bench_source_mouth.py --cache CACHE [--split val] [--seeds 3] [--weights W] [--spans 1,2,3,4]

For every clip of the split, the photo is the clip's most-closed frame and then its
most-open frame (by the real inner-lip gap), the audio its own; the motion is put on the
photo as `generate` does, with the photo's mouth brought to rest first and pressed lips
parted as the speech opens them (face/mouth_state.py), and, for comparison, as it is ("as
photo"). Columns, in canonical units (inter-ocular ~ 1):
- p10_ok: share of clips whose generated lip gap 10th percentile lies within 0.05 of the real
  clip's (the mouth closes as far as the speaker's does);
- p10_diff: mean generated minus real 10th percentile; lip_r: lip-gap correlation with the
  real clip; amp: lip amplitude ratio (std of the gap, generated / real);
- shut_per_min: stretches of 0.4 s or more of loud voiced speech (voiced, energy above the
  clip's median) during which the mouth stays shut (gap below the basis' open_gap), per
  minute of such speech; the real clips' rate is printed for comparison.
Feeds docs/RESULTS.md, "The photo's own mouth".
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from sdmtalk.audio import AudioFeatures
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.evaluate.landmark_bench import load_scored_clips, nan_mean
from sdmtalk.evaluate.lip_metrics import amplitude_ratio, lip_gap_correlation
from sdmtalk.face import to_canonical
from sdmtalk.face.align import lip_gap
from sdmtalk.face.mouth_state import PART_SPAN, bundled_basis, part_pressed_lips, rest_mouth
from sdmtalk.motion.types import Motion, MotionControls, apply_motion
from sdmtalk.pipeline import load_motion_model

SHUT_FRAMES = 10  # 0.4 s at 25 fps
P10_TOLERANCE = 0.05


def shut_stretches(gap: np.ndarray, prosody: np.ndarray, ok: np.ndarray, shut_gap: float) -> tuple[int, float]:
    """(stretches of >= SHUT_FRAMES loud voiced frames with the mouth shut, minutes of loud
    voiced speech) of one clip."""
    voiced = prosody[:, 1] > 0.5
    loud = voiced & (prosody[:, 2] > np.median(prosody[voiced, 2])) if voiced.any() else voiced
    loud &= ok
    mask = loud & (gap < shut_gap)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    runs = edges[1::2] - edges[::2]
    return int((runs >= SHUT_FRAMES).sum()), float(loud.sum()) / 25 / 60


def source_frames(gap: np.ndarray, ok: np.ndarray) -> dict[str, int]:
    idx = np.flatnonzero(ok)
    return {"closed": int(idx[np.argmin(gap[idx])]), "open": int(idx[np.argmax(gap[idx])])}


def run_clip(model, data: dict, seeds: list[int], shut_gap: float, spans: list[float]) -> dict:
    """{(source, reset, span): [per-seed rows]} (span None as the photo has it) and the real
    clip's own row; each seed's motion is made once and parted at every span."""
    real = data["landmarks"]
    ok = (data["valid"] > 0.5) & np.isfinite(real).all(axis=(1, 2))
    real_gap = lip_gap(to_canonical(real)[0])
    feats = AudioFeatures(mel=data["mel"], prosody=data["prosody"], energy=data["energy"],
                          phonemes=data.get("phonemes"))
    p10_real = float(np.percentile(real_gap[ok], 10))
    out = {"real": {"shut": shut_stretches(real_gap, data["prosody"], ok, shut_gap)}}
    for name, k in source_frames(real_gap, ok).items():
        for reset in (False, True):
            src = rest_mouth(real[k]) if reset else real[k]
            for seed in seeds:
                motion = model.generate(feats, to_canonical(src[None])[0][0], MotionControls(seed=seed))
                for span in spans if reset else [None]:
                    # as TalkingFacePipeline.face_landmarks: pressed lips part with the speech
                    moved = Motion(motion.pose, part_pressed_lips(src, motion.delta, span=span)) if reset else motion
                    gap = lip_gap(to_canonical(apply_motion(src, moved))[0])
                    out.setdefault((name, reset, span), []).append({
                        "p10_diff": float(np.percentile(gap[ok], 10)) - p10_real,
                        "lip_r": lip_gap_correlation(gap, real_gap, ok), "amp": amplitude_ratio(gap, real_gap, ok),
                        "shut": shut_stretches(gap, data["prosody"], ok, shut_gap)})
    return out


def summary(results: list[dict], key) -> dict:
    rows = [r for res in results for r in res[key]]
    diffs = np.array([np.mean([r["p10_diff"] for r in res[key]]) for res in results])
    shut = sum(r["shut"][0] for r in rows) / max(sum(r["shut"][1] for r in rows), 1e-9)
    return {"p10_ok": float(np.mean(np.abs(diffs) <= P10_TOLERANCE)), "p10_diff": float(diffs.mean()),
            "lip_r": nan_mean([r["lip_r"] for r in rows]), "amp": nan_mean([r["amp"] for r in rows]),
            "shut_per_min": shut}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--motion", default="sdm")
    ap.add_argument("--spans", default=str(PART_SPAN),
                    help="comma-separated part_pressed_lips spans (resting gaps) for the closed-frame table; "
                         f"the main table uses the shipped {PART_SPAN}")
    args = ap.parse_args()
    spans = sorted({float(x) for x in args.spans.split(",")} | {PART_SPAN})
    torch.set_num_threads(1)  # the motion model is small: one thread, as generate runs it
    records, clips = load_scored_clips(args.cache, args.split)
    model = load_motion_model(args.motion, args.weights)
    shut_gap = bundled_basis().cfg.open_gap
    results = [run_clip(model, data, list(range(args.seeds)), shut_gap, spans) for data in clips]
    real_shut = sum(r["real"]["shut"][0] for r in results) / max(sum(r["real"]["shut"][1] for r in results), 1e-9)
    print(f"{len(clips)} clips of split '{args.split}', {args.motion}, seeds {args.seeds}; mouth shut below "
          f"{shut_gap:.3f}; real clips: {real_shut:.2f} shut stretches per minute of loud voiced speech")
    groups = sorted({clip_group(r.speaker) for r in records})
    print("| photo | mouth | p10_ok | p10_diff | lip_r | amp | shut_per_min | " + " | ".join(f"lip_r {g}" for g in groups) + " |")
    print("|---" * (7 + len(groups)) + "|")
    for name in ("closed", "open"):
        for reset in (False, True):
            key = (name, reset, PART_SPAN if reset else None)
            s = summary(results, key)
            per_group = [summary([res for res, rec in zip(results, records, strict=True)
                                  if clip_group(rec.speaker) == g], key)["lip_r"] for g in groups]
            print(f"| most {name} frame | {'at rest' if reset else 'as photo'} | {s['p10_ok']:.2f} | "
                  f"{s['p10_diff']:+.3f} | {s['lip_r']:.3f} | {s['amp']:.2f} | {s['shut_per_min']:.2f} | "
                  + " | ".join(f"{v:.3f}" for v in per_group) + " |")

    if len(spans) > 1:
        print("\nmost closed frame, at rest: pressed lips parted over a span of N resting gaps")
        print("| span | lip_r | amp | shut_per_min |\n|---|---:|---:|---:|")
        for span in [None, *spans]:
            s = summary(results, ("closed", span is not None, span))
            print(f"| {'never (as photo)' if span is None else f'{span:g}'} | {s['lip_r']:.3f} | {s['amp']:.2f} | "
                  f"{s['shut_per_min']:.2f} |")


if __name__ == "__main__":
    main()
