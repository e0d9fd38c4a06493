"""`sdmtalk evaluate` end to end on tiny constructed clips (method `static`), report files,
an unreadable clip listed, and (realdata) a real dev clip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sdmtalk.cli import main
from sdmtalk.errors import InputError
from sdmtalk.evaluate.runner import canvas_alignment, evaluate, find_clips

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FRAMES = 30  # 1.2 s at 25 fps


def astronaut_clip(path: Path, shift: int) -> Path:
    """A 1.2 s clip of the astronaut's face; from frame 15 on the head is `shift` px to the
    right (the crop window moves left). Audio: an amplitude-modulated tone."""
    from skimage import data

    from sdmtalk.video import write_mp4

    img = data.astronaut()
    frames = [img[0:320, 110 - (shift if i >= 15 else 0):430 - (shift if i >= 15 else 0)] for i in range(FRAMES)]
    t = np.arange(FRAMES * 640) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return write_mp4(path, frames, audio, fps=25)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    clips = tmp_path_factory.mktemp("clips")
    astronaut_clip(clips / "still.mp4", 0)
    (clips / "sub").mkdir()
    astronaut_clip(clips / "sub" / "moved.mp4", 8)
    (clips / "broken.mp4").write_bytes(b"this is not a video")
    out = tmp_path_factory.mktemp("report")
    evaluate(clips, out, methods="static", seeds=2, size=256, quiet=True, max_seconds=2.0, video=True,
             csim_frames=3, fid_frames=4)
    return out


def test_report_files_written_and_parseable(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert report["settings"]["methods"] == ["static"]
    assert {c["clip"] for c in report["clips"]} == {"still", "sub/moved"}
    md = (report_dir / "report.md").read_text()
    assert "| Static photo |" in md and "FID" in md and "ArcFace" in md and "Real clip" in md
    for name in ("metrics.png", "curves_0.png", "curves_1.png", "videos/still.mp4", "videos/sub__moved.mp4"):
        assert (report_dir / name).stat().st_size > 1000, name
    agg = report["aggregate"]["static"]
    for key in ("fid", "ssim", "csim", "lmd_mouth", "lmd_face", "psnr", "lip_amp_ratio", "jitter"):
        assert isinstance(agg[key], float), key
    assert report["clips"][0]["methods"]["static"]["seeds"][0]["frames_scored"] == FRAMES - 1


def test_real_offset_measured_once_per_clip_and_aligned_columns_reported(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    for clip in report["clips"]:  # a still mouth (landmark noise only): the rule applies nothing
        assert clip["real_offset_applied"] == 0 and clip["real_offset"].keys() == {"offset", "z", "windows", "confidence"}
        assert {"lip_gap_corr_aligned", "lip_amp_ratio_aligned"} <= clip["methods"]["static"]["seeds"][0].keys()
    assert "lip_gap_corr_aligned" in report["aggregate"]["static"]
    assert report["aggregate"]["real"]["clips_realigned"] == 0
    assert report["groups"]["other"]["clips"] == 2
    assert report["settings"]["offset_rule"]["min_z"] == 3.0
    md = (report_dir / "report.md").read_text()
    assert "lip-gap r aligned‡" in md and "0 of 2 clip(s) re-aligned" in md


def test_unreadable_clip_listed_not_fatal(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert [f["clip"] for f in report["failed"]] == ["broken"]
    assert "broken.mp4" in report["failed"][0]["reason"]
    assert "broken" in (report_dir / "report.md").read_text()


def test_static_method_on_a_still_clip_matches_the_real_frames(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    still = next(c for c in report["clips"] if c["clip"] == "still")["methods"]["static"]["mean"]
    assert still["lmd_face"] < 1.0  # only landmark noise and video compression
    assert still["ssim"] > 0.9
    assert still["csim"] > 0.95
    assert report["clips"][0]["methods"]["static"]["seeds"][0].keys() >= {"lmd_mouth", "ssim"}
    assert len(report["clips"][0]["methods"]["static"]["seeds"]) == 1  # static is not seeded


def test_static_method_on_a_moved_head_gives_the_known_lmd(report_dir):
    """From frame 15 the real head is 8 source px to the right; in the aligned 256 crop that
    is 8 * scale px. Frames 1-14 match, 15-29 are off by it: LMD-face = 15/29 of the shift."""
    from skimage import data

    from sdmtalk.face import detect_face

    face = detect_face(data.astronaut()[0:320, 110:430])
    scale = canvas_alignment(face.landmarks).scale * 256 / 512
    report = json.loads((report_dir / "report.json").read_text())
    moved = next(c for c in report["clips"] if c["clip"] == "sub/moved")["methods"]["static"]["mean"]
    assert moved["lmd_face"] == pytest.approx(8 * scale * 15 / 29, abs=1.0)
    assert moved["lmd_mouth_centred"] < 1.0  # the mouth shape did not change


def test_bad_inputs_raise_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        find_clips(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no video clips"):
        find_clips(tmp_path)
    with pytest.raises(InputError, match="unknown method"):
        evaluate(tmp_path, tmp_path / "out", methods="static,nonsense", quiet=True)


def test_max_clips_0_is_one_line_and_writes_nothing(tmp_path, capsys):
    astronaut_clip(tmp_path / "clip.mp4", 0)
    assert main(["evaluate", str(tmp_path), "--out", str(tmp_path / "out"), "--max-clips", "0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--max-clips 0" in err and "use 1 or more" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cache_input_lists_its_clips_under_data_root(tmp_path):
    from sdmtalk.data.cache import CACHE_FORMAT, CACHE_VERSION

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_text(json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION}))
    rec = dict(clip_id="spk/a", speaker="spk", split="test", frames=30, fps=25.0, source="spk/a.mp4",
               sha1="0", shard="p000of001-00000")
    lines = [json.dumps(rec), json.dumps({**rec, "clip_id": "spk/b", "split": "train", "source": "spk/b.mp4"})]
    (cache / "index.jsonl").write_text("\n".join(lines) + "\n")
    clips = find_clips(cache, split="test", data_root=tmp_path / "videos")
    assert [(c.name, c.path) for c in clips] == [("spk/a", tmp_path / "videos" / "spk" / "a.mp4")]
    assert len(find_clips(cache, data_root=tmp_path)) == 2
    with pytest.raises(InputError, match="--data-root"):
        find_clips(cache, split="test")


@pytest.mark.realdata
@pytest.mark.slow
def test_real_dev_clip_static_and_energy(tmp_path):
    clip = DATA / "dev" / "lrs2-00008"
    if not clip.is_dir():
        pytest.skip(f"real data not found at {clip}")
    report = evaluate(clip, tmp_path, methods="static,energy", seeds=2, quiet=True, max_seconds=3.0)
    assert report["failed"] == [] and len(report["clips"]) == 1
    agg = report["aggregate"]
    assert agg["static"]["lip_amp_ratio"] < agg["energy"]["lip_amp_ratio"]
    assert agg["energy"]["frames_scored"] > 0


def test_sdm_still_method_moves_the_lips_not_the_head():
    """`sdm-still` (what rendering costs apart from head motion): the photo's head pose on
    every frame, SDM's lips moving with the speech."""
    import torch
    from skimage import data

    from sdmtalk.evaluate.methods import MethodRunner, parse_methods

    torch.set_num_threads(1)
    still, full = parse_methods("sdm-still,sdm")
    assert still.still and still.seeded and not full.still
    runner = MethodRunner([still, full], size=256)
    image = np.ascontiguousarray(data.astronaut()[0:320, 110:430])
    t = np.arange(32000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    held, moving = (runner.generate(m, image, wav, seed=1).motion for m in (still, full))
    assert np.abs(held.pose - held.pose[:1]).max() < 1e-6
    assert np.abs(moving.pose - moving.pose[:1]).max() > 1e-3
    assert np.std(held.delta[:, 62:68, 1]) > 1e-3  # the inner lips still move
    half, = parse_methods("sdm-half-head")  # the head's motion at half scale, same seed
    halved = runner.generate(half, image, wav, seed=1).motion
    ratio = np.std(halved.pose[:, 1]) / np.std(moving.pose[:, 1])
    assert 0.3 < ratio < 0.7, ratio


def test_evaluation_canvas_is_black_outside_the_photo_not_streaked():
    """A face at the photo's top edge: the aligned canvas reaches past the photo. Those pixels
    are black in every frame (real and generated alike), not the top row repeated upwards."""
    from sdmtalk.evaluate.runner import warp
    from sdmtalk.face.align import Similarity

    rng = np.random.default_rng(0)
    photo = rng.integers(40, 250, (120, 160, 3), dtype=np.uint8)
    canvas = warp(photo, Similarity(scale=2.0, tx=0.0, ty=100.0), side=256)  # photo rows start at y = 100
    assert (canvas[:96] == 0).all()
    assert canvas[110:200].mean() > 100  # the photo itself is there


def test_methods_animate_the_source_frame_and_are_aligned_like_the_real_frames(tmp_path):
    """The static method's frames, taken through the real frames' alignment, are the real
    source crop: the methods see the video's own frame (true edges), not the canvas."""
    from sdmtalk.evaluate.methods import MethodRunner, parse_methods
    from sdmtalk.evaluate.runner import ClipSource, generated_crops, load_real_clip
    from sdmtalk.face import LandmarkTracker

    path = astronaut_clip(tmp_path / "still.mp4", 0)
    real = load_real_clip(ClipSource("still", path), 1.0, 128, LandmarkTracker(quiet=True))
    assert real.photo.shape[:2] == (320, 320) and real.alignment is not None
    static = parse_methods("static")[0]
    crops, _ = generated_crops(MethodRunner([static], size=256), static, real, 0, 128)
    assert crops.shape == real.crops.shape
    assert np.abs(crops.astype(int) - real.crops[0].astype(int)).max() <= 1
