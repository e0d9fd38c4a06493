"""`sdmtalk generate` and `sdmtalk dub`: the pipeline behind the arguments of
sdmtalk.cli.arguments. Loaded by sdmtalk.cli only when one of these commands runs."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sdmtalk.assets import demo_inputs
from sdmtalk.audio.speech import text_to_wav_file
from sdmtalk.errors import InputError
from sdmtalk.motion.pose_reference import check_pose_reference_motion, with_pose_reference
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline, validate_dub_request, validate_request


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


def _speech_path(args: argparse.Namespace, tmp: Path) -> Path | None:
    """--audio, or --text spoken into a wav in tmp (one of them; None when neither)."""
    if args.audio and args.text is not None:
        raise InputError("both --audio and --text: give one of them")
    if args.text is not None:
        return text_to_wav_file(args.text, tmp)
    return Path(args.audio) if args.audio else None


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
