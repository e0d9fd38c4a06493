"""Calibrate SDMConfig.pose_gain: how much more real heads move than the sampled ones.

    python benchmarks/calibrate_pose_gain.py --cache /work/cache/shared --weights W [--seeds 3] [--set KEY=VALUE] [--write OUT.safetensors]

On the train split, one clip per speaker (every speaker counts once, as in training), the
head pose of each real clip relative to its first frame (motion_from_landmarks) and the pose
SDM generates for the clip's speech from its first frame (pose_gain 1), each as
[log scale, angle, tx, ty]: the std over time per dim, averaged over clips (and seeds).
gain = real / generated per dim. Prints both and the gains; --write copies the weights
to OUT.safetensors (+ .json) with pose_gain in their config, the tensors unchanged.
--set: inference settings calibrated with (and written with), e.g. pose_steps=20: the gain
belongs to the sampler it was measured on.
Never calibrated on dev: dev is where the result is measured (bench_motion).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sdmtalk.audio import AudioFeatures
from sdmtalk.data.cache import CacheReader
from sdmtalk.data.phonemes import PhonemeTable
from sdmtalk.motion.types import MotionControls, motion_from_landmarks
from sdmtalk.pipeline import BUNDLED_WEIGHTS, load_motion_model

sys.path.insert(0, str(Path(__file__).parent))
from bench_motion import apply_overrides  # noqa: E402

DIMS = ("log scale", "angle", "tx", "ty")


def one_clip_per_speaker(reader: CacheReader, split: str, seed: int = 0) -> list:
    by_speaker: dict[str, list] = {}
    for rec in reader.clips(split):
        by_speaker.setdefault(rec.speaker, []).append(rec)
    rng = np.random.default_rng(seed)
    return [recs[rng.integers(len(recs))] for _, recs in sorted(by_speaker.items())]


def pose_stds(model, data: dict, seeds: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(real pose std per dim (4,), generated pose std per dim (4,), mean over seeds)."""
    landmarks = np.asarray(data["landmarks"], np.float64)
    valid = (np.asarray(data["valid"]) > 0.5) & np.isfinite(landmarks).all(axis=(1, 2))
    if not valid[0] or valid.sum() < 25:
        return None  # motion is relative to the first frame: it must be detected
    motion, source, _ = motion_from_landmarks(landmarks)
    real = np.asarray(motion.pose)[valid].std(0)
    feats = AudioFeatures(mel=data["mel"], prosody=data["prosody"], energy=data["energy"],
                          phonemes=data.get("phonemes"))
    gen = np.mean([model.generate(feats, source, MotionControls(seed=s)).pose.std(0) for s in seeds], 0)
    return real, gen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", default=None, help="SDM weights (default: the bundled sdm_base)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--write", default=None, help="write the weights with pose_gain set here (.safetensors)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="an inference setting of the SDM config to calibrate with, e.g. pose_steps=20")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights)
    apply_overrides(model, args.overrides)
    model.cfg = dataclasses.replace(model.cfg, pose_gain=(1.0, 1.0, 1.0, 1.0))
    reader, table = CacheReader(args.cache), PhonemeTable(args.cache)
    pairs = []
    for rec in one_clip_per_speaker(reader, args.split):
        data = {**reader.load(rec), "phonemes": table.get(rec) if model.needs_phonemes else None}
        out = pose_stds(model, data, list(range(args.seeds)))
        if out is not None:
            pairs.append(out)
    real, gen = (np.mean([p[i] for p in pairs], 0) for i in (0, 1))
    gain = np.round(np.float64(real) / np.maximum(np.float64(gen), 1e-9), 3)
    print(f"{len(pairs)} clips of split '{args.split}' (one per speaker), seeds {args.seeds}")
    print("| pose dim | real std | generated std | gain |\n|---|---:|---:|---:|")
    for name, r, g, k in zip(DIMS, real, gen, gain, strict=True):
        print(f"| {name} | {r:.5f} | {g:.5f} | {k:.3f} |")
    if args.write:
        write_calibrated(model, gain, Path(args.weights or BUNDLED_WEIGHTS), Path(args.write))
        print(f"wrote {args.write}")


def write_calibrated(model, gain: np.ndarray, source: Path, out: Path) -> None:
    """The same tensors with pose_gain in the config; the source sidecar's notes kept."""
    from sdmtalk.train.checkpoint import export_weights

    model.cfg = dataclasses.replace(model.cfg, pose_gain=tuple(float(g) for g in gain))
    side = source.with_suffix(".json")
    notes = json.loads(side.read_text()) if side.is_file() else {}
    notes = {k: v for k, v in notes.items() if k not in ("format", "sdmtalk_version", "model_config",
                                                          "num_tensors", "num_parameters")}
    notes["pose_gain_command"] = "python benchmarks/calibrate_pose_gain.py --cache CACHE --weights W --write OUT"
    export_weights(model, out, notes)

if __name__ == "__main__":
    main()
