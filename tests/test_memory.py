"""memory.BufferPool: frame-sized arrays reused once nothing refers to them."""

from __future__ import annotations

import platform
from collections import deque

import numpy as np
import pytest

from sdmtalk.memory import BufferPool, limit_heap_arenas
from sdmtalk.threads import in_background


def test_pool_reuses_an_array_once_nothing_refers_to_it():
    pool = BufferPool(size=4)
    first = pool.take((4, 6, 3))
    first_id = id(first)
    del first
    again = pool.take((4, 6, 3))
    assert id(again) == first_id and len(pool) == 1
    view = again[:2]  # a view keeps its base in use
    del again
    other = pool.take((4, 6, 3))
    assert not np.shares_memory(other, view) and len(pool) == 2


def test_pool_never_hands_out_an_array_in_use():
    pool = BufferPool(size=3)
    held = [pool.take((2, 2)) for _ in range(5)]  # 3 kept, 2 past the size: new and not kept
    assert len({id(a) for a in held}) == 5 and len(pool) == 3
    for a, value in zip(held, range(5), strict=True):
        a[:] = value
    more = pool.take((2, 2))
    assert all(not np.shares_memory(more, a) for a in held)
    assert [int(a[0, 0]) for a in held] == [0, 1, 2, 3, 4]


def test_pool_starts_over_for_a_new_shape():
    pool = BufferPool(size=2)
    pool.take((2, 2))
    assert pool.take((3, 3)).shape == (3, 3) and len(pool) == 1


def test_frames_passed_to_another_thread_are_not_overwritten_while_held():
    """The render thread fills pooled frames and queues them; the caller keeps the last few.
    Were an array handed out again while the caller or the queue held it, a held frame would
    change under it."""
    pool = BufferPool(size=6)

    def produce():
        for k in range(200):
            frame = pool.take((8, 8))
            frame[:] = k % 256
            yield frame

    kept: deque = deque(maxlen=4)
    for k, frame in enumerate(in_background(produce(), maxsize=3)):
        kept.append((k, frame))
        assert all(int(f[0, 0]) == j % 256 and (f == f[0, 0]).all() for j, f in kept)
    assert len(pool) <= 6  # the caller's 4, the queue's 3, the one being filled: past 6, new arrays


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_heap_arenas_are_limited_where_glibc_runs():
    assert limit_heap_arenas(2) is True
