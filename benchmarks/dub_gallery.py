"""Dubbing, by eye: a video we may ship, before and after `sdmtalk dub` gives it new words.

    python benchmarks/dub_gallery.py [--out docs/img/dub_gallery.png]

The video: SDM animating grace_hopper (matplotlib's sample photo, US Navy, public domain)
with the bundled demo speech, her mouth opened wide and her head moving (`generate`, seed 0,
--crop full). The dub: that video with a new espeak-ng sentence ("Please keep your mouth
closed now. Mmm, perfect."): the mouth must close on m and in the pauses where the video's
was open. Top row: video frames; bottom row: the dubbed frames at the same moments; the
columns are the frames where the dub's mouth is most closed, where the two differ most, and
where the dub's is most open. Prints where the two mouths differ (mean inner-lip gap).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import soundfile as sf
from PIL import Image

from sdmtalk import SAMPLE_RATE
from sdmtalk.assets import DEMO_SPEECH
from sdmtalk.audio.speech import synthesize_speech
from sdmtalk.face import LandmarkTracker
from sdmtalk.face.align import interocular_distance, lip_gap
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.video import read_video

NEW_WORDS = "Please keep your mouth closed now. Mmm, perfect. Bob made a map of my home."
COLUMNS = 4


def mouth_gaps(frames: np.ndarray) -> np.ndarray:
    lm, valid, _ = LandmarkTracker(quiet=True).track(frames)
    gaps = np.array([lip_gap(x) / interocular_distance(x) if v else np.nan for x, v in zip(lm, valid, strict=True)])
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/img/dub_gallery.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            Image.open(f).convert("RGB").save(tmp / "hopper.png")
        sf.write(tmp / "new.wav", synthesize_speech(NEW_WORDS), SAMPLE_RATE)
        pipe = TalkingFacePipeline(quiet=True, crop="full")
        pipe.generate(tmp / "hopper.png", DEMO_SPEECH, tmp / "video.mp4", MotionControls(seed=0, lip_scale=1.3))
        pipe.dub(tmp / "video.mp4", tmp / "new.wav", tmp / "dub.mp4", MotionControls(seed=0))
        before, after = read_video(tmp / "video.mp4").frames, read_video(tmp / "dub.mp4").frames
    n = min(len(before), len(after))
    g_before, g_after = mouth_gaps(before[:n]), mouth_gaps(after[:n])
    diff = np.abs(g_before - g_after)
    picks = [int(np.nanargmin(g_after)), int(np.nanargmax(diff)), int(np.nanargmax(g_after))]
    picks.append(int(np.nanargmax(np.where(g_before > np.nanmedian(g_before), diff, np.nan))))
    print(f"mean inner-lip gap (inter-ocular units): video {np.nanmean(g_before):.3f}, dub {np.nanmean(g_after):.3f}; "
          f"frames {picks}")
    strip = np.vstack([np.hstack([_face(before[i]) for i in picks]), np.hstack([_face(after[i]) for i in picks])])
    cv2.imwrite(args.out, cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


def _face(frame: np.ndarray) -> np.ndarray:
    """The lower two thirds of the frame's middle, 256 px wide (the face of grace_hopper)."""
    h, w = frame.shape[:2]
    box = frame[h // 6 : h, w // 6 : w - w // 6]
    return cv2.resize(box, (256, int(256 * box.shape[0] / box.shape[1])), interpolation=cv2.INTER_AREA)


if __name__ == "__main__":
    main()
