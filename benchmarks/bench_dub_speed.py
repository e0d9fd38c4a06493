"""Dubbing speed and memory: whole `sdmtalk dub` processes on a 720p video of a real face.

    python benchmarks/bench_dub_speed.py --clip ../shared/data/dev/hdtf-wda-katiehill/wda-katiehill-000.mp4 [--seconds 10,60,600] [--threads 2] [--portrait | --height 360]

The test video is made from one real clip: its frames scaled to 720 px high (or --height),
centred on a 1280 x 720 canvas (16:9 at that height), played forward and backward to each length (so every length shows the same
face moving as filmed), encoded once per length and cached in --work. The new speech is the
bundled espeak-ng text, repeated to the same length. For each length: wall time of the
whole process (imports, tracking, recogniser, motion, rendering, encoding), its x real
time, and the peak resident memory (ru_maxrss of the child). Feeds docs/RESULTS.md, Dubbing.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import soundfile as sf

from sdmtalk import SAMPLE_RATE
from sdmtalk.dub.timeline import pingpong
from sdmtalk.evaluate.bench_support import speech_of_length
from sdmtalk.video import read_video, write_mp4


def make_video(clip: Path, seconds: int, out: Path, portrait: bool = False, height: int = 720) -> Path:
    """A 25 fps video of `seconds` from the clip's frames (ping-pong), cached: 16:9 at `height`
    (1280x720), or with portrait a phone's 1080x1920 stored landscape with a 90-degree display
    rotation."""
    if out.exists():
        return out
    frames = read_video(clip).frames
    order = pingpong(seconds * 25, len(frames))
    side, (h, w) = (1080, (1920, 1080)) if portrait else (height, (height, height * 16 // 9 // 2 * 2))

    def canvas(k: int) -> np.ndarray:
        image = np.full((h, w, 3), 40, np.uint8)
        y0, x0 = (h - side) // 2, (w - side) // 2
        image[y0:y0 + side, x0:x0 + side] = cv2.resize(frames[k], (side, side), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(np.rot90(image, k=-1)) if portrait else image

    if not portrait:
        write_mp4(out, (canvas(k) for k in order), None, fps=25)
        return out
    with av.open(str(out), "w") as container:  # write_mp4 writes no display rotation
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = h, w, "yuv420p"
        stream.set_display_rotation(90)
        for i, k in enumerate(order):
            frame = av.VideoFrame.from_ndarray(canvas(k), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


def run_dub(video: Path, speech: Path, out: Path, threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `sdmtalk dub` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sdmtalk", "dub", "--video", str(video), "--audio", str(speech),
                    "-o", str(out), "-q", "--threads", str(threads)], check=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", required=True, help="a real clip with one face (its frames make the test video)")
    ap.add_argument("--seconds", default="10,60", help="video and speech lengths, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/bench_dub_speed")
    ap.add_argument("--portrait", action="store_true", help="a 1080x1920 phone video (display rotation) instead of 720p")
    ap.add_argument("--height", type=int, default=720,
                    help="landscape video height (16:9): 360 makes hours of video affordable to dub")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print("seconds  wall_s  x_real_time  peak_rss_mb")
    for seconds in (int(s) for s in args.seconds.split(",")):
        name = "1080x1920_phone" if args.portrait else f"{args.height}p"
        video = make_video(Path(args.clip), seconds, work / f"video_{seconds}s_{name}.mp4", args.portrait, args.height)
        speech = work / f"speech_{seconds}s.wav"
        sf.write(speech, speech_of_length(seconds), SAMPLE_RATE)
        # ru_maxrss of children is the largest child so far: run the lengths shortest first
        wall, peak = run_dub(video, speech, work / f"dub_{seconds}s_{name}.mp4", args.threads)
        print(f"{seconds:7d}  {wall:6.1f}  {seconds / wall:11.2f}  {peak:11.0f}", flush=True)


if __name__ == "__main__":
    main()
