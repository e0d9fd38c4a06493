"""Cache format: shard commit protocol, index, reader, torch Dataset, merge (no video here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sdmtalk.data.cache import (
    ARRAYS,
    CACHE_VERSION,
    SHARD_DIR,
    CacheDataset,
    CacheReader,
    ClipRecord,
    ShardResult,
    finalize,
    read_commit,
    remove_temp_files,
    write_shard,
)
from sdmtalk.data.merge import merge_caches
from sdmtalk.errors import InputError

KEY = "test-settings"


def _arrays(t: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, shape) in ARRAYS.items():
        rows = 4 * t if name == "mel" else t
        out[name] = (rng.random((rows, *shape)) * (2 if dtype == "uint8" else 100)).astype(dtype)
    return out


def _shard(part: str, number: int, clips: list[tuple[str, str, str, int]], skipped=()) -> ShardResult:
    shard = ShardResult(part=part, number=number, sources=[c[0] for c in clips] + [s for s in skipped])
    for i, (clip_id, speaker, split, t) in enumerate(clips):
        shard.records.append(ClipRecord(clip_id, speaker, split, t, 25.0, f"{clip_id}.mp4",
                                        "0" * 40, shard.name, width=320, height=240))
        shard.arrays[clip_id] = _arrays(t, seed=hash(clip_id) % 1000 + i)
    shard.skipped = [{"clip_id": s, "source": f"{s}.mp4", "reason": "no_face", "detail": "x"} for s in skipped]
    return shard


def _cache(tmp_path, name="c", part="p000of001"):
    root = tmp_path / name
    write_shard(root, _shard(part, 0, [("a/1", "a", "train", 30), ("b/1", "b", "val", 12)], ["z/9"]), KEY, chunks=2)
    write_shard(root, _shard(part, 1, [("c/1", "c", "test", 7), ("a/2", "a", "train", 40)]), KEY, chunks=2)
    finalize(root, {"k": 1}, KEY)
    return root


def test_reader_round_trip_shapes_and_dtypes(tmp_path):
    root = _cache(tmp_path)
    reader = CacheReader(root)
    assert reader.complete and reader.manifest["version"] == CACHE_VERSION
    assert [r.clip_id for r in reader.clips()] == ["a/1", "a/2", "b/1", "c/1"]
    assert [r.clip_id for r in reader.clips("train")] == ["a/1", "a/2"]
    assert reader.speakers("train") == ["a"] and reader.speakers() == ["a", "b", "c"]
    rec = reader.record("a/2")
    assert (rec.frames, rec.shard, rec.width, rec.height) == (40, "p000of001-00001", 320, 240)
    data = reader.load(rec)
    expected = _arrays(40, seed=hash("a/2") % 1000 + 1)
    assert set(data) == set(ARRAYS)
    for name, arr in data.items():
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, expected[name].astype(np.float32))
    assert data["mel"].shape == (160, 80) and data["landmarks"].shape == (40, 68, 2)
    assert [s["reason"] for s in reader.skipped()] == ["no_face"]
    with pytest.raises(ValueError):
        reader.clips("dev")


def test_torch_dataset_reads_tensors(tmp_path):
    ds = CacheDataset(_cache(tmp_path), "train")
    assert len(ds) == 2
    item = ds[1]
    assert item["clip_id"] == "a/2" and item["delta"].shape == (40, 68, 2)
    assert item["pose"].dtype == torch.float32
    batch = next(iter(torch.utils.data.DataLoader(CacheDataset(ds.reader, "test"), batch_size=1)))
    assert batch["mel"].shape == (1, 28, 80)


def test_partial_or_damaged_shards_are_never_complete(tmp_path):
    root = _cache(tmp_path)
    shards = root / SHARD_DIR
    assert read_commit(root, "p000of001-00000") is not None
    # arrays written but no commit record (killed between the two renames)
    (shards / "p000of001-00001.json").unlink()
    assert read_commit(root, "p000of001-00001") is None
    # truncated arrays
    data = shards / "p000of001-00000.safetensors"
    data.write_bytes(data.read_bytes()[:-10])
    assert read_commit(root, "p000of001-00000") is None
    manifest = finalize(root, {"k": 1}, KEY)
    assert not manifest["complete"] and manifest["counts"]["clips"] == 0
    (shards / "p000of001-00002.safetensors.tmp").write_bytes(b"half")
    assert remove_temp_files(root) == 1


def test_same_bytes_for_same_content(tmp_path):
    a, b = _cache(tmp_path, "a"), _cache(tmp_path, "b")
    for name in ("p000of001-00000.safetensors", "p000of001-00001.safetensors"):
        assert (a / SHARD_DIR / name).read_bytes() == (b / SHARD_DIR / name).read_bytes()
    assert (a / "index.jsonl").read_text() == (b / "index.jsonl").read_text()


def test_version_and_missing_cache_errors(tmp_path):
    with pytest.raises(InputError, match="sdmtalk prepare"):
        CacheReader(tmp_path)
    root = _cache(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["version"] = CACHE_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="version"):
        CacheReader(root)


def test_merge_joins_parts_and_rejects_other_settings(tmp_path):
    p0, p1 = tmp_path / "p0", tmp_path / "p1"
    write_shard(p0, _shard("p000of002", 0, [("a/1", "a", "train", 5)]), KEY, chunks=1)
    finalize(p0, {"k": 1}, KEY)
    write_shard(p1, _shard("p001of002", 0, [("b/1", "b", "val", 6)], ["c/1"]), KEY, chunks=1)
    finalize(p1, {"k": 1}, KEY)
    manifest = merge_caches(tmp_path / "all", [p0, p1])
    assert manifest["complete"] and set(manifest["parts"]) == {"p000of002", "p001of002"}
    reader = CacheReader(tmp_path / "all")
    assert [r.clip_id for r in reader.clips()] == ["a/1", "b/1"]
    np.testing.assert_array_equal(reader.load("b/1")["mel"], CacheReader(p1).load("b/1")["mel"])
    assert len(reader.skipped()) == 1
    # merging into one of the inputs works too
    merge_caches(p0, [p0, p1])
    assert len(CacheReader(p0).clips()) == 2
    other = tmp_path / "other"
    write_shard(other, _shard("p000of001", 0, [("d/1", "d", "train", 5)]), "other-key", chunks=1)
    finalize(other, {"k": 2}, "other-key")
    with pytest.raises(InputError, match="different settings"):
        merge_caches(tmp_path / "bad", [p0, other])


def test_overlapping_inputs_are_an_error(tmp_path):
    p0, p1 = tmp_path / "p0", tmp_path / "p1"
    for root, part in ((p0, "p000of002"), (p1, "p001of002")):
        write_shard(root, _shard(part, 0, [("a/1", "a", "train", 5)]), KEY, chunks=1)
        finalize(root, {"k": 1}, KEY)
    with pytest.raises(InputError, match="two shards"):
        merge_caches(tmp_path / "all", [p0, p1])
