"""Audio stage: decoding every format, bad inputs, features, VAD, espeak-ng speech."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import sdmtalk.audio.features as audio_features
from sdmtalk.audio import (
    AudioFeatures,
    compute_features,
    load_audio,
    num_frames_for,
    speech_activity,
    synthesize_speech,
)
from sdmtalk.audio.features import LOG_FLOOR, log_mel, pitch_track
from sdmtalk.audio.loading import spool_audio
from sdmtalk.audio.mel import slaney_mel_filters
from sdmtalk.errors import AudioError, InputError

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.5, rate: int = SR) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio(
    path: Path, codec: str, rate: int, fmt: str, stream_rate: int | None = None
) -> Path:
    """0.5 s of a 440 Hz tone, stereo: left 0.6, right 0.2 (mono mix 0.4), through PyAV."""
    wave = tone(440, 0.5, 1.0, rate)
    signal = np.stack([0.6 * wave, 0.2 * wave]).astype(np.float32)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=stream_rate or rate, layout="stereo")
        if codec == "vorbis":  # FFmpeg's own vorbis encoder is marked experimental
            stream.codec_context.options = {"strict": "experimental"}
        frame = av.AudioFrame.from_ndarray(signal, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def dominant_hz(wav: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(wav))) * SR / len(wav))


FORMATS = [  # codec, container, extension, fixed stream rate
    ("pcm_u8", "wav", "wav", None),
    ("pcm_s16le", "wav", "wav", None),
    ("pcm_s24le", "wav", "wav", None),
    ("pcm_s32le", "wav", "wav", None),
    ("pcm_f32le", "wav", "wav", None),
    ("mp3", "mp3", "mp3", None),
    ("aac", "ipod", "m4a", None),
    ("flac", "flac", "flac", None),
    ("vorbis", "ogg", "ogg", None),
    ("libopus", "ogg", "opus", 48000),  # opus has no 44.1 kHz mode
]


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("codec,fmt,ext,stream_rate", FORMATS, ids=[f[0] for f in FORMATS])
def test_load_audio_decodes_every_format(tmp_path, codec, fmt, ext, stream_rate, rate):
    path = write_audio(tmp_path / f"speech.{ext}", codec, rate, fmt, stream_rate)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) / SR - 0.5) < 0.02
    assert abs(dominant_hz(wav) - 440) < 3
    # stereo is averaged, not summed: 0.6 and 0.2 give a 0.4 sine (RMS 0.283)
    assert np.sqrt(np.mean(wav[800:-800] ** 2)) == pytest.approx(0.4 / np.sqrt(2), abs=0.02)
    assert np.abs(wav).max() <= 1.0


@pytest.mark.parametrize("codec,fmt,ext,stream_rate", FORMATS[:3], ids=[f[0] for f in FORMATS[:3]])
def test_spooled_audio_reads_the_same_samples(tmp_path, codec, fmt, ext, stream_rate):
    path = write_audio(tmp_path / f"speech.{ext}", codec, 44100, fmt, stream_rate)
    wav, spooled = load_audio(path), spool_audio(path)
    assert len(spooled) == len(wav) and np.array_equal(np.asarray(spooled), wav)
    assert np.array_equal(spooled[100:900], wav[100:900]) and len(spooled[len(wav) - 5:len(wav) + 5]) == 5
    padded = spooled.padded(len(wav) + 300)
    assert len(padded) == len(wav) + 300 and np.array_equal(padded[len(wav) - 10:], np.r_[wav[-10:], np.zeros(300)])
    spooled.close()


def test_load_audio_reads_sound_track_of_video(tmp_path):
    from sdmtalk.video import write_mp4

    frames = [np.zeros((32, 32, 3), np.uint8)] * 25
    path = write_mp4(tmp_path / "clip.mp4", frames, tone(330, 1.0))
    wav = load_audio(path)
    assert abs(len(wav) / SR - 1.0) < 0.03
    assert abs(dominant_hz(wav) - 330) < 3


def _bad_file(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "nowhere.wav"
    if kind == "directory":
        (tmp_path / "folder.wav").mkdir()
        return tmp_path / "folder.wav"
    path = tmp_path / f"{kind}.wav"
    if kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("this is a shopping list, not a recording\n" * 20)
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "jpeg":
        from PIL import Image

        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path, format="JPEG")
    elif kind == "zero_length":  # a valid 44-byte header and no samples
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SR)
    elif kind == "silent":
        _write_wav(path, np.zeros(SR, np.float32))
    elif kind == "video_without_audio":
        from sdmtalk.video import write_mp4

        path = write_mp4(tmp_path / "mute.mp4", [np.zeros((32, 32, 3), np.uint8)] * 10, None)
    return path


def _write_wav(path: Path, wav: np.ndarray) -> None:
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            wav[None].astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


@pytest.mark.parametrize(
    "kind,message",
    [
        ("missing", "audio file not found"),
        ("directory", "is not a file"),
        ("empty", "is empty"),
        ("text", "cannot decode"),
        ("garbage", "cannot decode"),
        ("jpeg", "is an image, not audio"),
        ("zero_length", "holds no samples"),
        ("silent", "is silent"),
        ("video_without_audio", "has no audio track"),
    ],
)
@pytest.mark.parametrize("loader", [load_audio, spool_audio], ids=["in_memory", "spooled"])
def test_load_audio_bad_input_says_what_and_where(tmp_path, kind, message, loader):
    path = _bad_file(tmp_path, kind)
    with pytest.raises(AudioError) as caught:
        loader(path)
    text = str(caught.value)
    assert message in text
    assert path.name in text and "\n" not in text
    assert isinstance(caught.value, InputError)  # the CLI catches InputError


def test_quiet_but_audible_audio_loads(tmp_path):
    path = tmp_path / "quiet.wav"
    _write_wav(path, tone(200, 0.5, amp=0.01))  # -40 dBFS: quiet, not silent
    assert np.abs(load_audio(path)).max() == pytest.approx(0.01, abs=0.002)


# ---------------------------------------------------------------- features


def test_num_frames_for_rounds_half_up():
    assert num_frames_for(SR) == 25
    assert num_frames_for(640 * 10 + 319) == 10
    assert num_frames_for(640 * 10 + 320) == 11
    assert num_frames_for(0) == 0


@pytest.mark.parametrize(
    "num_samples,num_frames", [(SR, None), (SR + 333, None), (SR, 40), (SR, 7), (1280, None)]
)
def test_feature_shapes(num_samples, num_frames):
    wav = np.random.default_rng(1).normal(0, 0.1, num_samples).astype(np.float32)
    feats = compute_features(wav, num_frames)
    t = num_frames_for(num_samples) if num_frames is None else num_frames
    assert isinstance(feats, AudioFeatures) and feats.num_frames == t
    assert feats.mel.shape == (4 * t, 80) and feats.mel.dtype == np.float32
    assert feats.prosody.shape == (t, 4) and feats.prosody.dtype == np.float32
    assert feats.energy.shape == (t,) and feats.energy.dtype == np.float32
    assert np.isfinite(feats.mel).all() and np.isfinite(feats.prosody).all()
    assert (feats.prosody[:, 1:] >= 0).all() and (feats.prosody[:, 1:] <= 1).all()


def test_log_mel_matches_librosa():
    import librosa

    wav = synthesize_speech("Checking the mel spectrogram.")
    ref = librosa.feature.melspectrogram(
        y=wav, sr=SR, n_fft=400, hop_length=160, n_mels=80, fmin=55, fmax=7600, power=1.0
    )
    np.testing.assert_allclose(log_mel(wav), np.log(np.maximum(ref, LOG_FLOOR)).T, atol=2e-3)


def test_log_mel_in_blocks_matches_one_pass(monkeypatch):
    """Long audio is transformed in blocks of frames (bounded memory): the same numbers."""
    wav = synthesize_speech("Checking the mel spectrogram in blocks.")
    whole = log_mel(wav)
    monkeypatch.setattr(audio_features, "STFT_ROWS", 37)
    np.testing.assert_allclose(log_mel(wav), whole, atol=1e-5)


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 400, 80, 55.0, 7600.0), (22050, 2048, 128, 0.0, 11025.0),
                                                     (16000, 512, 40, 20.0, 7600.0)])
def test_slaney_mel_filters_are_librosas_bit_for_bit(sr, n_fft, n_mels, fmin, fmax):
    import librosa.filters

    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert np.array_equal(slaney_mel_filters(sr, n_fft, n_mels, fmin, fmax), ref)


def test_tone_gives_its_pitch_and_relative_semitones():
    # 200 Hz for 2 s, then 300 Hz for 1 s: median voiced F0 is 200 Hz
    wav = np.concatenate([tone(200, 2.0), tone(300, 1.0)])
    hz = pitch_track(wav[: num_frames_for(len(wav)) * 640])
    inner_low, inner_high = hz[2:48], hz[52:73]
    np.testing.assert_allclose(inner_low, 200, rtol=0.01)
    np.testing.assert_allclose(inner_high, 300, rtol=0.01)
    prosody = compute_features(wav).prosody
    assert prosody[:, 1].mean() > 0.95  # voiced
    np.testing.assert_allclose(prosody[2:48, 0], 0.0, atol=0.2)
    np.testing.assert_allclose(prosody[52:73, 0], 12 * np.log2(1.5), atol=0.2)


def test_silence_is_unvoiced_with_zero_energy():
    feats = compute_features(np.zeros(SR, np.float32))
    assert (feats.prosody == 0).all()
    assert (feats.energy == 0).all()
    np.testing.assert_allclose(feats.mel, np.log(LOG_FLOOR), atol=1e-5)


def test_energy_and_relative_energy():
    wav = np.concatenate([tone(200, 1.0, amp=0.5), tone(200, 1.0, amp=0.05)])  # second half -20 dB
    feats = compute_features(wav)
    np.testing.assert_allclose(feats.energy[2:23], 0.5 / np.sqrt(2), rtol=0.01)
    np.testing.assert_allclose(feats.prosody[2:23, 2], 1.0, atol=0.01)
    np.testing.assert_allclose(feats.prosody[27:48, 2], 1 - 20 / 60, atol=0.01)


def test_onset_peaks_where_sound_starts():
    wav = np.zeros(2 * SR, np.float32)
    ramp = np.hanning(320)[:160]  # 10 ms fades: an abrupt cut is a (real) broadband click
    burst = tone(200, 0.3) * np.concatenate([ramp, np.ones(int(0.3 * SR) - 320), ramp[::-1]])
    for start in (0.4, 1.2):  # bursts of 0.3 s starting at video frames 10 and 30
        i = int(start * SR)
        wav[i : i + len(burst)] = burst
    onset = compute_features(wav).prosody[:, 3]
    assert onset.max() == pytest.approx(1.0)
    assert set(np.argsort(onset)[-2:]) <= {9, 10, 29, 30}
    quiet = np.r_[0:8, 12:16, 20:28, 32:36, 40:50]  # silence and steady tone: no onsets
    assert onset[quiet].max() < 0.05
    assert onset[17:19].max() < 0.6  # a 10 ms fade-out splatters a little, less than a start
    noisy = wav + np.random.default_rng(0).normal(0, 1e-4, len(wav)).astype(np.float32)
    assert compute_features(noisy).prosody[quiet, 3].max() < 0.05  # -80 dB hiss adds none


def test_speech_activity_finds_bursts_and_bridges_short_gaps():
    wav = np.zeros(3 * SR, np.float32)
    wav[int(0.4 * SR) : int(1.2 * SR)] = tone(200, 0.8)  # frames 10..29
    wav[int(2.0 * SR) : int(2.6 * SR)] = tone(200, 0.6, amp=0.1)  # frames 50..64, quieter
    wav[int(2.2 * SR) : int(2.28 * SR)] = 0  # 80 ms gap inside: bridged
    active = speech_activity(wav)
    expected = np.zeros(75, bool)
    expected[10:30] = expected[50:65] = True
    assert active.shape == (75,)
    assert (active != expected).sum() <= 2
    assert not speech_activity(np.zeros(SR, np.float32)).any()


# ---------------------------------------------------------------- speech synthesis


def test_synthesized_speech_is_voiced_and_audible():
    wav = synthesize_speech("The quick brown fox jumps over the lazy dog.")
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 1.5 < len(wav) / SR < 6.0
    assert 0.1 < np.abs(wav).max() <= 1.0
    feats = compute_features(wav)
    assert feats.prosody[:, 1].mean() > 0.3  # voiced frames
    assert speech_activity(wav).mean() > 0.5
    assert np.ptp(feats.prosody[feats.prosody[:, 1] > 0, 0]) > 1.0  # intonation moves


def test_speech_rate_and_voice_change_the_output():
    text = "Speaking slowly and then quickly."
    slow, fast = synthesize_speech(text, rate=100), synthesize_speech(text, rate=250)
    assert len(fast) < 0.7 * len(slow)
    german = synthesize_speech("Guten Morgen, wie geht es dir?", voice="de")
    assert np.abs(german).max() > 0.1
    # espeak-ng carries a little state between utterances: lengths agree within a few samples
    assert abs(len(synthesize_speech(text, rate=100)) - len(slow)) < 0.01 * len(slow)


@pytest.mark.parametrize(
    "kwargs,message",
    [({"text": "  "}, "no text"), ({"text": "hi", "voice": "xx-nope"}, "unknown espeak-ng voice")],
)
def test_speech_bad_input(kwargs, message):
    with pytest.raises(InputError, match=message):
        synthesize_speech(**kwargs)


# ---------------------------------------------------------------- real data


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.realdata
@pytest.mark.skipif(not (DATA / "dev").is_dir(), reason=f"real clips not found at {DATA / 'dev'}")
def test_real_clips_decode_with_speech():
    for path in sorted((DATA / "dev").glob("*/*.mp4"))[:10]:
        wav = load_audio(path)
        feats = compute_features(wav)
        assert feats.prosody[:, 1].mean() > 0.2, path.name
        assert speech_activity(wav).mean() > 0.3, path.name
