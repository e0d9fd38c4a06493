"""Renderer: warp one photo so its face follows a landmark sequence (training-free).

crop="face": a square box around the face (about twice the landmark extent) resized to
size x size; the mesh warp runs in that crop. Near an edge of the photo the box is shifted
(and, for a photo smaller than the box, shrunk) to stay inside the photo, so no pixel is
invented for a still head: a border-replicated pad would show as streaks that move with
the head. crop="full": the same box at the photo's own resolution (no resampling), pasted
back into the photo. The warp is the identity on the box border (fixed anchors), so the
paste has no seam and every pixel outside the box is the photo's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from sdmtalk.face.align import lip_gap
from sdmtalk.face.mouth_state import sealed_lips, teeth_mask, teeth_showing
from sdmtalk.render.mesh import FaceMesh, PiecewiseAffineWarp, face_ring
from sdmtalk.render.mouth import MouthFiller, PhotoTeeth

CROPS = ("face", "full")
BOX_SCALE = 2.0  # crop side / largest landmark extent
MIN_FACE_PX = 8  # landmark extent below this cannot drive a mesh
SEAL_OVERLAP_PX = 1.0  # sealed lips overlap by this much, so the lip triangles cover the seam
OPEN_PX = 1.5  # inner lips further apart than this (crop px) are an open mouth to paint over
INPAINT_RADIUS = 3  # px around each painted-over pixel that cv2.inpaint reads
# The painted-over opening reaches this far past the inner lips, x crop side: the lip band
# itself stays the photo's (wider paint, or lips textured from their outer part only, gave
# open-photo mouths further from real ones: docs/RESULTS.md, The photo's own mouth)
PAINT_GROW = 0.004
INPAINT_FULL_PX = 96  # mouth regions up to this wide are inpainted at full size (every photo crop)
TEETH_REUSE = 0.2  # share of teeth-like pixels in the photo's opening above which its teeth are reused


def face_box(landmarks: np.ndarray, width: int, height: int) -> tuple[int, int, int]:
    """Square crop (x0, y0, side) inside a (height, width) photo around landmarks (68, 2).

    The ideal box is BOX_SCALE x the landmark extent, centred on the ring around face and
    forehead. Near an edge it is shifted back into the photo, and shrunk only where the photo
    is smaller than the box: the crop never samples outside the photo (no invented border).
    """
    lm = np.asarray(landmarks, np.float64)
    extent = float((lm.max(0) - lm.min(0)).max())
    side = min(int(round(BOX_SCALE * extent)), int(width), int(height))
    ring = face_ring(lm)
    centre = (ring.min(0) + ring.max(0)) / 2
    x0, y0 = np.round(centre - side / 2).astype(int)
    return int(np.clip(x0, 0, width - side)), int(np.clip(y0, 0, height - side)), side


def crop_square(image: np.ndarray, x0: int, y0: int, side: int, out_size: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side] (a box inside the photo) resized to (out_size, out_size)."""
    h, w = image.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + side > w or y0 + side > h:
        raise ValueError(f"crop box ({x0}, {y0}, side {side}) leaves the {w}x{h} photo")
    region = image[y0 : y0 + side, x0 : x0 + side]
    if out_size == side:
        return np.ascontiguousarray(region)
    interp = cv2.INTER_AREA if out_size < side else cv2.INTER_CUBIC
    return cv2.resize(region, (out_size, out_size), interpolation=interp)


def _check_landmarks(landmarks: np.ndarray, name: str) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"{name} must be finite (68, 2) pixel coordinates, got shape {lm.shape}")
    return lm


def rest_mouth_image(crop: np.ndarray, source: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """The crop (H, W, 3) with its face moved from landmarks `source` to `rest` (68, 2) crop
    pixels and the lips sealed: they meet, a little overlapped, on their midline; the gap
    `rest` keeps between the inner lips then shows lip texture, and the mouth filler paints
    whatever the speech opens beyond it. An open photo mouth is first painted over
    (`paint_over_mouth`), so no tooth or dark cavity is squeezed into a line between the
    lips; lips that already meet keep their own seam."""
    h, w = crop.shape[:2]
    mesh = FaceMesh(source, w, h)
    if lip_gap(np.asarray(source, np.float64)) > OPEN_PX:
        crop = paint_over_mouth(crop, source)
    warp = PiecewiseAffineWarp(crop, mesh.source_points.astype(np.float64), mesh.triangles)
    return warp.warp(mesh.points_for(sealed_lips(rest, overlap=SEAL_OVERLAP_PX)))


def paint_over_mouth(crop: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The crop with the photo's mouth opening (inner-lip polygon, a little grown) and any
    tooth-bright pixel inside the outer lip line filled in from the lips around them
    (cv2.inpaint): dlib's inner-lip points often sit on the teeth of a wide-open mouth, so
    teeth reach into the lip band that a sealed lip is painted from."""
    lm = np.round(np.asarray(source)).astype(np.int32)
    grow = max(1, int(round(PAINT_GROW * crop.shape[0])))
    # Everything below happens inside the mouth's box, with room for the growth and for what
    # inpaint reads around the mask: the same pixels as over the whole crop, which a dubbed
    # video's frames made costly (a mask, a colour median and a nonzero pass each, per frame).
    m = INPAINT_RADIUS + 2
    x0, y0 = np.maximum(lm[48:68].min(0) - grow - m - 1, 0)
    x1, y1 = np.minimum(lm[48:68].max(0) + grow + m + 2, (crop.shape[1], crop.shape[0]))
    out = crop.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    box, local = crop[y0:y1, x0:x1], lm - (x0, y0)
    mask = np.zeros(box.shape[:2], np.uint8)
    cv2.fillPoly(mask, [local[60:68]], 255)
    mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) | teeth_mask(box, local)
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return out
    # inpaint only around the mask (it reads INPAINT_RADIUS px beyond it)
    my0, my1 = max(ys.min() - m, 0), min(ys.max() + m + 1, mask.shape[0])
    mx0, mx1 = max(xs.min() - m, 0), min(xs.max() + m + 1, mask.shape[1])
    region = np.ascontiguousarray(box[my0:my1, mx0:mx1])
    out[y0 + my0 : y0 + my1, x0 + mx0 : x0 + mx1] = _inpaint(region, mask[my0:my1, mx0:mx1])
    return out


def _inpaint(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """cv2.inpaint (Telea) of region where mask; a mouth wider than INPAINT_FULL_PX (a large
    video frame) is filled at half size, where the fill is smooth anyway and costs a quarter."""
    if region.shape[1] <= INPAINT_FULL_PX:
        return cv2.inpaint(region, mask, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    h, w = region.shape[:2]
    small = cv2.resize(region, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
    small_mask = cv2.dilate(small_mask, np.ones((3, 3), np.uint8))
    filled = cv2.resize(cv2.inpaint(small, small_mask, INPAINT_RADIUS, cv2.INPAINT_TELEA), (w, h),
                        interpolation=cv2.INTER_LINEAR)
    return np.where(mask[..., None] > 0, filled, region)


class Renderer:
    """Warps `image` (H, W, 3) uint8 RGB whose face has `source_landmarks` (68, 2) photo pixels.

    render(landmarks) gives (size, size, 3) for crop="face", or the whole photo with H and W
    cut to even numbers for crop="full" (there `size` is not used: the box keeps the photo's
    resolution). rest_landmarks (68, 2): the photo's face with its mouth at rest
    (face.mouth_state.rest_mouth); target landmarks are then motion from that face, and the
    photo's own mouth opening is closed before any frame is drawn.
    """

    def __init__(
        self, image: np.ndarray, source_landmarks: np.ndarray, size: int = 256, crop: str = "face",
        rest_landmarks: np.ndarray | None = None,
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
        if crop == "full":  # the video encoder needs even H and W: cut first, box inside that
            h, w = image.shape[:2]
            image = self._photo = np.ascontiguousarray(image[: h - h % 2, : w - w % 2])
        self.photo_shape = image.shape[:2]
        x0, y0, side = face_box(src, image.shape[1], image.shape[0])
        self.box = (x0, y0, side)
        out_side = self.size if crop == "face" else side
        self._scale = out_side / side
        self._origin = np.array([x0, y0], np.float64)
        self.source_crop = crop_square(image, x0, y0, side, out_side)
        src_crop = self.to_crop(src)
        teeth, sealed = None, False
        if rest_landmarks is not None:  # motion starts from the mouth at rest, not the photo's
            rest_crop = self.to_crop(_check_landmarks(rest_landmarks, "rest_landmarks"))
            sealed = np.abs(rest_crop - src_crop).max() >= 0.25  # a closed photo mouth stays as it is
        if sealed:
            if teeth_showing(self.source_crop, src_crop) >= TEETH_REUSE:
                teeth = PhotoTeeth(self.source_crop, src_crop)
            self.source_crop = rest_mouth_image(self.source_crop, src_crop, rest_crop)
            src_crop = rest_crop
        self.mesh = FaceMesh(src_crop, out_side, out_side)
        self.warp = PiecewiseAffineWarp(
            self.source_crop, self.mesh.source_points, self.mesh.triangles
        )
        self.mouth = MouthFiller(self.source_crop, src_crop, teeth, sealed=sealed)

    def to_crop(self, landmarks: np.ndarray) -> np.ndarray:
        """Photo pixels -> crop pixels (pixel centres map as in cv2.resize)."""
        return (np.asarray(landmarks, np.float64) - self._origin + 0.5) * self._scale - 0.5

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        """One frame for target landmarks (68, 2) in photo pixels: uint8 (size, size, 3) for
        crop="face", (H, W, 3) with H, W even for crop="full"."""
        lm = self.to_crop(_check_landmarks(landmarks, "landmarks"))
        points = self.mesh.points_for(lm)
        frame = self.warp.warp(points)
        self.mouth.apply(frame, points[:68])  # the landmarks as drawn (room-limited head)
        if self.crop == "face":
            return frame
        x0, y0, side = self.box
        out = self._photo.copy()
        out[y0 : y0 + side, x0 : x0 + side] = frame
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
