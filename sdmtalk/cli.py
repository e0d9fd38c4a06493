"""Command line: argument parsing only; every command calls the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sdmtalk import __version__
from sdmtalk.errors import InputError

DEMO_SPEECH = Path(__file__).parent / "assets" / "demo_speech.wav"


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
    io = p.add_argument_group("inputs and output")
    io.add_argument("--image", help="face photo (jpg, png, ...)")
    io.add_argument("--audio", help="speech (wav, mp3, m4a, flac, ogg, or a video file's audio)")
    io.add_argument("-o", "--output", help="output mp4 (default: sdmtalk_out.mp4)")
    io.add_argument("--demo", action="store_true", help="use the bundled demo photo and speech")
    io.add_argument("--face-index", type=int, default=None, help="which face when the photo has several (numbered left to right from 0; default: the largest)")
    m = p.add_argument_group("motion")
    m.add_argument("--motion", choices=["sdm", "energy", "static", "linear"], default="sdm",
                   help="sdm: the trained model (default); energy: loudness baseline; static: no motion")
    m.add_argument("--weights", help="SDM weights (.safetensors from `sdmtalk train`); default: bundled")
    m.add_argument("--seed", type=int, default=0, help="seed of the head motion (same seed, same video)")
    m.add_argument("--num-samples", type=int, default=1, help="N videos with different head motion (seeds seed..seed+N-1)")
    m.add_argument("--diffusion-steps", type=_diffusion_steps, default="auto",
                   help="shallow diffusion depth: auto (predicted), K, or 0 (coarse motion only)")
    m.add_argument("--pose-scale", type=float, default=1.0, help="scale of head pose motion")
    m.add_argument("--lip-scale", type=float, default=1.0, help="scale of lip motion")
    m.add_argument("--rhythm-scale", type=float, default=1.0, help="scale of rhythmic head dynamics")
    m.add_argument("--still", action="store_true", help="no head motion (lips and blinks kept)")
    m.add_argument("--ablation", choices=["no_pose", "no_rhythm", "no_diffusion", "full_diffusion"],
                   help="paper Fig. 3 ablations (for evaluation)")
    m.add_argument("--no-blink", action="store_true", help="do not add eye blinks")
    r = p.add_argument_group("rendering")
    r.add_argument("--size", type=int, choices=[256, 512], default=256, help="face crop size in pixels")
    r.add_argument("--crop", choices=["face", "full"], default="face",
                   help="face: square face crop; full: the whole photo with the face animated")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")


def demo_inputs(tmp_dir: Path) -> tuple[Path, Path]:
    """The bundled demo: scikit-image's public-domain astronaut photo + bundled espeak-ng speech."""
    from skimage import data
    from skimage.io import imsave

    photo = tmp_dir / "demo_astronaut.png"
    imsave(photo, data.astronaut(), check_contrast=False)
    if not DEMO_SPEECH.is_file():
        raise InputError(f"demo speech {DEMO_SPEECH} is missing: reinstall sdmtalk")
    return photo, DEMO_SPEECH


def run_generate(args: argparse.Namespace) -> int:
    import tempfile

    from sdmtalk.motion.types import MotionControls
    from sdmtalk.pipeline import TalkingFacePipeline

    if args.num_samples < 1:
        raise InputError("--num-samples must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            image, audio = demo_inputs(Path(tmp))
            image = Path(args.image) if args.image else image
            audio = Path(args.audio) if args.audio else audio
        elif not args.image or not args.audio:
            raise InputError("generate needs --image PHOTO and --audio SPEECH (or --demo)")
        else:
            image, audio = Path(args.image), Path(args.audio)
        out = Path(args.output or ("sdmtalk_demo.mp4" if args.demo else "sdmtalk_out.mp4"))
        controls = MotionControls(
            seed=args.seed, pose_scale=args.pose_scale, lip_scale=args.lip_scale,
            rhythm_scale=args.rhythm_scale, still=args.still,
            diffusion_steps=args.diffusion_steps, ablation=args.ablation,
        )
        pipe = TalkingFacePipeline(motion=args.motion, weights=args.weights, size=args.size,
                                   crop=args.crop, blink=not args.no_blink, quiet=args.quiet)
        results = pipe.generate(image, audio, out, controls, args.num_samples, args.face_index)
    for res in results:
        if not args.quiet:
            ks = f", diffusion k={sorted(set(res.predicted_k))}" if res.predicted_k else ""
            secs = res.num_frames / 25
            spent = sum(res.timings.values())
            print(f"wrote {res.path} ({secs:.1f} s video, seed {res.seed}, {spent:.1f} s to make{ks})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdmtalk", description="Talking-face video from one photo and speech.")
    parser.add_argument("--version", action="version", version=f"sdmtalk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="photo + speech -> talking-face mp4")
    add_generate_arguments(gen)
    gen.set_defaults(func=run_generate)
    _add_optional(sub, "prepare", "videos -> training cache", "sdmtalk.data.prepare",
                  "add_prepare_arguments", "run_prepare")
    _add_optional(sub, "train", "train the SDM motion model on a cache", "sdmtalk.train.trainer",
                  "add_train_arguments", "run_train")
    _add_optional(sub, "evaluate", "metrics of methods on real clips", "sdmtalk.evaluate.runner",
                  "add_evaluate_arguments", "run_evaluate")
    return parser


def _add_optional(sub, name, help_text, module, add_name, run_name):
    """Register a subcommand whose arguments live in its own stage module."""
    import importlib

    mod = importlib.import_module(module)
    p = sub.add_parser(name, help=help_text)
    getattr(mod, add_name)(p)
    p.set_defaults(func=getattr(mod, run_name))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"sdmtalk: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sdmtalk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
