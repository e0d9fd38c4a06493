"""Colours of a dubbed BT.709 video as a player shows them, against the source's.

    python probes/probe_colour_tags.py --clip ../shared/data/dev/hdtf-wda-katiehill/wda-katiehill-000.mp4 --out OUT.mp4

The clip's first 3 s are placed on a 1280x720 canvas and encoded as a BT.709-tagged video
(what phones and cameras write), dubbed with the clip's own audio, and the first frame of
both decoded as a player does: by the stream's tag, or as BT.709 for an untagged HD stream.
Prints the output's mean colour error in R, G, B over the skin above the mouth (which the dub
leaves untouched): a signed error that differs between channels is a hue shift.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np

from sdmtalk.video import read_video

BT709, UNSPECIFIED = 1, 2
FOREHEAD = (slice(60, 330), slice(450, 830))  # the face's upper half on the canvas


def tagged_bt709(clip: Path, out: Path, seconds: float = 3.0) -> None:
    frames = read_video(clip).frames[: int(seconds * 25)]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = BT709, 1
        for i, image in enumerate(frames):
            canvas = np.full((720, 1280, 3), 40, np.uint8)
            canvas[:, 280:1000] = cv2.resize(image, (720, 720))
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24").reformat(format="yuv420p", dst_colorspace=BT709)
            frame.colorspace, frame.color_range, frame.pts = BT709, 1, i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def as_played(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        matrix = BT709 if frame.colorspace == UNSPECIFIED else frame.colorspace
        return frame.reformat(format="rgb24", src_colorspace=matrix).to_ndarray().astype(int), frame.colorspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    source = args.out.with_name(args.out.stem + "_source709.mp4")
    tagged_bt709(args.clip, source)
    subprocess.run([sys.executable, "-m", "sdmtalk", "dub", "--video", str(source), "--audio", str(args.clip),
                    "-o", str(args.out), "-q"], check=True)
    (real, _), (dubbed, tag) = as_played(source), as_played(args.out)
    error = (dubbed[FOREHEAD] - real[FOREHEAD]).reshape(-1, 3)
    print(f"output matrix tag {tag}: signed error R, G, B {error.mean(0).round(2)}, mean |error| {np.abs(error).mean():.2f}")


if __name__ == "__main__":
    main()
