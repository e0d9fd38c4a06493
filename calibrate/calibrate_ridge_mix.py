"""Fit how much of the ridge baseline's mouth motion the SDM's lips mix in (motion/lip_ensemble.py).

    python calibrate/calibrate_ridge_mix.py --cache CACHE [--split val] [--weights W] [--seeds 3]
        [--shares 0,0.1,...] [--cross-validate] [--write sdmtalk/weights/sdm_base.safetensors]

On each clip of the split (audio re-aligned by the cache's offsets, as bench_motion) the model
generates its motion at every share of the grid, and its mouth is scored as bench_motion scores
it (within-clip lip-gap r against the real clip, amplitude ratio). ridge_gain is the mean over
clips and seeds of std(the SDM's own lip gap) / std(the bundled ridge's): the mix keeps the
SDM's amplitude instead of taking the ridge's damped one. The share is the one with the best
mean lip r over the clips (--cross-validate: also fitted on one half of the speakers and
scored on the other, both ways). --write: the same tensors with ridge_mix / ridge_gain set
(the command noted as ridge_mix_command). Prints ridge_gain, lip r and amplitude per share
(and per dev group), the chosen share and the cross-validated scores. Feeds docs/RESULTS.md,
"Lips" ("Lip ensemble with a fair ridge"). The shipped sdm_base was written by

    python calibrate/calibrate_ridge_mix.py --cache /work/cache/shared --seeds 3 \
        --shares 0.3,0.4,0.5,0.6,0.7 --cross-validate --write sdmtalk/weights/sdm_base.safetensors
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sdmtalk.audio import AudioFeatures
from sdmtalk.evaluate.bench_support import (
    calibration_inputs,
    calibration_parser,
    write_calibrated,
)
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.evaluate.landmark_bench import (
    aligned,
    nan_mean,
    speaker_half_splits,
)
from sdmtalk.evaluate.lip_metrics import amplitude_ratio, lip_gap_correlation
from sdmtalk.face import to_canonical
from sdmtalk.face.align import lip_gap
from sdmtalk.motion.linear import LinearBaseline
from sdmtalk.motion.types import MotionControls, apply_motion


def lip_gaps(model, data: dict, seeds: list[int]) -> list[np.ndarray]:
    """One clip's generated lip gap per seed, in bench_motion's aligned crop frame."""
    real = data["landmarks"]
    feats = AudioFeatures(mel=data["mel"], prosody=data["prosody"], energy=data["energy"],
                          phonemes=data.get("phonemes"))
    source, sims = to_canonical(real[:1])
    return [lip_gap(aligned(apply_motion(real[0], model.generate(feats, source[0], MotionControls(seed=s))),
                            sims[0])) for s in seeds]


def real_gap(data: dict) -> np.ndarray:
    real = data["landmarks"]
    return lip_gap(aligned(real, to_canonical(real[:1])[1][0]))


def fit_gain(model, ridge, clips: list[dict], seeds: list[int]) -> float:
    """Mean over clips and seeds of std(the SDM's own lip gap) / std(the ridge's)."""
    model.cfg.ridge_mix = 0.0
    ratios = []
    for data in clips:
        ridge_std = max(float(np.std(lip_gaps(ridge, data, [0])[0])), 1e-9)
        ratios += [float(np.std(g)) / ridge_std for g in lip_gaps(model, data, seeds)]
    return float(np.mean(ratios))


def scores(model, clips: list[dict], refs: list[np.ndarray], seeds: list[int],
           share: float) -> list[tuple[float, float]]:
    """Per clip (lip r, amplitude ratio against its real lip gap in `refs`), mean over seeds,
    with the model mixing `share`."""
    model.cfg.ridge_mix, out = share, []
    for data, ref in zip(clips, refs, strict=True):
        valid = data["valid"] > 0.5
        gaps = lip_gaps(model, data, seeds)
        out.append((nan_mean([lip_gap_correlation(g, ref, valid) for g in gaps]),
                    nan_mean([amplitude_ratio(g, ref, valid) for g in gaps])))
    return out


def main() -> None:
    ap = calibration_parser(__doc__)
    ap.add_argument("--shares", default="0,0.1,0.2,0.25,0.3,0.4,0.5", help="ridge_mix grid")
    args = ap.parse_args()
    model, records, clips = calibration_inputs(args)
    seeds = list(range(args.seeds))
    gain = model.cfg.ridge_gain = fit_gain(model, LinearBaseline.load(), clips, seeds)
    print(f"ridge_gain {gain:.3f} (mean std ratio of the SDM's lip gap to the ridge's, {len(clips)} clips)")
    groups = sorted({clip_group(r.speaker) for r in records})
    refs, table = [real_gap(d) for d in clips], {}
    for share in sorted({0.0, *(float(s) for s in args.shares.split(","))}):  # 0: the reference
        table[share] = scores(model, clips, refs, seeds, share)
        per_group = "  ".join(
            f"{g} {nan_mean([r for (r, _), rec in zip(table[share], records, strict=True) if clip_group(rec.speaker) == g]):.3f}"
            for g in groups)
        print(f"ridge_mix {share:.2f}: lip r {nan_mean([r for r, _ in table[share]]):.3f}  amp "
              f"{nan_mean([a for _, a in table[share]]):.3f}   {per_group}", flush=True)
    chosen = best_share(table, range(len(clips)))
    print(f"chosen on all {len(clips)} clips: ridge_mix {chosen}")
    if args.cross_validate:
        _cross_validate(table, records)
    if args.write:
        model.cfg.ridge_mix, model.cfg.ridge_gain = chosen, round(gain, 3)
        write_calibrated(model, Path(args.weights or args.write), Path(args.write), sys.argv[1:],
                         key="ridge_mix_command", script="calibrate/calibrate_ridge_mix.py")
        print(f"wrote {args.write}")


def best_share(table: dict, clips) -> float:
    clips = list(clips)
    return max(table, key=lambda s: nan_mean([table[s][i][0] for i in clips]))


def _cross_validate(table: dict, records) -> None:
    """Fit on half of the speakers, score on the other half, both ways."""
    for fit_i, held_i in speaker_half_splits(records):
        s = best_share(table, fit_i)
        print(f"cross-validated: fit on {len(fit_i)} clips -> ridge_mix {s}; on the other {len(held_i)}: "
              f"lip r {nan_mean([table[s][i][0] for i in held_i]):.3f} against "
              f"{nan_mean([table[0.0][i][0] for i in held_i]):.3f} unmixed")


if __name__ == "__main__":
    main()
