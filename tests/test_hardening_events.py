"""Issue 15 battery, events and odd-but-valid inputs: many-channel audio, a truncated file
(warning), a stale temp of a killed run, SIGTERM / SIGINT / kill -9 mid-run, the same
video at any thread count, progress through the Python API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import load_audio, synthesize_speech
from sdmtalk.cli import main
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR).save(d / "face.png")
    speech = synthesize_speech("Good morning everyone, today a photograph will speak to you")
    sf.write(d / "speech.wav", speech[:SAMPLE_RATE], SAMPLE_RATE)
    sf.write(d / "long.wav", np.tile(speech, 4), SAMPLE_RATE)
    return d


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder / "talking.mp4"


def gen_args(inputs, out, audio="speech.wav", *extra):
    return ["generate", "--image", str(inputs / "face.png"), "--audio", str(inputs / audio),
            "-o", str(out), "--motion", "energy", "-q", *extra]


@pytest.mark.parametrize("channels, rate", [(8, 16000), (8, 96000), (16, 48000), (2, 44100)])
def test_any_channel_count_decodes(tmp_path, channels, rate):
    t = np.arange(rate // 2) / rate
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    multi = np.stack([tone * (c % 2) for c in range(channels)], axis=1).astype(np.float32)
    path = tmp_path / f"ch{channels}.wav"
    sf.write(path, multi, rate, subtype="PCM_16")
    wav = load_audio(path)  # used to kill the process (segfault) from 8 channels up
    assert len(wav) == SAMPLE_RATE // 2
    assert 0.2 < np.abs(wav).max() < 0.3  # the mean of the channels: half of them carry the tone


def test_many_channel_audio_generates(inputs, out, capsys, tmp_path):
    speech, _ = sf.read(inputs / "speech.wav", dtype="float32")
    path = tmp_path / "surround.wav"
    sf.write(path, np.repeat(speech[:, None], 8, axis=1), SAMPLE_RATE)
    argv = gen_args(inputs, out)
    argv[4] = str(path)
    assert main(argv) == 0
    assert out.stat().st_size > 1000 and [p.name for p in out.parent.iterdir()] == [out.name]


def test_truncated_audio_warns_once(inputs, out, capsys, tmp_path):
    raw = bytearray((inputs / "speech.wav").read_bytes())
    raw[40:44] = (10 * SAMPLE_RATE * 2).to_bytes(4, "little")  # header: 10 s; data: 1 s
    (tmp_path / "cut.wav").write_bytes(bytes(raw))
    argv = gen_args(inputs, out)
    argv[4] = str(tmp_path / "cut.wav")
    assert main(argv) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "cut.wav" in lines[0] and "10.0 s" in lines[0]


def test_stale_temp_of_killed_run_is_removed(inputs, out, capsys):
    stale = out.parent / ".talking.0123abcd.part.mp4"
    stale.write_bytes(b"\x00" * 1000)  # what kill -9 leaves: unlocked
    other = out.parent / ".talking-x.0123abcd.part.mp4"  # another output's: not ours
    other.write_bytes(b"")
    assert main(gen_args(inputs, out)) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, other.name])
    assert "removed" in capsys.readouterr().err


def _start(inputs, out):
    """generate of 10 s in a child process; returns once its temp output exists (mid-run)."""
    proc = subprocess.Popen([sys.executable, "-m", "sdmtalk.cli", *gen_args(inputs, out, "long.wav")],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 600  # generous: a loaded machine starts slowly
    while not list(out.parent.glob(".talking.*.part.mp4")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.02)
    return proc


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_cleans_up_and_says_so(inputs, out, sig, code):
    proc = _start(inputs, out)
    time.sleep(0.3)
    proc.send_signal(sig)
    err = proc.communicate(timeout=300)[1].strip().splitlines()
    assert proc.returncode == code, err
    assert len(err) == 1 and signal.Signals(sig).name in err[0] and "removed" in err[0], err
    assert not list(out.parent.iterdir())


def _catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux: SigCgt in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        mask = next(line for line in status if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (sig - 1) & 1)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_a_signal_while_the_libraries_load_is_one_line(inputs, out):
    """SIGTERM as soon as the command can take it (the first thing it does, before seconds of
    imports): one line, no traceback, exit 143, nothing written."""
    proc = subprocess.Popen([sys.executable, "-m", "sdmtalk", *gen_args(inputs, out)],
                            stderr=subprocess.PIPE, text=True)
    for _ in range(600_000):  # the process sets the handler, or ends
        if proc.poll() is not None or _catches(proc.pid, signal.SIGTERM):
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1].strip().splitlines()
    assert proc.returncode == 143 and len(err) == 1 and "stopped by SIGTERM" in err[0], err
    assert not list(out.parent.iterdir())


def test_kill_9_leftover_goes_with_the_next_run(inputs, out, capsys):
    proc = _start(inputs, out)
    proc.kill()
    proc.wait(timeout=300)
    assert list(out.parent.glob(".talking.*.part.mp4")), "kill -9 leaves its temp file"
    assert main(gen_args(inputs, out)) == 0
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_same_seed_same_video_at_any_thread_count(inputs, tmp_path):
    videos = []
    for threads in (1, 2, 3):
        pipe = TalkingFacePipeline(motion="sdm", quiet=True, threads=threads)
        path = tmp_path / f"t{threads}.mp4"
        pipe.generate(inputs / "face.png", inputs / "speech.wav", path, MotionControls(seed=5))
        videos.append(path.read_bytes())
    assert videos[0] == videos[1] == videos[2]


def test_progress_callback_reaches_every_stage(inputs, out):
    seen = []
    pipe = TalkingFacePipeline(motion="energy", progress=lambda *a: seen.append(a))
    pipe.generate(inputs / "face.png", inputs / "speech.wav", out, MotionControls())
    stages = list(dict.fromkeys(s for s, _, _ in seen))
    assert stages == ["face", "audio", "motion", f"render {out.name}"]
    assert seen[-1] == (f"render {out.name}", 25, 25)
