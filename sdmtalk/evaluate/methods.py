"""The methods compared by `sdmtalk evaluate` and how each one's video is made for a clip.

Every method goes through the same TalkingFacePipeline (crop="full", so the generated frames
share the pixel frame of the photo they animate); methods differ only in the motion model
and its ablation switch (paper Fig. 3: without pose branch, without rhythmic branch,
without shallow diffusion; plus full-depth diffusion for comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.errors import InputError
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import BUNDLED_WEIGHTS, AnimateResult, TalkingFacePipeline


@dataclass(frozen=True)
class Method:
    """name: as in --methods; motion: the pipeline's motion model; ablation: the
    MotionControls.ablation value (None = full model); seeded: whether the output depends on
    the seed (only seeded methods run several seeds); still: the head held at the photo's
    pose (MotionControls.still: lips and blinks only); pose_scale: MotionControls.pose_scale;
    dub: the clip's own video dubbed with the speech (TalkingFacePipeline.dub_frames), not
    its first frame animated."""

    name: str
    motion: str
    label: str
    ablation: str | None = None
    seeded: bool = True
    blink: bool = True
    still: bool = False
    pose_scale: float = 1.0
    dub: bool = False


METHODS = {m.name: m for m in (
    Method("static", "static", "Static photo", seeded=False, blink=False),
    Method("energy", "energy", "Energy baseline"),
    Method("linear", "linear", "Linear (ridge) baseline", seeded=False),
    Method("sdm", "sdm", "SDM (ours)"),
    Method("sdm-no-pose", "sdm", "SDM w/o pose branch", ablation="no-pose"),
    Method("sdm-no-rhythm", "sdm", "SDM w/o rhythmic branch", ablation="no-rhythm"),
    Method("sdm-no-diffusion", "sdm", "SDM w/o shallow diffusion", ablation="no-diffusion"),
    Method("sdm-full-diffusion", "sdm", "SDM, full-depth diffusion", ablation="full-diffusion"),
    # what rendering costs the image without head motion (SSIM punishes any head motion that
    # is not the speaker's own): not in the default list
    Method("sdm-still", "sdm", "SDM, head still", still=True),
    Method("sdm-half-head", "sdm", "SDM, head motion x0.5", pose_scale=0.5),
    # the clip's own frames with SDM's lips for its speech: what `sdmtalk dub` does to a video
    Method("dub", "sdm", "Dub (the clip's own video)", blink=False, still=True, dub=True),
)}
DEFAULT_METHODS = ("static", "energy", "linear", "sdm", "sdm-no-pose", "sdm-no-rhythm", "sdm-no-diffusion",
                   "sdm-full-diffusion")


def parse_methods(names: str | list[str] | tuple[str, ...]) -> list[Method]:
    """'static,energy' or a list of names -> Methods (order kept, duplicates dropped)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise InputError(f"unknown method(s) {', '.join(unknown) or '(none given)'} in --methods: "
                         f"choose from {', '.join(METHODS)}")
    return [METHODS[n] for n in dict.fromkeys(names)]


def seeds_for(method: Method, seeds: int) -> list[int]:
    """Seeds 0..seeds-1 for a seeded method; [0] for a deterministic one."""
    return list(range(seeds)) if method.seeded else [0]


class MethodRunner:
    """Builds one pipeline per (motion, blink) up front (so missing weights fail before any
    clip is read) and generates a method's frames for a photo + speech."""

    def __init__(self, methods: list[Method], weights=None, size: int = 512):
        path = Path(weights) if weights else BUNDLED_WEIGHTS
        if any(m.motion == "sdm" for m in methods) and not path.is_file():
            raise InputError(f"SDM weights not found at {path}: pass --weights RUN_DIR/sdm.safetensors "
                             "or leave the sdm methods out (--methods static,energy)")
        self.methods = methods
        self._pipes = {}
        for m in methods:
            key = (m.motion, m.blink)
            if key not in self._pipes:
                self._pipes[key] = TalkingFacePipeline(motion=m.motion, weights=weights, size=size,
                                                       crop="full", blink=m.blink, quiet=True)

    def generate(self, method: Method, image: np.ndarray, wav: np.ndarray, seed: int, face=None,
                 video: tuple[Path, int] | None = None):
        """image (H, W, 3) uint8 RGB + wav (N,) 16 kHz -> AnimateResult with frames
        (T, H, W, 3) in the photo's pixel frame. video: (path, index of the photo in it at
        25 fps) for a dub method: its frames from there on are dubbed instead."""
        controls = MotionControls(seed=seed, ablation=method.ablation, still=method.still,
                                   pose_scale=method.pose_scale)
        if method.dub:
            return self._dub(method, wav, controls, *video)
        result = self._pipes[(method.motion, method.blink)].animate(image, wav, controls, face=face)
        if result.frames.shape[1:3] != image.shape[:2]:
            raise RuntimeError(f"{method.name}: crop='full' gave frames of {result.frames.shape[1:3]}, "
                               f"expected the photo's size {image.shape[:2]}")
        return result

    def _dub(self, method: Method, wav: np.ndarray, controls: MotionControls, path: Path, start: int):
        """The dubbed video from frame `start` on (the speech is preceded by `start` frames of
        silence, then those frames are dropped), as an AnimateResult."""
        hop = SAMPLE_RATE // FPS
        padded = np.concatenate([np.zeros(start * hop, np.float32), np.asarray(wav, np.float32)])
        pipe = self._pipes[(method.motion, method.blink)]
        frames = np.stack(list(pipe.dub_frames(path, padded, controls, fps=FPS))[start:])
        return AnimateResult(frames, None, None, None, FPS, [])
