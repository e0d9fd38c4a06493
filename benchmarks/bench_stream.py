"""Streaming numbers: latency, sustained frame rate, memory, seams, lip sync (prints tables).

    python benchmarks/bench_stream.py [--minutes 0.5] [--size 256]          # real-time run
    python benchmarks/bench_stream.py --minutes 10                          # 10 minutes
    python benchmarks/bench_stream.py --minutes 1 --skip-seams --competitor # one core kept busy
    python benchmarks/bench_stream.py --skip-realtime --cache /work/cache/shared --data ../shared/data

Real-time run: the astronaut photo speaks espeak-ng speech fed at real-time pace in 40 ms
chunks (a microphone's pace) through TalkingFacePipeline.open_stream; frames go to a
callback that only records the time. Latency of frame i = time it reached the callback -
time the chunk holding its first audio sample was pushed. Prints first-frame latency,
p50/p95/max latency, frames per second and latency per 10 s stretch (falling behind shows
as latency growing), RSS every 10 s, per-stage seconds, and the stream's own stats():
frames out, frames dropped (later than the latency budget --max-latency, StreamConfig.max_latency_s;
a dropped frame counts as missing above) and latency p50/p95/max of the frames out.
--competitor: a CPU-bound process holds one core meanwhile (sdmtalk.evaluate.competitor).
Seams: frame-to-frame head-pose and lip-gap steps across span edges vs elsewhere
(bench_long_audio's measure, sdmtalk.evaluate.bench_support.print_seams), for 60 s of stream motion.
Lip sync (--cache): per dev clip, its own audio (decoded from --data, lined up as `prepare`
does) through model.generate and through the stream (stream_motion, same model and seed):
lip-gap correlation with the real clip (bench_motion's alignment and metric), lip
amplitude ratio and head roll std. Feeds docs/RESULTS.md, "Streaming" (current numbers and
every experiment there), e.g.

    python benchmarks/bench_stream.py --skip-seams
    python benchmarks/bench_stream.py --skip-realtime --cache /work/cache/shared --data ../shared/data --seeds 3
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import torch

from sdmtalk import FPS, MEL_PER_FRAME, SAMPLE_RATE
from sdmtalk.evaluate.bench_support import dev_clip_inputs, print_seams, speech_of_length
from sdmtalk.evaluate.competitor import cpu_competitor
from sdmtalk.face import CANONICAL_TEMPLATE
from sdmtalk.face.align import lip_gap
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.stream import StreamConfig, stream_motion

CHUNK = SAMPLE_RATE // FPS  # 40 ms


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Recorder:
    """The frame callback: arrival time of each frame index."""

    def __init__(self, n: int):
        self.out = np.full(n, np.nan)
        self.lock = threading.Lock()

    def __call__(self, frame, index: int) -> None:
        self.out[index] = time.perf_counter()


def realtime_run(args, photo: Path) -> None:
    seconds = args.minutes * 60
    wav = speech_of_length(seconds)
    n_frames = len(wav) // CHUNK
    pipe = TalkingFacePipeline(size=args.size, quiet=True, weights=args.weights)
    rec = Recorder(n_frames + 1)
    stream = pipe.open_stream(photo, rec, MotionControls(seed=0), config=StreamConfig(**args.stream_kw))
    pushed = np.zeros(n_frames)
    rss = [(0.0, rss_mb())]
    t0 = time.perf_counter()
    for i in range(n_frames):  # chunk i holds frame i's audio
        wait = t0 + i * CHUNK / SAMPLE_RATE - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        pushed[i] = time.perf_counter()
        stream.push(wav[i * CHUNK:(i + 1) * CHUNK])
        if i % (10 * FPS) == 0 and i:
            rss.append((i / FPS, rss_mb()))
    stream.close()
    rss.append((seconds, rss_mb()))
    report_realtime(rec.out[:n_frames], pushed, rss, stream, seconds, args)


def report_realtime(out, pushed, rss, stream, seconds, args) -> None:
    lat = out - pushed
    print(f"real-time run: {seconds:.0f} s of speech, {args.size} px, {len(out)} frames, "
          f"stream config {StreamConfig(**args.stream_kw)}"
          + (", a CPU-bound competitor on one core" if args.competitor else ""))
    first = lat[~np.isnan(lat)][0]
    print(f"first frame out {first:.3f} s after its audio; latency p50 {np.nanpercentile(lat, 50):.3f} s, "
          f"p95 {np.nanpercentile(lat, 95):.3f} s, max {np.nanmax(lat):.3f} s; frames missing {int(np.isnan(lat).sum())}")
    per = 10 * FPS
    for s in range(0, len(out), per):
        part = slice(s, min(len(out), s + per))
        span = np.nanmax(out[part]) - np.nanmin(out[part])
        fps = (np.count_nonzero(~np.isnan(out[part])) - 1) / span if span > 0 else float("nan")
        print(f"  {s / FPS:6.0f}-{part.stop / FPS:.0f} s: {fps:5.1f} frames/s, latency p50 "
              f"{np.nanpercentile(lat[part], 50):.3f} p95 {np.nanpercentile(lat[part], 95):.3f} s")
    print("RSS (MB) at t s: " + "  ".join(f"{t:.0f}:{m:.0f}" for t, m in rss))
    busy = stream.stage_seconds
    print("stage seconds per audio second: " + "  ".join(f"{k} {v / seconds:.3f}" for k, v in busy.items()))
    st = stream.stats()
    print(f"stream stats: {st['frames']} frames out, {st['dropped']} dropped; latency p50 {st['latency_p50']:.3f} s, "
          f"p95 {st['latency_p95']:.3f} s, max {st['latency_max']:.3f} s")


def seams(args) -> None:
    from sdmtalk.pipeline import load_motion_model

    model = load_motion_model("sdm", args.weights)
    config = StreamConfig(**args.stream_kw)
    wav = speech_of_length(60.0)
    for label, snap in (("", model.cfg.beat_snap), (" without the beat snap", 0.0)):
        model.cfg.beat_snap = snap  # the snap moves where the pose's small steps fall (docs/RESULTS.md, Streaming)
        motion = stream_motion(model, wav, CANONICAL_TEMPLATE.copy(), MotionControls(seed=0), config)
        T = len(motion)
        near = np.zeros(T - 1, bool)
        near[np.arange(config.span - 1, T - 1, config.span)] = True  # steps from one span into the next
        series = np.concatenate([motion.pose, lip_gap(CANONICAL_TEMPLATE + motion.delta)[:, None]], 1)
        step = np.abs(np.diff(series, axis=0))
        if not label:
            print(f"seams: 60 s stream motion, {T} frames, span {config.span}: steps across span edges vs elsewhere")
            print_seams(series, near, ["log scale", "roll (rad)", "tx", "ty", "lip gap"])
        print(f"mean step at edges / elsewhere{label}: " + "  ".join(
            f"{step[near, d].mean() / step[~near, d].mean():.2f}" for d in range(series.shape[1])))


ORACLE_PARTS = ("phonemes", "mel", "prosody", "mel_mean")


def oracle_stream_motion(model, wav, source, controls, config, offline, parts):
    """stream_motion with `parts` of the stream's features replaced by the offline ones of the
    whole clip (`offline`: compute_features of the clip): which missing knowledge costs the
    stream its lip sync. mel_mean: the clip's mean log-mel instead of the running mean."""
    from sdmtalk.stream.session import SpeechToMotion

    steps = SpeechToMotion(model, source, controls, config)
    window_features = steps.audio.features

    def features(start: int, end: int):
        f = window_features(start, end)
        if "phonemes" in parts and f.phonemes is not None:
            f.phonemes = offline.phonemes[start:end]
        if "mel" in parts:
            f.mel = offline.mel[MEL_PER_FRAME * start:MEL_PER_FRAME * end]
        if "prosody" in parts:
            f.prosody = offline.prosody[start:end]
        return f

    steps.audio.features = features
    if "mel_mean" in parts:
        if model.cfg.mel_cmn_prior:
            raise SystemExit("--oracle mel_mean: this model normalises by its own running mean "
                             "(mel_cmn_prior), which the stream computes exactly as offline")
        clip_mean = torch.as_tensor(np.asarray(offline.mel).mean(0), dtype=torch.float32)[None]
        steps.motion._running_mel_mean = lambda new_mel: clip_mean
    return stream_motion(model, wav, source, controls, config, CHUNK, steps=steps)


def lip_sync(args) -> None:
    from sdmtalk.data.cache import CacheReader
    from sdmtalk.evaluate.head_metrics import (
        audio_onsets,
        beat_align,
        head_motion_stats,
        head_pose,
        head_speed,
        kinematic_beats,
    )
    from sdmtalk.evaluate.landmark_bench import aligned
    from sdmtalk.evaluate.lip_metrics import amplitude_ratio, lip_gap_correlation
    from sdmtalk.motion.types import apply_motion
    from sdmtalk.pipeline import load_motion_model

    model = load_motion_model("sdm", args.weights)
    reader = CacheReader(args.cache)
    config = StreamConfig(**args.stream_kw)
    rows = {"offline": [], "stream": []}
    for rec in reader.clips("val"):
        data, wav, source, sims, feats = dev_clip_inputs(model, reader, rec, Path(args.data))
        real, valid = data["landmarks"], data["valid"] > 0.5
        real_a = aligned(real, sims[0])
        onsets = audio_onsets(wav, len(real))
        for seed in range(args.seeds):
            controls = MotionControls(seed=seed)
            streamed = (oracle_stream_motion(model, wav, source, controls, config, feats, args.oracle)
                        if args.oracle else stream_motion(model, wav, source, controls, config))
            for name, motion in (("offline", model.generate(feats, source, controls)), ("stream", streamed)):
                g = aligned(apply_motion(real[0], motion)[: len(real)], sims[0])
                head = head_motion_stats(head_pose(g))
                rows[name].append({"frames": len(real),
                                   "lip_r": lip_gap_correlation(lip_gap(g), lip_gap(real_a), valid),
                                   "lip_amp": amplitude_ratio(lip_gap(g), lip_gap(real_a), valid),
                                   "roll_std": head["roll_std"], "speed": head["pos_speed"],
                                   "bas": beat_align(kinematic_beats(head_speed(g)), onsets)})
    print(f"lip sync on {len(reader.clips('val'))} dev clips x {args.seeds} seed(s), stream config {config}"
          + (f", offline features for: {', '.join(args.oracle)}" if args.oracle else ""))
    print("| motion | lip-gap r | lip amplitude | head roll std (deg) | head speed (px/s) | beat alignment |\n"
          "|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.nanmean([x[k] for x in r]):.3f}"
                                          for k in ("lip_r", "lip_amp", "roll_std", "speed", "bas")) + " |")
    pairs = list(zip(rows["stream"], rows["offline"], strict=True))
    diff = np.nanmean([s["lip_r"] - o["lip_r"] for s, o in pairs])
    print(f"stream - offline lip-gap r: {diff:+.3f}")
    for lo in (75, 150):  # the running mean log-mel and the recogniser's context by clip length
        long = [s["lip_r"] - o["lip_r"] for s, o in pairs if o["frames"] >= lo]
        print(f"  clips of {lo} frames or more ({len(long)} runs): {np.nanmean(long):+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=0.5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--span", type=int, default=StreamConfig.span)
    ap.add_argument("--lookahead", type=int, default=StreamConfig.lookahead)
    ap.add_argument("--lip-steps", type=int, default=StreamConfig.lip_steps, help="0: offline's k DDPM steps")
    ap.add_argument("--pose-steps", type=int, default=StreamConfig.pose_steps, help="0: offline's pose_k DDPM steps")
    ap.add_argument("--phoneme-context", type=float, default=StreamConfig.phoneme_context_s)
    ap.add_argument("--context", type=int, default=StreamConfig.context, help="held frames in the diffusion")
    ap.add_argument("--cmn-prior", type=int, default=StreamConfig.cmn_prior_frames,
                    help="frames of weight of the training-set mean log-mel in the running mean")
    ap.add_argument("--max-latency", type=float, default=StreamConfig.max_latency_s,
                    help="latency budget (s) of the real-time run; 0: never drop a frame")
    ap.add_argument("--competitor", action="store_true", help="real-time run with one core kept busy")
    ap.add_argument("--skip-realtime", action="store_true")
    ap.add_argument("--skip-seams", action="store_true")
    ap.add_argument("--cache", help="prepared cache: also measure lip sync on its val split")
    ap.add_argument("--data", default="../shared/data", help="the sources the cache was prepared from")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--oracle", default="", help="lip sync only: comma list of stream features replaced by "
                    f"the offline ones of the whole clip ({', '.join(ORACLE_PARTS)})")
    args = ap.parse_args()
    args.oracle = [p.strip() for p in args.oracle.split(",") if p.strip()]
    if set(args.oracle) - set(ORACLE_PARTS):
        ap.error(f"--oracle: choose from {', '.join(ORACLE_PARTS)}")
    args.stream_kw = {"span": args.span, "lookahead": args.lookahead, "lip_steps": args.lip_steps or None,
                      "pose_steps": args.pose_steps or None, "phoneme_context_s": args.phoneme_context,
                      "context": args.context, "cmn_prior_frames": args.cmn_prior,
                      "max_latency_s": args.max_latency or None}
    torch.set_num_threads(1)
    if not args.skip_realtime:
        import tempfile

        from sdmtalk.assets import demo_inputs

        busy = cpu_competitor(args.minutes * 60 + 120) if args.competitor else contextlib.nullcontext()
        with tempfile.TemporaryDirectory() as tmp, busy:
            photo, _ = demo_inputs(Path(tmp))
            realtime_run(args, photo)
    if not args.skip_seams:
        seams(args)
    if args.cache:
        lip_sync(args)


if __name__ == "__main__":
    main()
