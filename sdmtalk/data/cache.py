"""The training cache: shard writer, index finalisation and the reader.

Format (version ``CACHE_VERSION``; full description in docs/CACHE_FORMAT.md)::

    CACHE_DIR/
      manifest.json          format name, version, constants, settings, parts, counts
      index.jsonl            one ClipRecord per kept clip, sorted by clip_id
      skipped.jsonl          one {clip_id, source, reason, detail} per skipped clip
      shards/
        p000of001-00000.safetensors   arrays "<clip_id>/<name>" of the shard's kept clips
        p000of001-00000.json          commit record of the shard (written last, atomically)

A shard counts only when its ``.json`` commit record exists and the size and sha1 of its
``.safetensors`` file match the record; temp files (``*.tmp``) are never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from sdmtalk import FPS, MEL_PER_FRAME, SAMPLE_RATE
from sdmtalk.errors import InputError

CACHE_FORMAT = "sdmtalk-cache"
CACHE_VERSION = 1
SHARD_DIR = "shards"
# Arrays stored per clip: name -> (dtype on disk, trailing shape). T leads every shape,
# except mel which has MEL_PER_FRAME * T rows.
ARRAYS = {
    "landmarks": ("float32", (68, 2)),
    "canonical": ("float32", (68, 2)),
    "sims": ("float32", (4,)),
    "pose": ("float32", (4,)),
    "delta": ("float32", (68, 2)),
    "mel": ("float32", (80,)),
    "prosody": ("float32", (4,)),
    "energy": ("float32", ()),
    "valid": ("uint8", ()),
    "box": ("float32", (4,)),
    "speech": ("uint8", ()),
}


@dataclass(frozen=True)
class ClipRecord:
    """One kept clip of the cache (a line of index.jsonl).

    ``frames`` = T at ``fps`` (always 25); ``source`` is the path relative to the prepared
    folder; ``sha1`` the checksum of the source file; ``shard`` the shard file stem.
    """

    clip_id: str
    speaker: str
    split: str
    frames: int
    fps: float
    source: str
    sha1: str
    shard: str
    src_fps: float = 0.0
    width: int = 0  # source frame size in pixels
    height: int = 0
    face_size: float = 0.0  # median face box side, source pixels
    valid_frac: float = 0.0
    speech_frac: float = 0.0
    orig_split: str | None = None
    jitter_raw: float | None = None  # landmark_jitter before / after smoothing
    jitter_smooth: float | None = None
    second_face_frac: float = 0.0  # detections holding a second face of comparable size
    max_faces: int = 0  # most faces in one detection frame

    @classmethod
    def from_json(cls, obj: dict) -> ClipRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


@dataclass
class ShardResult:
    """What a finished shard holds: kept clips with their arrays, and skipped clips."""

    part: str
    number: int
    sources: list[str]  # clip ids of every source clip of the chunk, kept or not
    records: list[ClipRecord] = field(default_factory=list)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.part}-{self.number:05d}"


def part_name(index: int, count: int) -> str:
    return f"p{index:03d}of{count:03d}"


def file_sha1(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_shard(cache_dir, shard: ShardResult, settings_key: str, chunks: int,
                code_key: str = "") -> Path:
    """Write a shard's arrays, then its commit record; both through temp names + rename.

    ``chunks``: how many shards the shard's part has in all (to tell when it is complete);
    ``code_key``: fingerprint of the code that made it (a resume redoes other code's shards).
    """
    from safetensors.numpy import save_file

    shard_dir = Path(cache_dir) / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    data_path = shard_dir / f"{shard.name}.safetensors"
    tensors = {}
    for rec in shard.records:
        for name, arr in shard.arrays[rec.clip_id].items():
            tensors[f"{rec.clip_id}/{name}"] = np.ascontiguousarray(arr)
    tmp = data_path.with_name(data_path.name + ".tmp")
    # An empty shard (only skips) gets a marker tensor; one metadata key, because several
    # come out in random order and the bytes of a shard must not depend on the run.
    save_file(tensors or {"__empty__": np.zeros(0, np.uint8)}, str(tmp),
              metadata={"format": f"{CACHE_FORMAT}/{CACHE_VERSION}"})
    os.replace(tmp, data_path)
    commit = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "settings_key": settings_key,
        "code_key": code_key, "shard": shard.name, "part": shard.part, "number": shard.number, "chunks": chunks,
        "sources": shard.sources, "file": data_path.name,
        "file_size": data_path.stat().st_size, "file_sha1": file_sha1(data_path),
        "clips": [asdict(r) for r in shard.records], "skipped": shard.skipped,
    }
    _atomic_write_text(shard_dir / f"{shard.name}.json", json.dumps(commit, indent=1))
    return data_path


def read_commit(cache_dir, name: str, verify: bool = True) -> dict | None:
    """The commit record of shard ``name``, or None if the shard is missing or incomplete."""
    shard_dir = Path(cache_dir) / SHARD_DIR
    path = shard_dir / f"{name}.json"
    if not path.is_file():
        return None
    commit = json.loads(path.read_text(encoding="utf-8"))
    data = shard_dir / commit["file"]
    if not data.is_file() or data.stat().st_size != commit["file_size"]:
        return None
    if verify and file_sha1(data) != commit["file_sha1"]:
        return None
    return commit


def committed_shards(cache_dir) -> list[dict]:
    """Commit records of every shard in the cache (size-checked), in name order."""
    shard_dir = Path(cache_dir) / SHARD_DIR
    out = []
    for path in sorted(shard_dir.glob("*.json")):
        commit = read_commit(cache_dir, path.stem, verify=False)
        if commit is not None:
            out.append(commit)
    return out


def remove_temp_files(cache_dir) -> int:
    """Delete leftovers of a killed run (``*.tmp``); returns how many."""
    n = 0
    for p in (Path(cache_dir) / SHARD_DIR).glob("*.tmp"):
        p.unlink()
        n += 1
    for p in Path(cache_dir).glob("*.tmp"):
        p.unlink()
        n += 1
    return n


def finalize(cache_dir, settings: dict, settings_key: str, parts: dict[str, int] | None = None,
             extra: dict | None = None) -> dict:
    """Write index.jsonl, skipped.jsonl and manifest.json from the committed shards.

    ``parts`` maps part name -> number of shards it must have to be complete; parts known
    from the previous manifest or from commit records are kept. Returns the manifest.
    """
    cache_dir = Path(cache_dir)
    commits = committed_shards(cache_dir)
    records, skipped = [], []
    done: dict[str, int] = {}
    parts = {**_previous_parts(cache_dir), **(parts or {})}
    code_keys: set[str] = set()
    for c in commits:
        parts.setdefault(c["part"], c["chunks"])
        if c["settings_key"] != settings_key:
            raise InputError(f"{cache_dir}: shard {c['shard']} was prepared with other settings; "
                             "use a new --out folder")
        code_keys.add(c.get("code_key", ""))
        records.extend(c["clips"])
        skipped.extend(c["skipped"])
        done[c["part"]] = done.get(c["part"], 0) + 1
    ids = [r["clip_id"] for r in records]
    if len(ids) != len(set(ids)):
        raise InputError(f"{cache_dir}: a clip id occurs in two shards; the inputs overlap")
    records.sort(key=lambda r: r["clip_id"])
    skipped.sort(key=lambda r: r["clip_id"])
    _atomic_write_text(cache_dir / "index.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    _atomic_write_text(cache_dir / "skipped.jsonl", "".join(json.dumps(r) + "\n" for r in skipped))
    manifest = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION,
        "fps": FPS, "sample_rate": SAMPLE_RATE, "mel_per_frame": MEL_PER_FRAME, "landmarks": 68,
        "arrays": {k: {"dtype": d, "shape": ["T" if k != "mel" else f"{MEL_PER_FRAME}T", *s]}
                   for k, (d, s) in ARRAYS.items()},
        "settings": settings, "settings_key": settings_key, "code_keys": sorted(code_keys),
        "parts": {p: {"chunks": n, "committed": done.get(p, 0), "complete": done.get(p, 0) == n}
                  for p, n in sorted(parts.items())},
        # complete: every part has all its shards, all made by the same code
        "complete": bool(parts) and all(done.get(p, 0) == n for p, n in parts.items())
        and len(code_keys) <= 1,
        "counts": _counts(records, skipped),
        **(extra or {}),
    }
    _atomic_write_text(cache_dir / "manifest.json", json.dumps(manifest, indent=1))
    return manifest


def _previous_parts(cache_dir: Path) -> dict[str, int]:
    path = cache_dir / "manifest.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text(encoding="utf-8"))
    return {name: info["chunks"] for name, info in old.get("parts", {}).items()}


def _counts(records: list[dict], skipped: list[dict]) -> dict:
    by_split = {s: sum(1 for r in records if r["split"] == s) for s in ("train", "val", "test")}
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    return {"clips": len(records), "frames": sum(r["frames"] for r in records),
            "speakers": len({r["speaker"] for r in records}), "by_split": by_split,
            "skipped": len(skipped), "skipped_by_reason": dict(sorted(reasons.items()))}


def read_manifest(cache_dir) -> dict:
    path = Path(cache_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(f"{cache_dir}: no manifest.json; prepare it with `sdmtalk prepare SRC --out {cache_dir}`")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != CACHE_FORMAT:
        raise InputError(f"{path}: not an sdmtalk cache; prepare one with `sdmtalk prepare`")
    if manifest.get("version") != CACHE_VERSION:
        raise InputError(f"{path}: cache format version {manifest.get('version')}, this sdmtalk "
                         f"reads version {CACHE_VERSION}; prepare the cache again")
    return manifest


class CacheReader:
    """Read a prepared cache without decoding anything (memory-mapped safetensors shards).

    ``clips(split)`` lists ClipRecords; ``load(record)`` returns float32 arrays
    ``landmarks`` (T,68,2) source pixels, ``canonical`` (T,68,2), ``sims`` (T,4) similarity
    to canonical [log scale, angle, tx, ty], ``pose`` (T,4), ``delta`` (T,68,2), ``mel``
    (4T,80), ``prosody`` (T,4), ``energy`` (T,), ``valid`` (T,) 0/1 (frames where the face
    was found; the others are interpolated), ``box`` (T,4) face box in source pixels,
    ``speech`` (T,) 0/1 voice activity.
    """

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        self.manifest = read_manifest(self.cache_dir)
        lines = (self.cache_dir / "index.jsonl").read_text(encoding="utf-8").splitlines()
        self._records = [ClipRecord.from_json(json.loads(line)) for line in lines if line]
        self._by_id = {r.clip_id: r for r in self._records}
        self._handles: dict[str, object] = {}
        self._pid = os.getpid()

    @property
    def complete(self) -> bool:
        """False while some part of a --shard run has not finished."""
        return bool(self.manifest.get("complete"))

    def clips(self, split: str | None = None) -> list[ClipRecord]:
        if split is not None and split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, not {split!r}")
        return [r for r in self._records if split is None or r.split == split]

    def speakers(self, split: str | None = None) -> list[str]:
        return sorted({r.speaker for r in self.clips(split)})

    def record(self, clip_id: str) -> ClipRecord:
        return self._by_id[clip_id]

    def skipped(self) -> list[dict]:
        path = self.cache_dir / "skipped.jsonl"
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]

    def _handle(self, shard: str):
        from safetensors import safe_open

        if self._pid != os.getpid():  # a DataLoader worker: do not share the parent's mmaps
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            path = self.cache_dir / SHARD_DIR / f"{shard}.safetensors"
            self._handles[shard] = safe_open(str(path), framework="numpy")
        return self._handles[shard]

    def load(self, record: ClipRecord | str) -> dict[str, np.ndarray]:
        if isinstance(record, str):
            record = self._by_id[record]
        h = self._handle(record.shard)
        return {name: h.get_tensor(f"{record.clip_id}/{name}").astype(np.float32, copy=False)
                for name in ARRAYS}


class CacheDataset(torch.utils.data.Dataset):
    """A torch ``Dataset`` over one split: item i is the dict of ``load`` as torch tensors
    plus ``clip_id`` and ``speaker``. No decoding happens here; shards are memory-mapped.
    """

    def __init__(self, cache, split: str = "train"):
        self.reader = cache if isinstance(cache, CacheReader) else CacheReader(cache)
        self.records = self.reader.clips(split)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        item = {k: torch.from_numpy(v) for k, v in self.reader.load(rec).items()}
        item["clip_id"], item["speaker"] = rec.clip_id, rec.speaker
        return item
