"""Calibrate the SDM's pose gain: how much more real heads move than the sampled ones.

    python calibrate/calibrate_pose_gain.py --cache /work/cache/shared --weights W [--split val]
        [--band 12] [--activity] [--seeds 3] [--set KEY=VALUE] [--cross-validate] [--write OUT.safetensors]

For each clip (one per speaker, every speaker counts once), the head pose of the real clip
relative to its first frame (motion_from_landmarks) and the pose SDM generates for the
clip's speech from its first frame (gains 1, seeds 100, 101, ...), each as [log scale,
angle, tx, ty]. Without --band: gain = real std / generated std per dim (pose_gain). With
--band TAU (pose_band, frames): the pose splits into a causal slow band and the rest
(sdmtalk/motion/pose_gain.py); pose_gain_slow = real / generated std of the slow band and
pose_gain = real / generated mean frame-to-frame step of the rest, so that the head gets
the slow wander of real heads without moving faster than they do. pose_bias: the generated
pose's mean (it tilts every head the same way), taken off before the gains. The gains are
fitted to the pose users get (bias off, `--set pose_ease=N` at the start), refined in a few
rounds on the same samples.

--activity: the rhythmic branch's head-activity envelope (sdmtalk/motion/head_activity.py).
Its readout (M~ and the prosody -> a real head's centred log speed) is fitted on train clips
(up to 8 per speaker, 2 s or more); its gain so that the gained heads' log speed rises with
the readout as steeply as the real heads' do on the calibration clips, alternated with the
pose gains (the envelope changes the fast band's step).

--split: sdm_base is calibrated on the dev split ("val"), the speakers the model was not
trained on: a gain measured on train speakers moves new speakers' heads less (its dev roll
std 2.3 deg against 3.3 real; docs/RESULTS.md, Head motion). Since dev is then also where the gain
is measured, --cross-validate prints the honest estimate: the dev clips split in two folds,
each scored (bench_motion, seeds 0-4) with the gain fitted on the other fold.
--set: inference settings calibrated with (and written with), e.g. pose_steps=20.
--write copies the weights to OUT.safetensors (+ .json) with the gains in their config,
the tensors unchanged (the command noted as pose_gain_command).

Prints the bias, the gains per pose dim (and beta with --activity) and, with
--cross-validate, the cross-validated bench_motion columns. Feeds docs/RESULTS.md,
"Head motion" (current numbers; "Two-band pose gain calibrated on dev speakers"; "Head-activity
envelope from the rhythmic branch"). The shipped sdm_base was written by

    python calibrate/calibrate_pose_gain.py --cache /work/cache/shared --weights /work/runs/sync_w0.1/model.safetensors \
        --split val --band 8 --set pose_steps=20 --set pose_ease=10 --activity --cross-validate \
        --write sdmtalk/weights/sdm_base.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from sdmtalk.audio import AudioFeatures
from sdmtalk.evaluate.bench_support import apply_overrides, write_calibrated
from sdmtalk.evaluate.landmark_bench import load_scored_clips, nan_mean, real_pose, score_clip
from sdmtalk.motion.head_activity import (
    active,
    activity_inputs,
    coupling_slope,
    envelope,
    fit_head_activity,
    log_pose_speed,
    model_inputs,
    readout,
)
from sdmtalk.motion.pose_gain import apply_pose_gain, pose_band_stats
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import BUNDLED_WEIGHTS, load_motion_model

DIMS = ("log scale", "angle", "tx", "ty")
CALIBRATION_SEEDS = 100  # seeds 100.. for the gain, so that bench_motion's 0-4 measure it afresh
COLUMNS = ("lip_r", "roll_std", "pos_std", "pos_speed", "div_roll", "div_pos", "bas", "pause_speed", "coupling")


def one_per_speaker(records: list, seed: int = 0) -> list[int]:
    """Indices of one clip per speaker (a seeded pick among the speaker's clips)."""
    by_speaker: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        by_speaker.setdefault(rec.speaker, []).append(i)
    rng = np.random.default_rng(seed)
    return [idx[rng.integers(len(idx))] for _, idx in sorted(by_speaker.items())]


class ClipSample(NamedTuple):
    """One calibration clip: the real pose (T, 4) relative to frame 0 and its valid frames
    (T,), the poses SDM samples for it with the gains off (one per seed), and the head
    activity a_t (T,) of the readout being fitted (None without --activity)."""

    real: np.ndarray
    valid: np.ndarray
    sampled: list
    activity: np.ndarray | None


def clip_poses(model, data: dict, seeds: list[int], weights=None) -> ClipSample | None:
    """The ClipSample of one clip (a_t from the readout `weights`, if given); None where
    frame 0 has no face."""
    real = real_pose(data)
    if real is None:
        return None
    pose, valid, source = real
    feats = AudioFeatures(mel=data["mel"], prosody=data["prosody"], energy=data["energy"],
                          phonemes=data.get("phonemes"))
    sampled = [model.generate(feats, source, MotionControls(seed=s)).pose for s in seeds]
    activity = None if weights is None else readout(weights, *model_inputs(model, data["prosody"]))
    return ClipSample(pose, valid, sampled, activity)


def fit_readout(model, cache: str, per_speaker: int = 8) -> np.ndarray:
    """The head-activity readout (sdmtalk/motion/head_activity.py) fitted on the train split:
    up to `per_speaker` clips of 2 s or more per speaker, each speaker weighted once."""
    records, clips = load_scored_clips(cache, "train")
    by_speaker: dict[str, list[dict]] = {}
    for rec, data in zip(records, clips, strict=True):
        if len(data["landmarks"]) >= 50:
            by_speaker.setdefault(rec.speaker, []).append(data)
    samples = []
    for group in by_speaker.values():
        for data in group[:per_speaker]:
            real = real_pose(data)
            if real is not None:
                x = activity_inputs(*model_inputs(model, data["prosody"]))
                samples.append((x, log_pose_speed(real[0], real[1]), 1.0 / len(group[:per_speaker])))
    weights, std = fit_head_activity(samples)
    print(f"head-activity readout: {len(samples)} train clips of {len(by_speaker)} speakers, "
          f"fitted log-speed std {std:.3f}")
    return weights


def _envelope(cfg, activity):
    """The envelope a sample's gained pose gets under cfg (None without a readout)."""
    if activity is None or not active(cfg):
        return None
    return envelope(activity, cfg.head_activity_gain)


def fit_gain(samples: list, cfg, band: float, rounds: int = 4) -> np.ndarray:
    """(6, 4) [slow gain, fast gain, bias, real slow std, real fast step (pose_target, what
    a --pose-reference is compared with), the real poses' largest |value| (pose_range)].
    bias = the sampled pose's mean; the gains are refined so that the pose users get (bias
    off, both gains, the ease of cfg at the start, cfg's head-activity envelope:
    apply_pose_gain, a deterministic step after sampling) matches the real band stats,
    averaged over clips (and seeds)."""
    samples = [s for s in samples if s is not None]
    bias = np.mean([np.mean([p.mean(0) for p in s.sampled], 0) for s in samples], 0)
    real = np.mean([pose_band_stats(s.real, s.valid, band) for s in samples], 0)
    reach = np.max([np.abs(s.real[s.valid]).max(0) for s in samples], 0)  # pose_range
    gain = np.ones((2, 4))
    for _ in range(rounds):
        trial = gain_config(cfg, np.concatenate([gain, bias[None], real, reach[None]]), band)
        gen = np.mean([np.mean([pose_band_stats(_gained(p, trial, s.activity), np.ones(len(p), bool), band)
                                for p in s.sampled], 0) for s in samples], 0)
        gain = gain * real / np.maximum(gen, 1e-12)
    return np.concatenate([np.round(gain, 3), np.round(np.float64(bias), 5)[None], np.round(real, 6),
                           np.round(reach, 5)[None]])


def _gained(pose, cfg, activity) -> np.ndarray:
    return apply_pose_gain(pose, cfg, activity=_envelope(cfg, activity))[0]


def activity_gain_step(samples: list, cfg) -> float:
    """How much the head-activity gain must grow for the gained heads' coupling (slope of
    their log speed on a_t) to match the real heads' (head_activity.coupling_slope)."""
    samples = [s for s in samples if s is not None]
    real = np.nanmean([coupling_slope(log_pose_speed(s.real, s.valid), s.activity) for s in samples])
    gen = np.nanmean([np.nanmean([coupling_slope(log_pose_speed(_gained(p, cfg, s.activity)), s.activity)
                                  for p in s.sampled])
                      for s in samples])
    return float(real - gen)


def gain_config(cfg, gain: np.ndarray, band: float):
    """cfg with gain (6, 4) as fit_gain's (or its first 3 rows: no target, no range)."""
    slow, fast, bias = (tuple(float(g) for g in row) for row in gain[:3])
    target = tuple(float(v) for v in np.ravel(gain[3:5])) if len(gain) == 6 else ()
    reach = tuple(float(v) for v in gain[5]) if len(gain) == 6 else ()
    return dataclasses.replace(cfg, pose_gain=fast, pose_gain_slow=slow if band > 0 else (1.0,) * 4,
                               pose_band=float(band), pose_bias=bias, pose_target=target, pose_range=reach)


def calibrate(samples: list, cfg, band: float, weights=None, rounds: int = 3):
    """cfg with the gains fitted to the samples; with a readout `weights`, the head-activity
    gain too (alternated with the gains, which it changes)."""
    cfg = dataclasses.replace(cfg, head_activity=() if weights is None else tuple(float(w) for w in weights),
                              head_activity_gain=0.0)
    fitted = gain_config(cfg, fit_gain(samples, cfg, band), band)
    for _ in range(rounds if weights is not None else 0):
        beta = round(fitted.head_activity_gain + activity_gain_step(samples, fitted), 4)
        cfg = dataclasses.replace(cfg, head_activity_gain=beta)
        fitted = gain_config(cfg, fit_gain(samples, cfg, band), band)
    return fitted


def cross_validate(model, clips: list[dict], picked: list[int], samples: list, band: float, weights) -> None:
    """Each half of the clips scored with the gains of the other half (bench_motion rows)."""
    rows, base = [], model.cfg
    for fold in (0, 1):
        train = [samples[j] for j in range(len(picked)) if j % 2 != fold]
        model.cfg = calibrate(train, base, band, weights)
        rows += [score_clip(model, {}, clips[i], list(range(5)))[0]
                 for j, i in enumerate(picked) if j % 2 == fold]
    model.cfg = base
    print(f"\n2-fold cross-validation ({len(rows)} clips, seeds 0-4, each fold with the other's gain):")
    print("| " + " | ".join(COLUMNS) + " |\n" + "|---:" * len(COLUMNS) + "|")
    print("| " + " | ".join(f"{nan_mean([r.get(c, np.nan) for r in rows]):.3f}" for c in COLUMNS) + " |")
    real = [nan_mean([r[c] for r in rows]) for c in ("real_roll_std", "real_pos_std", "real_pos_speed",
                                                  "real_bas", "real_pause_speed", "real_coupling")]
    print("real clips: " + " ".join(f"{name} {v:.3f}" for name, v in zip(
        ("roll_std", "pos_std", "pos_speed", "bas", "pause_speed", "coupling"), real, strict=True)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", default=None, help="SDM weights (default: the bundled sdm_base)")
    ap.add_argument("--split", default="val", help="val (dev, as sdm_base) or train")
    ap.add_argument("--band", type=float, default=0.0, help="pose_band: slow band time constant, frames (0 = one gain)")
    ap.add_argument("--activity", action="store_true",
                    help="also fit the rhythmic branch's head-activity readout (train split) and gain")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cross-validate", action="store_true", help="print the 2-fold estimate on the split")
    ap.add_argument("--write", default=None, help="write the weights with the gains set here (.safetensors)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="an inference setting of the SDM config to calibrate with, e.g. pose_steps=20")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights)
    apply_overrides(model, args.overrides)
    cfg = dataclasses.replace(model.cfg, head_activity=(), head_activity_gain=0.0)  # with --set's settings
    weights = fit_readout(model, args.cache) if args.activity else None
    model.cfg = gain_config(cfg, np.array([[1.0] * 4, [1.0] * 4, [0.0] * 4]), 0.0)  # no target
    model.cfg = dataclasses.replace(model.cfg, pose_ease=0.0)  # the pose as sampled
    records, clips = load_scored_clips(args.cache, args.split)
    picked = one_per_speaker(records)
    seeds = list(range(CALIBRATION_SEEDS, CALIBRATION_SEEDS + args.seeds))
    samples = [clip_poses(model, clips[i], seeds, weights) for i in picked]
    model.cfg = cfg
    fitted = calibrate(samples, cfg, args.band, weights)
    print(f"{sum(s is not None for s in samples)} clips of split '{args.split}' (one per speaker), seeds {args.seeds}")
    print(f"pose_bias (the sampled pose's mean; angle {np.degrees(fitted.pose_bias[1]):.2f} deg): "
          f"{list(fitted.pose_bias)}")
    rows = [("pose_gain", fitted.pose_gain)] if args.band <= 0 else [
        ("pose_gain_slow (slow band std)", fitted.pose_gain_slow), ("pose_gain (fast band mean step)", fitted.pose_gain)]
    print("| gain | " + " | ".join(DIMS) + " |\n|---|---:|---:|---:|---:|")
    for name, gain in rows:
        print(f"| {name} | " + " | ".join(f"{g:.3f}" for g in gain) + " |")
    if weights is not None:
        print(f"head_activity_gain {fitted.head_activity_gain}")
    if args.cross_validate:
        cross_validate(model, clips, picked, samples, args.band, weights)
    if args.write:
        model.cfg = fitted
        write_calibrated(model, Path(args.weights or BUNDLED_WEIGHTS), Path(args.write), sys.argv[1:],
                         key="pose_gain_command", script="calibrate/calibrate_pose_gain.py")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
