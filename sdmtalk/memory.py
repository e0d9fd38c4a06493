"""Handing freed heap memory back to the system during long jobs (glibc only; elsewhere a no-op).

glibc keeps the blocks a thread frees in that thread's arena for reuse and returns them only
from the top of the heap. A dub decodes, tracks and renders on three threads with frames of a
few MB each, and what it keeps grows with the video: on 10 min of 720p, mallinfo2 showed the
memory in use flat at ~0.33 GB while the free blocks kept resident grew from 94 to 180 MB
(probes/probe_dub_heap.py). `malloc_trim(0)` returns their pages, but the process runs
10-17 % slower after each call (60 s of 720p: CPU 103-105 s without, 113-122 s with a call
every 10 s), so HeapWatch calls it only when the resident size has grown by SLACK_MB.
"""

from __future__ import annotations

import ctypes
import functools
import os

SLACK_MB = 48  # growth of the resident size above its last level that triggers a release


@functools.cache
def _trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None


def release_free_memory() -> None:
    """Return the pages of freed heap blocks to the system."""
    trim = _trim()
    if trim is not None:
        trim(0)


def resident_mb() -> float:
    """This process's resident size (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class HeapWatch:
    """check() now and then in a long loop: releases freed memory when the resident size is
    SLACK_MB above the level of the first check (or of the last release), so a job whose
    memory does not grow never pays for a release."""

    def __init__(self, slack_mb: float | None = None):
        self.slack_mb = SLACK_MB if slack_mb is None else slack_mb
        self.level, self.releases = None, 0

    def check(self) -> None:
        now = resident_mb()
        if self.level is None:
            self.level = now
        elif now > self.level + self.slack_mb:
            release_free_memory()
            self.releases += 1
            self.level = max(self.level, resident_mb())
