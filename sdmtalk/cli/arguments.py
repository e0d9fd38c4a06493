"""The arguments of `generate` and `dub`: argparse and sdmtalk.limits only, so that a
command's --help (and a mistyped option) answers before any library loads."""

from __future__ import annotations

import argparse

from sdmtalk.limits import DUB_MOTIONS, MAX_SAMPLES, MAX_TEXT_CHARS, MOTIONS, SCALE_RANGES, SEED_MAX


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
    io.add_argument("--audio", help="speech (wav, mp3, m4a, flac, ogg, or a video file's audio), at least 0.2 s")
    _add_text_argument(io)
    io.add_argument("-o", "--output", help="output video, a name ending in .mp4 (the only format written; "
                    "default: sdmtalk_out.mp4, with --demo sdmtalk_demo.mp4)")
    io.add_argument("--demo", action="store_true", help="use the bundled demo photo and speech")
    io.add_argument("--face-index", type=int, default=None,
                    help="which face when the photo has several (numbered left to right from 0; default: the largest)")
    _add_motion_arguments(p.add_argument_group("motion"))
    r = p.add_argument_group("rendering")
    r.add_argument("--size", type=int, choices=[256, 512], default=256, help="face crop size in pixels")
    r.add_argument("--crop", choices=["face", "full"], default="face",
                   help="face: square face crop; full: the whole photo with the face animated")
    r.add_argument("--threads", type=int, default=None,
                   help="cores for rendering + encoding, 1 to 64 (default: up to 2; motion always uses 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes (warnings stay)")


def _add_motion_arguments(m) -> None:
    lo, hi = {k: v[0] for k, v in SCALE_RANGES.items()}, {k: v[1] for k, v in SCALE_RANGES.items()}
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


def _add_text_argument(group) -> None:
    group.add_argument("--text", metavar="WORDS", help="words to speak instead of --audio, by the bundled espeak-ng "
                       f"voice (English; at most {MAX_TEXT_CHARS} characters)")


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
    m.add_argument("--motion", choices=list(DUB_MOTIONS), default="sdm",
                   help="sdm: the trained lips model; linear: ridge baseline; energy: loudness baseline")
    m.add_argument("--weights", help="SDM weights (default: bundled)")
    m.add_argument("--seed", type=int, default=0, help=f"seed of the lips model, 0 to {SEED_MAX}")
    lo, hi = SCALE_RANGES["lip_scale"]
    m.add_argument("--lip-scale", type=float, default=1.0, help=f"scale of lip motion, {lo:g} to {hi:g}")
    p.add_argument("--threads", type=int, default=None, help="cores for rendering + encoding (default: up to 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes (warnings stay)")
