"""Ctrl-C at several moments of `sdmtalk generate` on N s of speech: seconds from the SIGINT
to the exit of the process, its exit code, the stage its progress bars showed (read on a
pseudo-terminal) and whether the output folder is left empty. Feeds docs/RESULTS.md,
Robustness.

    python benchmarks/bench_cancel.py [--seconds 60] [--at 1 4 8 12 16 20 25 30] [--busy 1] [--threads 1]

--busy N runs N CPU-bound competitors (sdmtalk.evaluate.competitor, not pinned to a core)
beside it, as a loaded machine.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.evaluate.bench_support import speech_of_length
from sdmtalk.evaluate.competitor import cpu_competitor

STAGE = re.compile(r"([a-z][a-z0-9 ._]*?):\s+\d+%")
EXTRA: list[str] = []  # more `generate` options (--threads N)


def inputs(folder: Path, seconds: float) -> tuple[Path, Path]:
    photo, speech = folder / "face.png", folder / f"speech{seconds:g}.wav"
    Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR).save(photo)
    sf.write(speech, speech_of_length(seconds), SAMPLE_RATE)
    return photo, speech


def stop_at(delay: float, photo: Path, speech: Path, folder: Path) -> str:
    """One run, SIGINT after `delay` s -> a line of the table."""
    out = Path(tempfile.mkdtemp(dir=folder))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm needs a width
    command = [str(Path(sys.executable).parent / "sdmtalk"), "generate", *EXTRA, "--image", str(photo),
               "--audio", str(speech), "-o", str(out / "out.mp4")]
    proc = subprocess.Popen(command, stderr=slave, stdout=subprocess.DEVNULL)
    os.close(slave)
    text: list[str] = []
    reader = threading.Thread(target=_read, args=(master, text), daemon=True)
    reader.start()
    time.sleep(delay)
    if proc.poll() is not None:
        return f"{delay:6.1f}  finished before the signal"
    stages = STAGE.findall("".join(text))
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait()
    seconds = time.monotonic() - t0
    reader.join(5)
    said = [line.strip() for line in "".join(text).replace("\r", "\n").splitlines() if "stopped" in line]
    return (f"{delay:6.1f}  {stages[-1] if stages else 'starting':<14} {proc.returncode:5d} {seconds:9.2f}  "
            f"{'yes' if not any(out.iterdir()) else 'NO: ' + str(list(out.iterdir()))}  {said[-1] if said else ''}")


def _read(fd: int, text: list[str]) -> None:
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        text.append(chunk.decode(errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--at", type=float, nargs="+", default=[1, 4, 8, 12, 16, 20, 25, 30])
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound competitors beside it")
    parser.add_argument("--threads", type=int, default=None, help="generate --threads N")
    args = parser.parse_args()
    EXTRA.extend(["--threads", str(args.threads)] if args.threads else [])
    folder = Path(tempfile.mkdtemp(prefix="bench-cancel-"))
    photo, speech = inputs(folder, args.seconds)
    with ExitStack() as busy:
        for _ in range(args.busy):  # each ends by itself after an hour at the latest
            busy.enter_context(cpu_competitor(3600, pin=False))
        print(f"{args.seconds:g} s of speech, {args.busy} competitor(s), {os.cpu_count()} cores")
        print("    at  stage          exit  to exit s  output gone  message")
        for delay in args.at:
            print(stop_at(delay, photo, speech, folder), flush=True)


if __name__ == "__main__":
    main()
