"""Uploads -> a JobRequest (or a DubRequest): the server's limits, the client's names kept out of paths, and
the pipeline's own checks (MotionControls, validate_request) before anything is queued.
Shared by the HTTP API and the web page, so both answer a bad input with the same line; a
photo is decoded and its face found at submit, so a bad one is refused at once (422); a
video to dub is probed (its first frame decoded), so a file that is no video is too."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import soundfile
from PIL import Image

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio.speech import MAX_TEXT_CHARS, synthesize_speech
from sdmtalk.errors import InputError
from sdmtalk.face import detect_face, load_image
from sdmtalk.face.image import open_image
from sdmtalk.motion.pose_reference import check_pose_reference_motion
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import (
    MOTIONS,
    TalkingFacePipeline,
    load_motion_model,
    validate_dub_request,
    validate_request,
)
from sdmtalk.serve.config import ServeConfig
from sdmtalk.serve.jobs import DUB_NAME, DubRequest, Job, JobRequest
from sdmtalk.video import probe_video

_SAFE_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")
TEXT_NAME = "the typed text"
DUB_MOTIONS = ("sdm", "linear", "energy")  # `sdmtalk dub --motion`: static would not move the lips


class LimitError(InputError):
    """An upload beyond one of the server's limits (HTTP 413)."""


@dataclass
class Params:
    """The controls of one job, named and defaulted as the CLI's options."""

    seed: int = 0
    num_samples: int = 1
    pose_scale: float = 1.0
    lip_scale: float = 1.0
    rhythm_scale: float = 1.0
    still: bool = False
    diffusion_steps: str = "auto"
    size: int = 256
    crop: str = "face"
    motion: str | None = None
    face_index: int | None = None
    blink: bool = True


@dataclass
class DubParams:
    """The controls of one dub, named and defaulted as `sdmtalk dub`'s options."""

    seed: int = 0
    lip_scale: float = 1.0
    face_index: int | None = None
    keep_video_length: bool = False
    motion: str | None = None


def display_name(name: str | None, default: str) -> str:
    """A client's file name, for messages only: last path part, plain characters, short."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    clean = re.sub(r"[^A-Za-z0-9._ -]", "_", base)[:80].strip(" .")
    return clean or default


def stored_path(job: Job, role: str, client_name: str | None) -> Path:
    """Where an upload lives: the job's folder, a fixed name, at most a plain suffix."""
    suffix = Path(display_name(client_name, "")).suffix.lower()
    return job.folder / (role + (suffix if _SAFE_SUFFIX.fullmatch(suffix) else ""))


def save_upload(src: BinaryIO, dest: Path, what: str, name: str, limit: int) -> None:
    """Copy an upload stream to `dest`, refusing it (LimitError) past `limit` bytes."""
    written = 0
    with open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > limit:
                raise LimitError(f"{what} {name} is larger than {limit / 2**20:g} MB: send a smaller file "
                                 "(this server's limit is sdmtalk serve --max-upload-mb)")
            out.write(chunk)


def build_request(job: Job, config: ServeConfig, photo: Path | None, audio: Path | None,
                  text: str | None, p: Params, pose_reference: Path | None = None) -> JobRequest:
    """Check one job's inputs (the cheap checks, then the photo's face; the speech is decoded
    in the worker) -> its JobRequest. Raises InputError (422) or LimitError (413), one line."""
    controls = MotionControls(seed=p.seed, pose_scale=p.pose_scale, lip_scale=p.lip_scale,
                              rhythm_scale=p.rhythm_scale, still=p.still,
                              diffusion_steps=parse_diffusion_steps(p.diffusion_steps))
    motion = p.motion or config.motion
    check_settings(motion, p.size, p.crop)
    if pose_reference is not None:
        check_pose_reference_motion(motion)
    if photo is None:
        raise InputError("no photo: upload a face photo (jpg, png, ...)")
    audio = _speech(job, config, audio, text)
    validate_request(photo, audio, job.folder / "sdmtalk.mp4", controls, p.num_samples, p.face_index)
    if p.num_samples > config.max_samples:
        raise InputError(f"--num-samples {p.num_samples} is more than this server makes in one job: "
                         f"use 1 to {config.max_samples} (sdmtalk serve --max-samples)")
    check_pixels(photo, job.names.get(photo, "photo"), config)
    check_duration(audio, job.names.get(audio, "audio"), config)
    check_face(photo, p.face_index)
    return JobRequest(photo, audio, controls, p.num_samples, p.face_index, p.size, p.crop, motion, p.blink,
                      pose_reference)


def build_dub_request(job: Job, config: ServeConfig, video: Path | None, audio: Path | None,
                      text: str | None, p: DubParams) -> DubRequest:
    """Check one dub's inputs (the cheap checks, then the video's header and first frame; the
    face is tracked in the worker) -> its DubRequest. Raises InputError (422) or LimitError (413)."""
    controls = MotionControls(seed=p.seed, lip_scale=p.lip_scale, still=True)
    motion = p.motion or (config.motion if config.motion in DUB_MOTIONS else "sdm")
    if motion not in DUB_MOTIONS:
        raise InputError(f"--motion {motion!r} cannot dub: use {', '.join(DUB_MOTIONS)}")
    if video is None:
        raise InputError("no video: upload the video to dub (mp4, mov, mkv, webm)")
    audio = _speech(job, config, audio, text)
    validate_dub_request(video, audio, job.folder / DUB_NAME, controls, p.face_index)
    check_video(video, job.names.get(video, "video"), config)
    check_duration(audio, job.names.get(audio, "audio"), config)
    return DubRequest(video, audio, controls, p.face_index, motion, bool(p.keep_video_length))


def parse_diffusion_steps(value) -> str | int:
    """'auto', a whole number as text, or the raw value for MotionControls to refuse."""
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def check_settings(motion: str, size, crop) -> None:
    """The pipeline's own checks of motion, size and crop (and their messages)."""
    if motion not in MOTIONS:
        load_motion_model(motion)  # raises its one-line "unknown motion" error
    TalkingFacePipeline(motion="static", size=size, crop=crop, quiet=True)


def _speech(job: Job, config: ServeConfig, audio: Path | None, text: str | None) -> Path:
    """The uploaded speech, or `text` spoken by the bundled espeak-ng voice."""
    text = (text or "").strip()
    if audio is not None and text:
        raise InputError("both an audio file and text: give one of them (the text is spoken only without audio)")
    if audio is not None:
        return audio
    if not text:
        raise InputError("no speech: upload or record an audio file, or type text to speak")
    if len(text) > MAX_TEXT_CHARS:
        raise LimitError(f"the typed text has {len(text)} characters: use at most {MAX_TEXT_CHARS}")
    path = job.folder / "speech.wav"
    soundfile.write(path, synthesize_speech(text), SAMPLE_RATE, subtype="PCM_16")
    job.names[path] = TEXT_NAME
    return path


def check_pixels(path: Path, name: str, config: ServeConfig) -> None:
    """A photo beyond max_megapixels is refused from its header (LimitError)."""
    try:
        with open_image(path) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        width, height = 10**6, 10**6
    except (OSError, ValueError, SyntaxError):
        return  # not an image: the worker's load_image says so in its own words
    if width * height > config.max_megapixels * 1e6:
        raise LimitError(f"photo {name} has {width}x{height} pixels: use at most "
                         f"{config.max_megapixels:g} megapixels (sdmtalk serve --max-megapixels)")


def check_face(photo: Path, face_index: int | None) -> None:
    """Decode the photo and find its face as the CLI does (the job does it again: ~0.1 s), so
    that a file that is no photo, or a photo without a face, is refused at once (422)."""
    detect_face(load_image(photo), face_index=face_index, name=str(photo))


def check_video(path: Path, name: str, config: ServeConfig) -> None:
    """A file without a readable video stream is refused at once with the CLI's line (422);
    a video longer than max_video_seconds, or with frames over max_megapixels (413)."""
    facts = probe_video(path)
    seconds = facts["duration"] or (facts["frames"] / facts["fps"] if facts["fps"] else 0.0)
    if seconds > config.max_video_seconds:
        raise LimitError(f"video {name} is {seconds:.1f} s long: use at most {config.max_video_seconds:g} s "
                         "(sdmtalk serve --max-video-seconds)")
    width, height = facts["width"], facts["height"]
    if width * height > config.max_megapixels * 1e6:
        raise LimitError(f"video {name} has {width}x{height} pixels: use at most "
                         f"{config.max_megapixels:g} megapixels (sdmtalk serve --max-megapixels)")


def check_duration(path: Path, name: str, config: ServeConfig) -> None:
    """Speech longer than max_audio_seconds (from the file's header) is refused (LimitError)."""
    seconds = audio_seconds(path)
    if seconds is not None and seconds > config.max_audio_seconds:
        raise LimitError(f"audio {name} is {seconds:.0f} s long: use at most {config.max_audio_seconds:g} s "
                         "(sdmtalk serve --max-audio-seconds)")


def audio_seconds(path: Path) -> float | None:
    """Duration from the container's header, or None when it says nothing or is unreadable."""
    try:
        with av.open(str(path)) as container:
            if container.duration is not None:
                return container.duration / av.time_base
            stream = next(iter(container.streams.audio), None)
            if stream is not None and stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError, ValueError):
        return None  # the worker's load_audio explains what is wrong with it
    return None
