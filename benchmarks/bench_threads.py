"""generate of N s of speech at 256 px, as it is and beside a CPU-bound competitor (prints
seconds per run; feeds docs/RESULTS.md, "Speed and memory": its current table and "Threads
and a busy machine").

    python benchmarks/bench_threads.py [--seconds 60] [--threads 1 2]
    python benchmarks/bench_threads.py --seconds 60 --old-seconds 10     # as in docs/RESULTS.md

The competitor is another process running torch matrix products on every core (what a
training job does). "old motion" times the SDM motion stage alone on torch's default thread
count (one per core): what generate did before the motion stage was pinned to one thread.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import compute_features
from sdmtalk.evaluate.bench_support import speech_of_length
from sdmtalk.face import detect_face, to_canonical
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline, load_motion_model


def burn(stop) -> None:
    """The competitor: torch matmuls on torch's default thread count until stopped."""
    a = torch.randn(1024, 1024)
    while not stop.is_set():
        a = torch.tanh(a @ a)


def time_generate(folder: Path, threads: int) -> float:
    pipe = TalkingFacePipeline(motion="sdm", quiet=True, threads=threads)
    t0 = time.perf_counter()
    pipe.generate(folder / "face.png", folder / "speech.wav", folder / f"t{threads}.mp4", MotionControls(seed=0))
    return time.perf_counter() - t0


def time_motion(seconds: float, threads: int) -> float:
    """The SDM motion stage alone on `threads` torch threads (the old policy: one per core;
    the pinned one: 1)."""
    model, wav = load_motion_model("sdm"), speech_of_length(seconds)
    image = data.astronaut()
    canonical = to_canonical(detect_face(image).landmarks[None])[0][0]
    features = compute_features(wav, phonemes=model.needs_phonemes)
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model.generate(features, canonical, MotionControls(seed=0))
    torch.set_num_threads(1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--old-seconds", type=float, default=10.0, help="audio for the old-motion row")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        Image.fromarray(data.astronaut()).save(folder / "face.png")
        sf.write(folder / "speech.wav", speech_of_length(args.seconds), SAMPLE_RATE)
        time_generate(folder, 1)  # warm-up: numba, dlib models
        for loaded in (False, True):
            stop = mp.Event()
            competitor = mp.Process(target=burn, args=(stop,)) if loaded else None
            if competitor:
                competitor.start()
                time.sleep(2)
            label = "with competitor" if loaded else "as is"
            for threads in args.threads:
                t = time_generate(folder, threads)
                print(f"{label}: generate {args.seconds:.0f} s, --threads {threads}: {t:.1f} s "
                      f"({args.seconds / t:.1f}x faster than real time)", flush=True)
            for threads, what in ((mp.cpu_count(), "old"), (1, "pinned")):
                t = time_motion(args.old_seconds, threads)
                print(f"{label}: {what} motion stage ({threads} torch thread(s)), {args.old_seconds:.0f} s: "
                      f"{t:.2f} s", flush=True)
            if competitor:
                stop.set()
                competitor.join()


if __name__ == "__main__":
    main()
