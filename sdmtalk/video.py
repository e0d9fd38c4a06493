"""Video I/O with PyAV: the only module that writes mp4 (H.264 + AAC), and the reader that
brings any source video to the 25 fps clock the rest of sdmtalk works on."""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio.loading import SpooledAudio, decode_audio
from sdmtalk.errors import InputError
from sdmtalk.frame_convert import I420_TAGS, PooledFrames, rgb_to_i420, to_gray, to_rgb
from sdmtalk.memory import BufferPool

AAC_RATE = 48000  # AAC frames are 1024 samples: 21 ms at 48 kHz keeps the audio end tight


@dataclass
class VideoClip:
    """frames (T, H, W, 3) uint8 RGB at `fps`; audio (N,) float32 16 kHz mono lined up with
    frame 0, or None when the file has no sound; src_fps of the file; duration = T / fps."""

    frames: np.ndarray
    audio: np.ndarray | None
    src_fps: float
    duration: float
    fps: int = FPS


# ---------------------------------------------------------------- writing

X264_PARAMS = "me=dia:subme=1"


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    audio: np.ndarray | SpooledAudio | None,
    fps: int | Fraction = FPS,
    progress: Callable[[int], object] | None = None,
    crf: int = 20,
    reserved: ReservedOutput | None = None,
) -> Path:
    """Encode frames (each (H, W, 3) uint8 RGB, H and W even) + 16 kHz mono audio to mp4.

    H.264 yuv420p + AAC mono (48 kHz). The audio is cut or zero-padded to exactly
    len(frames) / fps seconds; audio=None writes a silent-film mp4 with no audio stream.
    `progress(1)` is called after each frame (so a tqdm bar's `update` fits). The file
    appears only when complete: it is written under a locked temp name in the same folder
    and renamed (see ReservedOutput; pass `reserved` when the caller claimed the output
    before its expensive work). x264 runs on one thread: its output then does not depend on
    the machine's core count. Raises InputError when the output folder is missing or not
    writable, or another run is writing the same output. Returns the path written.
    """
    path = Path(path)
    owned = reserved is None
    reserved = reserve_output(path) if owned else reserved
    try:
        with av.open(
            str(reserved.temp), mode="w", format="mp4", container_options={"movflags": "+faststart"}
        ) as container:
            _encode(container, iter(frames), audio, fps, progress, crf)
        reserved.commit()
    finally:
        if owned:
            reserved.release()
    return path


class ReservedOutput:
    """A claim on one output path for one run: a hidden temp file `.NAME.<hex>.part.mp4`
    beside it, flock-ed for as long as the run lives.

    Another run to the same output is refused while the lock is held (a second run would
    otherwise overwrite the first one's result without a word); a temp file whose lock is
    free belongs to a run that was killed (kill -9, power loss) and is removed. The lock
    dies with the process, so a killed run never blocks the next one. release() removes the
    temp file unless commit() renamed it to the output: call it in a finally block.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.temp: Path | None = None
        self.removed_stale: list[Path] = []
        self._fd: int | None = None

    def acquire(self) -> ReservedOutput:
        folder = _check_output_folder(self.path)
        with _folder_lock(folder):  # scan and create as one step: two runs cannot both pass
            self.removed_stale = _remove_stale_parts(self.path)
            self.temp = _temp_file_beside(self.path)
            self._fd = os.open(self.temp, os.O_RDWR)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def commit(self) -> None:
        """Rename the finished temp file to the output (atomic on one file system)."""
        os.replace(self.temp, self.path)
        self.temp = None

    def release(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None

    def __enter__(self) -> ReservedOutput:
        return self.acquire() if self.temp is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def reserve_output(path: str | Path) -> ReservedOutput:
    """Claim `path` for this run (see ReservedOutput); InputError if another run holds it."""
    return ReservedOutput(path).acquire()


def _check_output_folder(path: Path) -> Path:
    folder = path.parent
    if not folder.is_dir():
        raise InputError(
            f"output folder does not exist: {folder}: create it or choose another output path"
        )
    if path.is_dir():
        raise InputError(f"output path is a folder: {path}: give a file name ending in .mp4")
    return folder


@contextmanager
def _folder_lock(folder: Path):
    """Exclusive flock on the folder itself for a moment (no lock file left behind)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # unreadable folder: creating the temp file reports it
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _part_pattern(path: Path) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(path.stem)}\.[0-9a-f]{{8}}\.part\.mp4$")


def _remove_stale_parts(path: Path) -> list[Path]:
    """Remove temp files of killed runs to `path`; InputError if a live run is writing it."""
    pattern, removed = _part_pattern(path), []
    for part in sorted(path.parent.iterdir()):
        if not pattern.match(part.name):
            continue
        try:
            fd = os.open(part, os.O_RDWR)
        except OSError:  # vanished meanwhile, or not ours to open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"{path} is being written by another sdmtalk run right now: wait for it to "
                "finish or choose another output path"
            ) from None
        finally:
            os.close(fd)
        part.unlink(missing_ok=True)
        removed.append(part)
    return removed


def _temp_file_beside(path: Path) -> Path:
    """Create an empty hidden temp file next to `path` (same file system, so the final
    rename is atomic; created with open() so the usual umask permissions apply)."""
    folder = path.parent
    tmp = folder / f".{path.stem}.{secrets.token_hex(4)}.part.mp4"
    try:
        tmp.open("xb").close()
    except OSError as err:
        raise InputError(
            f"cannot write to output folder {folder} ({err.strerror}): choose a writable folder"
        ) from None
    return tmp


def _encode(container, frames: Iterator[np.ndarray], audio, fps, progress, crf) -> None:
    first = next(frames, None)
    if first is None:
        raise ValueError("write_mp4 got no frames")
    height, width = _check_frame(first, None)
    video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    # threads=1: x264's frame threads change the bitstream with the thread count. veryfast with
    # its motion search cut to a diamond at subpixel level 1: 40 % less encoder time on 720p
    # for 5 % more bytes at the same crf (PSNR 42.3 against 42.7 dB; docs/RESULTS.md, Dubbing)
    video.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": X264_PARAMS}
    # Tagged as what rgb_to_i420 made: untagged, players decode HD sizes as BT.709 and shift
    # the colours (a dubbed phone video against its source, a --crop full 720p photo)
    video.codec_context.colorspace, video.codec_context.color_range = I420_TAGS
    sound = None
    if audio is not None:
        if not isinstance(audio, SpooledAudio):  # read a frame at a time from its file
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)  # clipped a frame at a time: no copy
        sound = container.add_stream("aac", rate=AAC_RATE, layout="mono")
        sound.bit_rate = 96_000
    index, frame, planes = 0, first, BufferPool(size=2)
    while frame is not None:
        _check_frame(frame, (height, width))
        container.mux(video.encode(_video_frame(frame, index, planes)))
        if sound is not None:  # interleave: the audio that belongs to this frame
            container.mux(sound.encode(_audio_frame(audio, index, fps)))
        if progress is not None:
            progress(1)
        index += 1
        frame = next(frames, None)
    container.mux(video.encode(None))
    if sound is not None:
        container.mux(sound.encode(None))


def _check_frame(frame: np.ndarray, shape: tuple[int, int] | None) -> tuple[int, int]:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    if shape is None and (frame.shape[0] % 2 or frame.shape[1] % 2):
        raise ValueError(
            f"H.264 yuv420p needs even frame sides, got {frame.shape[1]}x{frame.shape[0]}"
        )
    if shape is not None and frame.shape[:2] != shape:
        raise ValueError(
            f"all frames must be {shape[1]}x{shape[0]}, got {frame.shape[1]}x{frame.shape[0]}"
        )
    return frame.shape[0], frame.shape[1]


def _video_frame(frame: np.ndarray, index: int, pool: BufferPool) -> av.VideoFrame:
    """The encoder's input: the frame's yuv420p planes in a reused array (frame_convert.
    rgb_to_i420), wrapped by the AVFrame without a copy. The AVFrame holds a reference to the
    array until libavcodec lets it go (x264 copies its input), so the pool reuses it only after
    that."""
    if frame.strides[0] < 0 or frame.strides[1:] != (3, 1):  # a flipped view: OpenCV reads rows forward
        frame = np.ascontiguousarray(frame)
    planes = rgb_to_i420(frame, pool.take((frame.shape[0] * 3 // 2, frame.shape[1])))
    out = av.VideoFrame.from_numpy_buffer(planes, format="yuv420p")
    out.pts = index
    return out


def _audio_frame(audio: np.ndarray, index: int, fps) -> av.AudioFrame:
    """Samples of video frame `index` ([round(i*sr/fps), round((i+1)*sr/fps))), zero past the end."""
    start, end = (round(Fraction(i * SAMPLE_RATE) / Fraction(fps)) for i in (index, index + 1))
    chunk = np.zeros((1, end - start), np.float32)
    available = audio[start:end]
    chunk[0, : len(available)] = np.clip(available, -1.0, 1.0)
    out = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
    out.sample_rate = SAMPLE_RATE
    out.pts, out.time_base = start, Fraction(1, SAMPLE_RATE)
    return out


# ---------------------------------------------------------------- reading


def probe_video(path: str | Path) -> dict:
    """Header facts: {fps, frames, width, height, duration, has_audio}. width/height are the
    displayed size (a phone video stored landscape with a 90-degree turn reports portrait);
    frames counts source frames (estimated from duration * fps when the header lacks it)."""
    path = Path(path)
    with open_video(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        duration = _duration(container, stream)
        frames = stream.frames or int(round(duration * fps))
        has_audio = bool(container.streams.audio)
        first = next(decode_frames(container, stream, path), None)
        if first is None:
            raise InputError(f"video has no decodable frames: {path}: use another video file")
        width, height = first.width, first.height
        if round(first.rotation / 90) % 2:
            width, height = height, width
    return dict(
        fps=fps, frames=frames, width=width, height=height, duration=duration, has_audio=has_audio
    )


def read_video(path: str | Path, fps: int = FPS, max_side: int | None = None) -> VideoClip:
    """Whole video -> VideoClip at `fps` (frames as iter_video_frames gives them), with the
    sound track lined up with frame 0 and cut/padded to the clip's length."""
    path = Path(path)
    reader = _FrameReader(path, fps, max_side)
    frames = list(reader)
    if not frames:
        raise InputError(f"video has no decodable frames: {path}: use another video file")
    audio = aligned_audio(path, reader.start_time, len(frames), fps) if reader.has_audio else None
    return VideoClip(np.stack(frames), audio, reader.src_fps, len(frames) / fps, fps)


def aligned_audio(path: Path, video_start: float, num_frames: int, fps: int) -> np.ndarray:
    """Sound track shifted so sample 0 plays with frame 0, cut/padded to the video's length."""
    track = decode_audio(path)
    return align_audio(track.samples, track.start_time - video_start, num_frames, fps)


def align_audio(samples: np.ndarray, offset_s: float, num_frames: int, fps: int = FPS) -> np.ndarray:
    """16 kHz samples that start `offset_s` after video frame 0 -> float32 audio lined up
    with frame 0 (zero-padded or cut at the front), cut/padded to num_frames / fps."""
    offset = int(round(offset_s * SAMPLE_RATE))
    wav = np.pad(samples, (offset, 0)) if offset > 0 else samples[-offset:]
    length = int(round(num_frames * SAMPLE_RATE / fps))
    return np.pad(wav[:length], (0, max(0, length - len(wav)))).astype(np.float32)


def video_start_time(path: str | Path) -> float:
    """Timestamp (s) of the first decoded video frame: frame 0 of iter_video_frames."""
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            if frame.pts is not None and frame.time_base is not None:
                return float(frame.pts * frame.time_base)
            return 0.0
    return 0.0


def iter_video_frames(
    path: str | Path, fps: int = FPS, max_side: int | None = None
) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB frames resampled to `fps` by timestamp.

    Output frame k shows the latest source frame whose timestamp is at or before k / fps
    (measured from the first frame), so 30 or 50 fps sources drop frames and slower ones
    repeat them; the clip ends with the last source frame's display period. max_side
    downscales (area filter) so the longer side is at most that many pixels; display
    rotation is applied. Raises InputError for unreadable, corrupt or truncated files.
    """
    yield from _FrameReader(Path(path), fps, max_side)


class _FrameReader:
    """Iterating decodes and resamples; afterwards `start_time` holds frame 0's timestamp."""

    def __init__(self, path: Path, fps: int, max_side: int | None):
        self.path, self.max_side = path, max_side
        self.step = 1 / Fraction(fps).limit_denominator(1001)
        self.start_time = 0.0
        with open_video(path) as container:  # fail on open, not on first next()
            stream = container.streams.video[0]
            self.src_fps = float(stream.average_rate or stream.guessed_rate or fps)
            self.has_audio = bool(container.streams.audio)

    def __iter__(self) -> Iterator[np.ndarray]:
        with open_video(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            # mkv/flv round timestamps to 1 ms; coarse time bases (avi: 1/fps) are exact
            slack = min(Fraction(stream.time_base or 0) / 2, Fraction(1, 1000))
            k, held, t0, decoded = 0, None, None, 0
            for frame in decode_frames(container, stream, self.path):
                decoded += 1
                t = frame_time(frame, held)
                if t0 is None:
                    t0, self.start_time = t, float(t)
                while held is not None and k * self.step + slack < t - t0:
                    yield held.image()
                    k += 1
                held = HeldFrame(frame, t, self.max_side, self.src_fps)
            while held is not None and k * self.step + slack < held.end - t0:
                yield held.image()
                k += 1
            check_complete(self.path, decoded, stream.frames)


class HeldFrame:
    """A decoded frame, converted to RGB (or grey) at most once however often it is repeated;
    with `pool`, into its reused arrays (full size only: max_side must be None)."""

    def __init__(self, frame: av.VideoFrame, time: Fraction, max_side: int | None, src_fps: float,
                 pool: PooledFrames | None = None):
        if pool is not None and max_side is not None:
            raise ValueError("PooledFrames converts at full size: pass max_side=None with a pool")
        self.frame, self.time, self.max_side, self.pool = frame, time, max_side, pool
        self._image, self._luma = None, None
        if frame.duration and frame.time_base is not None:
            self.end = time + frame.duration * Fraction(frame.time_base)
        else:
            self.end = time + 1 / Fraction(src_fps).limit_denominator(1001)

    def image(self) -> np.ndarray:
        if self._image is None:
            self._image = self.pool.rgb(self.frame) if self.pool else to_rgb(self.frame, self.max_side)
        return self._image

    def luma(self) -> np.ndarray:
        """(H, W) uint8 grey at full size, upright: a tracker's input without a colour conversion."""
        if self._luma is None:
            self._luma = self.pool.gray(self.frame) if self.pool else to_gray(self.frame)
        return self._luma


def check_complete(path: Path, decoded: int, expected: int) -> None:
    """FFmpeg stops quietly at the cut of a truncated file; the header still knows the count.
    A little slack: edit lists may hide a few leading frames."""
    if expected and decoded < expected - max(2, expected // 100):
        raise InputError(
            f"video is truncated: {path} (decoded {decoded} of {expected} frames): "
            "re-export or re-download it"
        )


def frame_time(frame: av.VideoFrame, previous: HeldFrame | None) -> Fraction:
    if frame.pts is not None and frame.time_base is not None:
        return frame.pts * Fraction(frame.time_base)
    # No timestamp (raw streams): one source period after the previous frame.
    return Fraction(0) if previous is None else previous.end


def decode_frames(container, stream, path: Path) -> Iterator[av.VideoFrame]:
    try:
        yield from container.decode(stream)
    except av.FFmpegError as err:
        raise InputError(
            f"video is corrupt or truncated: {path} ({_reason(err)}): re-export or re-download it"
        ) from None


def open_video(path: Path):
    if not path.exists():
        raise InputError(f"video file not found: {path}: check the path")
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(
            f"video file is empty or not a file: {path}: pass an mp4/mov/avi/mkv video"
        )
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise InputError(
            f"cannot read video {path} ({_reason(err)}): pass an mp4/mov/avi/mkv video"
        ) from None
    if not container.streams.video:
        container.close()
        raise InputError(f"no video stream in {path}: pass a video file, not audio")
    return container


def _duration(container, stream) -> float:
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return str(text).split(":")[0].strip()
