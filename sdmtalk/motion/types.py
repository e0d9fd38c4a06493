"""The motion representation shared by every motion model, the renderer and evaluation.

A talking-head landmark sequence L (T, 68, 2) is split (method.md, Representation) into
  - the per-frame similarity of the face relative to frame 0 (head pose), and
  - the non-rigid change of the canonical shape relative to frame 0 (lips, jaw, brows, and
    yaw/pitch, which a 2-D similarity cannot express).
Both are relative to the first frame, so one motion can drive any face (paper: F_i is
predicted as displacements from the source shape S0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from sdmtalk import FPS
from sdmtalk.errors import InputError
from sdmtalk.face.align import (
    ALIGN_WEIGHTS,
    Similarity,
    fit_similarity,
    sim_apply,
    sim_compose,
    sim_inverse,
)
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.limits import SCALE_RANGES, SEED_MAX  # documented ranges of the controls
from sdmtalk.motion.pose_gain import pose_band_stats

MOUTH = slice(48, 68)  # outer 48-59 and inner 60-67 lip contours
INNER_LIP = slice(60, 68)
ABLATIONS = (
    "no_pose",
    "no_rhythm",
    "no_diffusion",
    "full_diffusion",
)  # paper Fig. 3 (+ full depth)


@dataclass
class Motion:
    """pose (T, 4) float32: frame i's canonical->image similarity relative to frame 0's, in
    frame 0's canonical units, as [log scale ratio, angle (rad), tx, ty] (all 0 at rest);
    delta (T, 68, 2) float32: canonical shape of frame i minus that of frame 0."""

    pose: np.ndarray
    delta: np.ndarray

    def __post_init__(self) -> None:
        self.pose = np.asarray(self.pose, dtype=np.float32)
        self.delta = np.asarray(self.delta, dtype=np.float32)
        t = self.pose.shape[0] if self.pose.ndim == 2 else -1
        if self.pose.shape != (t, 4) or self.delta.shape != (t, 68, 2):
            raise ValueError(
                f"Motion needs pose (T, 4) and delta (T, 68, 2), got {self.pose.shape} and {self.delta.shape}"
            )

    def __len__(self) -> int:
        return self.pose.shape[0]

    @classmethod
    def still(cls, num_frames: int) -> Motion:
        """No motion at all: every frame is the source photo."""
        return cls(np.zeros((num_frames, 4), np.float32), np.zeros((num_frames, 68, 2), np.float32))


class ControlError(InputError, ValueError):
    """A motion control outside its documented range (a ValueError too, for old callers)."""


@dataclass
class MotionControls:
    """User controls of one generation. Scales multiply the model's pose motion, lip
    motion (MOUTH delta) and rhythmic branch output; still=True keeps the head fixed (lips
    only); pose_reference: a video's head motion style (amplitude and speed; SDM only);
    diffusion_steps: reverse diffusion depth k ('auto' = predicted, 0 = coarse motion only);
    ablation: one of ABLATIONS (paper Fig. 3) or None for the full model.
    Ranges: seed 0..SEED_MAX, scales in SCALE_RANGES; anything else raises ControlError
    (an InputError whose one-line message names the control and its range)."""

    seed: int = 0
    pose_scale: float = 1.0
    lip_scale: float = 1.0
    rhythm_scale: float = 1.0
    still: bool = False
    diffusion_steps: Literal["auto"] | int = "auto"
    ablation: str | None = None
    pose_reference: PoseReference | None = None  # a video's head style (motion/pose_reference.py)

    def __post_init__(self) -> None:
        self.seed = check_seed(self.seed)
        for name, (low, high) in SCALE_RANGES.items():
            value = getattr(self, name)
            option = "--" + name.replace("_", "-")
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ControlError(f"{option} must be a number from {low:g} to {high:g}, got {value!r}")
            if not low <= value <= high:  # NaN fails this too
                raise ControlError(f"{option} {value} is out of range: use {low:g} to {high:g} (1 = as trained)")
        steps = self.diffusion_steps
        if steps != "auto" and (isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0):
            raise ControlError(f"--diffusion-steps must be 'auto' or a whole number >= 0, got {steps!r}")
        if self.pose_reference is not None and not isinstance(self.pose_reference, PoseReference):
            raise ControlError("--pose-reference must be a PoseReference (sdmtalk.motion.pose_reference."
                               f"pose_reference_from_video), got {type(self.pose_reference).__name__}")
        if self.ablation is not None:
            self.ablation = str(self.ablation).replace("-", "_")  # accept "no-pose" and "no_pose"
            if self.ablation not in ABLATIONS:
                raise ControlError(f"unknown ablation {self.ablation!r}: use one of {', '.join(ABLATIONS)}")


def check_seed(seed, count: int = 1) -> int:
    """seed (and seed + count - 1, for several samples) must be whole numbers in 0..SEED_MAX."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ControlError(f"--seed must be a whole number from 0 to {SEED_MAX}, got {seed!r}")
    if not 0 <= seed <= SEED_MAX - (count - 1):
        what = f"--seed {seed} with {count} samples" if count > 1 else f"--seed {seed}"
        raise ControlError(f"{what} is out of range: use a seed from 0 to {SEED_MAX - (count - 1)}")
    return int(seed)


@runtime_checkable
class MotionModel(Protocol):
    """Anything that turns speech features into motion for a source face."""

    def generate(self, features, source_canonical: np.ndarray, controls: MotionControls) -> Motion:
        """features: sdmtalk.audio.AudioFeatures (T frames); source_canonical: (68, 2) the
        photo's canonical shape (to_canonical of its landmarks). Returns a T-frame Motion."""
        ...


def baseline_controls(controls: MotionControls | None, source_canonical) -> MotionControls:
    """The checks every non-SDM MotionModel makes on a generate() call; returns the controls
    (defaults for None). Ablations are switches of the SDM model only."""
    controls = MotionControls() if controls is None else controls
    if controls.ablation is not None:
        raise InputError(f"ablation {controls.ablation!r} applies to the SDM model only: "
                         "use --motion sdm or drop the ablation")
    if np.asarray(source_canonical).shape != (68, 2):
        raise ValueError(f"source_canonical must be (68, 2), got {np.shape(source_canonical)}")
    return controls


def motion_from_landmarks(landmarks: np.ndarray) -> tuple[Motion, np.ndarray, Similarity]:
    """Landmarks (T, 68, 2) pixels -> (Motion, frame 0's canonical shape (68, 2) float32,
    frame 0's image->canonical Similarity). Frame 0 must be finite; NaN frames stay NaN."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2) or len(landmarks) == 0:
        raise ValueError(f"expected landmarks (T, 68, 2) with T >= 1, got {landmarks.shape}")
    if not np.isfinite(landmarks[0]).all():
        raise ValueError("the first frame's landmarks must be valid: motion is relative to it")
    sims = fit_similarity(landmarks, CANONICAL_TEMPLATE, ALIGN_WEIGHTS)  # as to_canonical, float64
    canonical = sim_apply(sims, landmarks)
    # pose_i = sims_0 ∘ sims_i^-1: canonical_i -> image_i -> frame 0's canonical frame.
    pose = sim_compose(sims[:1], sim_inverse(sims))
    motion = Motion(pose=pose, delta=canonical - canonical[:1])
    return motion, canonical[0].astype(np.float32), Similarity.from_vector(sims[0])


def apply_motion(source_landmarks: np.ndarray, motion: Motion) -> np.ndarray:
    """Put a motion on a source face: (68, 2) photo pixels + Motion -> (T, 68, 2) float32.

    The inverse of motion_from_landmarks: apply_motion(L[0], motion_from_landmarks(L)[0])
    gives back L.
    """
    source = np.asarray(source_landmarks, dtype=np.float64)
    if source.shape != (68, 2):
        raise ValueError(f"expected source landmarks (68, 2), got {source.shape}")
    sim0 = fit_similarity(source, CANONICAL_TEMPLATE, ALIGN_WEIGHTS)
    canonical = sim_apply(sim0, source) + motion.delta.astype(np.float64)
    to_image = sim_compose(sim_inverse(sim0), motion.pose.astype(np.float64))
    return sim_apply(to_image, canonical).astype(np.float32)


MIN_REFERENCE_FRAMES = 2 * FPS  # a style needs some motion to measure: 2 s with a face


@dataclass(eq=False)
class PoseReference:
    """pose (T, 4) [log scale, angle, tx, ty] relative to the first frame (NaN rows where no
    face was found) and where it came from (for messages)."""

    pose: np.ndarray
    source: str = "reference"
    _stats: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.pose = np.asarray(self.pose, np.float64)
        if self.pose.ndim != 2 or self.pose.shape[1] != 4:
            raise InputError(f"{self.source}: a pose reference is a (T, 4) head pose track, got {self.pose.shape}")
        found = int(np.isfinite(self.pose).all(axis=1).sum())
        if found < MIN_REFERENCE_FRAMES:
            raise InputError(f"{self.source}: a face was found in {found} frame(s); a pose reference needs "
                             f"{MIN_REFERENCE_FRAMES / FPS:g} s or more of one face (use a video of a person talking)")

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.pose).all(axis=1)

    def band_stats(self, tau: float) -> np.ndarray:
        """(2, 4) pose_band_stats of the reference (computed once per band)."""
        if tau not in self._stats:
            self._stats[tau] = pose_band_stats(self.pose, self.valid, tau)
        return self._stats[tau]
