"""`sdmtalk prepare` end to end on tiny videos made here: landmark alignment against the
known motion, 30/29.97/50 -> 25 fps, the four layouts, quality filters and corrupt files,
resume after a killed run, --shard + merge == one run; plus real clips when present."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_data_media import face_crop, linear_motion, make_clip, render_frames, speech, write_video

from sdmtalk.data.cache import SHARD_DIR, CacheReader
from sdmtalk.data.merge import merge_caches
from sdmtalk.data.prepare import PrepareConfig, add_prepare_arguments, prepare_dataset, run_prepare
from sdmtalk.errors import InputError
from sdmtalk.face import detect_face, from_canonical
from sdmtalk.face.align import fit_similarity
from sdmtalk.face.track import LandmarkTracker
from sdmtalk.motion.types import motion_from_landmarks
from sdmtalk.video import iter_video_frames, write_mp4

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def reference_landmarks() -> np.ndarray:
    """(68, 2) landmarks of the face crop itself: frame t should show s_t * ref + (tx_t, ty_t)."""
    return detect_face(face_crop()).landmarks.astype(np.float64)


def _motion_error(landmarks, motion, ref):
    """Per-frame |recovered - known| of scale ratio, angle and translation, and point error."""
    sims = fit_similarity(ref, landmarks.astype(np.float64))  # ref -> frame: [log s, angle, tx, ty]
    expected = motion[:, :1, None] * ref[None] + motion[:, None, 1:]
    point_err = np.linalg.norm(landmarks - expected, axis=-1).mean(axis=-1)
    return (np.abs(np.exp(sims[:, 0]) / motion[:, 0] - 1), np.abs(sims[:, 1]),
            np.linalg.norm(sims[:, 2:] - motion[:, 1:], axis=-1), point_err)


def test_landmarks_follow_the_known_motion(tmp_path, reference_landmarks):
    _, motion = make_clip(tmp_path / "src" / "train" / "astro" / "a.mp4", seconds=2.0, fps=25.0)
    summary = prepare_dataset(tmp_path / "src", tmp_path / "cache", quiet=True)
    assert summary.kept == 1 and summary.complete, summary
    reader = CacheReader(tmp_path / "cache")
    rec = reader.clips()[0]
    assert (rec.frames, rec.fps, rec.src_fps, rec.width, rec.height) == (50, 25.0, 25.0, 320, 288)
    data = reader.load(rec)
    scale_err, angle_err, shift_err, point_err = _motion_error(data["landmarks"], motion, reference_landmarks)
    assert scale_err.max() < 0.02 and angle_err.max() < 0.02
    assert shift_err.mean() < 1.0 and point_err.mean() < 1.5
    assert data["valid"].min() == 1 and abs(rec.face_size - 88 * motion[:, 0].mean()) < 12
    # smoothing brings the landmarks closer to the truth than the tracker's raw output
    raw, _, _ = LandmarkTracker(quiet=True).track(iter_video_frames(rec_path(tmp_path, rec)))
    assert point_err.mean() < _motion_error(raw, motion, reference_landmarks)[3].mean()
    assert rec.jitter_smooth < rec.jitter_raw
    # the derived arrays agree with the landmarks
    np.testing.assert_allclose(from_canonical(data["canonical"], data["sims"]), data["landmarks"], atol=0.05)
    ref_motion, _, _ = motion_from_landmarks(data["landmarks"])
    np.testing.assert_allclose(data["pose"], ref_motion.pose, atol=1e-5)
    np.testing.assert_allclose(data["delta"], ref_motion.delta, atol=1e-5)
    assert data["mel"].shape == (200, 80) and data["prosody"].shape == (50, 4)
    assert data["energy"].shape == (50,) and data["box"].shape == (50, 4)
    assert 0.3 < data["speech"].mean() <= 1.0


def rec_path(tmp_path, rec) -> Path:
    return tmp_path / "src" / rec.source


@pytest.mark.parametrize("fps", [30.0, 29.97, 50.0])
def test_frame_rate_is_resampled_to_25(tmp_path, fps, reference_landmarks):
    seconds = 1.6
    n_src = int(round(seconds * fps))
    motion = linear_motion(n_src, fps, scale=(1.0, 1.0), shift=(96.0, 0.0), base=(-40.0, 16.0))
    write_video(tmp_path / "src" / "clip.mp4", render_frames(motion), fps, np.resize(speech(), 25600))
    cfg = PrepareConfig(smooth_window=1)  # compare raw positions: no smoothing across frames
    prepare_dataset(tmp_path / "src", tmp_path / "cache", quiet=True, config=cfg)
    rec = CacheReader(tmp_path / "cache").clips()[0]
    # frames k = 0, 1, ... while k / 25 s lies before the end of the last source frame
    assert rec.frames == int(np.ceil(n_src / fps * 25 - 1e-3)) and rec.src_fps == pytest.approx(fps, abs=0.01)
    landmarks = CacheReader(tmp_path / "cache").load(rec)["landmarks"]
    # output frame k shows the latest source frame at or before k / 25 s
    src_times = np.arange(n_src) / fps
    shown = np.array([np.flatnonzero(src_times <= k / 25 + 1e-3)[-1] for k in range(rec.frames)])
    _, _, shift_err, _ = _motion_error(landmarks, motion[shown], reference_landmarks)
    wrong = np.minimum(shown + 1, n_src - 1)  # one source frame later: 96 px/s / fps apart
    _, _, wrong_err, _ = _motion_error(landmarks, motion[wrong], reference_landmarks)
    # raw dlib noise is ~0.5 px; one source frame off would be 96 / fps = 2-3 px
    assert np.median(shift_err) < 0.8 and shift_err.mean() < 0.4 * wrong_err.mean()


LAYOUT_TREES = {
    "voxceleb2": {"dev/mp4/id00012/yt1/00001.mp4": ("id00012", "train"),
                  "dev/mp4/id00013/yt2/00001.mp4": ("id00013", "train"),
                  "test/mp4/id00500/yt3/00002.mp4": ("id00500", "test")},
    "lrs3": {"pretrain/vidA/00001.mp4": ("vidA", "train"), "trainval/vidA/00002.mp4": ("vidA", "train"),
             "test/vidB/00001.mp4": ("vidB", "test")},
    "lrw": {"ABOUT/train/ABOUT_00001.mp4": ("lrw-ABOUT_00001", "train"),
            "ABOUT/val/ABOUT_00002.mp4": ("lrw-ABOUT_00002", "val"),
            "ABOUT/test/ABOUT_00003.mp4": ("lrw-ABOUT_00003", "test")},
    "folder": {"train/ann/x.mp4": ("ann", "train"), "dev/bob/y.mp4": ("bob", "val"),
               "train/ann/deeper/z.mp4": ("ann", "train")},
}


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    path, _ = make_clip(tmp_path_factory.mktemp("clip") / "c.mp4", seconds=1.2)
    return path


@pytest.mark.parametrize("layout", sorted(LAYOUT_TREES))
def test_each_layout_end_to_end(tmp_path, layout, short_clip):
    for rel in LAYOUT_TREES[layout]:
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(short_clip, tmp_path / "src" / rel)
    summary = prepare_dataset(tmp_path / "src", tmp_path / "cache", quiet=True)
    assert summary.layout == layout and summary.skipped == 0
    reader = CacheReader(tmp_path / "cache")
    got = {r.source: (r.speaker, r.split) for r in reader.clips()}
    expected = dict(LAYOUT_TREES[layout])
    if layout == "voxceleb2":  # no val split in VoxCeleb2: one of its two dev speakers becomes val
        carved = [k for k, (_, split) in got.items() if split == "val"]
        assert len(carved) == 1 and carved[0].startswith("dev/")
        expected[carved[0]] = (expected[carved[0]][0], "val")
    assert got == expected
    assert all(r.frames == 30 for r in reader.clips())


SPLIT_SCREEN = linear_motion(40, 25.0, scale=(1.0, 1.05), base=(-40.0, 16.0))  # face in the left half


def _brief_second_face(path):
    """Split screen only for the first 3 of 40 frames: must stay (a one-off second face)."""
    frames = render_frames(linear_motion(40, 25.0))
    frames[:3] = render_frames(SPLIT_SCREEN[:3], faces=2)
    write_video(path, frames, 25.0, np.resize(speech(), 25600))


def test_quality_filters_and_corrupt_files_are_skipped_with_reasons(tmp_path):
    src = tmp_path / "src" / "train"
    make_clip(src / "good" / "big.mp4", seconds=1.6)
    small = linear_motion(40, 25.0, scale=(0.6, 0.6), base=(100.0, 80.0))  # ~53 px face < 64
    make_clip(src / "small" / "face.mp4", seconds=1.6, motion=small)
    make_clip(src / "two" / "split-screen.mp4", seconds=1.6, faces=2, motion=SPLIT_SCREEN)
    _brief_second_face(src / "brief" / "second.mp4")
    make_clip(src / "quiet" / "silent.mp4", seconds=1.6, silent=True)
    make_clip(src / "short" / "clip.mp4", seconds=0.5)
    blank = np.full((40, 288, 320, 3), 120, np.uint8)
    write_video(src / "noface" / "wall.mp4", blank, 25.0, np.resize(speech(), 25600))
    write_video(src / "mute" / "video.mp4", render_frames(linear_motion(40, 25.0)), 25.0, None)
    (src / "junk").mkdir()
    (src / "junk" / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (src / "junk" / "empty.mp4").write_bytes(b"")
    whole = (src / "two" / "split-screen.mp4").read_bytes()  # index (moov) at the end: unreadable
    (src / "junk" / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    # index at the front (faststart): the first frames decode, then the data stops
    write_mp4(tmp_path / "fast.mp4", render_frames(linear_motion(50, 25.0)), np.resize(speech(), 32000))
    whole = (tmp_path / "fast.mp4").read_bytes()
    (src / "junk" / "cut-short.mp4").write_bytes(whole[: int(len(whole) * 0.6)])
    summary = prepare_dataset(tmp_path / "src", tmp_path / "cache", quiet=True)
    reader = CacheReader(tmp_path / "cache")
    reasons = {s["source"]: s["reason"] for s in reader.skipped()}
    assert reasons == {
        "train/small/face.mp4": "face_too_small", "train/two/split-screen.mp4": "multiple_faces",
        "train/quiet/silent.mp4": "no_speech", "train/short/clip.mp4": "too_short",
        "train/noface/wall.mp4": "no_face", "train/mute/video.mp4": "no_audio",
        "train/junk/random.mp4": "corrupt", "train/junk/empty.mp4": "corrupt",
        "train/junk/truncated.mp4": "corrupt", "train/junk/cut-short.mp4": "corrupt",
    }
    assert sorted(r.source for r in reader.clips()) == ["train/brief/second.mp4", "train/good/big.mp4"]
    brief = reader.record("train/brief/second")
    assert brief.max_faces == 2 and 0 < brief.second_face_frac < 0.3  # seen, and kept
    assert summary.skipped_by_reason["corrupt"] == 4 and summary.kept == 2
    assert all(s["detail"] and s["clip_id"] for s in reader.skipped())


# ---------------------------------------------------------------- resume, shard + merge


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    for i, rel in enumerate(["train/ann/a1.mp4", "train/ann/a2.mp4", "train/bob/b1.mp4",
                             "dev/cid/c1.mp4", "train/dan/d1.mp4"]):
        motion = linear_motion(30, 25.0, scale=(1.0, 1.0 + 0.05 * i), shift=(4.0 * i, 2.0))
        make_clip(root / rel, seconds=1.2, motion=motion)
    (root / "train" / "bob" / "broken.mp4").write_bytes(b"not a video at all")
    return root


@pytest.fixture(scope="module")
def single_run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "cache"
    prepare_dataset(dataset, out, clips_per_shard=2, quiet=True)
    return out


def _snapshot(cache: Path) -> dict:
    """Everything a cache holds, shard file names aside."""
    reader = CacheReader(cache)
    records = {r.clip_id: {k: v for k, v in vars(r).items() if k != "shard"} for r in reader.clips()}
    arrays = {r.clip_id: reader.load(r) for r in reader.clips()}
    return {"records": records, "arrays": arrays, "skipped": reader.skipped()}


def _assert_same(a: dict, b: dict) -> None:
    assert a["records"] == b["records"] and a["skipped"] == b["skipped"]
    for clip_id, arrays in a["arrays"].items():
        for name, arr in arrays.items():
            np.testing.assert_array_equal(arr, b["arrays"][clip_id][name], err_msg=f"{clip_id} {name}")


def test_single_run_keeps_speakers_apart(single_run):
    reader = CacheReader(single_run)
    assert reader.complete and len(reader.clips()) == 5
    assert reader.speakers("val") == ["cid"]
    assert not set(reader.speakers("train")) & set(reader.speakers("val"))
    assert [s["reason"] for s in reader.skipped()] == ["corrupt"]
    index = (single_run / "index.jsonl").read_text().splitlines()
    assert [json.loads(x)["clip_id"] for x in index] == sorted(r.clip_id for r in reader.clips())


def test_resume_after_a_killed_run_gives_the_same_cache(dataset, single_run, tmp_path):
    out = tmp_path / "cache"
    code = ("import sys; from sdmtalk.data.prepare import prepare_dataset; "
            "prepare_dataset(sys.argv[1], sys.argv[2], clips_per_shard=2, quiet=True)")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", code, str(dataset), str(out)], env=env)
    first = out / SHARD_DIR / "p000of001-00000.json"
    deadline = time.time() + 900  # generous: only a stuck run reaches it
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), "the first shard was never committed"
    commits = sorted(p.name for p in (out / SHARD_DIR).glob("*.json"))
    assert len(commits) < 3, "the run finished before it could be killed"
    assert not (out / "index.jsonl").exists()
    # leftovers a kill can leave: a temp file and a shard whose arrays lack a commit record
    (out / SHARD_DIR / "p000of001-00001.safetensors.tmp").write_bytes(b"partial")
    shutil.copy(out / SHARD_DIR / "p000of001-00000.safetensors", out / SHARD_DIR / "p000of001-00002.safetensors")
    summary = prepare_dataset(dataset, out, clips_per_shard=2, quiet=True)
    assert summary.shards_resumed == len(commits) and summary.complete
    assert not list((out / SHARD_DIR).glob("*.tmp"))
    for f in sorted((single_run / SHARD_DIR).iterdir()):
        assert (out / SHARD_DIR / f.name).read_bytes() == f.read_bytes(), f.name
    assert (out / "index.jsonl").read_text() == (single_run / "index.jsonl").read_text()
    # a damaged committed shard is made again
    data = out / SHARD_DIR / "p000of001-00001.safetensors"
    raw = data.read_bytes()
    data.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    summary = prepare_dataset(dataset, out, clips_per_shard=2, quiet=True)
    assert summary.shards_written == 1 and summary.shards_resumed == 2
    _assert_same(_snapshot(out), _snapshot(single_run))


def test_shards_on_two_machines_merge_to_the_single_run(dataset, single_run, tmp_path):
    prepare_dataset(dataset, tmp_path / "m0", shard=(0, 2), clips_per_shard=2, workers=2, quiet=True)
    part = prepare_dataset(dataset, tmp_path / "m1", shard=(1, 2), clips_per_shard=2, quiet=True)
    assert part.complete and part.clips == 3  # every other clip of the six
    assert not CacheReader(tmp_path / "m0").clips("val") or not CacheReader(tmp_path / "m1").clips("val")
    manifest = merge_caches(tmp_path / "merged", [tmp_path / "m0", tmp_path / "m1"])
    assert manifest["complete"] and manifest["counts"]["clips"] == 5
    _assert_same(_snapshot(tmp_path / "merged"), _snapshot(single_run))


def test_rerun_with_other_settings_is_refused(dataset, single_run, tmp_path):
    shutil.copytree(single_run, tmp_path / "cache")
    with pytest.raises(InputError, match="other settings"):
        prepare_dataset(dataset, tmp_path / "cache", clips_per_shard=2, min_face=10, quiet=True)


def test_shards_made_by_other_code_are_made_again(dataset, single_run, tmp_path, monkeypatch):
    import sdmtalk.data.prepare as prepare_module

    shutil.copytree(single_run, tmp_path / "cache")
    same = prepare_dataset(dataset, tmp_path / "cache", clips_per_shard=2, quiet=True)
    assert same.shards_resumed == 3 and same.shards_written == 0
    monkeypatch.setattr(prepare_module, "code_fingerprint", lambda: "changed-code")
    assert prepare_module._code_only("x = 1  # note\n") == prepare_module._code_only('"""Doc."""\nx = (1)\n')
    redone = prepare_dataset(dataset, tmp_path / "cache", clips_per_shard=2, quiet=True)
    assert redone.shards_resumed == 0 and redone.shards_written == 3 and redone.complete
    _assert_same(_snapshot(tmp_path / "cache"), _snapshot(single_run))


def test_cli_prepare_and_merge(dataset, single_run, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_prepare_arguments(parser)
    args = parser.parse_args([str(dataset), "--out", str(tmp_path / "c"), "--clips-per-shard", "2",
                              "--shard", "1/2"])
    assert run_prepare(args) == 0
    assert "prepared 3 clips" in capsys.readouterr().out
    args = parser.parse_args(["--merge", str(tmp_path / "c"), "--out", str(tmp_path / "m")])
    assert run_prepare(args) == 0
    assert "not complete" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args([str(dataset), "--out", "x", "--shard", "2/2"])


# ---------------------------------------------------------------- real clips


@pytest.mark.realdata
@pytest.mark.slow
def test_real_clips(tmp_path):
    if not (SHARED_DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"real clips not found at {SHARED_DATA} (research data, not shipped)")
    wanted = {"grid-s1/bbaf2n.mp4", "andrew/andrew-clip-1.mp4", "visualvoice-interview/interview.mp4"}
    lines = (SHARED_DATA / "MANIFEST.tsv").read_text().splitlines()
    rows = [lines[0]] + [x for x in lines[1:] if x.split("\t")[1] in wanted]
    assert len(rows) == 4, "the real clips this test uses are missing from MANIFEST.tsv"
    (tmp_path / "m.tsv").write_text("\n".join(rows) + "\n")
    summary = prepare_dataset(SHARED_DATA, tmp_path / "cache", manifest=tmp_path / "m.tsv", quiet=True)
    reader = CacheReader(tmp_path / "cache")
    kept = {r.source: r for r in reader.clips()}
    assert set(kept) == {"train/grid-s1/bbaf2n.mp4", "train/andrew/andrew-clip-1.mp4"}
    andrew = kept["train/andrew/andrew-clip-1.mp4"]
    assert andrew.src_fps == 30.0 and abs(andrew.frames - 25.07 * 25) <= 2
    assert [s["reason"] for s in reader.skipped()] == ["multiple_faces"]
    assert summary.frames_per_cpu_s > 20  # the goal is 100; this only catches a broken fast path
    data = reader.load(andrew)
    assert data["valid"].mean() > 0.95 and np.isfinite(data["landmarks"]).all()


def test_phoneme_side_table_is_resumable_and_feeds_windows(dataset, single_run, tmp_path):
    from sdmtalk.data.cache import CacheReader
    from sdmtalk.data.phonemes import PhonemeTable, add_phonemes
    from sdmtalk.data.windows import MotionWindows

    cache = tmp_path / "cache"
    shutil.copytree(single_run, cache)
    table = PhonemeTable(cache)
    assert not table.available
    assert add_phonemes(cache, dataset, quiet=True) == 3
    assert add_phonemes(cache, dataset, quiet=True) == 0  # finished shards are kept
    reader = CacheReader(cache)
    for rec in reader.clips():
        post = table.get(rec)
        assert post.shape == (rec.frames, 191) and np.isfinite(post).all()
        assert np.allclose(post[:-1].sum(1), 1.0, atol=0.02)  # full frames: a distribution
    item = MotionWindows(reader, "train", window=16, phonemes=table)[0]
    assert item["phonemes"].shape == (16, 191)
    other = shutil.copytree(single_run, tmp_path / "cache2")
    with pytest.raises(InputError, match="--data-root"):
        add_phonemes(other, tmp_path / "nowhere", quiet=True)
