"""Stream a speech file through a photo as if it were spoken live, and save what came out.

    python examples/stream_file.py --image me.jpg --audio speech.wav -o live.mp4 [--as-fast-as-possible]
    python examples/stream_file.py --image me.jpg --audio speech.wav --competitor   # one core kept busy

The audio is pushed in 40 ms chunks at real-time pace (as a microphone delivers it); each
frame reaches the callback as soon as it is rendered (raw RGB, (H, W, 3) uint8, with its
index i: it shows the speech from sample 640 i). A frame later than the stream's latency
budget (StreamConfig.max_latency_s, 0.5 s) is skipped when a newer one is ready: the mp4
shows the frame before a skipped index in its place, so it stays on the audio's clock.
At the end it prints the frames out, the frames dropped, and the latency of the frames out
(push of a frame's first audio sample -> its callback) p50 / p95 / max.
--as-fast-as-possible pushes the whole file at once and keeps every frame (no budget).
--competitor runs a CPU-bound process on one core meanwhile (a loaded machine).
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import threading
import time

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio import load_audio
from sdmtalk.evaluate.competitor import cpu_competitor
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.stream import StreamConfig, hold_skipped
from sdmtalk.video import write_mp4

CHUNK = SAMPLE_RATE // FPS  # 40 ms


def speak(stream, wav: np.ndarray, real_time: bool) -> None:
    """Push wav in 40 ms chunks (at real-time pace unless told otherwise), then end."""
    t0 = time.perf_counter()
    for i in range(0, len(wav), CHUNK):
        if real_time:
            time.sleep(max(0.0, t0 + i / SAMPLE_RATE - time.perf_counter()))
        stream.push(wav[i:i + CHUNK])
    stream.close()


def run(args, wav: np.ndarray) -> dict:
    """Stream wav, write the mp4 -> the stream's stats() and its first frame's latency."""
    frames: queue.Queue = queue.Queue()
    first: list[float] = []

    def on_frame(frame: np.ndarray, index: int) -> None:  # runs on the stream's thread: be quick
        if not first:
            first.append(time.perf_counter() - stream.pushed_at(index))
        frames.put((index, frame))

    config = StreamConfig(max_latency_s=None if args.as_fast_as_possible else args.max_latency)
    pipe = TalkingFacePipeline(quiet=True, size=args.size)
    stream = pipe.open_stream(args.image, on_frame, MotionControls(seed=args.seed), config=config)

    def talk() -> None:
        try:
            speak(stream, wav, not args.as_fast_as_possible)
        finally:
            frames.put(None)

    def rendered():
        while (item := frames.get()) is not None:
            yield item

    threading.Thread(target=talk, daemon=True).start()
    write_mp4(args.output, hold_skipped(rendered()), wav, fps=FPS)
    if stream.error is not None:
        raise SystemExit(f"stream failed: {stream.error}")
    return {**stream.stats(), "first": first[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("-o", "--output", default="stream_out.mp4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--max-latency", type=float, default=StreamConfig.max_latency_s,
                    help="latency budget (s): later frames are skipped")
    ap.add_argument("--as-fast-as-possible", action="store_true", help="do not wait for real time; keep every frame")
    ap.add_argument("--competitor", action="store_true", help="keep one core busy meanwhile (a loaded machine)")
    args = ap.parse_args()

    wav = load_audio(args.audio)
    busy = cpu_competitor(len(wav) / SAMPLE_RATE + 120) if args.competitor else contextlib.nullcontext()
    with busy:
        s = run(args, wav)
    print(f"wrote {args.output}: {s['frames']} frames out, {s['dropped']} dropped"
          f"{' (with a CPU-bound competitor on one core)' if args.competitor else ''}; first frame "
          f"{s['first']:.3f} s after its audio; latency p50 {s['latency_p50']:.3f} s, "
          f"p95 {s['latency_p95']:.3f} s, max {s['latency_max']:.3f} s")


if __name__ == "__main__":
    main()
