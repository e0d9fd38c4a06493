"""The phoneme recogniser: hama's own engine (the reference) vs its network on torch.

    python benchmarks/bench_phonemes.py [--data ../shared/data/dev] [--threads 1] [--repeat 3]

Decodes the sound of every clip under DATA (16 kHz, sdmtalk.audio.load_audio) and prints
  - agreement per 20 ms CTC frame: same arg-max token, largest posterior difference, mean
    KL(hama || torch) in nats; and the same per 40 ms video frame (what the models read);
  - cost in core-seconds (process CPU time, all threads) per minute of speech, best of
    --repeat runs, for the clips one by one as they are (what `prepare` does) and for all of
    them joined into one long recording through phoneme_posteriors (22 s chunks).
Feeds docs/RESULTS.md ("Phoneme front-end"); run it with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import load_audio
from sdmtalk.audio import phonemes as P
from sdmtalk.audio.features import num_frames_for
from sdmtalk.audio.phoneme_net import hama_log_probs, phoneme_net

ROOT = Path(__file__).resolve().parents[1]
AUDIO = {".wav", ".mp4", ".m4a", ".mp3", ".flac", ".ogg", ".mkv", ".webm", ".mov"}


def clips(data: Path) -> list[np.ndarray]:
    paths = sorted(p for p in data.glob("*/*") if p.suffix.lower() in AUDIO)
    if not paths:
        raise SystemExit(f"no audio under {data}/*/")
    return [load_audio(p) for p in paths]


def agreement(wavs: list[np.ndarray]) -> dict[str, float]:
    """hama vs torch over all clips, per 20 ms frame and per video frame."""
    same, diff, kl, v_same, v_diff = [], 0.0, [], [], 0.0
    net = phoneme_net()
    for wav in wavs:
        ref, new = hama_log_probs(wav), net.log_probs(wav)
        same.append(ref.argmax(1) == new.argmax(1))
        diff = max(diff, float(np.abs(np.exp(ref) - np.exp(new)).max()))
        kl.append((np.exp(ref) * (ref - new)).sum(1))
        n = num_frames_for(len(wav))
        vr, vn = P._frame_posteriors(ref[None], n), P._frame_posteriors(new[None], n)
        v_same.append(vr.argmax(1) == vn.argmax(1))
        v_diff = max(v_diff, float(np.abs(vr - vn).max()))
    return {"frames_20ms": sum(map(len, same)), "argmax_agree": np.concatenate(same).mean(),
            "max_abs_diff": diff, "mean_kl": float(np.concatenate(kl).mean()),
            "video_argmax_agree": np.concatenate(v_same).mean(), "video_max_abs_diff": v_diff}


@contextmanager
def hama_engine():
    """phoneme_posteriors on hama's own engine, as before the torch runtime."""
    run, model = P._run, P._hama_model
    P._run, P._hama_model = (lambda _model, wav: hama_log_probs(wav)[None]), (lambda slot=0: None)
    try:
        yield
    finally:
        P._run, P._hama_model = run, model


def cpu_seconds(fn, repeat: int) -> float:
    fn()  # warm: loading and first-call costs are not per minute of speech
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def costs(wavs: list[np.ndarray], repeat: int) -> dict[str, tuple[float, float]]:
    """{case: (hama, torch) core-seconds per minute of speech}."""
    minutes = sum(map(len, wavs)) / SAMPLE_RATE / 60
    joined = np.concatenate(wavs)
    net = phoneme_net()
    long_run = lambda: P.phoneme_posteriors(joined, num_frames_for(len(joined)))  # noqa: E731
    new_clips = cpu_seconds(lambda: [net.log_probs(w) for w in wavs], repeat)
    new_long = cpu_seconds(long_run, repeat)
    old_clips = cpu_seconds(lambda: [hama_log_probs(w) for w in wavs], repeat)
    with hama_engine():
        old_long = cpu_seconds(long_run, repeat)
    return {"clips one by one": (old_clips / minutes, new_clips / minutes),
            f"joined ({minutes:.1f} min, chunked)": (old_long / minutes, new_long / minutes)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dev")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wavs = clips(args.data)
    seconds = sum(map(len, wavs)) / SAMPLE_RATE
    print(f"{len(wavs)} clips, {seconds:.1f} s of audio, torch threads {torch.get_num_threads()}")
    for key, value in agreement(wavs).items():
        print(f"  {key:20s} {value:.6g}")
    print("core-seconds per minute of speech    hama engine   torch   speed-up")
    for case, (old, new) in costs(wavs, args.repeat).items():
        print(f"  {case:34s} {old:8.3f} {new:9.3f} {old / new:7.1f}x")


if __name__ == "__main__":
    main()
