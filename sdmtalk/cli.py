"""Command line: argument parsing only; every command calls the library."""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from sdmtalk import __version__
from sdmtalk.assets import demo_inputs
from sdmtalk.audio.speech import MAX_TEXT_CHARS, text_to_wav_file
from sdmtalk.data.offsets import summary_lines
from sdmtalk.data.prepare import add_prepare_arguments, run_prepare
from sdmtalk.errors import InputError, Stopped, one_line
from sdmtalk.evaluate.runner import add_evaluate_arguments, run_evaluate
from sdmtalk.motion.pose_reference import check_pose_reference_motion, with_pose_reference
from sdmtalk.motion.types import SCALE_RANGES, SEED_MAX, MotionControls
from sdmtalk.pipeline import (
    MAX_SAMPLES,
    MOTIONS,
    TalkingFacePipeline,
    validate_dub_request,
    validate_request,
)
from sdmtalk.serve.command import add_serve_arguments, run_serve
from sdmtalk.train.offsets import measure_offsets
from sdmtalk.train.trainer import add_train_arguments, run_train


def _diffusion_steps(value: str):
    if value == "auto":
        return "auto"
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not 'auto' or a whole number") from None
    if k < 0:
        raise argparse.ArgumentTypeError("diffusion steps must be >= 0 (0 = coarse motion only)")
    return k


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    lo, hi = {k: v[0] for k, v in SCALE_RANGES.items()}, {k: v[1] for k, v in SCALE_RANGES.items()}
    io = p.add_argument_group("inputs and output")
    io.add_argument("--image", help="face photo (jpg, png, ...)")
    io.add_argument("--audio", help="speech (wav, mp3, m4a, flac, ogg, or a video file's audio), at least 0.2 s")
    _add_text_argument(io)
    io.add_argument("-o", "--output", help="output video, a name ending in .mp4 (the only format written; "
                    "default: sdmtalk_out.mp4, with --demo sdmtalk_demo.mp4)")
    io.add_argument("--demo", action="store_true", help="use the bundled demo photo and speech")
    io.add_argument("--face-index", type=int, default=None,
                    help="which face when the photo has several (numbered left to right from 0; default: the largest)")
    m = p.add_argument_group("motion")
    m.add_argument("--motion", choices=list(MOTIONS), default="sdm",
                   help="sdm: the trained model; energy: loudness baseline; linear: ridge baseline; static: no motion")
    m.add_argument("--weights", help="SDM weights: RUN_DIR/model.safetensors from `sdmtalk train` (default: bundled)")
    m.add_argument("--seed", type=int, default=0, help=f"seed of the head motion, 0 to {SEED_MAX} (same seed, same video)")
    m.add_argument("--num-samples", type=int, default=1,
                   help=f"N videos with different head motion (seeds seed..seed+N-1), 1 to {MAX_SAMPLES}; "
                        "for N > 1 each is named after -o and its seed: -o out.mp4 --seed 7 writes "
                        "out_seed7.mp4, out_seed8.mp4, ...")
    m.add_argument("--diffusion-steps", type=_diffusion_steps, default="auto",
                   help="shallow diffusion depth: auto (predicted), K, or 0 (coarse motion only)")
    m.add_argument("--pose-scale", type=float, default=1.0,
                   help=f"scale of head pose motion, {lo['pose_scale']:g} to {hi['pose_scale']:g}")
    m.add_argument("--lip-scale", type=float, default=1.0,
                   help=f"scale of lip motion, {lo['lip_scale']:g} to {hi['lip_scale']:g}")
    m.add_argument("--rhythm-scale", type=float, default=1.0,
                   help=f"scale of rhythmic head dynamics, {lo['rhythm_scale']:g} to {hi['rhythm_scale']:g}")
    m.add_argument("--still", action="store_true", help="no head motion (lips and blinks kept)")
    m.add_argument("--pose-reference", metavar="VIDEO",
                   help="move the head as far and as fast as the person in this video (2 s or more of one "
                        "face; the motion itself is sampled for your speech)")
    m.add_argument("--ablation", choices=["no_pose", "no_rhythm", "no_diffusion", "full_diffusion"],
                   help="paper Fig. 3 ablations (for evaluation)")
    m.add_argument("--no-blink", action="store_true", help="do not add eye blinks")
    r = p.add_argument_group("rendering")
    r.add_argument("--size", type=int, choices=[256, 512], default=256, help="face crop size in pixels")
    r.add_argument("--crop", choices=["face", "full"], default="face",
                   help="face: square face crop; full: the whole photo with the face animated")
    r.add_argument("--threads", type=int, default=None,
                   help="cores for rendering + encoding, 1 to 64 (default: up to 2; motion always uses 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes (warnings stay)")


def run_generate(args: argparse.Namespace) -> int:
    # The controls first: they cost nothing and a typo should not wait for a model to load.
    controls = MotionControls(
        seed=args.seed, pose_scale=args.pose_scale, lip_scale=args.lip_scale,
        rhythm_scale=args.rhythm_scale, still=args.still,
        diffusion_steps=args.diffusion_steps, ablation=args.ablation,
    )
    if args.pose_reference:
        check_pose_reference_motion(args.motion)
    if not args.demo and (not args.image or not (args.audio or args.text is not None)):
        raise InputError("generate needs --image PHOTO and --audio SPEECH or --text WORDS (or --demo)")
    with tempfile.TemporaryDirectory() as tmp:
        image, audio = (Path(args.image) if args.image else None), _speech_path(args, Path(tmp))
        if args.demo:
            demo_image, demo_audio = demo_inputs(Path(tmp))
            image, audio = image or demo_image, audio or demo_audio
        out = Path(args.output or ("sdmtalk_demo.mp4" if args.demo else "sdmtalk_out.mp4"))
        validate_request(image, audio, out, controls, args.num_samples, args.face_index)
        if args.pose_reference:  # after the cheap checks: tracking a video takes seconds
            controls = with_pose_reference(controls, args.pose_reference, quiet=args.quiet)
        pipe = TalkingFacePipeline(motion=args.motion, weights=args.weights, size=args.size, crop=args.crop,
                                   blink=not args.no_blink, quiet=args.quiet, threads=args.threads)
        results = pipe.generate(image, audio, out, controls, args.num_samples, args.face_index)
    for res in results:
        if not args.quiet:
            ks = f", diffusion k={sorted(set(res.predicted_k))}" if res.predicted_k else ""
            secs = res.num_frames / 25
            spent = sum(res.timings.values())
            print(f"wrote {res.path} ({secs:.1f} s video, seed {res.seed}, {spent:.1f} s to make{ks})")
    return 0


def _add_text_argument(group) -> None:
    group.add_argument("--text", metavar="WORDS", help="words to speak instead of --audio, by the bundled espeak-ng "
                       f"voice (English; at most {MAX_TEXT_CHARS} characters)")


def _speech_path(args: argparse.Namespace, tmp: Path) -> Path | None:
    """--audio, or --text spoken into a wav in tmp (one of them; None when neither)."""
    if args.audio and args.text is not None:
        raise InputError("both --audio and --text: give one of them")
    if args.text is not None:
        return text_to_wav_file(args.text, tmp)
    return Path(args.audio) if args.audio else None


def add_dub_arguments(p: argparse.ArgumentParser) -> None:
    io = p.add_argument_group("inputs and output")
    io.add_argument("--video", required=True, help="the video to dub: one person talking (mp4, mov, mkv, webm)")
    io.add_argument("--audio", help="the new speech (wav, mp3, m4a, flac, ogg, or a video file's audio)")
    _add_text_argument(io)
    io.add_argument("-o", "--output", default="sdmtalk_dub.mp4", help="output video, a name ending in .mp4")
    io.add_argument("--face-index", type=int, default=None,
                    help="which face when the video shows several (numbered left to right from 0; default: the largest)")
    io.add_argument("--keep-video-length", action="store_true",
                    help="keep the video's length: pad the audio with silence or trim it (default: follow the "
                         "audio; a longer audio plays the video forward and backward, a shorter one cuts it)")
    m = p.add_argument_group("lips")
    m.add_argument("--motion", choices=["sdm", "linear", "energy"], default="sdm",
                   help="sdm: the trained lips model; linear: ridge baseline; energy: loudness baseline")
    m.add_argument("--weights", help="SDM weights (default: bundled)")
    m.add_argument("--seed", type=int, default=0, help=f"seed of the lips model, 0 to {SEED_MAX}")
    lo, hi = SCALE_RANGES["lip_scale"]
    m.add_argument("--lip-scale", type=float, default=1.0, help=f"scale of lip motion, {lo:g} to {hi:g}")
    p.add_argument("--threads", type=int, default=None, help="cores for rendering + encoding (default: up to 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes (warnings stay)")


def run_dub(args: argparse.Namespace) -> int:
    controls = MotionControls(seed=args.seed, lip_scale=args.lip_scale, still=True)
    if not args.audio and args.text is None:
        raise InputError("dub needs --audio SPEECH or --text WORDS: the new speech for the video's lips")
    with tempfile.TemporaryDirectory() as tmp:
        audio = _speech_path(args, Path(tmp))
        out = Path(args.output)
        validate_dub_request(args.video, audio, out, controls, args.face_index)
        pipe = TalkingFacePipeline(motion=args.motion, weights=args.weights, quiet=args.quiet, threads=args.threads,
                                   blink=False)
        res = pipe.dub(args.video, audio, out, controls, args.face_index, args.keep_video_length)
    if not args.quiet:
        print(f"wrote {res.path} ({res.frames / res.fps:.1f} s at {res.fps:.3g} fps, "
              f"{sum(res.timings.values()):.1f} s to make)")
    return 0


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (unless it is unset or already named)."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not unset and "default" not in text:
            text += " (default: %(default)s)"
        return text


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class OneLineParser(argparse.ArgumentParser):
    """Argument mistakes as one line (argparse's usage block is one `--help` away), exit 2;
    help shows every default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)
        # `--lip-scale -inf` (or -1e3, -nan) is a value, not an option: argparse's own pattern
        # takes only -1 and -.5 for numbers, and would answer "expected one argument".
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sdmtalk", description="Talking-face video from one photo and speech.")
    parser.add_argument("--version", action="version", version=f"sdmtalk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="photo + speech -> talking-face mp4")
    add_generate_arguments(gen)
    gen.set_defaults(func=run_generate)
    _add_command(sub, "dub", "video + new speech -> the same video saying it (mouth and jaw re-rendered)",
                 add_dub_arguments, run_dub)
    _add_command(sub, "prepare", "videos -> training cache", add_prepare_arguments, run_prepare_command)
    _add_command(sub, "train", "train the SDM motion model on a cache", add_train_arguments, run_train)
    _add_command(sub, "evaluate", "metrics of methods on real clips", add_evaluate_arguments, run_evaluate)
    _add_command(sub, "serve", "web page + HTTP API on one local server (pip install 'sdmtalk[serve]')",
                 add_serve_arguments, run_serve)
    return parser


def _add_command(sub, name, help_text, add_arguments, run):
    """Register a subcommand whose arguments live in its own stage module."""
    p = sub.add_parser(name, help=help_text)
    add_arguments(p)
    p.set_defaults(func=run)


def run_prepare_command(args: argparse.Namespace) -> int:
    """`sdmtalk prepare`: the cache and its phoneme table, then the audio-video offsets table
    measured by the sync expert (unless --no-offsets; a --merge is measured by hand)."""
    code = run_prepare(args)
    if code == 0 and not args.merge and not args.no_offsets:
        table = measure_offsets(args.out, quiet=args.quiet)
        if not args.quiet:
            print("audio-video offsets (offsets.json): " + "; ".join(summary_lines(table)))
    return code


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every user mistake ends as one line on stderr and exit code 2; a
    SIGTERM or Ctrl-C removes the unfinished output, says so, and exits 128 + signal."""
    # The interpreter's last garbage collections at exit walk every object torch made: about
    # a second after the work is done (or a Ctrl-C handled) for memory the OS frees anyway.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    args = build_parser().parse_args(argv)
    with _warnings_to_stderr(), _signals_raise_stopped():
        try:
            return int(args.func(args) or 0)
        except InputError as err:
            print(f"sdmtalk: error: {one_line(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            print(f"sdmtalk: stopped by {signal.Signals(signum).name}: unfinished output removed",
                  file=sys.stderr)
            if isinstance(stop, Stopped) and args.func in (run_generate, run_dub):
                _exit_now(128 + signum)
            return 128 + signum


def _exit_now(code: int) -> NoReturn:
    """End a stopped `generate` at once: its output is removed and nothing else needs a
    clean-up, while the interpreter's teardown (torch's destructors, every module) takes
    over a second on a busy machine, longer beside the phoneme recogniser's abandoned
    threads, which finish their chunk (hama's engine cannot be interrupted)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


@contextmanager
def _signals_raise_stopped():
    """SIGTERM (timeout, docker stop, systemd) and SIGINT raise Stopped in the main thread,
    so the cleanup that runs for an error (temp files, worker threads) runs for them too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGINT):  # cleanup runs once, undisturbed
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _warnings_to_stderr():
    """sdmtalk's logged warnings (e.g. a truncated audio file) as `sdmtalk: warning: ...`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sdmtalk: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    log = logging.getLogger("sdmtalk")
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
