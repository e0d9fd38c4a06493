"""Offline text-to-speech with espeak-ng (the library and voices ship in espeakng-loader).

Used for the bundled demo speech, `--text`, and test audio. espeak-ng keeps global state,
so calls are serialised with a lock; synthesis runs in SYNCHRONOUS mode and hands the
samples to a callback that collects them in memory.
"""

from __future__ import annotations

import ctypes
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

from sdmtalk import SAMPLE_RATE
from sdmtalk.errors import InputError
from sdmtalk.limits import MAX_TEXT_CHARS

# espeak_ng's speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _PITCH = 1, 3
_EE_OK = 0

_lock = threading.Lock()


class _Event(ctypes.Structure):
    """espeak_EVENT; only its size and layout matter here (events are not read)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Espeak:
    """The loaded library, initialised once, with a callback appending to `self.chunks`."""

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data.decode()}")
        self.chunks: list[np.ndarray] = []
        self._callback = _Callback(self._collect)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib

    def _collect(self, samples, count, _events) -> int:
        if count > 0 and samples:
            self.chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = keep synthesising


@lru_cache(maxsize=1)
def _espeak() -> _Espeak:
    return _Espeak()


@lru_cache(maxsize=1)
def _worker():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def text_to_wav_file(text: str, folder: Path) -> Path:
    """`text` spoken by the bundled voice, written to FOLDER/speech.wav (for --text). One-line
    InputError for empty or over-long text, as the API answers."""
    text = (text or "").strip()
    if not text:
        raise InputError("--text is empty: give some words to speak, or --audio SPEECH")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"--text has {len(text)} characters: use at most {MAX_TEXT_CHARS} "
                         "(or record the speech and pass --audio)")
    path = Path(folder) / "speech.wav"
    soundfile.write(path, synthesize_speech(text), SAMPLE_RATE, subtype="PCM_16")
    return path


def synthesize_speech(text: str, voice: str = "en", rate: int = 150, pitch: int = 50) -> np.ndarray:
    """Text -> (N,) float32 mono speech at 16 kHz in [-1, 1].

    voice: an espeak-ng voice name ("en", "en-us", "de", "fr", ...); rate: words per
    minute (80-450); pitch: 0-99. Raises InputError for empty text or an unknown voice.

    espeak-ng runs in a helper process of its own (spawned once, reused): in the test
    suite's long-lived processes espeak_Synth crashed (segfault) or returned no samples
    after other native libraries (video decoding, dlib, torch) had run in the same
    process; a separate address space rules that out.
    """
    if not text.strip():
        raise InputError("no text to speak: pass some words with --text")
    return _worker().submit(synthesize_in_process, text, voice, rate, pitch).result()


def synthesize_in_process(text: str, voice: str = "en", rate: int = 150, pitch: int = 50) -> np.ndarray:
    """synthesize_speech in the calling process."""
    with _lock:
        engine = _espeak()
        if engine.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise InputError(
                f"unknown espeak-ng voice {voice!r}: use a voice name such as 'en', 'en-us', 'de' or 'fr'"
            )
        engine.lib.espeak_SetParameter(_RATE, int(np.clip(rate, 80, 450)), 0)
        engine.lib.espeak_SetParameter(_PITCH, int(np.clip(pitch, 0, 99)), 0)
        raw = text.encode("utf-8")
        engine.chunks = []
        status = engine.lib.espeak_Synth(
            raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak-ng synthesis failed with status {status}")
        chunks, engine.chunks = engine.chunks, []
        source_rate = engine.sample_rate
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    wav = pcm.astype(np.float32) / 32768.0
    return _resample(wav, source_rate)


def _resample(wav: np.ndarray, source_rate: int) -> np.ndarray:
    """Polyphase resampling to 16 kHz (espeak-ng speaks at 22.05 kHz)."""
    if source_rate == SAMPLE_RATE:
        return wav
    g = np.gcd(source_rate, SAMPLE_RATE)
    import scipy.signal  # ~1 s to import, and only text-to-speech needs it

    out = scipy.signal.resample_poly(wav, SAMPLE_RATE // g, source_rate // g)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
