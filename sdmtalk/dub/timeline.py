"""How a video and a new speech track of different lengths become one output.

The default follows the audio: a shorter audio cuts the video, a longer one plays the video
forward and backward (ping-pong: no jump at the loop); `keep_video_length` pads the audio
with silence or trims it instead. The note says which, for the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from sdmtalk import SAMPLE_RATE


@dataclass(frozen=True)
class Timeline:
    """frames: output frames; samples: 16 kHz samples of the output's audio (frames / fps
    long with keep_video_length, the speech's own length otherwise); note: what was done to
    fit the lengths ("" when they matched)."""

    frames: int
    samples: int
    note: str


def pingpong(count: int, length: int) -> np.ndarray:
    """0, 1, ..., length-1, length-2, ..., 1, 0, 1, ... (count values)."""
    i = np.arange(count)
    if length <= 1:
        return np.zeros(count, np.int64)
    period = 2 * length - 2
    phase = i % period
    return np.where(phase < length, phase, period - phase).astype(np.int64)


def frames_for_audio(samples: int, fps: Fraction) -> int:
    return max(1, math.ceil(Fraction(samples, SAMPLE_RATE) * fps - Fraction(1, 1000)))


def plan_timeline(samples: int, video_frames: int, fps: Fraction, keep_video_length: bool) -> Timeline:
    """The output's length for `video_frames` frames at `fps` and `samples` of speech."""
    fps = Fraction(fps)
    audio_s, video_s = samples / SAMPLE_RATE, video_frames / float(fps)
    if keep_video_length:
        length = int(round(video_frames * SAMPLE_RATE / fps))
        if abs(audio_s - video_s) * fps < 1:
            return Timeline(video_frames, length, "")
        what = "padded with silence" if audio_s < video_s else "trimmed"
        return Timeline(video_frames, length, f"the audio ({audio_s:.1f} s) was {what} to the video's {video_s:.1f} s")
    frames = frames_for_audio(samples, fps)
    if frames == video_frames:
        return Timeline(frames, samples, "")
    if frames < video_frames:
        return Timeline(frames, samples, f"the video ({video_s:.1f} s) was cut to the audio's {audio_s:.1f} s "
                                         "(--keep-video-length pads the audio instead)")
    return Timeline(frames, samples, f"the video ({video_s:.1f} s) plays forward and backward to fill the audio's "
                                     f"{audio_s:.1f} s (--keep-video-length trims the audio instead)")
