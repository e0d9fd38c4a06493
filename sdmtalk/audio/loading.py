"""Decode any audio (or the sound track of a video) to 16 kHz mono float32 with PyAV."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from sdmtalk import SAMPLE_RATE
from sdmtalk.errors import AudioError

# Peak below -60 dBFS: nothing audible, so nothing to lip-sync to.
SILENCE_PEAK = 10 ** (-60 / 20)
# Shorter speech gives a video of a few frames: nothing a viewer could follow.
MIN_SECONDS = 0.2
_LOG = logging.getLogger(__name__)
_IMAGE_CODECS = {"mjpeg", "png", "bmp", "gif", "webp", "tiff", "jpeg2000", "jpegls"}
_FIX = "use a speech recording (wav, mp3, m4a, flac, ogg) or a video with sound"


@dataclass
class DecodedAudio:
    """A decoded sound track: `samples` (N,) float32 mono at `sample_rate`, starting at
    `start_time` seconds on the container's clock (used to line audio up with video)."""

    samples: np.ndarray
    sample_rate: int
    start_time: float
    claimed_seconds: float | None = None  # what the header says; None when it says nothing


def load_audio(path: str | Path) -> np.ndarray:
    """Speech file -> (N,) float32 mono at 16 kHz in [-1, 1].

    Any format FFmpeg decodes: wav (8/16/24/32-bit int or float), mp3, m4a/aac, flac,
    ogg/opus, or the audio track of a video. Raises AudioError (one line naming the file
    and the fix) for missing, empty, corrupt, non-audio, zero-length and silent files, and
    for float files with NaN or infinite samples (rejected, not repaired: such a file is broken).
    """
    path = Path(path)
    decoded = decode_audio(path)
    wav = decoded.samples
    peak = max(float(wav.max()), -float(wav.min())) if wav.size else 0.0  # no |wav| copy (38 MB for 10 min)
    _check_speech(path, wav.size, peak, decoded.claimed_seconds)
    return wav


class SpooledAudio:
    """Decoded speech kept in an unlinked temporary file, sliced like a (N,) float32 array:
    `audio[a:b]` reads just those samples, zeros past the real end up to len() when padded.
    Speech read as it is used costs no memory for its samples (10 minutes are 38 MB, 2 h
    0.46 GB). The file closes with the object, `close()` or the end of a `with` block."""

    def __init__(self, file, samples: int, length: int | None = None):
        self._file, self.samples, self._length = file, samples, max(samples, length or 0)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(self._length)
        if step != 1:
            raise IndexError("SpooledAudio reads contiguous slices only")
        out = np.zeros(max(0, stop - start), np.float32)
        end = min(stop, self.samples)
        if end > start:
            data = os.pread(self._file.fileno(), (end - start) * 4, start * 4)
            out[: end - start] = np.frombuffer(data, np.float32)
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:].astype(dtype or np.float32, copy=False)

    def padded(self, length: int) -> SpooledAudio:
        """The same samples, then silence up to `length` (the file is shared)."""
        return SpooledAudio(self._file, self.samples, length)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SpooledAudio:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def spool_audio(path: str | Path) -> SpooledAudio:
    """load_audio's samples and checks, decoded into a temporary file a chunk at a time."""
    path, file = Path(path), tempfile.TemporaryFile(prefix="sdmtalk-speech-")
    count, peak = 0, 0.0

    def write(chunk: np.ndarray) -> None:
        nonlocal count, peak
        np.clip(chunk, -1.0, 1.0, out=chunk)
        peak = max(peak, float(np.abs(chunk).max(initial=0.0)))
        file.write(chunk)  # the array's own bytes, no copy
        count += chunk.size

    try:
        _, claimed = _decode_into(path, SAMPLE_RATE, write)
        _check_speech(path, count, peak, claimed)
        file.flush()
    except BaseException:
        file.close()
        raise
    return SpooledAudio(file, count)


def _check_speech(path: Path, samples: int, peak: float, claimed: float | None) -> None:
    if samples == 0:
        raise AudioError(f"audio file holds no samples (0 s long): {path}: {_FIX}")
    seconds = samples / SAMPLE_RATE
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"audio is too short to animate: {path} ({seconds:.2f} s decoded): "
            f"use at least {MIN_SECONDS} s of speech"
        )
    if peak < SILENCE_PEAK:
        peak_db = 20 * np.log10(max(peak, 1e-12))
        raise AudioError(
            f"audio file is silent: {path} (loudest sample {peak_db:.0f} dBFS): "
            "use a recording with audible speech"
        )
    _warn_if_truncated(path, seconds, claimed)


def _warn_if_truncated(path: Path, seconds: float, claimed: float | None) -> None:
    """A header that promises much more than decodes: a cut download or a broken export."""
    if claimed is not None and claimed - seconds > max(0.5, 0.1 * claimed):
        _LOG.warning(
            "%s: the header says %.1f s but only %.1f s of audio decode (truncated file?): "
            "the video will be %.1f s long; re-export or re-download the file if that is wrong",
            path, claimed, seconds, seconds,
        )


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> DecodedAudio:
    """First audio stream of `path` -> DecodedAudio (mono, `sample_rate`), no level checks.

    Raises AudioError when the file is missing, empty, not decodable or has no audio stream.
    """
    chunks: list[np.ndarray] = []
    start, claimed = _decode_into(Path(path), sample_rate, chunks.append)
    wav = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    del chunks  # long speech: the chunks, the whole and a clipped copy were three times its size
    np.clip(wav, -1.0, 1.0, out=wav)  # float32: the resampler's "flt"
    return DecodedAudio(wav, sample_rate, start, claimed)


def _decode_into(path: Path, sample_rate: int, sink: Callable[[np.ndarray], object]) -> tuple[float, float | None]:
    """Decode the first audio stream, handing each resampled mono chunk to sink -> (start
    time on the container's clock, the duration its header claims)."""
    _check_file(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise AudioError(
            f"cannot decode {path}: not an audio or video file ({_short(err)}): {_FIX}"
        ) from None
    with container:
        stream = _audio_stream(container, path)
        try:
            start = _decode_stream(container, stream, sample_rate, sink)
        except av.FFmpegError as err:
            raise AudioError(
                f"audio in {path} is corrupt and cannot be decoded ({_short(err)}): {_FIX}"
            ) from None
        return start, _wav_header_seconds(container.name) or _claimed_seconds(container, stream)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"audio file not found: {path}: check the path")
    if not path.is_file():
        raise AudioError(f"audio path is not a file: {path}: pass a speech recording")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}: {_FIX}")


def _audio_stream(container: av.container.InputContainer, path: Path) -> av.AudioStream:
    if container.streams.audio:
        return container.streams.audio[0]
    codecs = {s.codec_context.name for s in container.streams.video}
    if codecs and codecs <= _IMAGE_CODECS and len(container.streams.video) == 1:
        raise AudioError(f"{path} is an image, not audio: {_FIX}")
    if codecs:
        raise AudioError(
            f"video has no audio track: {path}: use a video with sound or a separate speech file"
        )
    raise AudioError(f"no audio stream in {path}: {_FIX}")


def _decode_stream(container, stream: av.AudioStream, sample_rate: int, sink: Callable) -> float:
    """Resampled mono chunks of the stream to sink -> the stream's start time (s)."""
    # Downmix to mono ourselves (the mean of the channels) before FFmpeg's resampler sees the
    # audio: its own mono downmix sums L+R at -3 dB each (correlated stereo clips), and it
    # crashes the process on layouts of 8 or more channels.
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    start = None
    for frame in container.decode(stream):
        if start is None and frame.pts is not None:
            start = float(frame.pts * frame.time_base)
        samples = _mono(frame)
        if not np.isfinite(samples).all():  # float WAV/FLAC/...: the resampler would smear them
            raise AudioError(f"audio in {container.name} holds NaN or infinite samples (a broken "
                             "float export): re-export it, e.g. as a 16-bit PCM wav")
        mono = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        mono.sample_rate = frame.sample_rate  # the resampler keeps its own sample clock
        for out in resampler.resample(mono):
            sink(out.to_ndarray()[0])
    for out in resampler.resample(None):
        sink(out.to_ndarray()[0])
    if start is None:
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return start


# Full scale of FFmpeg's integer sample formats (u8 is offset binary around 128).
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2.0**31, "s64": 2.0**63}


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """Any sample format and channel count -> (samples,) float32, the mean of the channels."""
    data = frame.to_ndarray()
    channels = max(1, len(frame.layout.channels))
    if not frame.format.is_planar:  # packed: (1, samples * channels), interleaved
        data = data.reshape(-1, channels).T
    name = frame.format.name.rstrip("p")
    data = data.astype(np.float32)
    if name == "u8":
        data -= 128.0
    if name in _INT_SCALE:
        data /= _INT_SCALE[name]
    return np.ascontiguousarray(data.mean(axis=0), dtype=np.float32)


def _wav_header_seconds(path: str) -> float | None:
    """Duration a WAV header's data chunk claims (FFmpeg trims it to the file, so read it)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"fmt " and pos + 16 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16:pos + 20], "little")
        if chunk == b"data":
            return size / byte_rate if byte_rate > 0 and size < 0xFFFFFFFF else None
        pos += 8 + size + (size & 1)
    return None


def _claimed_seconds(container, stream) -> float | None:
    """Duration the file's header claims (None when it says nothing)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _short(err: Exception) -> str:
    """FFmpeg's reason without the errno and file name it repeats."""
    text = getattr(err, "strerror", None) or str(err)
    return str(text).split(":")[0].strip()
