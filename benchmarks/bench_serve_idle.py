"""CPU of an idle, unvisited `sdmtalk serve`: % of one core over a window (utime + stime of
all its threads from /proc/PID/stat, Linux), with and without its page. Issue "Real time
under load" (Gradio's queue polled every 1 ms: 7 % of a core; now 50/100 ms: under 1 %).

    python benchmarks/bench_serve_idle.py [--window 30] [--settle 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_percent(extra: list[str], window: float, settle: float) -> tuple[float, str]:
    command = [str(Path(sys.executable).parent / "sdmtalk"), "serve", "--port", "0", *extra]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        banner = proc.stdout.readline().strip()
        time.sleep(settle)  # the app's startup is not idle time
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.terminate()
        proc.wait(60)
    return 100 * (c1 - c0) / (t1 - t0), banner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    for extra in ([], ["--no-page"]):
        percent, banner = idle_percent(extra, args.window, args.settle)
        print(f"{' '.join(extra) or 'with the page':<14} {percent:5.2f} % of a core over {args.window:g} s   ({banner})")


if __name__ == "__main__":
    main()
