"""Inference pipeline: photo + speech -> frames + audio, in memory; mp4 through sdmtalk.video.

Read top to bottom: face -> audio features -> motion -> landmarks -> blinks -> render -> video.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sdmtalk import FPS
from sdmtalk.audio import compute_features, load_audio
from sdmtalk.errors import InputError
from sdmtalk.face import FaceDetection, detect_face, load_image, to_canonical
from sdmtalk.motion.types import Motion, MotionControls, apply_motion
from sdmtalk.render import Renderer, add_blinks

MOTIONS = ("sdm", "energy", "static", "linear")
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
    """One written video and the time spent in each stage (seconds)."""

    path: Path
    seed: int
    num_frames: int
    timings: dict
    predicted_k: list = field(default_factory=list)


class StaticMotion:
    """The `static` method: the photo, unanimated (an evaluation baseline)."""

    def generate(self, features, source_canonical, controls) -> Motion:
        return Motion.still(features.num_frames)


def load_motion_model(motion: str, weights: str | os.PathLike | None = None):
    """Build the motion model named `motion` ('sdm' loads `weights` or the bundled ones)."""
    if motion == "static":
        return StaticMotion()
    if motion == "energy":
        from sdmtalk.motion.energy import EnergyBaseline

        return EnergyBaseline()
    if motion == "linear":  # ridge baseline; `weights` are SDM's, the baseline ships its own
        from sdmtalk.motion.linear import LinearBaseline

        return LinearBaseline.load()
    if motion != "sdm":
        raise InputError(f"unknown motion '{motion}': choose one of {', '.join(MOTIONS)}")
    path = Path(weights) if weights else BUNDLED_WEIGHTS
    if not path.is_file():
        raise InputError(
            f"SDM weights not found at {path}: pass --weights RUN_DIR/sdm.safetensors "
            "(made by `sdmtalk train`) or use --motion energy"
        )
    from sdmtalk.train.checkpoint import load_model

    return load_model(path)


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
    for src in inputs:
        if src.exists() and out_path.exists() and out_path.resolve() == src.resolve():
            raise InputError(f"output {out_path} is one of the inputs: choose another -o path")


class TalkingFacePipeline:
    """Photo + speech -> talking-face frames. The CLI only wraps this class.

    motion: 'sdm' (trained model), 'energy' (loudness baseline) or 'static'.
    size: side of the face crop (256 or 512). crop: 'face' (square crop) or 'full' (whole photo).
    """

    def __init__(
        self,
        motion: str = "sdm",
        weights: str | os.PathLike | None = None,
        size: int = 256,
        crop: str = "face",
        blink: bool = True,
        quiet: bool = False,
    ):
        if size not in (256, 512):
            raise InputError(f"--size {size} is not supported: use 256 or 512")
        if crop not in ("face", "full"):
            raise InputError(f"--crop {crop} is not supported: use face or full")
        self.motion_name = motion
        self.model = load_motion_model(motion, weights)
        self.size, self.crop, self.blink, self.quiet = size, crop, blink, quiet

    def _bar(self, total, desc, unit="frame"):
        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet or not sys.stderr.isatty())

    def landmarks_for(self, image, wav, controls, face=None, features=None):
        """Face, features and motion -> (landmarks (T, 68, 2) photo pixels, motion, face)."""
        face = face if face is not None else detect_face(image)
        features = features if features is not None else compute_features(wav)
        canonical, _ = to_canonical(face.landmarks[None])
        motion = self.model.generate(features, canonical[0], controls)
        landmarks = apply_motion(face.landmarks, motion)
        if self.blink:
            landmarks = add_blinks(landmarks, seed=controls.seed, fps=FPS)
        return landmarks, motion, face

    def animate(self, image, wav, controls=None, face=None) -> AnimateResult:
        """In memory: image (H, W, 3) uint8 RGB + wav (N,) 16 kHz -> AnimateResult (short clips)."""
        controls = controls or MotionControls()
        landmarks, motion, face = self.landmarks_for(image, wav, controls, face)
        renderer = Renderer(image, face.landmarks, size=self.size, crop=self.crop)
        frames = np.stack(list(renderer.render_sequence(landmarks)))
        return AnimateResult(frames, landmarks, motion, face, FPS, list(getattr(self.model, "last_k", [])))

    def generate(
        self,
        image_path,
        audio_path,
        out_path,
        controls: MotionControls | None = None,
        num_samples: int = 1,
        face_index: int | None = None,
    ) -> list[GenerateResult]:
        """Files in, mp4 out: one video per sample (seeds controls.seed, +1, ...)."""
        from sdmtalk.video import write_mp4

        controls = controls or MotionControls()
        image_path, audio_path, out_path = Path(image_path), Path(audio_path), Path(out_path)
        seeds = [controls.seed + i for i in range(num_samples)]
        paths = output_paths(out_path, seeds)
        for p in paths:
            check_output_path(p, [image_path, audio_path])
        t0 = time.perf_counter()
        with self._bar(2, "face + audio", unit="stage") as bar:
            image = load_image(image_path)
            face = detect_face(image, face_index=face_index, name=str(image_path))
            bar.update()
            wav = load_audio(audio_path)
            features = compute_features(wav)
            bar.update()
        self._report_faces(face, image_path)
        t_features = time.perf_counter() - t0
        renderer = Renderer(image, face.landmarks, size=self.size, crop=self.crop)
        results = []
        for seed, path in zip(seeds, paths, strict=True):
            c = replace(controls, seed=seed)
            t1 = time.perf_counter()
            landmarks, _, _ = self.landmarks_for(image, wav, c, face, features)
            t_motion = time.perf_counter() - t1
            t2 = time.perf_counter()
            with self._bar(len(landmarks), f"render+encode {path.name}") as bar:
                write_mp4(path, renderer.render_sequence(landmarks), wav, fps=FPS, progress=bar.update)
            timings = {"features": t_features, "motion": t_motion, "render_encode": time.perf_counter() - t2}
            results.append(GenerateResult(path, seed, len(landmarks), timings, list(getattr(self.model, "last_k", []))))
        return results

    def _report_faces(self, face: FaceDetection, image_path: Path) -> None:
        if face.num_faces > 1 and not self.quiet:
            print(
                f"{image_path}: found {face.num_faces} faces, animating face {face.index} "
                "(the largest unless --face-index is given)",
                file=sys.stderr,
            )

