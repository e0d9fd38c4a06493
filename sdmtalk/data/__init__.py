"""Data stage: dataset layouts, `sdmtalk prepare` (videos -> cache), the cache format and
its reader (docs/CACHE_FORMAT.md). Names load lazily: reading a cache never imports the
video, face or audio stages."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CacheReader": "sdmtalk.data.cache",
    "CacheDataset": "sdmtalk.data.cache",
    "ClipRecord": "sdmtalk.data.cache",
    "CACHE_VERSION": "sdmtalk.data.cache",
    "merge_caches": "sdmtalk.data.merge",
    "prepare_dataset": "sdmtalk.data.prepare",
    "PrepareConfig": "sdmtalk.data.prepare",
    "PrepareSummary": "sdmtalk.data.prepare",
    "discover_clips": "sdmtalk.data.layouts",
    "assign_splits": "sdmtalk.data.layouts",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sdmtalk.data' has no attribute {name!r}")
