"""Seconds (wall) and core-seconds per stage of a whole `sdmtalk generate` process, its peak
memory, and the start-up costs (prints numbers).

    python benchmarks/bench_generate.py                        # start-up, then 10 s, 60 s, 10 min
    python benchmarks/bench_generate.py --lengths 10,60        # a quicker run
    python benchmarks/bench_generate.py --lengths 10 --threads 2 --no-startup
    python benchmarks/bench_generate.py --in-process --threads 1 --seconds 10

Start-up: `sdmtalk generate --help` and `generate` of 1 s of speech, whole process, best of 5.
Then, per speech length (the bundled espeak speech repeated) and per --threads value, one
child process runs the real CLI (sdmtalk.cli.main) with a checkpoint at each stage:
python (interpreter start), import (the modules generate loads: torch, OpenCV, dlib, ...),
model (checks, motion model), face_features (photo, face and 68 points beside the speech
features), motion, render_encode, finish (messages, temp files) and exit (interpreter
teardown). Each stage shows wall seconds / core-seconds (user + system of every thread, from
getrusage); peak RSS is the child's (wait4). The machine's load average is printed: the
numbers mean little on busy cores.

--in-process is the older in-process mode: each stage's seconds at 256 and 512 px after a
warm-up (feeds docs/RESULTS.md, "Speed and memory", e.g. --in-process --threads 1 --seconds 10).

This file is also the child (--child): its top level imports only the standard library so
that the child loads exactly what `sdmtalk generate` loads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ["python", "import", "model", "face_features", "motion", "render_encode", "finish", "exit"]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- the child: the real CLI with a checkpoint at the end of each stage -----------------------

def child(out_json: str, argv: list[str]) -> int:
    marks = [("python", time.time(), _cpu())]
    mark = lambda stage: marks.append((stage, time.time(), _cpu()))  # noqa: E731
    from sdmtalk.cli import COMMANDS, load, main

    load(COMMANDS["generate"].run)  # what `generate` loads (main finds it loaded)
    from sdmtalk.pipeline import TalkingFacePipeline as P

    mark("import")
    _after(P, "__init__", lambda: mark("model"))
    _before_after(P, "landmarks_for", lambda: mark("face_features"), lambda: mark("motion"))
    _after(P, "_render_encode", lambda: mark("render_encode"))
    code = main(argv)
    mark("finish")
    Path(out_json).write_text(json.dumps({"code": code, "marks": marks}))
    return code


def _after(cls, name, then):
    _before_after(cls, name, lambda: None, then)


def _before_after(cls, name, first, then):
    original = getattr(cls, name)

    def wrapped(*args, **kwargs):
        first()
        out = original(*args, **kwargs)
        then()
        return out

    setattr(cls, name, wrapped)


# --- the parent -------------------------------------------------------------------------------

def sdmtalk_command() -> list[str]:
    exe = shutil.which("sdmtalk", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "sdmtalk"]


def wall_of(cmd: list[str], env=None) -> tuple[float, int]:
    """(wall seconds, exit code) of a whole process."""
    t0 = time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env).returncode
    return time.perf_counter() - t0, code


def staged_run(gen_args: list[str], env=None) -> dict:
    """One `generate` in a child process -> {"stages": {stage: (wall, core-s)}, "wall", "cpu", "rss_mb"}."""
    with tempfile.TemporaryDirectory() as tmp:
        out_json = Path(tmp) / "marks.json"
        cmd = [sys.executable, __file__, "--child", str(out_json), "--", "generate", *gen_args]
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        t_end = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not out_json.exists():
            raise RuntimeError(f"generate failed ({proc.returncode}): {err.decode()[-2000:]}")
        marks = json.loads(out_json.read_text())["marks"]
    cpu_total = usage.ru_utime + usage.ru_stime
    stages, t_prev, c_prev = {}, t0, 0.0
    for stage, t, c in [*marks, ("exit", t_end, cpu_total)]:
        stages[stage] = (t - t_prev, c - c_prev)
        t_prev, c_prev = t, c
    return {"stages": stages, "wall": t_end - t0, "cpu": cpu_total, "rss_mb": usage.ru_maxrss / 1024}


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def row(label: str, run: dict) -> str:
    cells = "  ".join(f"{s} {run['stages'][s][0]:.2f}/{run['stages'][s][1]:.2f}" for s in STAGES)
    return (f"{label}: total {run['wall']:.2f} s / {run['cpu']:.2f} core-s, peak RSS {run['rss_mb']:.0f} MB\n"
            f"    {cells}")


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall"])


def startup(photo: Path, wav_1s: Path, out: Path, repeats: int) -> None:
    base = sdmtalk_command()
    helps = [wall_of([*base, "generate", "--help"]) for _ in range(repeats)]
    assert all(code == 0 for _, code in helps), "generate --help failed"
    print(f"generate --help, whole process: best {min(w for w, _ in helps):.3f} s "
          f"(of {repeats}: {' '.join(f'{w:.2f}' for w, _ in helps)})")
    args = ["--image", str(photo), "--audio", str(wav_1s), "-o", str(out), "-q"]
    plain = [wall_of([*base, "generate", *args]) for _ in range(repeats)]
    assert all(code == 0 for _, code in plain), "generate failed"
    print(f"generate of 1 s of speech, whole process: best {min(w for w, _ in plain):.2f} s "
          f"(of {repeats}: {' '.join(f'{w:.2f}' for w, _ in plain)})")
    print(row("  its stages (best of the staged runs), wall/core-s",
              best([staged_run(args) for _ in range(repeats)])))


def write_inputs(folder: Path, lengths: list[float]) -> tuple[Path, dict]:
    """The astronaut photo and speech of each length (plus 1 s) as files in folder."""
    import soundfile  # the parent only: the child must load just what generate loads
    from skimage import data
    from skimage.io import imsave

    from sdmtalk import SAMPLE_RATE
    from sdmtalk.evaluate.bench_support import speech_of_length

    photo = folder / "face.png"
    imsave(photo, data.astronaut(), check_contrast=False)
    wavs = {}
    for seconds in sorted({1.0, *lengths}):
        wavs[seconds] = folder / f"speech_{seconds:g}s.wav"
        soundfile.write(wavs[seconds], speech_of_length(seconds), SAMPLE_RATE)
    return photo, wavs


def process_main(args) -> None:
    lengths = [float(x) for x in args.lengths.split(",")]
    print(load_line())
    with tempfile.TemporaryDirectory() as tmp:
        photo, wavs = write_inputs(Path(tmp), lengths)
        out = Path(tmp) / "out.mp4"
        if not args.no_startup:
            startup(photo, wavs[1.0], out, args.repeats_startup)
        for seconds in lengths:
            for threads in args.threads:
                gen = ["--image", str(photo), "--audio", str(wavs[seconds]), "-o", str(out), "-q",
                       "--threads", str(threads), "--motion", args.motion]
                run = best([staged_run(gen) for _ in range(args.repeats)])
                print(row(f"{seconds:g} s of speech, --threads {threads}, wall/core-s per stage", run))
                print(f"    real-time factor {run['wall'] / seconds:.3f}; {load_line()}")


# --- the older in-process mode ----------------------------------------------------------------

def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def in_process_stages(size: int, motion: str, wav, image) -> dict:
    from sdmtalk import FPS
    from sdmtalk.audio import compute_features
    from sdmtalk.face import detect_face, to_canonical
    from sdmtalk.motion.types import MotionControls, apply_motion
    from sdmtalk.pipeline import load_motion_model
    from sdmtalk.render import Renderer, add_blinks
    from sdmtalk.video import write_mp4

    model = load_motion_model(motion)
    face, t_face = timed(lambda: detect_face(image))
    feats, t_feat = timed(lambda: compute_features(wav, phonemes=bool(getattr(model, "needs_phonemes", False))))
    canonical = to_canonical(face.landmarks[None])[0][0]
    mot, t_motion = timed(lambda: model.generate(feats, canonical, MotionControls(seed=0)))
    lms = add_blinks(apply_motion(face.landmarks, mot), seed=0, fps=FPS)
    renderer = Renderer(image, face.landmarks, size=size, crop="face")
    frames, t_render = timed(lambda: list(renderer.render_sequence(lms)))
    with tempfile.TemporaryDirectory() as tmp:
        _, t_encode = timed(lambda: write_mp4(Path(tmp) / "b.mp4", frames, wav, fps=FPS))
    return {"face": t_face, "features": t_feat, "motion": t_motion, "render": t_render, "encode": t_encode}


def in_process_main(args) -> None:
    import torch
    from skimage import data

    from sdmtalk import SAMPLE_RATE
    from sdmtalk.evaluate.bench_support import speech_of_length

    threads = args.threads[0]
    torch.set_num_threads(threads)
    wav = speech_of_length(args.seconds)
    image = data.astronaut()
    in_process_stages(256, args.motion, wav[: SAMPLE_RATE], image)  # warm-up: dlib models, torch
    print(f"motion={args.motion} threads={threads} audio={args.seconds:.1f}s; {load_line()}")
    for size in (256, 512):
        t = in_process_stages(size, args.motion, wav, image)
        total = sum(t.values())
        stages = "  ".join(f"{k} {v:.2f}s" for k, v in t.items())
        print(f"size {size}: {stages}  total {total:.2f}s  real-time factor {total / args.seconds:.2f}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":  # --child OUT_JSON -- generate ARGS
        sys.exit(child(sys.argv[2], sys.argv[4:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="10,60,600", help="seconds of speech, comma-separated")
    ap.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4],
                    help="--threads values, comma-separated (--in-process: the first)")
    ap.add_argument("--motion", default="sdm")
    ap.add_argument("--repeats", type=int, default=1, help="runs per length and thread count (best shown)")
    ap.add_argument("--repeats-startup", type=int, default=5)
    ap.add_argument("--no-startup", action="store_true", help="skip the --help and 1 s measurements")
    ap.add_argument("--in-process", action="store_true", help="the older in-process per-stage mode")
    ap.add_argument("--seconds", type=float, default=10.0, help="--in-process: seconds of speech")
    args = ap.parse_args()
    (in_process_main if args.in_process else process_main)(args)


if __name__ == "__main__":
    main()
