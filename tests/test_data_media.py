"""Tiny talking-face videos made inside the tests (used by the other test_data_* files).

A face photo (scikit-image's public-domain astronaut) moves and scales over the frames with
a known similarity motion; the sound track is espeak-ng speech (or silence / a tone).
"""

from __future__ import annotations

import ctypes
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

FACE_CROP = (20, 276, 120, 376)  # rows y0:y1, cols x0:x1 of astronaut() holding the face


@lru_cache(maxsize=1)
def face_crop() -> np.ndarray:
    """(256, 256, 3) uint8 crop of the astronaut photo around her face."""
    from skimage import data

    y0, y1, x0, x1 = FACE_CROP
    return np.ascontiguousarray(data.astronaut()[y0:y1, x0:x1])


@lru_cache(maxsize=4)
def speech(text: str = "The quick brown fox jumps over the lazy dog near the river bank.",
           sample_rate: int = 16000) -> np.ndarray:
    """espeak-ng speech, float32 mono at ``sample_rate``."""
    import espeakng_loader
    from scipy.signal import resample_poly

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    native = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # synchronous
    chunks = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                     ctypes.c_void_p)

    def on_audio(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    cb = callback_type(on_audio)
    lib.espeak_SetSynthCallback(cb)
    lib.espeak_SetVoiceByName(b"en")
    raw = text.encode()
    lib.espeak_Synth(raw, len(raw) + 1, 0, 0, 0, 0, None, None)
    lib.espeak_Synchronize()
    wav = np.concatenate(chunks).astype(np.float32) / 32768.0
    return resample_poly(wav, sample_rate, native).astype(np.float32)


def linear_motion(n_frames: int, fps: float, scale=(1.0, 1.0), shift=(0.0, 0.0), base=(32.0, 16.0)):
    """Per-frame (s, tx, ty): scale and shift change linearly with time (seconds)."""
    t = np.arange(n_frames) / fps
    dur = max(t[-1], 1e-6)
    s = scale[0] + (scale[1] - scale[0]) * t / dur
    tx = base[0] + shift[0] * t / dur
    ty = base[1] + shift[1] * t / dur
    return np.stack([s, tx, ty], 1)


def render_frames(motion: np.ndarray, size=(320, 288), faces: int = 1) -> np.ndarray:
    """(T, H, W, 3) uint8: the face crop warped by each (s, tx, ty); ``faces=2`` adds a
    second, mirrored face to the right half (split screen)."""
    w, h = size
    crop = face_crop()
    frames = np.empty((len(motion), h, w, 3), np.uint8)
    for i, (s, tx, ty) in enumerate(motion):
        m = np.float32([[s, 0, tx], [0, s, ty]])
        frame = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
        if faces == 2:
            frame = np.concatenate([frame[:, : w // 2], frame[:, : w // 2][:, ::-1]], 1)
        frames[i] = frame
    return frames


def write_video(path, frames: np.ndarray, fps, audio: np.ndarray | None, sample_rate=16000) -> Path:
    """Write an H.264 (+ AAC mono) mp4 with PyAV. ``fps`` may be a float like 29.97."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(30000, 1001) if abs(fps - 29.97) < 1e-3 else Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.options = {"crf": "18", "preset": "ultrafast"}
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=sample_rate, layout="mono")
        for f in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if astream is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None]
            af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            af.sample_rate = sample_rate
            for pkt in astream.encode(af):
                out.mux(pkt)
            for pkt in astream.encode():
                out.mux(pkt)
    return path


def make_clip(path, seconds=2.0, fps=25.0, motion=None, faces=1, silent=False, size=(320, 288)):
    """A talking-face test clip; returns (path, motion (T,3) of the source frames)."""
    n = int(round(seconds * fps))
    motion = linear_motion(n, fps, scale=(1.0, 1.1), shift=(12.0, 6.0)) if motion is None else motion
    wav = speech()
    n_audio = int(round(seconds * 16000))
    wav = np.resize(wav, n_audio) if len(wav) < n_audio else wav[:n_audio]
    if silent:
        wav = np.zeros(n_audio, np.float32)
    write_video(path, render_frames(motion, size, faces), fps, wav)
    return Path(path), motion


def test_make_clip_writes_expected_frames_and_audio(tmp_path):
    path, motion = make_clip(tmp_path / "a.mp4", seconds=1.0, fps=30.0)
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        assert float(vs.average_rate) == pytest.approx(30.0)
        frames = [f for f in c.decode(video=0)]
        assert len(frames) == len(motion) == 30
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.sample_rate == 16000


def test_speech_is_speech_like():
    wav = speech()
    assert 1.0 < len(wav) / 16000 < 8.0
    assert 0.05 < float(np.abs(wav).max()) <= 1.0
