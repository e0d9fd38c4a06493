"""Whole `sdmtalk generate` runs on N s of speech (default 60) at 256 px: wall time of the
process (imports, model loading, encoding included) and the pipeline's stages.

    python benchmarks/bench_overlap.py [--seconds 60] [--old-tree DIR] [--front-end [--set KEY=VALUE]]

--old-tree: a checkout of an older sdmtalk (git worktree add DIR REV) run the same way
first, for a before/after pair on the same machine state. Prints the whole process's seconds
and the stage times per tree; --front-end also the seconds of each part of the speech
front-end and the front-end + motion cost per audio second on one thread. Feeds
docs/RESULTS.md, "Speed and memory" (its current table; "Phoneme recogniser in balanced
chunks; where 10x stands"):

    python benchmarks/bench_overlap.py --seconds 60 --front-end
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.evaluate.bench_support import speech_of_length

# An older tree: drop the editable install's finder (it would win over sys.path) and import
# sdmtalk from the tree.
PRELUDE = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")
                    and "__editable__" not in getattr(type(f), "__module__", "")]
sys.path.insert(0, {tree!r})
"""
STAGES = """
import sys, time
from sdmtalk.pipeline import TalkingFacePipeline
pipe = TalkingFacePipeline(quiet=True)
res = pipe.generate(sys.argv[1], sys.argv[2], sys.argv[3])[0]
import sdmtalk.pipeline as P
print(P.__file__.split("/sdmtalk/")[0] + ": stages " + "  ".join(f"{k} {v:.2f}s" for k, v in res.timings.items())
      + f"  (render thread busy {getattr(res, 'render_seconds', float('nan')):.2f}s)")
"""


def python(tree: Path | None) -> list[str]:
    """The interpreter, importing sdmtalk from `tree` when given."""
    return [sys.executable, "-c", (PRELUDE.format(tree=str(tree)) if tree else "") + "{code}"]


def whole_run(folder: Path, tree: Path | None, tag: str) -> float:
    out = folder / f"{tag}.mp4"
    code = ("import sys; from sdmtalk.cli import main; sys.exit(main(sys.argv[1:]))")
    cmd = python(tree)
    cmd[-1] = cmd[-1].replace("{code}", code)
    cmd += ["generate", "--image", str(folder / "face.png"), "--audio", str(folder / "speech.wav"),
            "-o", str(out), "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    took = time.perf_counter() - t0
    out.unlink()
    return took


def stage_run(folder: Path, tree: Path | None) -> str:
    cmd = python(tree)
    cmd[-1] = cmd[-1].replace("{code}", STAGES)
    cmd += [str(folder / "face.png"), str(folder / "speech.wav"), str(folder / "stages.mp4")]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def front_end_parts(wav, overrides: list[str]) -> None:
    """Seconds of each part of the speech front-end on this audio (the work budget of 10x)."""
    from sdmtalk import FPS
    from sdmtalk.audio import compute_features, num_frames_for
    from sdmtalk.audio import features as F
    from sdmtalk.audio.phonemes import phoneme_posteriors

    frames = num_frames_for(len(wav))
    phoneme_posteriors(wav[:SAMPLE_RATE], FPS)  # load the recogniser outside the timing
    parts = {"log-mel": lambda: F.log_mel(wav), "pitch": lambda: F.pitch_track(wav),
             "all features but phonemes": lambda: compute_features(wav),
             "phoneme recogniser, 1 thread": lambda: phoneme_posteriors(wav, frames, workers=1),
             "phoneme recogniser, 2 threads": lambda: phoneme_posteriors(wav, frames, workers=2)}
    for name, run in parts.items():
        t0 = time.perf_counter()
        run()
        print(f"front end: {name} {time.perf_counter() - t0:.2f} s")
    speech_and_motion(wav, overrides)


def speech_and_motion(wav, overrides: list[str]) -> None:
    """Issue 10's cost bar: the whole speech front-end plus the motion stage of the bundled
    model on one thread, in seconds per second of audio (bar: under 0.15)."""
    import numpy as np
    import torch

    from sdmtalk.audio import compute_features
    from sdmtalk.evaluate.bench_support import apply_overrides
    from sdmtalk.face.template import CANONICAL_TEMPLATE
    from sdmtalk.motion.types import MotionControls
    from sdmtalk.pipeline import load_motion_model

    model = load_motion_model("sdm")
    apply_overrides(model, overrides)
    torch.set_num_threads(1)
    seconds = len(wav) / SAMPLE_RATE
    t0 = time.perf_counter()
    features = compute_features(wav, phonemes=True, phoneme_workers=1)
    t1 = time.perf_counter()
    model.generate(features, np.asarray(CANONICAL_TEMPLATE, np.float32), MotionControls(seed=0))
    t2 = time.perf_counter()
    print(f"speech front-end + motion, one thread: {(t2 - t0) / seconds:.3f} s per second of audio "
          f"(front-end {(t1 - t0) / seconds:.3f}, motion {(t2 - t1) / seconds:.3f}; issue 10's bar 0.15)"
          + (f" with {' '.join(overrides)}" if overrides else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--old-tree", type=Path, default=None)
    ap.add_argument("--front-end", action="store_true", help="also time the speech front-end's parts")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="with --front-end: an inference setting of the bundled model, e.g. pose_steps=20")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        Image.fromarray(data.astronaut()).save(folder / "face.png")
        sf.write(folder / "speech.wav", speech_of_length(args.seconds), SAMPLE_RATE)
        runs = [("old", args.old_tree)] if args.old_tree else []
        runs.append(("new", None))
        print(f"{args.seconds:.0f} s of speech, 256 px, default threads, load before: {os.getloadavg()[0]:.2f}")
        for tag, tree in runs:
            took = whole_run(folder, tree, tag)
            print(f"{tag}: whole process {took:.2f} s = {args.seconds / took:.1f}x faster than real time; "
                  f"{stage_run(folder, tree)}")
        if args.front_end:
            front_end_parts(sf.read(folder / "speech.wav", dtype="float32")[0], args.overrides)


if __name__ == "__main__":
    main()
