"""Handing freed heap memory back to the system during long jobs (glibc only; elsewhere a no-op).

glibc keeps the blocks a thread frees in that thread's arena for reuse and returns them only
from the top of the heap. A dub decodes, tracks and renders on three threads with frames of a
few MB each, and what it keeps grows with the video: on 10 min of 720p, mallinfo2 showed the
memory in use flat at ~0.33 GB while the free blocks kept resident grew from 94 to 180 MB
(probes/probe_dub_heap.py). `malloc_trim(0)` returns their pages, but the process runs
10-17 % slower after each call (60 s of 720p: CPU 103-105 s without, 113-122 s with a call
every 10 s), so HeapWatch calls it only when the resident size has grown by SLACK_MB.

Much of what fragmented those heaps was decoding: PyAV's RGB and grey conversions allocate a
frame (2.8 MB for 720p RGB) and start swscale threads (two on 2 cores) for every frame of
both of the dub's readers. BufferPool reuses such arrays instead; the dub decodes into them
(frame_convert.PooledFrames).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

import numpy as np

SLACK_MB = 48  # growth of the resident size above its last level that triggers a release
M_ARENA_MAX = -8  # glibc's mallopt parameter


@functools.cache
def _glibc(name: str):
    """glibc's function `name` in this process, or None where the C library is another."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return None


def limit_heap_arenas(count: int) -> bool:
    """Let the threads created from now on share at most `count` glibc arenas (glibc's default
    is 8 per core), so fewer heaps each keep their own free blocks. True where glibc took it."""
    mallopt = _glibc("mallopt")
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, int(count)))


def release_free_memory() -> None:
    """Return the pages of freed heap blocks to the system."""
    trim = _glibc("malloc_trim")
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
        self.level, self.releases, self.settled = None, 0, False

    def settle(self) -> None:
        """Once, when a stage of the job that grew its threads' heaps has ended (the dub's
        face tracking, which leaves 20-30 MB free in them): release, then watch from there."""
        if not self.settled:
            release_free_memory()
            self.releases, self.settled = self.releases + 1, True
            self.level = resident_mb()

    def check(self) -> None:
        now = resident_mb()
        if self.level is None:
            self.level = now
        elif now > self.level + self.slack_mb:
            release_free_memory()
            self.releases += 1
            self.level = max(self.level, resident_mb())


def _refs(arrays: list, i: int) -> int:
    return sys.getrefcount(arrays[i])


# What _refs counts for an array nothing else refers to (the list's reference and the call's),
# measured rather than assumed: CPython versions count the call's temporaries differently.
_FREE_REFS = _refs([np.empty(0)], 0)


class BufferPool:
    """Arrays of one shape reused from frame to frame, so no frame-sized memory is allocated
    once a loop runs (it would fragment glibc's heaps, see above).

    take(shape) returns an array that nothing else refers to: whoever got it earlier (a queue,
    a view of it, an encoder's frame wrapping it) keeps a reference for as long as it uses it,
    and Python's reference count says when that ended, so there is no release to forget and no
    array is handed out twice while in use. Up to `size` arrays are kept; when all are in use,
    take() gives a new array that is not kept (a consumer holding many frames still works, it
    just allocates). Contents are left over from the last use. One thread calls take(); the
    arrays themselves may travel to other threads. A new shape drops the kept arrays.
    """

    def __init__(self, size: int = 16, dtype=np.uint8):
        if size < 1:
            raise ValueError(f"BufferPool size must be >= 1, got {size}")
        self.size, self.dtype = size, np.dtype(dtype)
        self._shape: tuple[int, ...] | None = None
        self._arrays: list[np.ndarray] = []

    def __len__(self) -> int:
        """Arrays kept for reuse."""
        return len(self._arrays)

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = tuple(shape)
        if shape != self._shape:
            self._shape, self._arrays = shape, []
        for i in range(len(self._arrays)):
            if _refs(self._arrays, i) <= _FREE_REFS:
                return self._arrays[i]
        array = np.empty(shape, self.dtype)
        if len(self._arrays) < self.size:
            self._arrays.append(array)
        return array
