"""What the benchmark and calibration scripts share beyond landmark scoring
(sdmtalk/evaluate/landmark_bench.py): inference settings onto a loaded model, speech of a
given length, a dev clip's own audio and inputs, the seam table, and weights written with a
calibrated config.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import compute_features
from sdmtalk.audio.loading import decode_audio
from sdmtalk.audio.speech import synthesize_speech
from sdmtalk.evaluate.landmark_bench import load_scored_clips
from sdmtalk.face import to_canonical
from sdmtalk.pipeline import load_motion_model
from sdmtalk.train.checkpoint import export_weights
from sdmtalk.typed_config import override, parse_override
from sdmtalk.video import align_audio, video_start_time

SPEECH_TEXT = (
    "Good morning everyone. Today I will show you how a single photograph can speak. "
    "The lips follow the words, and the head moves the way real speakers move."
)
POSE_NAMES = ["log scale", "roll (rad)", "tx", "ty"]


def calibration_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every dev-split calibration takes (the script adds its own grid)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--cross-validate", action="store_true")
    ap.add_argument("--write", default=None, metavar="SAFETENSORS")
    return ap


def calibration_inputs(args: argparse.Namespace):
    """(the SDM with --set applied, the split's records, its scored clips), on one torch thread."""
    torch.set_num_threads(1)
    model = load_motion_model("sdm", args.weights)
    apply_overrides(model, args.overrides)
    records, clips = load_scored_clips(args.cache, args.split, True)
    return model, records, clips


def apply_overrides(model, overrides: list[str]) -> None:
    """KEY=VALUE strings (inference settings: pose_k, k_tau_infer, k_auto_max...) onto a
    loaded model's config, parsed and type-checked as `train --set` does (sdmtalk.config)."""
    for item in overrides:
        model.cfg = override(model.cfg, parse_override(item), "--set")


def speech_of_length(seconds: float) -> np.ndarray:
    """espeak-ng speech of SPEECH_TEXT, repeated and cut to `seconds` (16 kHz samples)."""
    wav = synthesize_speech(SPEECH_TEXT)
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(wav)))
    return np.tile(wav, reps)[: int(seconds * SAMPLE_RATE)]


def print_seams(series: np.ndarray, near: np.ndarray, names=POSE_NAMES) -> None:
    """Per column of series (T, K): the 95th percentile of frame-to-frame steps, the largest
    step where near (T - 1,) is true (at a window edge) and the largest elsewhere: a seam
    shows as edge steps above the rest."""
    step = np.abs(np.diff(series, axis=0))
    for d, name in enumerate(names):
        print(f"{name:>10}: step p95 {np.percentile(step[:, d], 95):.4f}  max near edges "
              f"{step[near, d].max():.4f}  max elsewhere {step[~near, d].max():.4f}  std {series[:, d].std():.4f}")


def clip_audio(source: Path, num_frames: int) -> np.ndarray:
    """A dev clip's audio lined up with its video as `sdmtalk prepare` lines it up."""
    track = decode_audio(source)
    return align_audio(track.samples, track.start_time - video_start_time(source), num_frames)


def dev_clip_inputs(model, reader, rec, data_root: Path):
    """A cached dev clip -> (its cache data, its audio lined up (N,), the first frame's
    canonical face (68, 2), the frames' similarities to canonical, its features for `model`)."""
    data = reader.load(rec)
    real = data["landmarks"]
    wav = clip_audio(data_root / rec.source, len(real))
    source, sims = to_canonical(real[:1])
    feats = compute_features(wav, num_frames=len(real), phonemes=model.needs_phonemes)
    return data, wav, source[0], sims, feats


def write_calibrated(model, source: Path, out: Path, argv: list[str], key: str, script: str) -> None:
    """The same tensors with the model's (inference) config; the source sidecar's notes kept,
    the command that wrote it (`python script argv...`) added as `key`."""
    side = source.with_suffix(".json")
    notes = json.loads(side.read_text()) if side.is_file() else {}
    notes = {k: v for k, v in notes.items() if k not in ("format", "sdmtalk_version", "model_config",
                                                          "num_tensors", "num_parameters")}
    notes[key] = f"python {script} " + " ".join(argv)
    export_weights(model, out, notes)
