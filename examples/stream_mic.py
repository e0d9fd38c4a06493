"""Your microphone drives a photo live; the frames and the recorded speech are saved at the end.

    pip install sounddevice     # needs the PortAudio library (Debian: apt-get install libportaudio2)
    python examples/stream_mic.py --image me.jpg --seconds 10 -o mic.mp4

sounddevice delivers 40 ms blocks of 16 kHz mono audio from the default input device; each
block goes straight into the stream. Frames arrive on the callback while you speak (here
they are only counted and kept; a real application would show them). A frame the stream
skipped to keep its latency (a busy machine) is absent: the mp4 shows the one before it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.stream import hold_skipped
from sdmtalk.video import write_mp4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("-o", "--output", default="mic_out.mp4")
    args = ap.parse_args()
    try:
        import sounddevice
    except (ImportError, OSError) as err:  # OSError: the wheel is there, PortAudio is not
        raise SystemExit(f"stream_mic needs sounddevice and PortAudio ({err}): pip install sounddevice; "
                         "apt-get install libportaudio2") from None

    frames, heard = [], []
    pipe = TalkingFacePipeline(quiet=True)
    stream = pipe.open_stream(args.image, lambda frame, index: frames.append((index, frame)), MotionControls())

    def on_audio(block, n, timing, status) -> None:
        mono = block[:, 0].astype(np.float32).copy()
        heard.append(mono)
        stream.push(mono)

    with sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                                 blocksize=SAMPLE_RATE // FPS, callback=on_audio):
        print(f"speak now ({args.seconds:g} s) ...")
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            time.sleep(0.5)
            print(f"\r{len(frames)} frames", end="", flush=True)
    stream.close()
    print()
    write_mp4(args.output, hold_skipped(frames), np.concatenate(heard), fps=FPS)
    s = stream.stats()
    print(f"wrote {args.output}: {s['frames']} frames, {s['dropped']} dropped; latency p95 {s['latency_p95']} s")


if __name__ == "__main__":
    main()
