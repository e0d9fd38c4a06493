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
    """frames: output frames; audio: (S,) 16 kHz samples, frames / fps long; note: what was
    done to fit the lengths ("" when they matched)."""

    frames: int
    audio: np.ndarray
    note: str

    def source_index(self, video_frames: int) -> np.ndarray:
        """(frames,) the video frame shown at each output frame (ping-pong past the end)."""
        return pingpong(self.frames, video_frames)


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


def plan_timeline(wav: np.ndarray, video_frames: int, fps: Fraction, keep_video_length: bool) -> Timeline:
    """The output's length and audio for `video_frames` frames at `fps` and speech `wav`."""
    fps = Fraction(fps)
    audio_s, video_s = len(wav) / SAMPLE_RATE, video_frames / float(fps)
    if keep_video_length:
        frames = video_frames
        length = int(round(frames * SAMPLE_RATE / fps))
        audio = np.pad(wav[:length], (0, max(0, length - len(wav)))).astype(np.float32)
        if abs(audio_s - video_s) * fps < 1:
            return Timeline(frames, audio, "")
        what = "padded with silence" if audio_s < video_s else "trimmed"
        return Timeline(frames, audio, f"the audio ({audio_s:.1f} s) was {what} to the video's {video_s:.1f} s")
    frames = frames_for_audio(len(wav), fps)
    audio = np.asarray(wav, np.float32)
    if frames == video_frames:
        return Timeline(frames, audio, "")
    if frames < video_frames:
        return Timeline(frames, audio, f"the video ({video_s:.1f} s) was cut to the audio's {audio_s:.1f} s "
                                       "(--keep-video-length pads the audio instead)")
    return Timeline(frames, audio, f"the video ({video_s:.1f} s) plays forward and backward to fill the audio's "
                                   f"{audio_s:.1f} s (--keep-video-length trims the audio instead)")
