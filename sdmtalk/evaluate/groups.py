"""Groups of dev clips for per-group reporting: an overall mean hides a model that learned
one corpus (GRID-like read speech) and fails on talks, interviews and other languages."""

from __future__ import annotations

import numpy as np

# speaker-id prefix -> group, for the shared dev split; anything else is "other"
GROUP_PREFIXES = (
    ("grid", "read speech"), ("s1", "read speech"),
    ("bbc", "broadcast / lrs2"), ("lrs2", "broadcast / lrs2"), ("lrs3", "broadcast / lrs2"),
    ("ted", "talks"), ("hdtf", "talks"), ("retalk", "talks"), ("ditto", "talks"),
    ("andrew", "talks"),
    ("vox", "interviews / in the wild"), ("liveportrait", "interviews / in the wild"),
    ("restaurant", "interviews / in the wild"), ("multivsr", "interviews / in the wild"),
    ("grw", "interviews / in the wild"),
    ("lrcar", "other languages"), ("mead", "acted"), ("crema", "acted"),
)


def clip_group(speaker: str) -> str:
    """Speaker id (as in the cache / MANIFEST.tsv) -> its report group."""
    name = speaker.lower()
    for prefix, group in GROUP_PREFIXES:
        if name.startswith(prefix):
            return group
    return "other"


def by_group(values: dict[str, float], speakers: dict[str, str]) -> dict[str, float]:
    """{clip: value} + {clip: speaker} -> {group: mean over its clips} (NaNs ignored), plus "all"."""
    groups: dict[str, list[float]] = {}
    for clip, v in values.items():
        if np.isfinite(v):
            groups.setdefault(clip_group(speakers[clip]), []).append(v)
            groups.setdefault("all", []).append(v)
    return {g: float(np.mean(v)) for g, v in sorted(groups.items())}
