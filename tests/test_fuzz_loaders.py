"""Fuzz the photo and audio loaders: a few hundred damaged files (truncated, bit-flipped,
wrong or swapped headers). Each must load as a valid array or raise InputError: no other
exception, no crash of the process."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import load_audio
from sdmtalk.errors import InputError
from sdmtalk.face import load_image

N_PER_SEED = 25


def image_bytes() -> dict[str, bytes]:
    img = Image.fromarray(data.astronaut()).resize((64, 64))
    out = {}
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif")):
        buf = io.BytesIO()
        img.save(buf, fmt)
        out[ext] = buf.getvalue()
    return out


def audio_bytes() -> dict[str, bytes]:
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32) / 2
    out = {}
    for fmt, ext, sub in (("WAV", "wav", "PCM_16"), ("FLAC", "flac", "PCM_16"), ("OGG", "ogg", "VORBIS"),
                          ("WAV", "f32.wav", "FLOAT")):
        buf = io.BytesIO()
        sf.write(buf, np.stack([tone, tone[::-1]], 1), SAMPLE_RATE, format=fmt, subtype=sub)
        out[ext] = buf.getvalue()
    return out


def damaged(raw: bytes, rng: np.random.Generator, others: list[bytes]) -> bytes:
    """One random kind of damage: truncation, bit flips, a wiped or foreign header."""
    kind = rng.integers(5)
    b = bytearray(raw)
    if kind == 0:  # cut anywhere
        return bytes(b[: rng.integers(1, len(b))])
    if kind == 1:  # flip a few bits anywhere
        for i in rng.integers(0, len(b), rng.integers(1, 20)):
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == 2:  # flip bits in the header, where lengths and sizes live
        for i in rng.integers(0, min(len(b), 64), rng.integers(1, 6)):
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == 3:  # random bytes over the header
        n = int(rng.integers(4, 64))
        b[:n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return bytes(b)
    other = others[int(rng.integers(len(others)))]  # another format's header on this body
    n = int(rng.integers(8, 128))
    return other[:n] + bytes(b[n:])


def check_loader(load, originals: dict[str, bytes], tmp_path, seed: int, ok) -> None:
    rng = np.random.default_rng(seed)
    others = list(originals.values())
    for i in range(N_PER_SEED):
        ext = list(originals)[i % len(originals)]
        path = tmp_path / f"fuzz{seed}_{i}.{ext}"
        path.write_bytes(damaged(originals[ext], rng, others))
        try:
            result = load(path)
        except InputError as err:
            assert "\n" not in str(err).strip(), err  # one line: the CLI prints it as is
            assert path.name in str(err), err
            continue
        ok(result)


def ok_image(image):
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def ok_audio(wav):
    assert wav.dtype == np.float32 and wav.ndim == 1 and np.isfinite(wav).all()
    assert np.abs(wav).max() <= 1.0


@pytest.mark.parametrize("seed", range(6))
def test_image_loader_fuzz(tmp_path, seed):
    check_loader(load_image, image_bytes(), tmp_path, seed, ok_image)


@pytest.mark.parametrize("seed", range(6))
def test_audio_loader_fuzz(tmp_path, seed):
    check_loader(load_audio, audio_bytes(), tmp_path, seed, ok_audio)
