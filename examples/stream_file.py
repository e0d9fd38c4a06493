"""Stream a speech file through a photo as if it were spoken live, and save what came out.

    python examples/stream_file.py --image me.jpg --audio speech.wav -o live.mp4 [--as-fast-as-possible]

The audio is pushed in 40 ms chunks at real-time pace (as a microphone delivers it); each
frame reaches the callback as soon as it is rendered (raw RGB, (H, W, 3) uint8). The frames
are written to an mp4 with the audio, and the latency of each frame (its frame out - its
first audio sample in) is printed at the end.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio import load_audio
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.video import write_mp4

CHUNK = SAMPLE_RATE // FPS  # 40 ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("-o", "--output", default="stream_out.mp4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--as-fast-as-possible", action="store_true", help="do not wait for real time")
    args = ap.parse_args()

    wav = load_audio(args.audio)
    frames: queue.Queue = queue.Queue()
    arrived: dict[int, float] = {}

    def on_frame(frame: np.ndarray, index: int) -> None:  # runs on the stream's thread: be quick
        arrived[index] = time.perf_counter()
        frames.put(frame)

    pipe = TalkingFacePipeline(quiet=True)
    stream = pipe.open_stream(args.image, on_frame, MotionControls(seed=args.seed))
    pushed: dict[int, float] = {}

    def speak() -> None:
        t0 = time.perf_counter()
        for i in range(0, len(wav), CHUNK):
            if not args.as_fast_as_possible:
                time.sleep(max(0.0, t0 + i / SAMPLE_RATE - time.perf_counter()))
            pushed[i // CHUNK] = time.perf_counter()
            stream.push(wav[i:i + CHUNK])
        stream.close()
        frames.put(None)

    def rendered():
        while (frame := frames.get()) is not None:
            yield frame

    threading.Thread(target=speak, daemon=True).start()
    write_mp4(args.output, rendered(), wav, fps=FPS)
    latency = np.array([arrived[i] - pushed[i] for i in sorted(arrived) if i in pushed])
    print(f"wrote {args.output}: {len(arrived)} frames; latency p50 {np.percentile(latency, 50):.3f} s, "
          f"p95 {np.percentile(latency, 95):.3f} s; first frame {latency[0]:.3f} s after its audio")


if __name__ == "__main__":
    main()
