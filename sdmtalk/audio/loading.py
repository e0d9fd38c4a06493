"""Decode any audio (or the sound track of a video) to 16 kHz mono float32 with PyAV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from sdmtalk import SAMPLE_RATE
from sdmtalk.errors import AudioError

# Peak below -60 dBFS: nothing audible, so nothing to lip-sync to.
SILENCE_PEAK = 10 ** (-60 / 20)
_IMAGE_CODECS = {"mjpeg", "png", "bmp", "gif", "webp", "tiff", "jpeg2000", "jpegls"}
_FIX = "use a speech recording (wav, mp3, m4a, flac, ogg) or a video with sound"


@dataclass
class DecodedAudio:
    """A decoded sound track: `samples` (N,) float32 mono at `sample_rate`, starting at
    `start_time` seconds on the container's clock (used to line audio up with video)."""

    samples: np.ndarray
    sample_rate: int
    start_time: float


def load_audio(path: str | Path) -> np.ndarray:
    """Speech file -> (N,) float32 mono at 16 kHz in [-1, 1].

    Any format FFmpeg decodes: wav (8/16/24/32-bit int or float), mp3, m4a/aac, flac,
    ogg/opus, or the audio track of a video. Raises AudioError (one line naming the file
    and the fix) for missing, empty, corrupt, non-audio, zero-length and silent files.
    """
    path = Path(path)
    wav = decode_audio(path).samples
    if wav.size == 0:
        raise AudioError(f"audio file holds no samples (0 s long): {path}: {_FIX}")
    peak = float(np.max(np.abs(wav)))
    if peak < SILENCE_PEAK:
        peak_db = 20 * np.log10(max(peak, 1e-12))
        raise AudioError(
            f"audio file is silent: {path} (loudest sample {peak_db:.0f} dBFS): "
            "use a recording with audible speech"
        )
    return wav


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> DecodedAudio:
    """First audio stream of `path` -> DecodedAudio (mono, `sample_rate`), no level checks.

    Raises AudioError when the file is missing, empty, not decodable or has no audio stream.
    """
    path = Path(path)
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
            return _decode_stream(container, stream, sample_rate)
        except av.FFmpegError as err:
            raise AudioError(
                f"audio in {path} is corrupt and cannot be decoded ({_short(err)}): {_FIX}"
            ) from None


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


def _decode_stream(container, stream: av.AudioStream, sample_rate: int) -> DecodedAudio:
    # Keep the source channels through the resampler and average them afterwards: FFmpeg's
    # mono downmix sums L+R at -3 dB each, which pushes correlated stereo past full scale.
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    chunks, start = [], None
    for frame in container.decode(stream):
        if start is None and frame.pts is not None:
            start = float(frame.pts * frame.time_base)
        frame.pts = None  # the resampler keeps its own sample clock; gaps are not ours to fix
        chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
    chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    if chunks:
        wav = np.concatenate(chunks, axis=1).mean(axis=0)
    else:
        wav = np.zeros(0, np.float32)
    if start is None:
        start = (
            float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        )
    wav = np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)
    return DecodedAudio(wav, sample_rate, start)


def _short(err: Exception) -> str:
    """FFmpeg's reason without the errno and file name it repeats."""
    text = getattr(err, "strerror", None) or str(err)
    return str(text).split(":")[0].strip()
