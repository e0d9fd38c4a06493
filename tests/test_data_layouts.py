"""Dataset layouts: detection, speakers, splits that never share a speaker, --shard parts."""

from __future__ import annotations

from collections import defaultdict

import pytest

from sdmtalk.data.layouts import (
    ClipSource,
    assign_splits,
    detect_layout,
    discover_clips,
    read_manifest,
    select_part,
)
from sdmtalk.errors import InputError

LAYOUT_FILES = {
    "voxceleb2": ["dev/mp4/id00012/abcDEF123/00001.mp4", "dev/mp4/id00012/xyz/00002.mp4",
                  "dev/mp4/id00077/q1/00001.mp4", "test/mp4/id00500/zz/00001.mp4"],
    "lrs3": ["pretrain/0af00UcTOSc/00001.mp4", "trainval/0af00UcTOSc/50001.mp4",
             "trainval/1BHOflzxPjI/00003.mp4", "test/0Fi83BHQsMA/00002.mp4"],
    "lrw": ["ABOUT/train/ABOUT_00001.mp4", "ABOUT/val/ABOUT_00001.mp4", "ABOUT/test/ABOUT_00002.mp4",
            "WORLD/train/WORLD_00010.mp4"],
    "folder": ["train/alice/a1.mp4", "train/alice/a2.mov", "dev/bob/b1.mp4", "carol.mp4"],
}


def _touch(root, rels):
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_auto_detects_each_layout(tmp_path, layout):
    _touch(tmp_path, LAYOUT_FILES[layout])
    used, clips = discover_clips(tmp_path, "auto")
    assert used == layout
    assert [c.rel for c in clips] == sorted(LAYOUT_FILES[layout])


def test_speakers_and_dataset_splits_per_layout(tmp_path):
    expect = {
        "voxceleb2": {"dev/mp4/id00012/abcDEF123/00001": ("id00012", "train"),
                      "test/mp4/id00500/zz/00001": ("id00500", "test")},
        "lrs3": {"pretrain/0af00UcTOSc/00001": ("0af00UcTOSc", "train"),
                 "test/0Fi83BHQsMA/00002": ("0Fi83BHQsMA", "test")},
        "lrw": {"ABOUT/val/ABOUT_00001": ("lrw-ABOUT_00001", "val"),
                "WORLD/train/WORLD_00010": ("lrw-WORLD_00010", "train")},
        "folder": {"train/alice/a2": ("alice", "train"), "dev/bob/b1": ("bob", "val"),
                   "carol": ("carol", None)},
    }
    for layout, wanted in expect.items():
        root = tmp_path / layout
        _touch(root, LAYOUT_FILES[layout])
        _, clips = discover_clips(root, layout)
        got = {c.clip_id: (c.speaker, c.split) for c in clips}
        for clip_id, value in wanted.items():
            assert got[clip_id] == value, (layout, clip_id)


def test_named_layout_that_does_not_fit_is_an_input_error(tmp_path):
    _touch(tmp_path, ["some/where/clip.mp4"])
    with pytest.raises(InputError, match="--layout folder"):
        discover_clips(tmp_path, "voxceleb2")


def test_empty_or_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no video files"):
        discover_clips(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        discover_clips(tmp_path / "nope")


def test_detect_layout_falls_back_to_folder_on_mixed_trees():
    assert detect_layout(["dev/mp4/id00012/a/00001.mp4", "other/x.mp4"]) == "folder"
    assert detect_layout([]) == "folder"


def _speaker_sides(clips):
    sides = defaultdict(set)
    for c in clips:
        sides[c.speaker].add(c.split)
    return sides


def _clip(speaker, split, n):
    rel = f"{speaker}/{n}.mp4"
    return ClipSource(path=None, rel=rel, clip_id=rel[:-4], speaker=speaker, split=split)


def test_split_never_puts_a_speaker_on_two_sides():
    clips = [_clip(f"spk{i:02d}", None, j) for i in range(40) for j in range(i % 5 + 1)]
    # a speaker the dataset itself put on two sides (3 x train, 1 x test): majority wins
    clips += [_clip("both", "train", j) for j in range(3)] + [_clip("both", "test", 9)]
    out, info = assign_splits(clips, val_frac=0.1, test_frac=0.1)
    sides = _speaker_sides(out)
    assert all(len(s) == 1 for s in sides.values())
    assert sides["both"] == {"train"} and info["conflicting_speakers"] == ["both"]
    counts = {s: sum(c.split == s for c in out) for s in ("train", "val", "test")}
    assert counts["val"] > 0 and counts["test"] > 0 and counts["train"] > counts["val"] + counts["test"]
    again, _ = assign_splits(list(reversed(clips)), val_frac=0.1, test_frac=0.1)
    assert {c.clip_id: c.split for c in again} == {c.clip_id: c.split for c in out}  # order-free


def test_dataset_split_is_kept_and_val_is_carved_only_when_missing():
    kept, _ = assign_splits([_clip("a", "train", 0), _clip("b", "val", 0), _clip("c", "test", 0)])
    assert [c.split for c in kept] == ["train", "val", "test"]
    no_val = [_clip(f"s{i}", "train", 0) for i in range(20)] + [_clip("t", "test", 0)]
    carved, _ = assign_splits(no_val, val_frac=0.1)
    splits = [c.split for c in carved]
    assert splits.count("val") == 2 and splits.count("test") == 1
    assert all(len(s) == 1 for s in _speaker_sides(carved).values())


def test_manifest_sets_speakers_and_splits(tmp_path):
    _touch(tmp_path, ["train/x/one.mp4", "dev/y/two.mp4", "loose.mp4"])
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("split\tpath\tspeaker\textra\n"
                        "train\tx/one.mp4\tperson-1\tignored\n"
                        "dev\ty/two.mp4\tperson-2\t\n")
    clips = read_manifest(manifest, tmp_path)
    assert [(c.rel, c.speaker, c.split) for c in clips] == [
        ("dev/y/two.mp4", "person-2", "val"), ("train/x/one.mp4", "person-1", "train")]
    used, clips = discover_clips(tmp_path, manifest=manifest)
    assert used == "manifest" and len(clips) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("file,who\na.mp4,me\n")
    with pytest.raises(InputError, match="'path' and 'speaker'"):
        read_manifest(bad, tmp_path)


def test_select_part_is_disjoint_and_covers_everything():
    clips = [_clip(f"s{i}", "train", i) for i in range(23)]
    parts = [select_part(clips, i, 4) for i in range(4)]
    ids = [c.clip_id for p in parts for c in p]
    assert sorted(ids) == sorted(c.clip_id for c in clips) and len(ids) == len(set(ids))
    with pytest.raises(InputError):
        select_part(clips, 4, 4)
