"""Dubbing renderer: move the mouth and jaw of a real video frame, keep every other pixel.

Each frame is warped only inside a ring around the lower face (below the nose, around the
jaw). The ring's points follow the head (the canonical ring mapped by the frame's own
similarity) and are the same in source and target, so the warp is the identity on the ring:
pixels outside it are the frame's own, bit for bit, and there is no seam at its edge. The
mesh's triangles are fixed per video (Delaunay on the canonical template, outer lips forced
in, lips and opening with the face mesh's fixed triangles), so nothing is triangulated per
frame and the topology cannot change between frames. A frame whose mouth is open is closed
the way a photo's is (renderer.rest_mouth_image): its opening is painted over; the mouth
filler then draws the interior the new speech opens, with colours and teeth taken once per
video so they do not flicker.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from sdmtalk.face.align import ALIGN_WEIGHTS, fit_similarity, lip_gap, sim_apply, sim_inverse
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.render.mesh import (
    INNER_LIPS,
    LIP_TRIANGLES,
    MOUTH_TRIANGLES,
    OUTER_LIPS,
    PiecewiseAffineWarp,
    insert_edge,
    inside_polygon,
)
from sdmtalk.render.mouth import MouthFiller
from sdmtalk.render.renderer import OPEN_PX, paint_over_mouth

JAW = np.arange(1, 16)  # jaw line from below the right ear to below the left
NOSE = np.arange(29, 36)  # lower nose: fixed vertices that keep the nose out of the warp
MESH_LANDMARKS = np.concatenate([JAW, NOSE, OUTER_LIPS, INNER_LIPS])
RING_EXPAND = 1.35  # the ring: the jaw line scaled by this about the mouth centre
MARGIN_PX = 2  # the warped region's box reaches this far past the ring


def lower_face_ring(canonical: np.ndarray = CANONICAL_TEMPLATE) -> np.ndarray:
    """(K, 2) ring around the lower face in canonical units: the jaw line pushed out from the
    mouth centre, closed across the cheeks through the middle of the nose (point 29)."""
    shape = np.asarray(canonical, np.float64)
    centre = shape[48:68].mean(0)
    jaw = centre + RING_EXPAND * (shape[JAW] - centre)
    nose_top = shape[29] + 0.15 * (shape[29] - shape[33])
    # around the jaw from point 1 to point 15, then back across the cheeks over the nose
    return np.vstack([jaw, 0.5 * (jaw[-1] + nose_top), nose_top, 0.5 * (jaw[0] + nose_top)])


def _triangles(points: np.ndarray) -> np.ndarray:
    """Fixed triangles (M, 3) over the 68 landmarks + ring (indices into points): skin by
    Delaunay with the outer lip line forced in, then the mouth opening and the lips."""
    keep = np.concatenate([JAW, NOSE, OUTER_LIPS, 68 + np.arange(len(points) - 68)])
    triangles = [tuple(keep[t]) for t in Delaunay(points[keep]).simplices]
    outline = list(OUTER_LIPS)
    for a, b in zip(outline, outline[1:] + outline[:1], strict=True):
        insert_edge(triangles, points, a, b)
    tris = np.array(triangles, dtype=np.int32)
    in_lips = inside_polygon(points[tris].mean(1), points[OUTER_LIPS])
    return np.vstack([tris[~in_lips], MOUTH_TRIANGLES, LIP_TRIANGLES])


class DubRenderer:
    """Re-renders the lower face of video frames (H, W, 3) uint8 RGB for new mouth landmarks.

    reference_frame/reference_landmarks: one frame of the video and its (68, 2) landmarks,
    for the mouth interior's colours; teeth: a render.mouth.PhotoTeeth of the video's own
    teeth (or None: drawn teeth).
    """

    def __init__(self, reference_frame: np.ndarray, reference_landmarks: np.ndarray, teeth=None):
        ring = lower_face_ring()
        self._ring_canonical = ring
        points = np.vstack([CANONICAL_TEMPLATE.astype(np.float64), ring])
        self.triangles = _triangles(points)
        self._filler = MouthFiller(reference_frame, reference_landmarks, teeth, seam=False)

    def ring(self, landmarks: np.ndarray) -> np.ndarray:
        """The ring (K, 2) in the pixels of a frame with these landmarks (68, 2)."""
        to_template = fit_similarity(np.asarray(landmarks, np.float64), CANONICAL_TEMPLATE, ALIGN_WEIGHTS)
        return sim_apply(sim_inverse(to_template), self._ring_canonical)

    def ring_mask(self, landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: the pixels inside the ring of a frame with these landmarks, the only
        ones render() may change."""
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [np.round(self.ring(landmarks)).astype(np.int32)], 1)
        return mask.astype(bool)

    def render(self, frame: np.ndarray, source: np.ndarray, rest: np.ndarray, target: np.ndarray) -> np.ndarray:
        """A copy of `frame` whose lower face moves from its own landmarks `source` to `target`
        (68, 2 pixels); `rest`: source with the mouth at rest (face.mouth_state.rest_mouth),
        the mouth the target's opening is measured from."""
        src, rest, dst = (np.asarray(a, np.float64) for a in (source, rest, target))
        ring = self.ring(src)
        h, w = frame.shape[:2]
        corners = np.vstack([ring, src[MESH_LANDMARKS], dst[MESH_LANDMARKS]])
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - MARGIN_PX, 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + MARGIN_PX + 1, (w, h))
        if x1 - x0 < 4 or y1 - y0 < 4:
            return frame.copy()
        offset = np.array([x0, y0], np.float64)
        crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        src_points = np.vstack([src, ring]) - offset
        sealed = bool(np.abs(rest - src).max() >= 0.25)  # the frame's mouth was open: close it
        if sealed and lip_gap(src) > OPEN_PX:
            crop = paint_over_mouth(crop, src - offset)
        dst_points = np.vstack([dst, ring]) - offset
        warped = PiecewiseAffineWarp(crop, src_points, self.triangles).warp(dst_points)
        self._filler.set_source((rest if sealed else src) - offset, sealed)
        self._filler.apply(warped, dst_points[:68])
        inside = np.zeros(warped.shape[:2], np.uint8)
        cv2.fillPoly(inside, [np.round(ring - offset).astype(np.int32)], 1)
        out = frame.copy()
        region = out[y0:y1, x0:x1]
        np.copyto(region, warped, where=inside[..., None].astype(bool))
        return out
