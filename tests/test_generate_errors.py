"""Bad input to `sdmtalk generate`: one clear line naming the file, exit code 2, no output file.
Odd but valid photos (grayscale, RGBA, 16-bit, huge) must work."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import synthesize_speech
from sdmtalk.cli import main


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    photo = d / "face.png"
    Image.fromarray(data.astronaut()).save(photo)
    audio = d / "speech.wav"
    sf.write(audio, synthesize_speech("Hi there")[: SAMPLE_RATE], SAMPLE_RATE)
    return photo, audio


def run(capsys, image, audio, out, *extra):
    rc = main(["generate", "--image", str(image), "--audio", str(audio), "-o", str(out),
               "--motion", "energy", "-q", *extra])
    err = capsys.readouterr().err.strip()
    return rc, err


def out_path(tmp_path):
    """Output in a folder of its own, so leftovers are easy to see."""
    folder = tmp_path / "out"
    folder.mkdir(exist_ok=True)
    return folder / "talking.mp4"


def assert_clean_failure(rc, err, out, *needles):
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
    assert not list(out.parent.iterdir()), "a temp or partial output was left behind"


def test_photo_without_face(good, tmp_path, capsys):
    texture = tmp_path / "wall.png"
    Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)).save(texture)
    out = out_path(tmp_path)
    assert_clean_failure(*run(capsys, texture, good[1], out), out, "wall.png", "face")


def test_non_image_file(good, tmp_path, capsys):
    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a picture")
    out = out_path(tmp_path)
    assert_clean_failure(*run(capsys, fake, good[1], out), out, "notes.jpg")


def test_missing_photo(good, tmp_path, capsys):
    out = out_path(tmp_path)
    assert_clean_failure(*run(capsys, tmp_path / "nope.png", good[1], out), out, "nope.png")


@pytest.mark.parametrize("kind", ["empty", "silent", "corrupt", "image", "nan", "inf"])
def test_bad_audio(good, tmp_path, capsys, kind):
    bad = tmp_path / f"{kind}.wav"
    if kind in ("nan", "inf"):  # a float wav with broken samples, at 16 and 44.1 kHz
        wav = sf.read(good[1], dtype="float32")[0]
        wav[100:110] = np.nan if kind == "nan" else np.inf
        sf.write(bad, wav, SAMPLE_RATE if kind == "nan" else 44100, subtype="FLOAT")
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "silent":
        sf.write(bad, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    elif kind == "corrupt":
        bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(200)))
    else:
        bad.write_bytes(good[0].read_bytes())
    out = out_path(tmp_path)
    assert_clean_failure(*run(capsys, good[0], bad, out), out, bad.name, *(["NaN"] if kind in ("nan", "inf") else []))


def test_unwritable_output(good, tmp_path, capsys):
    out = tmp_path / "missing_dir" / "o.mp4"
    rc, err = run(capsys, good[0], good[1], out)
    assert rc == 2 and "missing_dir" in err and len(err.splitlines()) == 1
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    out2 = blocker / "o.mp4"
    rc, err = run(capsys, good[0], good[1], out2)
    assert rc == 2 and "afile" in err


def test_face_index_out_of_range(good, tmp_path, capsys):
    out = out_path(tmp_path)
    rc, err = run(capsys, good[0], good[1], out, "--face-index", "3")
    assert_clean_failure(rc, err, out, "face")


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit", "huge"])
def test_odd_photos_work(good, tmp_path, capsys, kind):
    img = data.astronaut()
    path = tmp_path / f"{kind}.png"
    if kind == "gray":
        Image.fromarray(img.mean(2).astype(np.uint8), "L").save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([img, np.full(img.shape[:2], 255, np.uint8)]), "RGBA").save(path)
    elif kind == "16bit":
        Image.fromarray((img.mean(2) * 257).astype(np.uint16)).save(path)
    else:
        big = np.asarray(Image.fromarray(img).resize((8000, 6000), Image.BILINEAR))
        path = tmp_path / "huge.jpg"
        Image.fromarray(big).save(path, quality=80)
    out = out_path(tmp_path)
    rc, err = run(capsys, path, good[1], out)
    assert rc == 0, err
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("name", ["talking", "talking.avi"])
def test_an_output_not_named_mp4_is_refused(good, tmp_path, capsys, name):
    out = out_path(tmp_path).with_name(name)  # it would be an mp4 under another name
    assert_clean_failure(*run(capsys, good[0], good[1], out), out, name, "use -o", "talking.mp4")


@pytest.mark.parametrize("value", ["-inf", "-1e3", "nan"])
def test_a_negative_or_non_finite_scale_gets_the_range_line(good, tmp_path, capsys, value):
    out = out_path(tmp_path)  # not argparse's "expected one argument"
    assert_clean_failure(*run(capsys, good[0], good[1], out, "--lip-scale", value), out,
                         "--lip-scale", "out of range", "0 to 2")


def test_a_pose_reference_folder_is_called_a_folder(good, tmp_path, capsys):
    out = out_path(tmp_path)
    assert_clean_failure(*run(capsys, good[0], good[1], out, "--motion", "sdm", "--pose-reference", str(tmp_path)),
                         out, f"--pose-reference {tmp_path} is a folder", "video file")


def test_help_says_how_several_samples_are_named(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "out_seed7.mp4, out_seed8.mp4" in " ".join(capsys.readouterr().out.split())
