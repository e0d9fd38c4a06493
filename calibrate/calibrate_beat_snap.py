"""Fit the rhythmic branch's beat snap (motion/beat_snap.py) and the pose smoothing to real heads.

Beat alignment (BAS) counts how close each audio onset is to a minimum of head speed. It
rises with how many minima a head has (its "chance" BAS, onsets shifted at random) and
with how well they fall on the onsets (BAS minus chance). The pose smoothing sets the first
(the diffusion sample's small wiggles are minima too), the snap strength the second. For
each grid pair this script generates the split's clips (3 seeds) and picks the pair whose
chance BAS and excess over chance are nearest the real heads' (squared distance, both in
BAS units). --cross-validate: fits on half of the speakers, scores on the other half, and
the other way round. --write: the same tensors with the chosen pose_smooth and beat_snap.

Prints BAS, chance BAS and excess per grid pair, the chosen pair and the cross-validated
scores; --write writes the weights (+ .json sidecar, the command noted as beat_snap_command).
Feeds docs/RESULTS.md, "Head motion" ("Beat snap on the speech's accents"). The shipped
sdm_base was written by

    python calibrate/calibrate_beat_snap.py --cache /work/cache/shared --split val \
        --smooth 1.0,1.5,2.0 --cross-validate --write sdmtalk/weights/sdm_base.safetensors
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
from sdmtalk.evaluate.landmark_bench import (
    aligned,
    bas_pair,
    speaker_half_splits,
)
from sdmtalk.face import to_canonical
from sdmtalk.motion.beat_snap import snap_pose
from sdmtalk.motion.types import Motion, MotionControls, apply_motion


def clip_scores(model, data: dict, seeds: list[int], strengths: list[float]) -> dict:
    """One clip at the model's pose smoothing -> {strength: [(BAS, chance BAS) per seed]} and
    the real head's (BAS, chance BAS) under "real"."""
    real = data["landmarks"]
    feats = AudioFeatures(mel=data["mel"], prosody=data["prosody"], energy=data["energy"],
                          phonemes=data.get("phonemes"))
    source, sims = to_canonical(real[:1])
    out = {s: [] for s in strengths}
    for seed in seeds:
        controls = MotionControls(seed=seed)
        model.cfg.beat_snap = 0.0
        motion = model.generate(feats, source[0], controls)
        for s in strengths:
            model.cfg.beat_snap = s
            pose = snap_pose(motion.pose, model.accents(feats, controls), model.beat_snap(controls))
            moved = aligned(apply_motion(real[0], Motion(pose=pose, delta=motion.delta)), sims[0])
            out[s].append(bas_pair(moved, None, data["onsets"], len(real)))
    out["real"] = bas_pair(aligned(real, sims[0]), data["valid"] > 0.5, data["onsets"], len(real))
    return out


def summary(rows: list[dict], key) -> tuple[float, float]:
    """(mean BAS, mean excess over chance) of `key` ("real" or a strength) over clips and seeds."""
    pairs = np.array([p for r in rows for p in ([r[key]] if key == "real" else r[key])], float)
    ok = np.isfinite(pairs).all(axis=1)
    bas, chance = pairs[ok].mean(axis=0)
    return float(bas), float(bas - chance)


def distance(rows: list[dict], key) -> float:
    """Squared distance of (chance BAS, excess) from the real heads'."""
    bas, excess = summary(rows, key)
    real_bas, real_excess = summary(rows, "real")
    return ((bas - excess) - (real_bas - real_excess)) ** 2 + (excess - real_excess) ** 2


def best(table: dict, clips: list[int]) -> tuple[float, float]:
    """The (pose_smooth, strength) pair nearest the real heads on these clips."""
    keys = [(sm, s) for sm, rows in table.items() for s in rows[0] if s != "real"]
    return min(keys, key=lambda k: distance([table[k[0]][i] for i in clips], k[1]))


def main() -> None:
    ap = calibration_parser(__doc__)
    ap.add_argument("--smooth", default="1.0,1.5,2.0,2.5", help="pose_smooth grid (frames)")
    ap.add_argument("--strength", default="0,0.25,0.5,0.75,1.0,1.25", help="beat_snap grid")
    args = ap.parse_args()
    model, records, clips = calibration_inputs(args)
    strengths = [float(s) for s in args.strength.split(",")]
    table = {}
    for sm in [float(s) for s in args.smooth.split(",")]:
        model.cfg.pose_smooth = sm
        table[sm] = [clip_scores(model, d, list(range(args.seeds)), strengths) for d in clips]
        real_bas, real_excess = summary(table[sm], "real")
        for s in strengths:
            bas, excess = summary(table[sm], s)
            print(f"pose_smooth {sm:.2f} beat_snap {s:.2f}: BAS {bas:.3f} chance {bas - excess:.3f} "
                  f"excess {excess:+.3f}   (real {real_bas:.3f} / {real_bas - real_excess:.3f} / "
                  f"{real_excess:+.3f})", flush=True)
    chosen = best(table, list(range(len(clips))))
    print(f"chosen on all {len(clips)} clips: pose_smooth {chosen[0]}, beat_snap {chosen[1]}")
    if args.cross_validate:
        _cross_validate(table, records)
    if args.write:
        model.cfg.pose_smooth, model.cfg.beat_snap = chosen
        write_calibrated(model, Path(args.weights or args.write), Path(args.write), sys.argv[1:],
                         key="beat_snap_command", script="calibrate/calibrate_beat_snap.py")
        print(f"wrote {args.write}")


def _cross_validate(table: dict, records) -> None:
    """Fit on half of the speakers, score on the other half, both ways."""
    for fit_i, held_i in speaker_half_splits(records):
        sm, s = best(table, fit_i)
        rows = [table[sm][i] for i in held_i]
        bas, excess = summary(rows, s)
        real_bas, real_excess = summary(rows, "real")
        print(f"cross-validated: fit on {len(fit_i)} clips -> pose_smooth {sm}, beat_snap {s}; on the "
              f"other {len(held_i)}: BAS {bas:.3f} excess {excess:+.3f} (real {real_bas:.3f} {real_excess:+.3f})")


if __name__ == "__main__":
    main()
