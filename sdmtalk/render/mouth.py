"""Mouth interior: a synthesized cavity where the lips open wider than in the source photo.

The warp stretches whatever the source shows between the inner lips (60..67). When the
source mouth is closed that is a seam of lip pixels, so the opening is painted: a cavity in
the photo's own lip colour, darkened (a slit is nearly black, a wide opening lets light in),
upper teeth under the upper lip that show as the lip rises, and a tongue shading the lower
part of a wide opening. Every term is a smooth function of the landmarks, so a smooth
motion gives a smooth mouth (no popping). Colours come from the photo (lips, skin, light),
so a grayscale photo gets a grey mouth. The cavity is blended in by how much of the opening
is new: a source that already shows an open mouth keeps its own pixels when the target
opens no wider.
"""

from __future__ import annotations

import cv2
import numpy as np

from sdmtalk.face.align import lip_gap

UPPER_INNER = np.array([60, 61, 62, 63, 64])  # inner lip line, corner to corner, upper lip
LOWER_INNER = np.array([60, 67, 66, 65, 64])  # same for the lower lip
EDGE_DARK, CENTRE_DARK = 0.42, 0.10  # cavity edge / centre brightness x the lip colour
TEETH_RGB = np.array([232.0, 226.0, 214.0])  # under the photo's light; tinted toward the skin
TONGUE_DARK = 0.62  # tongue brightness x the lip colour
TEETH_MAX_HEIGHT = 0.13  # visible upper-teeth band, fraction of the mouth width
CAVITY_RAMP = 0.03  # inter-ocular units of new opening over which the cavity fades in
# A photo's lips sealed at rest part into a softer slit: the cavity fades in over a wider
# opening and is lighter, so a slightly parted sealed mouth is not a black line between the
# lips (real shut and nearly shut mouths show none: docs/RESULTS.md, "A lighter, slower
# mouth cavity"). Mouths that are the photo's own keep the darker slit, which re-detects as
# the clearer opening (lip r 0.444 against 0.427 from closed photos).
SEALED_CAVITY_RAMP = 0.1
SEALED_EDGE_DARK, SEALED_CENTRE_DARK = 0.6, 0.3
LUMA = np.array([0.299, 0.587, 0.114])
FEATHER_SIGMA = 0.8  # px: softens the cavity edge over 1-2 px
PHOTO_TEETH_SHARE = 0.85  # a photo's teeth fill this share of its opening, from the upper lip down
PHOTO_TEETH_MAX = 0.2  # their height at most, fraction of the mouth width (a wide-open photo)
# The dark line where closed lips meet, as real closed mouths show it (probes/probe_lip_seam.py,
# 60 training speakers): darkest at 0.71 x the lip luma, 0.03 mouth widths above the line
# between dlib's inner lip points, 0.07 mouth widths wide at half depth. A mouth sealed from an
# open photo has none (1.07 x the lip luma there): it is drawn, as a Gaussian in luma.
SEAM_DARK = 0.66  # luma x this at the seam's centre
SEAM_SHIFT = -0.025  # its centre, mouth widths below the meeting line (negative: above)
SEAM_SIGMA = 0.03  # mouth widths
SEAM_TAPER = 0.05  # mouth widths past each corner over which it fades out


def mouth_opening(landmarks: np.ndarray) -> float:
    """Mean inner-lip gap (upper 61-63 to lower 67-65) over the inter-ocular distance."""
    lm = np.asarray(landmarks, np.float64)
    gap = lip_gap(lm)
    upper_below = (lm[[67, 66, 65], 1] - lm[[61, 62, 63], 1]).mean() > 0  # lips crossed: closed
    eyes = np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0))
    return float(gap / max(eyes, 1e-6)) if upper_below else 0.0


def cavity_weight(source_opening: float, target_opening: float, sealed: bool = False,
                  sealed_ramp: float = CAVITY_RAMP) -> float:
    """How much synthetic cavity to show: 0 when the target opens no wider than the source,
    rising smoothly to 1 once the new opening reaches the source's own (or CAVITY_RAMP for a
    closed source, and sealed_ramp for a source whose lips were sealed at rest: its opening
    is lip texture, not a mouth interior to keep): less leaves stretched lip pixels in the
    gap, a switch would pop."""
    ramp = sealed_ramp if sealed else max(source_opening, CAVITY_RAMP)
    return _smoothstep(target_opening - source_opening, 0.0, ramp)


def _median_rgb(image: np.ndarray, inside: list, outside: list | None = None) -> np.ndarray | None:
    """Median RGB of the pixels inside polygon `inside` and not inside `outside` (None if none)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(inside).astype(np.int32)], 1)
    if outside is not None:
        cv2.fillPoly(mask, [np.round(outside).astype(np.int32)], 0)
    return np.median(image[mask > 0].astype(np.float64), 0) if mask.any() else None


def face_colours(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(skin RGB, lip RGB) medians of the photo: skin inside the jaw line + nose bridge hull,
    lips between the outer and inner lip lines. Fallbacks for tiny faces: mid-grey skin and a
    lip a little darker and redder than the skin."""
    lm = np.asarray(landmarks, np.float64)
    hull = cv2.convexHull(lm[list(range(1, 16)) + [27]].astype(np.float32))[:, 0]
    skin = _median_rgb(image, hull)
    skin = np.full(3, 150.0) if skin is None else skin
    lips = _median_rgb(image, lm[48:60], lm[60:68])
    return skin, (skin * [0.85, 0.7, 0.7] if lips is None else lips)


def _lip_lines(points: np.ndarray, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray):
    """Upper/lower inner lip lines in the mouth frame: (s, t_upper), (s, t_lower) samples."""
    rel = points - origin
    s, t = rel @ ex, rel @ ey
    up_s, lo_s = np.maximum.accumulate(s[UPPER_INNER]), np.maximum.accumulate(s[LOWER_INNER])
    return (up_s, t[UPPER_INNER]), (lo_s, t[LOWER_INNER])


class MouthFiller:
    """Paints the mouth cavity into warped frames of one source face.

    source_image (H, W, 3) uint8 and source_landmarks (68, 2) are in the renderer's crop.
    seam: draw the dark line where sealed lips meet (draw_seam). A dub leaves it out: there the
    frames' lips are sealed only where the video's own speech opened them, so a drawn line
    came and went with the old words (docs/RESULTS.md, Dubbing). A source sealed at
    construction (a photo) also gets the softer slit (SEALED_*); a dub's frames, sealed
    or not frame by frame (set_source), keep one look, so it cannot switch between frames.
    """

    def __init__(self, source_image: np.ndarray, source_landmarks: np.ndarray,
                 teeth: PhotoTeeth | None = None, sealed: bool = False, seam: bool = True):
        self.source_opening = mouth_opening(source_landmarks)
        self.teeth, self.sealed, self.seam = teeth, sealed, seam
        self._ramp, self._edge_dark, self._centre_dark = (
            (SEALED_CAVITY_RAMP, SEALED_EDGE_DARK, SEALED_CENTRE_DARK) if sealed
            else (CAVITY_RAMP, EDGE_DARK, CENTRE_DARK))
        skin, lips = face_colours(source_image, source_landmarks)
        skin_luma = max(float(skin @ LUMA), 1.0)
        self._lips = lips
        # Teeth as bright as the light on the face allows, tinted a little toward the skin's
        # colour (a grey photo gets grey teeth).
        light = float(np.clip(skin_luma / 150.0, 0.5, 1.4))
        teeth_luma = min(float(TEETH_RGB @ LUMA) * light, 240.0)
        self._teeth_rgb = np.minimum(teeth_luma * (0.85 + 0.15 * skin / skin_luma), 250.0)

    def set_source(self, source_landmarks: np.ndarray, sealed: bool) -> None:
        """Measure new openings from this source mouth (a video: each frame's own), keeping
        the colours and teeth taken at construction (they must not flicker between frames)."""
        self.source_opening, self.sealed = mouth_opening(source_landmarks), sealed

    def apply(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Blend the cavity into frame (H, W, 3) uint8 (in place) for target landmarks (68, 2);
        lips sealed from an open photo get the dark line where lips meet while they do."""
        lm = np.asarray(landmarks, np.float64)
        opening = mouth_opening(lm)
        weight = cavity_weight(self.source_opening, opening, self.sealed, self._ramp)
        if self.sealed and self.seam and weight < 1.0:
            draw_seam(frame, lm, 1.0 - weight)
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
        u, v, t_below, gap, width = _mouth_coords(lm, x0, y0, x1, y1)
        # Light enters with the opening: a slit is nearly black, a wide mouth shows its walls.
        light = _smoothstep(opening, 0.05, 0.35)
        edge = self._lips * (self._edge_dark * (0.6 + 0.4 * light))
        centre = self._lips * self._centre_dark
        depth = 1.0 - np.clip(np.hypot((u - 0.5) / 0.5, (v - 0.5) / 0.5), 0.0, 1.0)
        cavity = edge + (depth**0.7)[..., None] * (centre - edge)
        # Tongue: a lip-coloured, dimly lit bulge rising from the lower lip in wide openings.
        bulge = np.clip(1.0 - np.hypot((u - 0.5) / 0.38, (v - 1.0) / 0.55), 0.0, 1.0)
        tongue = 0.8 * _smoothstep(opening, 0.12, 0.4) * np.sqrt(bulge)
        tongue_rgb = self._lips * TONGUE_DARK * (0.55 + 0.45 * bulge)[..., None]
        cavity += tongue[..., None] * (tongue_rgb - cavity)
        # Upper teeth: a band under the upper lip that shows as the lip rises, fading toward
        # the corners, with soft edges and faint gaps between the front teeth.
        show = _smoothstep(opening, 0.0, 0.08)  # talking mouths show their teeth early
        if self.teeth is not None:  # the photo's own teeth, at their own height under the upper lip
            teeth_px = np.minimum(0.6 * gap, self.teeth.height * width)
            teeth_rgb = self.teeth.sample(u, t_below / max(self.teeth.height * width, 1e-3))
        else:
            teeth_px = np.minimum(0.45 * gap, TEETH_MAX_HEIGHT * width * min(1.0, opening / 0.25))
            teeth_rgb = self._drawn_teeth(u, t_below, teeth_px)
        teeth = (
            np.clip(0.5 - (t_below - teeth_px), 0.0, 1.0) * np.sin(np.pi * u) ** 0.6 * 0.9 * show
        )
        cavity += teeth[..., None] * (teeth_rgb - cavity)
        return cavity.astype(np.float32)

    def _drawn_teeth(self, u, t_below, teeth_px) -> np.ndarray:
        """Synthetic upper teeth (a photo that shows none): the light on the face, shaded toward
        the corners and the lip, faint gaps between the front teeth."""
        gaps = 1.0 - 0.05 * np.cos(np.pi * (u - 0.5) * 8.0) ** 8  # 8 teeth across the mouth
        lip_shadow = 0.8 + 0.2 * np.clip(t_below / np.maximum(teeth_px, 0.5), 0.0, 1.0)
        return self._teeth_rgb * ((0.72 + 0.28 * np.sin(np.pi * u)) * gaps * lip_shadow)[..., None]


def draw_seam(frame: np.ndarray, landmarks: np.ndarray, strength: float) -> np.ndarray:
    """Darken frame (H, W, 3) uint8 in place along the line where the lips of landmarks (68, 2)
    meet (midway between the upper and lower inner lip lines): a real closed mouth's seam
    (SEAM_*), at `strength` (0..1), fading out past the corners."""
    lm = np.asarray(landmarks, np.float64)
    width = float(np.linalg.norm(lm[64] - lm[60]))
    if width < 2.0 or strength <= 0.0:
        return frame
    reach = 4.0 * SEAM_SIGMA * width + abs(SEAM_SHIFT) * width + 2
    pts = np.vstack([lm[60:68], lm[[48, 54]]])
    h, w = frame.shape[:2]
    x0, y0 = np.maximum(np.floor(pts.min(0) - reach).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(pts.max(0) + reach).astype(int) + 1, (w, h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame
    u, t_mid = _seam_coords(lm, x0, y0, x1, y1)
    beyond = np.maximum(np.maximum(-u, u - 1.0), 0.0) * width / max(SEAM_TAPER * width, 1e-6)
    shade = np.exp(-0.5 * ((t_mid / width - SEAM_SHIFT) / SEAM_SIGMA) ** 2) * np.clip(1.0 - beyond, 0.0, 1.0)
    factor = 1.0 - (1.0 - SEAM_DARK) * strength * shade
    region = frame[y0:y1, x0:x1].astype(np.float32) * factor[..., None].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    return frame


def _seam_coords(lm: np.ndarray, x0: int, y0: int, x1: int, y1: int):
    """Per pixel of the box: u (0..1 from corner 60 to 64, unclipped) and the distance (px)
    below the lips' meeting line (negative above it)."""
    s, t, (up_s, up_t), (lo_s, lo_t), width = _box_in_mouth_frame(lm, x0, y0, x1, y1)
    t_line = 0.5 * (np.interp(s, up_s, up_t) + np.interp(s, lo_s, lo_t))
    return s / width, t - t_line


class PhotoTeeth:
    """The upper teeth a photo shows, as a texture in the mouth's own frame: u 0..1 from corner
    60 to 64, v 0..1 from the upper inner lip down to `height` x the mouth width below it.
    A mouth opened from rest reuses them there: placed with the upper lip, never stretched
    with the opening."""

    SIZE = (24, 96)  # texture rows, columns

    def __init__(self, image: np.ndarray, landmarks: np.ndarray):
        lm = np.asarray(landmarks, np.float64)
        left, right = lm[60], lm[64]
        width = max(float(np.linalg.norm(right - left)), 1e-3)
        ex = (right - left) / width
        ey = np.array([-ex[1], ex[0]])
        (up_s, up_t), (lo_s, lo_t) = _lip_lines(lm, left, ex, ey)
        rows, cols = self.SIZE
        u = np.linspace(0.0, 1.0, cols)
        gap = np.maximum(np.interp(u * width, lo_s, lo_t) - np.interp(u * width, up_s, up_t), 0.0)
        self.height = float(np.clip(PHOTO_TEETH_SHARE * np.median(gap) / width, 0.03, PHOTO_TEETH_MAX))
        s = np.broadcast_to(u * width, (rows, cols))
        t = np.interp(s, up_s, up_t) + np.linspace(0.0, self.height * width, rows)[:, None]
        xy = left + s[..., None] * ex + t[..., None] * ey
        self.texture = cv2.remap(image.astype(np.float32), xy[..., 0].astype(np.float32),
                                 xy[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)

    def sample(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Texture colours (h, w, 3) at mouth coordinates u, v (clipped to 0..1)."""
        rows, cols = self.SIZE
        x = (np.clip(u, 0.0, 1.0) * (cols - 1)).astype(np.float32)
        y = (np.clip(v, 0.0, 1.0) * (rows - 1)).astype(np.float32)
        return cv2.remap(self.texture, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _smoothstep(x: float, lo: float, hi: float) -> float:
    t = min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mouth_coords(lm: np.ndarray, x0: int, y0: int, x1: int, y1: int):
    """Per pixel of the box: u (0..1 corner 60 to 64), v (0 at the upper inner lip, 1 at the
    lower), distance below the upper lip (px); and the gap (px, per pixel) and mouth width."""
    s, t, (up_s, up_t), (lo_s, lo_t), width = _box_in_mouth_frame(lm, x0, y0, x1, y1)
    t_up = np.interp(s, up_s, up_t)
    gap = np.maximum(np.interp(s, lo_s, lo_t) - t_up, 0.5)
    u = np.clip(s / width, 0.0, 1.0)
    v = np.clip((t - t_up) / gap, 0.0, 1.0)
    return u, v, t - t_up, gap, width


def _box_in_mouth_frame(lm: np.ndarray, x0: int, y0: int, x1: int, y1: int):
    """The mouth's own frame over the box [x0, x1) x [y0, y1): per pixel s (px along the mouth
    from corner 60 toward 64) and t (px toward the chin), the upper and lower inner lip lines
    as (s, t) samples, and the mouth width (px)."""
    left, right = lm[60], lm[64]
    width = max(float(np.linalg.norm(right - left)), 1e-3)
    ex = (right - left) / width  # along the mouth, corner 60 -> 64
    ey = np.array([-ex[1], ex[0]])  # toward the chin
    upper, lower = _lip_lines(lm, left, ex, ey)
    gx, gy = np.meshgrid(np.arange(x0, x1) - left[0], np.arange(y0, y1) - left[1])
    return gx * ex[0] + gy * ex[1], gx * ey[0] + gy * ey[1], upper, lower, width
