"""Dataset layouts: find the clips under a folder, their speaker and their split.

Supported layouts (paths relative to the source folder):

- ``voxceleb2``: ``<split>/mp4/idNNNNN/<youtube id>/NNNNN.mp4``; speaker = ``idNNNNN``;
  split ``dev`` -> train, ``test`` -> test.
- ``lrs3``: ``pretrain|trainval|test/<video id>/NNNNN.mp4``; speaker = video id (LRS3 has no
  person ids; one video is one speaker); pretrain and trainval -> train.
- ``lrw``: ``WORD/train|val|test/WORD_NNNNN.mp4``. LRW has no speaker labels, so each clip is
  its own speaker unless a manifest says otherwise; LRW's split is kept.
- ``folder``: any videos, recursively. A top-level ``train|dev|val|valid|test`` folder is the
  split (dev -> val) and the next folder is the speaker; otherwise the top-level folder is
  the speaker and the split is assigned by speaker.

A manifest (TSV or CSV with a header holding at least ``path`` and ``speaker``, optionally
``split``) overrides speakers and splits and restricts the clips to the listed ones.

Speaker-disjoint splits: every speaker ends up in exactly one of train/val/test. Speakers
whose clips carry a dataset split keep it (majority vote if the dataset contradicts itself);
the others are assigned deterministically by a hash of the speaker id.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from sdmtalk.errors import InputError

LAYOUTS = ("auto", "voxceleb2", "lrs3", "lrw", "folder")
SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".m4v"}

# Dataset split names -> our three splits.
SPLIT_ALIASES = {
    "train": "train", "pretrain": "train", "trainval": "train",
    "dev": "val", "val": "val", "valid": "val", "validation": "val",
    "test": "test",
}

_PATTERNS = {
    "voxceleb2": re.compile(r"^(?P<split>[^/]+)/mp4/(?P<speaker>id\d+)/[^/]+/\d+\.mp4$"),
    "lrs3": re.compile(r"^(?P<split>pretrain|trainval|test)/(?P<speaker>[^/]+)/\d+\.mp4$"),
    "lrw": re.compile(r"^(?P<word>[A-Z0-9]+)/(?P<split>train|val|test)/(?P=word)_\d+\.mp4$"),
}


@dataclass(frozen=True)
class ClipSource:
    """One source video: ``rel`` is its path relative to the source folder (posix)."""

    path: Path
    rel: str
    clip_id: str
    speaker: str
    split: str | None  # train/val/test once assigned; None = let the speaker hash decide
    orig_split: str | None = None  # the dataset's own split name, for the record


def list_videos(src_dir: Path) -> list[str]:
    """All video files under src_dir (recursive), as sorted posix paths relative to it."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise InputError(f"{src_dir}: not a folder; pass the folder that holds the videos")
    rels = [
        p.relative_to(src_dir).as_posix()
        for p in src_dir.rglob("*")
        if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
    ]
    return sorted(rels)


def detect_layout(rels: list[str]) -> str:
    """The first named layout that every video path matches, else ``folder``."""
    if rels:
        for name in ("voxceleb2", "lrs3", "lrw"):
            if all(_PATTERNS[name].match(r) for r in rels):
                return name
    return "folder"


def clip_id_for(rel: str) -> str:
    """Stable clip id: the relative path without its extension (unique by construction)."""
    return rel.rsplit(".", 1)[0]


def _parse(rel: str, layout: str) -> tuple[str, str | None]:
    """(speaker, dataset split name or None) of one path under ``layout``."""
    parts = rel.split("/")
    if layout in _PATTERNS:
        m = _PATTERNS[layout].match(rel)
        if m is None:
            raise InputError(f"{rel}: does not follow the {layout} layout; use --layout folder")
        if layout == "lrw":
            return "lrw-" + Path(rel).stem, m["split"]
        split = m["split"]
        if layout == "voxceleb2":
            split = {"dev": "train"}.get(split, split)  # VoxCeleb2 "dev" is its training set
        return m["speaker"], split
    if parts[0].lower() in SPLIT_ALIASES and len(parts) >= 2:
        speaker = parts[1] if len(parts) >= 3 else Path(parts[1]).stem
        return speaker, parts[0].lower()
    return (parts[0] if len(parts) >= 2 else Path(parts[0]).stem), None


def discover_clips(src_dir, layout: str = "auto", manifest=None) -> tuple[str, list[ClipSource]]:
    """Find the clips of ``src_dir``: returns (layout used, clips in a stable order).

    Splits are not yet speaker-disjoint; pass the result to :func:`assign_splits`.
    """
    src_dir = Path(src_dir).resolve()
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    if manifest is not None:
        return "manifest", read_manifest(manifest, src_dir)
    rels = list_videos(src_dir)
    if not rels:
        raise InputError(f"{src_dir}: no video files found; pass a folder of .mp4/.avi/.mov/... files")
    if layout == "auto":
        layout = detect_layout(rels)
    clips = []
    for rel in rels:
        speaker, split = _parse(rel, layout)
        clips.append(_make(src_dir / rel, rel, speaker, split))
    return layout, clips


def _make(path: Path, rel: str, speaker: str, split: str | None) -> ClipSource:
    mapped = None
    if split is not None:
        mapped = SPLIT_ALIASES.get(split.lower())
        if mapped is None:
            raise InputError(f"{rel}: unknown split {split!r}; use train, dev/val or test")
    return ClipSource(path, rel, clip_id_for(rel), speaker, mapped, split)


def read_manifest(manifest, src_dir: Path) -> list[ClipSource]:
    """Clips listed in a TSV/CSV manifest with columns ``path``, ``speaker`` [, ``split``].

    ``path`` is relative to ``src_dir`` or to ``src_dir/<split>`` (as in shared/data).
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(f"{manifest}: manifest not found; pass a TSV/CSV with path and speaker columns")
    text = manifest.read_text(encoding="utf-8")
    dialect = "excel-tab" if "\t" in text.splitlines()[0] else "excel"
    rows = list(csv.DictReader(text.splitlines(), dialect=dialect))
    if not rows or not {"path", "speaker"} <= set(rows[0]):
        raise InputError(f"{manifest}: needs a header with 'path' and 'speaker' columns (and 'split')")
    clips = []
    for row in rows:
        split = (row.get("split") or "").strip() or None
        candidates = [src_dir / split / row["path"]] if split else []
        candidates.append(src_dir / row["path"])
        path = next((c for c in candidates if c.is_file()), candidates[-1])
        rel = path.relative_to(src_dir).as_posix()
        clips.append(_make(path, rel, row["speaker"].strip(), split))
    return sorted(clips, key=lambda c: c.rel)


def _speaker_hash(speaker: str) -> str:
    return hashlib.sha1(speaker.encode("utf-8")).hexdigest()


def assign_splits(
    clips: list[ClipSource], val_frac: float = 0.05, test_frac: float = 0.05
) -> tuple[list[ClipSource], dict]:
    """Give every clip a split so that no speaker is on two sides.

    Speakers with a dataset split keep it (majority of their clips; ties go to the more
    held-out split). Unlabelled speakers are taken in speaker-hash order into test, then
    val, until each holds its fraction of the unlabelled clips (at least one speaker each
    when there are three or more); the rest are train. If the dataset has a train split but
    no val split (VoxCeleb2, LRS3), val is carved the same way out of the train speakers.
    Returns (clips with split set, info dict with counts and conflicts).
    """
    by_speaker: dict[str, list[ClipSource]] = defaultdict(list)
    for c in clips:
        by_speaker[c.speaker].append(c)
    rank = {"test": 2, "val": 1, "train": 0}
    chosen: dict[str, str] = {}
    conflicts = []
    for spk, cs in by_speaker.items():
        votes = Counter(c.split for c in cs if c.split is not None)
        if votes:
            chosen[spk] = max(votes, key=lambda s: (votes[s], rank[s]))
            if len(votes) > 1:
                conflicts.append(spk)
    free = sorted((s for s in by_speaker if s not in chosen), key=_speaker_hash)
    quotas = {"test": test_frac, "val": val_frac}
    has_val = "val" in chosen.values()
    if chosen and not has_val and "train" in chosen.values():
        carve = sorted((s for s in chosen if chosen[s] == "train"), key=_speaker_hash)
        chosen.update(_take_quota(carve, by_speaker, {"val": val_frac}))
    chosen.update(_take_quota(free, by_speaker, quotas))
    out = [replace(c, split=chosen[c.speaker]) for c in clips]
    info = {"conflicting_speakers": conflicts, "speakers": dict(Counter(chosen.values()))}
    return out, info


def _take_quota(speakers: list[str], by_speaker: dict, quotas: dict[str, float]) -> dict[str, str]:
    """Assign speakers (already in hash order) to held-out splits by clip fraction, rest train."""
    total = sum(len(by_speaker[s]) for s in speakers)
    out, i = {}, 0
    for split, frac in quotas.items():
        taken = 0
        min_one = len(speakers) >= 1 + len(quotas) and frac > 0
        while i < len(speakers) - 1 and (taken < frac * total or (min_one and taken == 0)):
            out[speakers[i]] = split
            taken += len(by_speaker[speakers[i]])
            i += 1
    for s in speakers[i:]:
        out[s] = "train"
    return out


def select_part(clips: list[ClipSource], index: int, count: int) -> list[ClipSource]:
    """The clips of machine ``index`` out of ``count`` (``--shard I/N``): every N-th clip."""
    if not 0 <= index < count:
        raise InputError(f"--shard {index}/{count}: need 0 <= I < N")
    return clips[index::count]
