"""A CPU-bound process that holds one core for a while: the loaded machine of a real-time
measurement (examples/stream_file.py --competitor, benchmarks/bench_stream.py --competitor,
benchmarks/bench_cancel.py --busy).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Pinned to one core, it spins until its deadline (it ends by itself should its parent die).
_BUSY_LOOP = """
import os, sys, time
if hasattr(os, "sched_setaffinity") and sys.argv[2] != "-1":
    os.sched_setaffinity(0, {int(sys.argv[2])})
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    sum(range(10000))
"""


def competitor_core() -> int:
    """The last core this process may run on (-1: cores cannot be pinned here)."""
    if not hasattr(os, "sched_getaffinity"):
        return -1
    return max(os.sched_getaffinity(0))


@contextmanager
def cpu_competitor(seconds: float, pin: bool = True) -> Iterator[subprocess.Popen]:
    """A busy loop in a subprocess for at most `seconds`, on one core (competitor_core) or,
    pin False, wherever the scheduler puts it; killed when the block ends."""
    core = competitor_core() if pin else -1
    proc = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, f"{float(seconds):g}", str(core)])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
