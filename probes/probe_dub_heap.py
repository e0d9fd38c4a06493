"""Is a dub's growing memory live data or freed blocks glibc keeps? The heap over time.

    python probes/probe_dub_heap.py --video V --audio A [--release watch|always|never] [--every S]

Dubs in this process (as `sdmtalk dub` does) and prints every S seconds (default 10) the
resident memory and glibc's mallinfo2: heap size, bytes in use, free bytes kept in the heap,
and when each segment of a long speech's motion (dub.speech_motion) starts and ends. --release: as
shipped (watch: malloc_trim when the resident size grew by sdmtalk.memory.SLACK_MB), at
every look (always, every dubber.WATCH_EVERY frames) or never, to see what the calls save
and cost (their own time, the process's CPU time and page faults). glibc only. Feeds
docs/RESULTS.md, Dubbing (memory).
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import tempfile
import threading
import time
from pathlib import Path

from sdmtalk import memory
from sdmtalk.dub.speech_motion import SpeechMotion
from sdmtalk.pipeline import TalkingFacePipeline


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def report(stop: threading.Event, t0: float, every: float) -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    while not stop.wait(every):
        m = libc.mallinfo2()
        print(f"{time.time() - t0:7.1f} s  resident {memory.resident_mb():.0f} MB  heap {m.arena >> 20} MB  in use "
              f"{m.uordblks >> 20} MB  free in heap {m.fordblks >> 20} MB", flush=True)


def log_segments(t0: float) -> None:
    """Print when each segment of the speech's motion is made (its memory lands on the render's)."""
    make = SpeechMotion._make

    def logged(self, k: int, stop):
        print(f"{time.time() - t0:7.1f} s  speech segment {k} starts", flush=True)
        try:
            return make(self, k, stop)
        finally:
            print(f"{time.time() - t0:7.1f} s  speech segment {k} ends", flush=True)

    SpeechMotion._make = logged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--release", choices=["watch", "always", "never"], default="watch")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between looks")
    args = ap.parse_args()
    trims = [0, 0.0]  # calls, seconds inside them
    release = memory.release_free_memory

    def timed_release() -> None:
        t = time.perf_counter()
        if args.release != "never":
            release()
        trims[0] += 1
        trims[1] += time.perf_counter() - t

    memory.release_free_memory = timed_release
    if args.release == "always":
        memory.SLACK_MB = float("-inf")
    pipe = TalkingFacePipeline(quiet=True, threads=2, blink=False)
    stop, t0 = threading.Event(), time.time()
    log_segments(t0)
    threading.Thread(target=report, args=(stop, t0, args.every), daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        pipe.dub(args.video, args.audio, Path(tmp) / "dub.mp4")
    stop.set()
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(f"wall {time.time() - t0:.1f} s, cpu {use.ru_utime + use.ru_stime:.1f} s (system {use.ru_stime:.1f}), "
          f"minor page faults {use.ru_minflt}, peak resident {use.ru_maxrss >> 10} MB; "
          f"{trims[0]} releases{' (skipped)' if args.release == 'never' else ''} took {trims[1]:.3f} s")


if __name__ == "__main__":
    main()
