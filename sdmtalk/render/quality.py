"""Numbers for how a rendered frame holds up: streaks, pixels invented off the photo, flicker.

Used by the renderer tests and benchmarks/render_gallery.py, so a regression shows as a number.

- Streaks: runs of pixels that barely change along one axis while the image is textured
  across it (what stretching or replicating a border row/column draws), and that the photo
  did not have at the same place.
- Outside share: the fraction of output pixels the warp sampled from outside the photo.
- Flicker: mean absolute second temporal difference of a region (popping, noise), which a
  smooth motion keeps small.
"""

from __future__ import annotations

import cv2
import numpy as np

STREAK_RUN = 15  # px: a streak is at least this long
STREAK_FLAT = 0.35  # mean |step| along the run below this (grey levels) ...
STREAK_TEXTURE = 2.5  # ... while the mean |step| across it is above this
STREAK_TOLERANCE = 0.03  # photo streaks count as 'already there' within this fraction of the side


def luma(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 luma of an (H, W, 3) RGB or (H, W) image."""
    img = np.asarray(image, np.float32)
    return img if img.ndim == 2 else img @ np.array([0.299, 0.587, 0.114], np.float32)


def streak_mask(image: np.ndarray, run: int = STREAK_RUN) -> np.ndarray:
    """(H, W) bool: pixels inside a run of `run` px that is flat along one axis and textured
    across it (vertical or horizontal streaks)."""
    g = luma(image)
    out = np.zeros(g.shape, bool)
    for axis in (0, 1):  # 0: flat down a column (vertical streak), 1: along a row
        along = np.abs(np.diff(g, axis=axis, append=g.take([-1], axis=axis)))
        across = np.abs(np.diff(g, axis=1 - axis, append=g.take([-1], axis=1 - axis)))
        ksize = (1, run) if axis == 0 else (run, 1)  # cv2: (width, height)
        flat = cv2.blur(along, ksize, borderType=cv2.BORDER_REFLECT) < STREAK_FLAT
        out |= flat & (cv2.blur(across, ksize, borderType=cv2.BORDER_REFLECT) > STREAK_TEXTURE)
    return out


def photo_reference(photo: np.ndarray, box: tuple[int, int, int], out_side: int) -> np.ndarray:
    """What the photo shows in the crop box (x0, y0, side) at out_side px; black where the box
    leaves the photo (a black area has no streaks, so anything drawn there is new)."""
    x0, y0, side = box
    s = out_side / side
    m = np.array([[s, 0.0, (0.5 - x0) * s - 0.5], [0.0, s, (0.5 - y0) * s - 0.5]])
    return cv2.warpAffine(
        photo,
        m,
        (out_side, out_side),
        flags=cv2.INTER_AREA,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def new_streak_share(
    frame: np.ndarray, reference: np.ndarray, ignore: np.ndarray | None = None
) -> float:
    """Share of frame pixels in streaks that the reference (the photo in the same pixel frame)
    has nowhere near (within STREAK_TOLERANCE of the side: the head may move). ignore: (H, W)
    bool pixels not scored (the painted mouth interior, whose smooth shading is no streak)."""
    r = max(1, int(round(STREAK_TOLERANCE * max(frame.shape[:2]))))
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    old = cv2.dilate(streak_mask(reference).astype(np.uint8), kernel)
    new = streak_mask(frame) & (old == 0)
    if ignore is not None:
        new &= ~ignore
    return float(new.mean())


def mouth_interior(shape: tuple, landmarks: np.ndarray, grow: int = 2) -> np.ndarray:
    """(H, W) bool: inside the inner lips (60..67) of landmarks (68, 2), grown by `grow` px."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(landmarks)[60:68]).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0


def outside_share(renderer, landmarks: np.ndarray) -> float:
    """Share of the output pixels of renderer.render(landmarks) sampled from outside the photo
    (landmarks (68, 2) in photo pixels). Pixels outside the box (crop="full") are the photo's."""
    lm = renderer.to_crop(np.asarray(landmarks, np.float64))
    map_x, map_y = renderer.warp.maps(renderer.mesh.points_for(lm))
    x0, y0, side = renderer.box
    scale = renderer.source_crop.shape[0] / side
    # crop pixel -> photo pixel (centres as in cv2.resize); the photo spans [-0.5, W - 0.5)
    px, py = (map_x + 0.5) / scale - 0.5 + x0, (map_y + 0.5) / scale - 0.5 + y0
    h, w = renderer.photo_shape
    outside = (px < -0.5) | (px > w - 0.5) | (py < -0.5) | (py > h - 0.5)
    total = map_x.size if renderer.crop == "face" else h * w
    return float(outside.sum() / total)


def temporal_flicker(frames: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean |F[t+1] - 2 F[t] + F[t-1]| of luma over frames (T, H, W, 3) inside box
    (x0, y0, x1, y1), grey levels per frame: 0 for a still or uniformly moving region."""
    x0, y0, x1, y1 = box
    g = np.stack([luma(f[y0:y1, x0:x1]) for f in frames])
    if len(g) < 3:
        raise ValueError("temporal_flicker needs at least 3 frames")
    return float(np.abs(g[2:] - 2 * g[1:-1] + g[:-2]).mean())


def mouth_box(landmarks: np.ndarray, margin: float = 0.25) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the outer lips of all landmarks (T, 68, 2), grown by margin x
    the mouth width."""
    lips = np.asarray(landmarks, np.float64)[:, 48:60].reshape(-1, 2)
    lo, hi = lips.min(0), lips.max(0)
    pad = margin * (hi[0] - lo[0])
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    return max(x0, 0), max(y0, 0), x1, y1
