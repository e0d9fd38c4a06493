"""Does making long speech in segments cost the dub's lips? Lip r against the real speakers.

    python probes/probe_dub_segments.py --cache /work/cache/dev --data-root ../shared/data [--segments 60,20]

The dev clips' audio is put end to end (about 160 s of many speakers and recordings) and
its mouth motion made as `sdmtalk dub` makes it (dub/speech_motion.SpeechMotion, the head
still, the canonical template as the face): in one piece, and in segments of each length
given. Each clip's part is then scored against that clip's real lip gap (landmark space, the
audio as recorded), beside each clip made alone. Feeds docs/RESULTS.md, Dubbing.
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import numpy as np

from sdmtalk import FPS
from sdmtalk.audio import load_audio
from sdmtalk.audio.features import SAMPLES_PER_FRAME
from sdmtalk.dub import speech_motion
from sdmtalk.dub.speech_motion import SpeechMotion
from sdmtalk.evaluate.landmark_bench import load_scored_clips
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.face.align import lip_gap
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline

WHOLE = 10**6  # seconds: longer than any speech, so one piece


def speech_delta(pipe, wav: np.ndarray, segment_s: int) -> tuple[np.ndarray, int | None]:
    """((T, 68, 2) deltas of wav made in segments of segment_s seconds, the segments' length
    in frames or None for one piece)."""
    speech_motion.SEGMENT = segment_s * FPS
    speech_motion.LONG = speech_motion.SEGMENT * 3 // 2
    lips = SpeechMotion(wav, pipe.features, pipe._still_motion, MotionControls(still=True), Fraction(FPS))
    lips.begin(CANONICAL_TEMPLATE.astype(np.float32))
    try:
        delta = np.stack([lips.delta(i) for i in range(len(wav) // SAMPLES_PER_FRAME)])
        return delta, lips.length if lips.count > 1 else None
    finally:
        lips.stop()


def mean_lip_r(clips: list[dict], deltas: list[np.ndarray]) -> float:
    rs = []
    for clip, delta in zip(clips, deltas, strict=True):
        valid = clip["valid"] > 0.5
        made, real = lip_gap(CANONICAL_TEMPLATE + delta)[valid], lip_gap(clip["canonical"])[valid]
        if valid.sum() > 5 and made.std() > 0 and real.std() > 0:
            rs.append(np.corrcoef(made, real)[0, 1])
    return float(np.mean(rs))


def boundary_steps(delta: np.ndarray, length: int | None) -> str:
    """A seam would show as a lip-gap step near a segment boundary larger than the rest."""
    if length is None:
        return ""
    steps = np.abs(np.diff(lip_gap(CANONICAL_TEMPLATE + delta)))
    near = max(steps[max(0, b - 12):b + 12].max() for b in range(length, len(steps), length))
    return f"; lip-gap step within 12 frames of a boundary at most {near:.4f}, 99th pct of all {np.percentile(steps, 99):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--segments", default="60,20", help="segment lengths in seconds, comma-separated")
    args = ap.parse_args()
    records, clips = load_scored_clips(args.cache, "val", use_offsets=False)
    pipe = TalkingFacePipeline(quiet=True, threads=2)
    wavs = []
    for record, clip in zip(records, clips, strict=True):
        n = len(clip["landmarks"]) * SAMPLES_PER_FRAME
        wav = load_audio(Path(args.data_root) / record.source)
        wavs.append(np.pad(wav, (0, max(0, n - len(wav))))[:n])
    whole = np.concatenate(wavs)
    bounds = np.cumsum([0] + [len(w) // SAMPLES_PER_FRAME for w in wavs])
    print(f"{len(clips)} clips, {len(whole) / 16000:.1f} s end to end")
    print(f"each clip alone:            lip r {mean_lip_r(clips, [speech_delta(pipe, w, WHOLE)[0] for w in wavs]):.3f}")
    for seconds in [WHOLE] + [int(s) for s in args.segments.split(",")]:
        delta, length = speech_delta(pipe, whole, seconds)
        parts = [delta[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        name = "one piece" if seconds == WHOLE else f"segments of {seconds} s"
        print(f"end to end, {name + ':':16s} lip r {mean_lip_r(clips, parts):.3f}{boundary_steps(delta, length)}")


if __name__ == "__main__":
    main()
