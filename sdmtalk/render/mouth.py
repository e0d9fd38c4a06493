"""Mouth interior: a synthesized cavity where the lips open wider than in the source photo.

The warp stretches whatever the source shows between the inner lips (60..67). When the
source mouth is closed that is a seam of lip pixels, so the opening is painted with a dark
red-brown cavity (darker toward its centre) and a hint of upper teeth under the upper lip.
The cavity is blended in by how much of the opening is new: a source that already shows an
open mouth keeps its own pixels when the target opens no wider.
"""

from __future__ import annotations

import cv2
import numpy as np

UPPER_INNER = np.array([60, 61, 62, 63, 64])  # inner lip line, corner to corner, upper lip
LOWER_INNER = np.array([60, 67, 66, 65, 64])  # same for the lower lip
CAVITY_EDGE_RGB = np.array([105.0, 45.0, 42.0])  # red-brown near the lips
CAVITY_CENTRE_RGB = np.array([30.0, 10.0, 12.0])  # almost black deep in the mouth
TEETH_RGB = np.array([222.0, 214.0, 200.0])
TEETH_MAX_HEIGHT = 0.13  # visible upper-teeth band, fraction of the mouth width
FEATHER_SIGMA = 0.8  # px: softens the cavity edge over 1-2 px


def mouth_opening(landmarks: np.ndarray) -> float:
    """Mean inner-lip gap (upper 61-63 to lower 67-65) over the inter-ocular distance."""
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[[67, 66, 65]] - lm[[61, 62, 63]], axis=1).mean()
    upper_below = (lm[[67, 66, 65], 1] - lm[[61, 62, 63], 1]).mean() > 0  # lips crossed: closed
    eyes = np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))
    return float(gap / max(eyes, 1e-6)) if upper_below else 0.0


def cavity_weight(source_opening: float, target_opening: float) -> float:
    """How much synthetic cavity to show: 0 when the target opens no wider than the source,
    1 when at least half of the target opening is new."""
    if target_opening <= source_opening:
        return 0.0
    return float(min(1.0, 2.0 * (target_opening - source_opening) / target_opening))


def face_brightness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Median skin luminance of the face (jaw line + nose bridge hull) relative to 150."""
    hull = cv2.convexHull(np.round(landmarks[list(range(1, 16)) + [27]]).astype(np.int32))
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    if not mask.any():
        return 1.0
    luma = image[mask > 0].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return float(np.clip(np.median(luma) / 150.0, 0.5, 1.4))


def _lip_lines(points: np.ndarray, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray):
    """Upper/lower inner lip lines in the mouth frame: (s, t_upper), (s, t_lower) samples."""
    rel = points - origin
    s, t = rel @ ex, rel @ ey
    up_s, lo_s = np.maximum.accumulate(s[UPPER_INNER]), np.maximum.accumulate(s[LOWER_INNER])
    return (up_s, t[UPPER_INNER]), (lo_s, t[LOWER_INNER])


class MouthFiller:
    """Paints the mouth cavity into warped frames of one source face.

    source_image (H, W, 3) uint8 and source_landmarks (68, 2) are in the renderer's crop.
    """

    def __init__(self, source_image: np.ndarray, source_landmarks: np.ndarray):
        self.source_opening = mouth_opening(source_landmarks)
        light = face_brightness(source_image, np.asarray(source_landmarks, np.float64))
        self._edge_rgb = CAVITY_EDGE_RGB * light
        self._centre_rgb = CAVITY_CENTRE_RGB * light
        self._teeth_rgb = np.minimum(TEETH_RGB * light, 245.0)

    def apply(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Blend the cavity into frame (H, W, 3) uint8 (in place) for target landmarks (68, 2)."""
        lm = np.asarray(landmarks, np.float64)
        opening = mouth_opening(lm)
        weight = cavity_weight(self.source_opening, opening)
        if weight <= 0.0:
            return frame
        h, w = frame.shape[:2]
        poly = lm[60:68]
        x0, y0 = np.floor(poly.min(0)).astype(int) - 3
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 4
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return frame
        alpha = self._coverage(poly - (x0, y0), (y1 - y0, x1 - x0)) * weight
        cavity = self._cavity(lm, x0, y0, x1, y1, opening)
        region = frame[y0:y1, x0:x1].astype(np.float32)
        region += alpha[..., None] * (cavity - region)
        frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
        return frame

    @staticmethod
    def _coverage(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Feathered inner-lip polygon mask (h, w) float32 in [0, 1]."""
        mask = np.zeros(shape, np.float32)
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        return cv2.GaussianBlur(mask, (0, 0), FEATHER_SIGMA)

    def _cavity(self, lm, x0, y0, x1, y1, opening) -> np.ndarray:
        """Cavity colours (h, w, 3) float32 for the box [x0, x1) x [y0, y1)."""
        left, right = lm[60], lm[64]
        width = max(float(np.linalg.norm(right - left)), 1e-3)
        ex = (right - left) / width  # along the mouth, corner 60 -> 64
        ey = np.array([-ex[1], ex[0]])  # toward the chin
        (up_s, up_t), (lo_s, lo_t) = _lip_lines(lm, left, ex, ey)
        gx, gy = np.meshgrid(np.arange(x0, x1) - left[0], np.arange(y0, y1) - left[1])
        s, t = gx * ex[0] + gy * ex[1], gx * ey[0] + gy * ey[1]
        t_up = np.interp(s, up_s, up_t)
        gap = np.maximum(np.interp(s, lo_s, lo_t) - t_up, 0.5)
        u = np.clip(s / width, 0.0, 1.0)  # 0..1 corner to corner
        v = np.clip((t - t_up) / gap, 0.0, 1.0)  # 0 at the upper lip, 1 at the lower lip
        # Dark red-brown gradient: darkest at the centre of the opening.
        depth = 1.0 - np.clip(np.hypot((u - 0.5) / 0.5, (v - 0.5) / 0.5), 0.0, 1.0)
        shade = (depth**0.7)[..., None]
        cavity = self._edge_rgb + shade * (self._centre_rgb - self._edge_rgb)
        # Upper teeth: a light band under the upper lip growing with the opening, fading
        # toward the corners and with a soft lower edge.
        teeth_px = np.minimum(0.45 * gap, TEETH_MAX_HEIGHT * width * min(1.0, opening / 0.25))
        below = (t - t_up) - teeth_px
        teeth = np.clip(0.5 - below, 0.0, 1.0) * np.sin(np.pi * u) ** 0.6 * 0.9
        teeth_rgb = self._teeth_rgb * (0.75 + 0.25 * np.sin(np.pi * u))[..., None]
        cavity += teeth[..., None] * (teeth_rgb - cavity)
        return cavity.astype(np.float32)
