"""Inference pipeline: photo + speech -> frames + audio, in memory; mp4 through sdmtalk.video.

Read top to bottom: face -> audio features -> motion -> landmarks -> blinks -> render -> video.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sdmtalk import FPS
from sdmtalk.audio import compute_features, load_audio
from sdmtalk.audio.loading import spool_audio
from sdmtalk.dub.dubber import Dubber, DubResult
from sdmtalk.errors import InputError, one_line
from sdmtalk.face import FaceDetection, detect_face, load_image, to_canonical
from sdmtalk.face.mouth_state import part_pressed_lips, rest_mouth
from sdmtalk.limits import MAX_SAMPLES, MOTIONS
from sdmtalk.motion.energy import EnergyBaseline
from sdmtalk.motion.linear import LinearBaseline
from sdmtalk.motion.load import load_model
from sdmtalk.motion.sdm import SDMModel
from sdmtalk.motion.types import Motion, MotionControls, apply_motion, check_seed
from sdmtalk.render import Renderer, add_blinks
from sdmtalk.stream import FaceStream
from sdmtalk.threads import default_threads, in_background, in_thread, torch_threads
from sdmtalk.video import ReservedOutput, write_mp4

_LOG = logging.getLogger(__name__)
BUNDLED_WEIGHTS = Path(__file__).parent / "weights" / "sdm_base.safetensors"


@dataclass
class AnimateResult:
    """Everything one generation produced. frames: (T, H, W, 3) uint8; landmarks: (T, 68, 2)."""

    frames: np.ndarray
    landmarks: np.ndarray
    motion: Motion
    face: FaceDetection
    fps: int = FPS
    predicted_k: list = field(default_factory=list)


@dataclass
class GenerateResult:
    """One written video and the wall time of each stage (seconds; they add up to the whole
    run; features overlap the face stage, rendering overlaps encoding: render_seconds is
    the rendering thread's share of render_encode)."""

    path: Path
    seed: int
    num_frames: int
    timings: dict
    predicted_k: list = field(default_factory=list)
    render_seconds: float = 0.0


class StaticMotion:
    """The `static` method: the photo, unanimated (an evaluation baseline)."""

    def generate(self, features, source_canonical, controls) -> Motion:
        return Motion.still(features.num_frames)


def load_motion_model(motion: str, weights: str | os.PathLike | None = None):
    """Build the motion model named `motion` ('sdm' loads `weights` or the bundled ones)."""
    if motion == "static":
        return StaticMotion()
    if motion == "energy":
        return EnergyBaseline()
    if motion == "linear":  # ridge baseline; `weights` are SDM's, the baseline ships its own
        return LinearBaseline.load()
    if motion != "sdm":
        raise InputError(f"unknown motion '{motion}': choose one of {', '.join(MOTIONS)}")
    path = check_weights(weights)
    try:
        return load_model(path)
    except InputError as err:  # torch explains an unpickling refusal over many lines
        text = str(err) if "\n" not in str(err) else f"weights {path} cannot be read ({one_line(err)[:60]}...)"
        raise InputError(f"{text}: {_WEIGHTS_FIX}") from None
    except (RuntimeError, ValueError, KeyError, TypeError) as err:  # shapes or config don't fit
        raise InputError(
            f"weights {path} do not fit this sdmtalk version ({type(err).__name__}): {_WEIGHTS_FIX}"
        ) from None


_WEIGHTS_FIX = "pass the RUN_DIR/model.safetensors that `sdmtalk train` wrote, or leave out --weights"
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


def check_weights(weights: str | os.PathLike | None) -> Path:
    """Cheap checks of an SDM weights path (None: the bundled weights) -> the path."""
    path = Path(weights) if weights else BUNDLED_WEIGHTS
    if not path.is_file():
        raise InputError(f"SDM weights not found at {path}: {_WEIGHTS_FIX}, or use --motion energy")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise InputError(f"{path} is not a weights file (.safetensors or a ckpt-*.pt): {_WEIGHTS_FIX}")
    return path


def output_paths(out_path: Path, seeds: list[int]) -> list[Path]:
    """One path per sample: OUT.mp4 for one sample, OUT_seed<S>.mp4 for several."""
    if len(seeds) == 1:
        return [out_path]
    return [out_path.with_name(f"{out_path.stem}_seed{s}{out_path.suffix}") for s in seeds]


def check_output_path(out_path: Path, inputs: list[Path]) -> None:
    """Fail before any work when the output cannot be written or would overwrite an input."""
    folder = out_path.parent if str(out_path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder {folder} does not exist: create it or choose another -o path")
    if not os.access(folder, os.W_OK):
        raise InputError(f"output folder {folder} is not writable: choose another -o path")
    if out_path.is_dir():
        raise InputError(f"output {out_path} is a folder: give a file name such as {out_path / 'out.mp4'}")
    if out_path.suffix.lower() != ".mp4":  # refused, not renamed: the name asked for is not the one written
        raise InputError(f"output {out_path} does not end in .mp4, the only format sdmtalk writes "
                         f"(H.264 + AAC): use -o {out_path.with_name(out_path.stem + '.mp4')}")
    for src in inputs:
        if src.exists() and out_path.exists() and out_path.resolve() == src.resolve():
            raise InputError(f"output {out_path} is one of the inputs: choose another -o path")


def _check_input_file(path: Path, what: str, fix: str) -> None:
    if not path.exists():
        raise InputError(f"{what} not found: {path}: check the path")
    if not path.is_file():
        raise InputError(f"{what} {path} is not a file: {fix}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} is not readable: check its permissions")
    if path.stat().st_size == 0:
        raise InputError(f"{what} {path} is an empty file (0 bytes): {fix}")


def validate_request(image_path, audio_path, out_path, controls: MotionControls,
                     num_samples: int = 1, face_index: int | None = None) -> list[Path]:
    """Every cheap check of one generation, before any decoding or model work -> the output
    path of each sample. Raises InputError with a one-line message naming the input and the
    fix (the CLI and any server share this path)."""
    _check_controls_and_photo(image_path, controls, num_samples, face_index)
    image_path, audio_path = Path(image_path), Path(audio_path)
    _check_input_file(audio_path, "audio file", "use a speech recording (wav, mp3, m4a, flac, ogg)")
    paths = output_paths(Path(out_path), [controls.seed + i for i in range(num_samples)])
    for p in paths:
        check_output_path(p, [image_path, audio_path])
    return paths


def validate_stream_request(image_path, controls: MotionControls, face_index: int | None = None) -> None:
    """The checks of validate_request that apply to a stream (no audio file, no output)."""
    _check_controls_and_photo(image_path, controls, 1, face_index)


def _check_controls_and_photo(image_path, controls, num_samples, face_index) -> None:
    _check_controls(controls, num_samples, face_index)
    _check_input_file(Path(image_path), "photo", "use a JPEG or PNG photo")


def validate_dub_request(video_path, audio_path, out_path, controls: MotionControls,
                         face_index: int | None = None) -> None:
    """Every cheap check of one dub, before any decoding (the CLI and the server share it)."""
    _check_controls(controls, 1, face_index)
    video_path, audio_path = Path(video_path), Path(audio_path)
    _check_input_file(video_path, "video", "use a video file (mp4, mov, mkv, webm, avi)")
    _check_input_file(audio_path, "audio file", "use a speech recording (wav, mp3, m4a, flac, ogg)")
    check_output_path(Path(out_path), [video_path, audio_path])


def _check_controls(controls, num_samples, face_index) -> None:
    if not isinstance(controls, MotionControls):
        raise InputError(f"controls must be a MotionControls, got {type(controls).__name__}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_SAMPLES:
        raise InputError(f"--num-samples {num_samples!r} is out of range: use 1 to {MAX_SAMPLES}")
    check_seed(controls.seed, num_samples)
    if face_index is not None and (isinstance(face_index, bool) or not isinstance(face_index, int) or face_index < 0):
        raise InputError(f"--face-index {face_index!r} is not valid: faces are numbered 0, 1, ... from the left")


def _timed(items: Iterator, seconds: list) -> Iterator:
    """The items, adding the time spent making each to seconds[0]."""
    it = iter(items)
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        seconds[0] += time.perf_counter() - t0
        if item is None:
            return
        yield item


class TerminalProgress:
    """The terminal side of the `progress(stage, done, total)` callback: one tqdm bar per
    stage on stderr (nothing when stderr is not a terminal)."""

    def __init__(self):
        self.stage, self.bar = None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, disable=not sys.stderr.isatty(), leave=False)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.stage, self.bar = None, None


class TalkingFacePipeline:
    """Photo + speech -> talking-face frames. The CLI only wraps this class.

    motion: 'sdm' (trained model), 'energy' (loudness baseline), 'linear' or 'static'.
    size: side of the face crop (256 or 512). crop: 'face' (square crop) or 'full' (whole photo).
    threads: cores for rendering + encoding (default: up to 2; 1 = all on the calling
    thread). The motion model always runs on one torch thread, so a seed gives the same
    video at any thread count. progress(stage, done, total): called as each stage moves
    ("face", "audio", "motion", "render <file>"); default: bars on a terminal unless quiet.
    mouth_at_rest: motion starts from the photo's face with its mouth at rest (closed, as
    face.mouth_state.rest_mouth makes it); False animates around the photo's own opening
    (for comparisons: an open photo mouth then never closes).
    """

    def __init__(self, motion: str = "sdm", weights: str | os.PathLike | None = None, size: int = 256,
                 crop: str = "face", blink: bool = True, quiet: bool = False,
                 threads: int | None = None, progress: Callable[[str, int, int], object] | None = None,
                 mouth_at_rest: bool = True):
        if size not in (256, 512):
            raise InputError(f"--size {size} is not supported: use 256 or 512")
        if crop not in ("face", "full"):
            raise InputError(f"--crop {crop} is not supported: use face or full")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64):
            raise InputError(f"--threads {threads!r} is out of range: use 1 to 64")
        self.motion_name = motion
        self.threads = threads or default_threads()
        with torch_threads(1):
            self.model = load_motion_model(motion, weights)
        self.size, self.crop, self.blink, self.quiet = size, crop, blink, quiet
        self.mouth_at_rest = mouth_at_rest
        self.progress = progress or (None if quiet else TerminalProgress())

    def features(self, wav, progress=None, stop: threading.Event | None = None):
        """AudioFeatures of (N,) 16 kHz audio, with phoneme posteriors when the model reads them
        (progress(done, total) per recogniser chunk; a set `stop` ends it: Cancelled)."""
        return compute_features(wav, phonemes=bool(getattr(self.model, "needs_phonemes", False)),
                                phoneme_workers=self.threads, phoneme_progress=progress, stop=stop)

    def _report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def rest_landmarks(self, face: FaceDetection) -> np.ndarray:
        """The face's landmarks with its mouth at rest (face.mouth_state): every motion starts
        from a resting mouth, whatever the photo shows; the still photo stays as it is."""
        if self.motion_name == "static" or not self.mouth_at_rest:
            return face.landmarks
        return rest_mouth(face.landmarks)

    def face_landmarks(self, rest: np.ndarray, motion: Motion) -> np.ndarray:
        """A motion on the face at rest (`rest_landmarks`) -> (T, 68, 2) photo pixels; lips
        pressed together at rest part as the speech opens them (face.mouth_state)."""
        if self.motion_name != "static" and self.mouth_at_rest:
            motion = Motion(motion.pose, part_pressed_lips(rest, motion.delta))
        return apply_motion(rest, motion)

    def renderer(self, image, face: FaceDetection) -> Renderer:
        return Renderer(image, face.landmarks, size=self.size, crop=self.crop,
                        rest_landmarks=self.rest_landmarks(face))

    def landmarks_for(self, image, wav, controls, face=None, features=None):
        """Face, features and motion -> (landmarks (T, 68, 2) photo pixels, motion, face)."""
        face = face if face is not None else detect_face(image)
        features = features if features is not None else self.features(wav)
        rest = self.rest_landmarks(face)
        canonical, _ = to_canonical(rest[None])
        self._report("motion", 0, 1)
        with torch_threads(1):
            motion = self._generate_motion(features, canonical[0], controls)
        self._report("motion", 1, 1)
        landmarks = self.face_landmarks(rest, motion)
        if self.blink:
            landmarks = add_blinks(landmarks, seed=controls.seed, fps=FPS)
        return landmarks, motion, face

    def _generate_motion(self, features, canonical, controls) -> Motion:
        generate = self.model.generate
        if "progress" in inspect.signature(generate).parameters:  # long audio: steps of the model
            return generate(features, canonical, controls,
                            progress=lambda done, total: self._report("motion", done, total))
        return generate(features, canonical, controls)

    def animate(self, image, wav, controls=None, face=None) -> AnimateResult:
        """In memory: image (H, W, 3) uint8 RGB + wav (N,) 16 kHz -> AnimateResult (short clips)."""
        controls = controls or MotionControls()
        landmarks, motion, face = self.landmarks_for(image, wav, controls, face)
        renderer = self.renderer(image, face)
        frames = np.stack(list(renderer.render_sequence(landmarks)))
        return AnimateResult(frames, landmarks, motion, face, FPS, list(getattr(self.model, "last_k", [])))

    def generate(self, image_path, audio_path, out_path, controls: MotionControls | None = None,
                 num_samples: int = 1, face_index: int | None = None) -> list[GenerateResult]:
        """Files in, mp4 out: one video per sample (seeds controls.seed, +1, ...).

        Cheap checks (validate_request) and the claim on every output (video.ReservedOutput)
        come before any decoding; an error or a stop leaves no output and no temp file."""
        controls = controls or MotionControls()
        paths = validate_request(image_path, audio_path, out_path, controls, num_samples, face_index)
        with ExitStack() as claims:
            reserved = [claims.enter_context(ReservedOutput(p)) for p in paths]
            for stale in (part for claim in reserved for part in claim.removed_stale):
                _LOG.warning("removed %s, the unfinished output of an earlier run that was killed", stale)
            try:
                return self._generate(Path(image_path), Path(audio_path), controls, reserved, face_index)
            finally:
                if isinstance(self.progress, TerminalProgress):
                    self.progress.close()

    def _generate(self, image_path, audio_path, controls, reserved, face_index) -> list[GenerateResult]:
        """Overlapped stages: the speech features (the phoneme recogniser on up to two threads)
        run while the photo is decoded and its face found; rendering runs while encoding."""
        t0, chunks = time.perf_counter(), [0, 1]  # the recogniser's chunks: done, in all

        def on_chunk(done: int, total: int) -> None:
            chunks[:] = done, total
            if self.threads < 2:  # the features run on this thread: report at once
                self._report("audio", done, total)

        speech = in_thread(lambda stop: self._speech(audio_path, on_chunk, stop)) if self.threads >= 2 else None
        self._report("face", 0, 1)
        try:  # a photo error is reported before an audio error, as without the overlap
            image, face, renderer = in_thread(lambda stop: self._photo(image_path, face_index)).result()
        except BaseException as err:  # the features stop too; a Ctrl-C does not wait for them
            if speech is not None:
                speech.abandon(wait=not isinstance(err, KeyboardInterrupt))
            raise
        self._report("audio", 0, 1)
        if speech is not None:  # the bar moves per chunk
            wav, features = speech.result(poll=lambda: self._report("audio", *chunks))
        else:
            wav, features = self._speech(audio_path, on_chunk)
        self._report("audio", chunks[1], chunks[1])
        self._report_faces(face, image_path)
        t_features = time.perf_counter() - t0
        results = []
        for i, claim in enumerate(reserved):
            c = replace(controls, seed=controls.seed + i)
            t1 = time.perf_counter()
            landmarks, _, _ = self.landmarks_for(image, wav, c, face, features)
            t2 = time.perf_counter()
            render = self._render_encode(renderer, landmarks, wav, claim)
            timings = {"face_features": t_features, "motion": t2 - t1, "render_encode": time.perf_counter() - t2}
            results.append(GenerateResult(claim.path, c.seed, len(landmarks), timings,
                                          list(getattr(self.model, "last_k", [])), render))
        return results

    def _photo(self, image_path, face_index):
        """Decode the photo, find its face, set up the renderer -> (image, face, renderer). Run
        in a worker thread: a Ctrl-C while dlib loads its models acts at once."""
        image = load_image(image_path)
        face = detect_face(image, face_index=face_index, name=str(image_path))
        return image, face, self.renderer(image, face)

    def _speech(self, audio_path, progress=None, stop: threading.Event | None = None):
        """Decode the speech and compute its features -> (wav, AudioFeatures)."""
        wav = load_audio(audio_path)
        return wav, self.features(wav, progress, stop)

    def _render_encode(self, renderer, landmarks, wav, claim) -> float:
        """Render and encode into the claimed output; with threads >= 2 rendering runs in a
        worker thread while this one encodes (OpenCV gets the cores beyond those two).
        Returns the seconds spent rendering."""

        stage, total, done = f"render {claim.path.name}", len(landmarks), [0]

        def tick(n):
            done[0] += n
            if done[0] % 25 == 0 or done[0] == total:
                self._report(stage, done[0], total)

        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(max(1, self.threads - 2) if self.threads >= 2 else 1)
        try:
            busy = [0.0]
            frames = _timed(renderer.render_sequence(landmarks), busy)
            if self.threads >= 2:
                frames = in_background(frames)
            write_mp4(claim.path, frames, wav, fps=FPS, progress=tick, reserved=claim)
        finally:
            cv2.setNumThreads(cv_threads)
        return busy[0]

    def dub(self, video_path, audio_path, out_path, controls: MotionControls | None = None,
            face_index: int | None = None, keep_video_length: bool = False) -> DubResult:
        """A video's own frames with new speech on its lips (sdmtalk.dub): head, eyes and
        background stay as filmed, the mouth and jaw follow the new audio; frames without the
        face pass through. The same checks, claim on the output and clean-up as generate."""
        controls = controls or MotionControls()
        validate_dub_request(video_path, audio_path, out_path, controls, face_index)
        with ReservedOutput(out_path) as claim:
            for stale in claim.removed_stale:
                _LOG.warning("removed %s, the unfinished output of an earlier run that was killed", stale)
            try:
                dubber = Dubber(self.features, self._still_motion, self.threads, self._report)
                with spool_audio(audio_path) as speech:  # read as it is used: a dub may be hours long
                    job = dubber.start(Path(video_path), speech, controls, face_index, keep_video_length)
                    result = dubber.write(job, claim)
            finally:
                if isinstance(self.progress, TerminalProgress):
                    self.progress.close()
        for note in [] if self.quiet else result.notes:
            print(note, file=sys.stderr)
        return result

    def dub_frames(self, video_path, wav, controls: MotionControls | None = None, face_index: int | None = None,
                   fps=None) -> Iterator[np.ndarray]:
        """In memory: the frames of `video_path` dubbed with (N,) 16 kHz speech `wav`, as many
        as the speech lasts (at `fps`, None: the video's own), one at a time."""
        dubber = Dubber(self.features, self._still_motion, threads=1)
        return dubber.frames(dubber.start(Path(video_path), wav, controls or MotionControls(), face_index, fps=fps))

    def _still_motion(self, features, canonical, controls, report: bool = True) -> Motion:
        with torch_threads(1):
            if report:
                return self._generate_motion(features, canonical, controls)
            return self.model.generate(features, canonical, controls)  # a later segment of a dub: no bar

    def open_stream(self, image_path, on_frame, controls: MotionControls | None = None,
                    face_index: int | None = None, config=None):
        """A FaceStream (sdmtalk.stream): push speech as it arrives, get frames on_frame(frame,
        index) as they are ready. The same checks and one-line errors as generate; SDM only."""
        controls = controls or MotionControls()
        validate_stream_request(image_path, controls, face_index)
        if not isinstance(self.model, SDMModel):
            raise InputError(f"streaming needs the SDM motion model, not '{self.motion_name}': use --motion sdm")
        image = load_image(image_path)
        face = detect_face(image, face_index=face_index, name=str(image_path))
        self._report_faces(face, Path(image_path))
        return FaceStream(self, image, face, controls, on_frame, config)

    def _report_faces(self, face: FaceDetection, image_path: Path) -> None:
        if face.num_faces > 1 and not self.quiet:
            print(
                f"{image_path}: found {face.num_faces} faces, animating face {face.index} "
                "(the largest unless --face-index is given)",
                file=sys.stderr,
            )

