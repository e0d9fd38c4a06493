"""End to end: `sdmtalk generate` on a real photo and synthetic speech, checked by decoding the mp4."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile as sf
from skimage import data
from skimage.io import imsave

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.audio import synthesize_speech
from sdmtalk.cli import main
from sdmtalk.face import detect_face
from sdmtalk.video import read_video


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Astronaut photo + speech, 1.2 s of silence, speech again (about 4 s in all)."""
    d = tmp_path_factory.mktemp("inputs")
    photo = d / "astronaut.png"
    imsave(photo, data.astronaut(), check_contrast=False)
    speech = synthesize_speech("Hello there, how are you today")[: int(1.6 * SAMPLE_RATE)]
    silence = np.zeros(int(1.2 * SAMPLE_RATE), np.float32)
    wav = np.concatenate([speech, silence, speech]).astype(np.float32)
    audio = d / "speech.wav"
    sf.write(audio, wav, SAMPLE_RATE)
    return photo, audio, wav


def mouth_box(landmarks, margin=12):
    x0, y0 = landmarks[48:68].min(0) - margin
    x1, y1 = landmarks[48:68].max(0) + margin
    return int(y0), int(y1), int(x0), int(x1)


def test_generate_full_crop_video_matches_audio_and_mouth_follows_speech(inputs, tmp_path):
    photo, audio, wav = inputs
    out = tmp_path / "out.mp4"
    rc = main(["generate", "--image", str(photo), "--audio", str(audio), "-o", str(out),
               "--motion", "energy", "--crop", "full", "--still", "--no-blink", "-q"])
    assert rc == 0 and out.is_file()
    seconds = len(wav) / SAMPLE_RATE
    clip = read_video(out)
    assert abs(len(clip.frames) - FPS * seconds) <= 1
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac"
        assert c.streams.video[0].codec_context.name == "h264"
    assert abs(len(clip.audio) / SAMPLE_RATE - seconds) <= 1 / FPS + 0.03

    photo_rgb = data.astronaut().astype(np.float32)
    y0, y1, x0, x1 = mouth_box(detect_face(data.astronaut()).landmarks)
    # against a frame of the pause: the mouth at rest (the photo's smile is closed to rest first)
    rest = clip.frames[int(2.3 * FPS), y0:y1, x0:x1].astype(np.float32)
    diff = np.abs(clip.frames[:, y0:y1, x0:x1].astype(np.float32) - rest).mean(axis=(1, 2, 3))
    loud = diff[int(0.3 * FPS): int(1.4 * FPS)]
    silent = diff[int(2.0 * FPS): int(2.6 * FPS)]
    assert loud.max() > 3 * max(silent.mean(), 1.0), (loud.max(), silent.mean())
    # far from the face (bottom-left corner of the photo) nothing moves beyond codec noise
    far = np.abs(clip.frames[:, -60:, :60].astype(np.float32) - photo_rgb[-60:, :60]).mean()
    assert far < 4.0


def test_generate_face_crop_sizes(inputs, tmp_path):
    photo, audio, _ = inputs
    for size in (256, 512):
        out = tmp_path / f"out{size}.mp4"
        assert main(["generate", "--image", str(photo), "--audio", str(audio), "-o", str(out),
                     "--motion", "energy", "--size", str(size), "-q"]) == 0
        with av.open(str(out)) as c:
            v = c.streams.video[0]
            assert (v.codec_context.width, v.codec_context.height) == (size, size)


def test_num_samples_writes_one_file_per_seed(inputs, tmp_path):
    photo, audio, _ = inputs
    out = tmp_path / "many.mp4"
    assert main(["generate", "--image", str(photo), "--audio", str(audio), "-o", str(out),
                 "--motion", "energy", "--num-samples", "2", "--seed", "5", "-q"]) == 0
    assert sorted(p.name for p in tmp_path.glob("many_seed*.mp4")) == ["many_seed5.mp4", "many_seed6.mp4"]


def test_console_script_demo_runs(tmp_path):
    out = tmp_path / "demo.mp4"
    proc = subprocess.run([sys.executable, "-m", "sdmtalk", "generate", "--demo",
                           "-o", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000
