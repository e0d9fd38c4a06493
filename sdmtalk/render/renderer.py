"""Renderer: warp one photo so its face follows a landmark sequence (training-free).

crop="face": a square box around the face (about twice the landmark extent, padded by
replicating the photo's border where it runs off the photo) resized to size x size; the
mesh warp runs in that crop. crop="full": the same box at the photo's own resolution (no
resampling), pasted back into the photo. The warp is the identity on the box border (fixed
anchors), so the paste has no seam and every pixel outside the box is the photo's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from sdmtalk.render.mesh import FaceMesh, PiecewiseAffineWarp, face_ring
from sdmtalk.render.mouth import MouthFiller

CROPS = ("face", "full")
BOX_SCALE = 2.0  # crop side / largest landmark extent
MIN_FACE_PX = 8  # landmark extent below this cannot drive a mesh


def face_box(landmarks: np.ndarray) -> tuple[int, int, int]:
    """Square crop (x0, y0, side) in photo pixels around landmarks (68, 2), forehead included."""
    lm = np.asarray(landmarks, np.float64)
    extent = float((lm.max(0) - lm.min(0)).max())
    side = int(round(BOX_SCALE * extent))
    ring = face_ring(lm)  # centred on the ring around face and forehead
    centre = (ring.min(0) + ring.max(0)) / 2
    x0, y0 = np.round(centre - side / 2).astype(int)
    return int(x0), int(y0), side


def crop_square(image: np.ndarray, x0: int, y0: int, side: int, out_size: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side], border-replicated where the box leaves the photo, resized
    to (out_size, out_size)."""
    h, w = image.shape[:2]
    region = image[max(y0, 0) : min(y0 + side, h), max(x0, 0) : min(x0 + side, w)]
    if region.size == 0:
        raise ValueError(f"crop box ({x0}, {y0}, side {side}) lies outside the {w}x{h} photo")
    pad = (max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w))
    if any(pad):
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
    if out_size == side:
        return np.ascontiguousarray(region)
    interp = cv2.INTER_AREA if out_size < side else cv2.INTER_CUBIC
    return cv2.resize(region, (out_size, out_size), interpolation=interp)


def _check_landmarks(landmarks: np.ndarray, name: str) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"{name} must be finite (68, 2) pixel coordinates, got shape {lm.shape}")
    return lm


class Renderer:
    """Warps `image` (H, W, 3) uint8 RGB whose face has `source_landmarks` (68, 2) photo pixels.

    render(landmarks) gives (size, size, 3) for crop="face", or the whole photo with H and W
    cut to even numbers for crop="full" (there `size` is not used: the box keeps the photo's
    resolution).
    """

    def __init__(
        self, image: np.ndarray, source_landmarks: np.ndarray, size: int = 256, crop: str = "face"
    ):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if int(size) < 64 or int(size) % 2:
            raise ValueError(f"size must be an even number of pixels >= 64, got {size}")
        src = _check_landmarks(source_landmarks, "source_landmarks")
        if (src.max(0) - src.min(0)).max() < MIN_FACE_PX:
            raise ValueError(f"face too small to render: landmarks span < {MIN_FACE_PX} px")
        self.crop, self.size = crop, int(size)
        x0, y0, side = face_box(src)
        self.box = (x0, y0, side)
        out_side = self.size if crop == "face" else side
        self._scale = out_side / side
        self._origin = np.array([x0, y0], np.float64)
        self.source_crop = crop_square(image, x0, y0, side, out_side)
        src_crop = self.to_crop(src)
        self.mesh = FaceMesh(src_crop, out_side, out_side)
        self.warp = PiecewiseAffineWarp(
            self.source_crop, self.mesh.source_points, self.mesh.triangles
        )
        self.mouth = MouthFiller(self.source_crop, src_crop)
        if crop == "full":
            h, w = image.shape[:2]
            self._photo = np.ascontiguousarray(image[: h - h % 2, : w - w % 2])
            self._paste = self._paste_window(side)

    def to_crop(self, landmarks: np.ndarray) -> np.ndarray:
        """Photo pixels -> crop pixels (pixel centres map as in cv2.resize)."""
        return (np.asarray(landmarks, np.float64) - self._origin + 0.5) * self._scale - 0.5

    def _paste_window(self, side: int) -> tuple[slice, slice, slice, slice]:
        """(photo rows, photo cols, crop rows, crop cols) where the box overlaps the photo."""
        x0, y0, _ = self.box
        h, w = self._photo.shape[:2]
        px0, py0, px1, py1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        return (
            slice(py0, py1),
            slice(px0, px1),
            slice(py0 - y0, py1 - y0),
            slice(px0 - x0, px1 - x0),
        )

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        """One frame for target landmarks (68, 2) in photo pixels: uint8 (size, size, 3) for
        crop="face", (H, W, 3) with H, W even for crop="full"."""
        lm = self.to_crop(_check_landmarks(landmarks, "landmarks"))
        frame = self.warp.warp(self.mesh.points_for(lm))
        self.mouth.apply(frame, lm)
        if self.crop == "face":
            return frame
        rows, cols, crop_rows, crop_cols = self._paste
        out = self._photo.copy()
        out[rows, cols] = frame[crop_rows, crop_cols]
        return out

    def render_sequence(
        self, landmarks: np.ndarray, progress: bool | Callable[[int, int], None] | None = None
    ) -> Iterator[np.ndarray]:
        """Frames for landmarks (T, 68, 2), one at a time. progress: True for a tqdm bar
        (hidden when stderr is not a terminal), or a callable(done, total)."""
        lm = np.asarray(landmarks)
        if lm.ndim != 3 or lm.shape[1:] != (68, 2):
            raise ValueError(f"landmarks must be (T, 68, 2), got {lm.shape}")
        bar = None
        if progress is True:
            bar = tqdm(total=len(lm), desc="render", unit="frame", disable=not sys.stderr.isatty())
        try:
            for i, frame_landmarks in enumerate(lm):
                yield self.render(frame_landmarks)
                if bar is not None:
                    bar.update(1)
                elif callable(progress):
                    progress(i + 1, len(lm))
        finally:
            if bar is not None:
                bar.close()
