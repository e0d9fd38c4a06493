"""A video's frames by index at a constant rate, in any order, in bounded memory (dubbing).

`scan()` decodes the video once from the start, resampled to a constant rate by timestamp
as `video.iter_video_frames` does, and records which source frame each output index shows.
`read(indices)` then gives the frames for any index sequence: a run that goes forward
decodes on from the keyframe before its first frame; a run that goes backward (the video
played in reverse, for a ping-pong loop) decodes blocks of at most `BLOCK_BYTES` of frames,
each from the keyframe before it, and hands the block out in reverse. The whole video is
never held: memory is one block, whatever the length. Frames are converted into reused arrays
(frame_convert.PooledFrames), so a long video allocates no frame-sized memory per frame.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sdmtalk.errors import InputError
from sdmtalk.frame_convert import PooledFrames
from sdmtalk.video import HeldFrame, check_complete, decode_frames, frame_time, open_video

BLOCK_BYTES = 256 * 2**20  # decoded frames held at once by a backward run
POOLED = 16  # frames a reader's consumers may hold before it allocates (the render queue holds 8)
MAX_SIDE = 4096  # longer sides (8K) cost minutes per second of video: refused with a fix


class VideoFrames:
    """path: the video; fps: the constant output rate (None: the video's own average rate).
    After scan(): len() frames, each shown at times[k] (s, from the first frame)."""

    def __init__(self, path: str | Path, fps: Fraction | float | None = None):
        self.path = Path(path)
        with open_video(self.path) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise InputError(f"{self.path}: the video stream has no frame rate: re-export it as mp4")
            self.source_fps = Fraction(rate)
            self.has_audio = bool(container.streams.audio)
            self.time_base = Fraction(stream.time_base or Fraction(1, 90000))
        self.fps = Fraction(fps if fps is not None else self.source_fps).limit_denominator(1001)
        self._times = array("d")  # source frame time (s) shown at each output index: 8 bytes a frame
        self.variable_rate = False
        self.size: tuple[int, int] | None = None  # (height, width) as displayed

    def __len__(self) -> int:
        return len(self._times)

    def scan(self, limit: int | None = None, gray: bool = False) -> Iterator[np.ndarray]:
        """Frames 0, 1, ... (at most `limit`) as RGB (H, W, 3), or (H, W) luma with gray
        (what a tracker needs: no colour conversion), recording each one's source. An array is
        reused only once nothing refers to it any more (memory.BufferPool)."""
        del self._times[:]
        intervals = array("d")
        try:
            for held in self._held_frames(intervals):
                if limit is not None and len(self._times) >= limit:
                    return
                self._times.append(float(held.time))
                yield held.luma() if gray else held.image()
        finally:
            self.variable_rate = _variable(intervals)
        if not self._times:
            raise InputError(f"video has no decodable frames: {self.path}: use another video file")

    def _held_frames(self, intervals: array) -> Iterator[HeldFrame]:
        """The source frame shown at each output index (resampled to self.fps by timestamp, as
        video.iter_video_frames does); the gaps between source frames go into `intervals`."""
        step, pool = 1 / self.fps, PooledFrames(POOLED)
        with open_video(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            held, t0, decoded, k = None, None, 0, 0
            for frame in decode_frames(container, stream, self.path):
                decoded += 1
                t = frame_time(frame, held)
                if t0 is None:
                    t0 = t
                    self._check_size(frame)
                else:
                    intervals.append(float(t - held.time))
                while held is not None and k * step < t - t0:
                    yield held
                    k += 1
                held = HeldFrame(frame, t, None, float(self.source_fps), pool)
            while held is not None and k * step < held.end - t0:
                yield held
                k += 1
            check_complete(self.path, decoded, stream.frames)

    def _check_size(self, frame: av.VideoFrame) -> None:
        h, w = frame.height, frame.width
        if round((frame.rotation or 0) / 90) % 2:
            h, w = w, h
        if max(h, w) > MAX_SIDE:
            raise InputError(f"{self.path} is {w}x{h}: videos up to {MAX_SIDE} px on the long side "
                             "are dubbed; scale it down first (ffmpeg -vf scale=-2:2160)")
        self.size = (h, w)

    def read(self, indices: Iterable[int]) -> Iterator[np.ndarray]:
        """Frames at scanned output indices, in the order given (runs forward or backward)."""
        run: list[int] = []
        for k in indices:
            if not 0 <= k < len(self._times):
                raise IndexError(f"frame {k} outside the {len(self._times)} scanned frames")
            if run and not _continues(run, k):
                yield from self._run(run)
                run = []
            run.append(k)
        if run:
            yield from self._run(run)

    def _run(self, run: list[int]) -> Iterator[np.ndarray]:
        if len(run) == 1 or run[1] > run[0]:
            yield from self._forward(run)
            return
        per_frame = 3 * (self.size[0] * self.size[1]) if self.size else 3 * 1920 * 1080
        block = max(4, BLOCK_BYTES // per_frame)
        for start in range(0, len(run), block):
            part = run[start : start + block]  # descending indices
            images = dict(zip(sorted(part), self._forward(sorted(part)), strict=True))
            yield from (images[k] for k in part)

    def _forward(self, run: list[int]) -> Iterator[np.ndarray]:
        """Frames for ascending indices `run` (repeats allowed), decoded from the keyframe
        at or before the first."""
        wanted, pool = [self._times[k] for k in run], PooledFrames(POOLED)
        with open_video(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            container.seek(round(wanted[0] / self.time_base), stream=stream, backward=True, any_frame=False)
            i, held = 0, None
            for frame in decode_frames(container, stream, self.path):
                t = frame_time(frame, held)
                held = HeldFrame(frame, t, None, float(self.source_fps))
                if float(t) < wanted[i]:  # the same float as the scan recorded for this frame
                    continue
                image = pool.rgb(frame)
                while i < len(wanted) and wanted[i] <= float(t):
                    yield image
                    i += 1
                if i == len(wanted):
                    return
        if i < len(wanted):
            raise InputError(f"{self.path}: frames changed between two reads of the video "
                             f"(frame {run[i]} not found again): copy it to a local disk and retry")


def _continues(run: list[int], k: int) -> bool:
    """k extends the run: the same direction (or a repeat) and at most one step on."""
    if len(run) == 1:
        return abs(k - run[0]) <= 1
    step = run[-1] - run[-2]
    return k - run[-1] in ((0, step) if step else (0, 1, -1))


def _variable(intervals: array) -> bool:
    """Frame intervals that spread by more than a tenth of their median: a variable frame rate."""
    if len(intervals) < 3:
        return False
    gaps = np.asarray(intervals)
    median = float(np.median(gaps))
    return median > 0 and float(np.percentile(np.abs(gaps - median), 90)) > 0.1 * median
