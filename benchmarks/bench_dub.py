"""Cross-dub on the dev clips: each clip's video with the next clip's speech.

    python benchmarks/bench_dub.py --cache CACHE --data-root ../shared/data [--max-seconds 8] [--max-clips N]

Per clip (read and aligned as `sdmtalk evaluate` does, from its first frame with a face), the
speech is the next dev clip's (cut to this clip's length) and three videos are scored:
  - dub: `sdmtalk dub`'s frames (TalkingFacePipeline.dub_frames at 25 fps, in memory);
  - overlay: the original frames with the new speech laid over them (what a user gets
    without a dubbing tool);
  - generate: SDM animating the clip's first frame with the new speech (seed 0).
Each video's frames take the real frames' alignment and dlib re-detects them. Printed per
clip and per dev group: whether the sync expert prefers the new speech to the clip's own
(sync conf. with the new log-mel > with the original's), its offset with the new speech
(frames, + = the mouth lags), the head position error against the real video (mean over
frames of the eye and nose points, px on the 256 px crops, inter-ocular 77 px), and for the
dub the share of frames identical outside the lower-face ring before encoding (must be 1).
--methods picks the videos (default all three). Self-dub (each clip with its own speech) is
`sdmtalk evaluate --methods dub,sdm`. Feeds docs/RESULTS.md, Dubbing.
"""

from __future__ import annotations

import argparse

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.dub.dubber import Dubber
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.evaluate.landmark_bench import nan_mean
from sdmtalk.evaluate.methods import METHODS, MethodRunner
from sdmtalk.evaluate.runner import find_clips, load_real_clip, to_metric_size, warp
from sdmtalk.evaluate.sync_metrics import clip_log_mel, expert_sync
from sdmtalk.face import LandmarkTracker
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.render.dub import DubRenderer
from sdmtalk.video import read_video

RIGID = np.r_[27:48]  # nose and eyes: where a dub must keep the real head


def new_speech(clips, i: int, length: int) -> np.ndarray:
    """The next clip's sound track, cut (or zero-padded) to `length` samples."""
    audio = read_video(clips[(i + 1) % len(clips)].path, fps=FPS).audio
    return np.pad(audio[:length], (0, max(0, length - len(audio)))).astype(np.float32)


def score(frames: np.ndarray, real, wav: np.ndarray, tracker, size: int) -> dict:
    """Re-detected sync preference, offset and head error of one video's frames."""
    crops = to_metric_size(np.stack([warp(f, real.alignment) for f in frames]), size)[: len(real.crops)]
    lm, valid = (np.asarray(a) for a in tracker.track(crops)[:2])
    n = len(crops)
    keep = valid.astype(bool) & real.valid[:n]
    new = expert_sync(clip_log_mel(wav, n), lm, keep)
    own = expert_sync(clip_log_mel(real.wav, n), lm, keep)
    head = np.linalg.norm(lm[keep][:, RIGID] - real.landmarks[:n][keep][:, RIGID], axis=-1).mean()
    return {"prefers_new": float(new["sync_conf"] > own["sync_conf"]), "conf_new": new["sync_conf"],
            "conf_own": own["sync_conf"], "offset": new["sync_offset"], "head_px": float(head)}


def dub_frames(pipe, clip, real, wav) -> tuple[np.ndarray, float]:
    """(the dubbed frames from the clip's source frame on, share of frames whose pixels
    outside the lower-face ring are the original's, bit for bit)."""
    hop, start = SAMPLE_RATE // FPS, real.source_index
    padded = np.concatenate([np.zeros(start * hop, np.float32), wav])
    dubber = Dubber(pipe.features, pipe._still_motion, threads=1)
    job = dubber.start(clip.path, padded, MotionControls(), fps=FPS)
    out = list(dubber.frames(job))
    landmarks, valid = job.track.tracked()
    ring = DubRenderer(out[0], landmarks[job.track.reference[0]])
    exact = []
    for j, original, frame in zip(job.order, job.video.read(job.order), out, strict=True):
        if valid[j]:
            inside = ring.ring_mask(landmarks[j], frame.shape[:2])
            exact.append(bool(np.array_equal(frame[~inside], original[: frame.shape[0], : frame.shape[1]][~inside])))
    return np.stack(out[start:]), float(np.mean(exact)) if exact else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default=None)
    ap.add_argument("--max-seconds", type=float, default=8.0)
    ap.add_argument("--max-clips", type=int, default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--methods", default="dub,overlay,generate", help="which videos to score")
    args = ap.parse_args()
    methods = args.methods.split(",")
    clips = find_clips(args.cache, args.split, args.data_root)[: args.max_clips]
    tracker = LandmarkTracker(quiet=True)
    pipe = TalkingFacePipeline(quiet=True, threads=1, blink=False)
    runner = MethodRunner([METHODS["sdm"]], size=512) if "generate" in methods else None
    rows = []
    for i, clip in enumerate(clips):
        real = load_real_clip(clip, args.max_seconds, args.size, tracker)
        wav = new_speech(clips, i, len(real.wav))
        speaker = clip.name.split("/")[1] if "/" in clip.name else clip.name
        row = {"clip": clip.name, "group": clip_group(speaker)}
        for name in methods:
            frames = videos(name, pipe, runner, clip, real, wav, row)
            row.update({f"{name}_{k}": v for k, v in score(frames, real, wav, tracker, args.size).items()})
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    report(rows, methods)


def videos(name: str, pipe, runner, clip, real, wav, row: dict) -> np.ndarray:
    """The frames of one of the three videos (the dub's bit-exactness goes into row)."""
    if name == "dub":
        frames, row["exact"] = dub_frames(pipe, clip, real, wav)
        return frames
    if name == "generate":
        return runner.generate(METHODS["sdm"], real.photo, wav, 0, face=real.photo_face).frames
    return read_video(clip.path, fps=FPS, max_side=1280).frames[real.source_index:][: len(real.crops)]


def report(rows: list[dict], methods: list[str]) -> None:
    groups = sorted({r["group"] for r in rows})
    print("\nmethod    group                         clips  prefers_new  |offset|<=1  head_px  conf_new  conf_own")
    for name in methods:
        for group in [*groups, "all"]:
            sel = [r for r in rows if group == "all" or r["group"] == group]
            off = [abs(r[f"{name}_offset"]) <= 1 for r in sel if np.isfinite(r[f"{name}_offset"])]
            print(f"{name:9s} {group:29s} {len(sel):5d}  {nan_mean([r[f'{name}_prefers_new'] for r in sel]):11.2f}"
                  f"  {np.mean(off) if off else np.nan:11.2f}  {nan_mean([r[f'{name}_head_px'] for r in sel]):7.2f}"
                  f"  {nan_mean([r[f'{name}_conf_new'] for r in sel]):8.3f}  {nan_mean([r[f'{name}_conf_own'] for r in sel]):8.3f}")
    if "dub" in methods:
        print(f"\ndub frames identical outside the lower-face ring (before encoding): "
              f"{nan_mean([r['exact'] for r in rows]):.4f}")


if __name__ == "__main__":
    main()
