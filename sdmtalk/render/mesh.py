"""Face mesh (68 landmarks + forehead, ring and border points) and a fast piecewise-affine warp.

Vertices of the mesh, in crop pixels:
  0..67   the dlib/iBUG landmarks (they move as the motion says),
  forehead points above the brows and a ring around the face (they follow the head rigidly:
  the similarity fitted on nose and eye corners, so the forehead and hair move with the head),
  anchors on the crop border (fixed, so the background does not swim).
Skin is Delaunay-triangulated with the outer lip outline forced in as edges; the lips and the
mouth opening get fixed triangulations (LIP_TRIANGLES, MOUTH_TRIANGLES), so no triangle spans
from the upper to the lower lip and lips stretch with the mesh instead of smearing into the
mouth cavity.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

NUM_LANDMARKS = 68
RIGHT_EYE, LEFT_EYE = np.arange(36, 42), np.arange(42, 48)
OUTER_LIPS = np.arange(48, 60)
INNER_LIPS = np.arange(60, 68)
# Points that move rigidly with the skull: nose and eye corners.
RIGID_POINTS = np.array([27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45])
# Fixed triangulation of the mouth opening (a strip from corner 60 to corner 64).
MOUTH_TRIANGLES = np.array(
    [[60, 61, 67], [61, 62, 67], [62, 66, 67], [62, 63, 66], [63, 65, 66], [63, 64, 65]],
    dtype=np.int32,
)
# Fixed triangulation of the lips: strips between the outer (48..59) and inner (60..67) lines.
LIP_TRIANGLES = np.array(
    [
        # upper lip, corner 48/60 to corner 54/64
        [48, 49, 60], [49, 50, 61], [49, 61, 60], [50, 51, 62], [50, 62, 61],
        [51, 52, 62], [52, 63, 62], [52, 53, 63], [53, 64, 63], [53, 54, 64],
        # lower lip, corner 54/64 back to corner 48/60
        [54, 55, 64], [55, 56, 65], [55, 65, 64], [56, 57, 66], [56, 66, 65],
        [57, 58, 66], [58, 67, 66], [58, 59, 67], [59, 60, 67], [59, 48, 60],
    ],
    dtype=np.int32,
)  # fmt: skip
_FOREHEAD_BROWS = (17, 19, 21, 22, 24, 26)  # forehead points sit above these brow points
_RING_JAW = (0, 2, 4, 6, 8, 10, 12, 14, 16)
FOREHEAD_RISE = 0.35  # forehead points: this fraction of bridge-to-chin above the brows
RING_TOP_RISE = 0.6  # top of the face outline (near the hairline), same unit
RING_EXPAND = 1.22  # ring = face outline scaled by this about its centre
BORDER_SEGMENTS = 6  # anchors per crop side
ROOM_USE = 0.5  # the head may move a landmark this fraction of its distance to the crop border
BORDER_FALLOFF = 0.12  # forehead and ring points this close to the crop border (x side) move less


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (scale, rotation, translation) mapping src (N,2) onto dst (N,2).

    Returns the (2, 3) matrix M with dst ~ M @ [x, y, 1].
    """
    mu_s, mu_d = src.mean(0), dst.mean(0)
    zs = (src[:, 0] - mu_s[0]) + 1j * (src[:, 1] - mu_s[1])
    zd = (dst[:, 0] - mu_d[0]) + 1j * (dst[:, 1] - mu_d[1])
    z = np.vdot(zs, zd) / max(np.vdot(zs, zs).real, 1e-12)  # complex scale*rotation
    rot = np.array([[z.real, -z.imag], [z.imag, z.real]])
    return np.hstack([rot, (mu_d - rot @ mu_s)[:, None]])


def _face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit 'up' vector (chin -> nose bridge) and the bridge-to-chin length."""
    up = landmarks[27] - landmarks[8]
    length = float(np.hypot(*up))
    return up / max(length, 1e-6), length


def forehead_points(landmarks: np.ndarray, rise: float = FOREHEAD_RISE) -> np.ndarray:
    """Points extrapolated above the brows (len(_FOREHEAD_BROWS), 2)."""
    up, length = _face_axes(landmarks)
    return landmarks[list(_FOREHEAD_BROWS)] + rise * length * up


def face_ring(landmarks: np.ndarray) -> np.ndarray:
    """A ring of points around the face: jaw + hairline outline, expanded about its centre."""
    outline = np.vstack(
        [landmarks[list(_RING_JAW)], forehead_points(landmarks, RING_TOP_RISE)[::-1]]
    )
    centre = outline.mean(0)
    return centre + RING_EXPAND * (outline - centre)


def border_anchors(width: int, height: int, segments: int = BORDER_SEGMENTS) -> np.ndarray:
    """Fixed points on the border of a (height, width) image, corners included (4*segments, 2)."""
    xs = np.linspace(0, width - 1, segments + 1)
    ys = np.linspace(0, height - 1, segments + 1)
    top = np.stack([xs[:-1], np.zeros(segments)], 1)
    right = np.stack([np.full(segments, width - 1), ys[:-1]], 1)
    bottom = np.stack([xs[::-1][:-1], np.full(segments, height - 1)], 1)
    left = np.stack([np.zeros(segments), ys[::-1][:-1]], 1)
    return np.vstack([top, right, bottom, left])


def _orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
    return float((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))


def _segments_cross(p, q, r, s) -> bool:
    """True when segments pq and rs cross at a point interior to both."""
    return _orient(p, q, r) * _orient(p, q, s) < 0 and _orient(r, s, p) * _orient(r, s, q) < 0


def _edge_owners(triangles: list) -> dict:
    owners: dict = {}
    for i, (a, b, c) in enumerate(triangles):
        for edge in ((a, b), (b, c), (c, a)):
            owners.setdefault(frozenset(edge), []).append(i)
    return owners


def insert_edge(triangles: list, points: np.ndarray, a: int, b: int) -> None:
    """Flip edges crossing segment ab until ab is an edge (constrained Delaunay, Sloan 1993)."""
    for _ in range(10 * len(triangles)):
        owners = _edge_owners(triangles)
        if frozenset((a, b)) in owners:
            return
        for edge, tris in owners.items():
            c, d = tuple(edge)
            if len(tris) != 2 or {c, d} & {a, b}:
                continue
            if not _segments_cross(points[a], points[b], points[c], points[d]):
                continue
            e = (set(triangles[tris[0]]) - edge).pop()
            f = (set(triangles[tris[1]]) - edge).pop()
            if not _segments_cross(points[e], points[f], points[c], points[d]):
                continue  # quad c-e-d-f not convex: flip another crossing edge first
            triangles[tris[0]], triangles[tris[1]] = (c, e, f), (d, e, f)
            break
        else:
            break
    raise ValueError(f"face mesh: cannot keep landmarks {a}-{b} connected; landmarks look broken")


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    return np.array(
        [cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in points]
    )


def triangulate_skin(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (M,3) over all mesh points (N,2) except the lips.

    The outer lip outline 48..59 is forced into the triangulation and the triangles inside it
    removed: LIP_TRIANGLES and MOUTH_TRIANGLES cover that region, so no skin triangle can smear
    across the lips or the mouth opening. Raises ValueError if the outline cannot be kept.
    """
    keep = np.setdiff1d(np.arange(len(points)), INNER_LIPS)
    triangles = [tuple(keep[t]) for t in Delaunay(points[keep]).simplices]
    outline = list(OUTER_LIPS)
    for a, b in zip(outline, outline[1:] + outline[:1], strict=True):
        insert_edge(triangles, points, a, b)
    tris = np.array(triangles, dtype=np.int32)
    in_lips = inside_polygon(points[tris].mean(1), points[OUTER_LIPS])
    return tris[~in_lips]


class FaceMesh:
    """Mesh vertices and triangles for one source face in a (height, width) crop.

    `source_points` (N, 2) are the vertices in the source crop; `points_for(landmarks)` gives
    the vertices for a target frame. `triangles` (M, 3) in drawing order: eyes, skin, mouth
    opening, lips (later ones on top where collapsing eyes or a closing mouth overlap).
    """

    def __init__(self, source_landmarks: np.ndarray, width: int, height: int):
        self.width, self.height = width, height
        self.margin = 0.02 * min(width, height)  # moving points stay this far inside the crop
        src = np.asarray(source_landmarks, np.float64)
        extra = np.vstack([forehead_points(src), face_ring(src)])
        self.extra_source = extra[self._inside(extra)]
        self._extra_follow = self._border_falloff(self.extra_source)
        self.source_points = np.vstack(
            [src, self.extra_source, border_anchors(width, height)]
        ).astype(np.float32)
        self.skin_triangles = triangulate_skin(self.source_points.astype(np.float64))
        skin = self.skin_triangles
        in_eye = np.isin(skin, RIGHT_EYE).all(1) | np.isin(skin, LEFT_EYE).all(1)
        # Eyes first: a closed eye collapses them, and the lid triangles must draw over the line.
        self.triangles = np.vstack([skin[in_eye], skin[~in_eye], MOUTH_TRIANGLES, LIP_TRIANGLES])
        self._rigid_source = src[RIGID_POINTS]
        self._landmarks_source = src

    def _inside(self, pts: np.ndarray) -> np.ndarray:
        m = self.margin
        return (
            (pts[:, 0] >= m)
            & (pts[:, 0] <= self.width - 1 - m)
            & (pts[:, 1] >= m)
            & (pts[:, 1] <= self.height - 1 - m)
        )

    def _border_falloff(self, pts: np.ndarray) -> np.ndarray:
        """How much of the head motion each point follows (N,): 1 away from the crop border,
        easing to 0 within BORDER_FALLOFF of the side. Points clipped at the border would pile
        up and fold their triangles (a tight crop, a head touching an edge); easing them
        spreads the squeeze over the band instead."""
        band = BORDER_FALLOFF * min(self.width, self.height)
        d = np.minimum.reduce(
            [pts[:, 0], pts[:, 1], self.width - 1 - pts[:, 0], self.height - 1 - pts[:, 1]]
        )
        t = np.clip((d - self.margin) / band, 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)

    def points_for(self, landmarks: np.ndarray) -> np.ndarray:
        """Mesh vertices (N, 2) for target landmarks (68, 2) in crop pixels. The first 68 are
        the landmarks as drawn: the head motion is scaled down where the crop leaves it no room
        (see `_fit_room`); away from the crop border they are the target landmarks."""
        lm = np.asarray(landmarks, np.float64)
        head = fit_similarity(self._rigid_source, lm[RIGID_POINTS])
        lm, head = self._fit_room(lm, head)
        moved = self.extra_source @ head[:, :2].T + head[:, 2]
        extra = self.extra_source + self._extra_follow[:, None] * (moved - self.extra_source)
        m = self.margin
        extra[:, 0] = extra[:, 0].clip(m, self.width - 1 - m)
        extra[:, 1] = extra[:, 1].clip(m, self.height - 1 - m)
        points = self.source_points.copy()
        points[:NUM_LANDMARKS] = lm
        points[NUM_LANDMARKS : NUM_LANDMARKS + len(extra)] = extra
        return points

    def _fit_room(self, lm: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(landmarks, head similarity) with the head motion scaled by k in [0, 1] so that no
        source landmark travels, along either axis, more than ROOM_USE of its distance to the
        nearer crop border on that axis (a face filling a tight crop: moving it would fold
        triangles onto the fixed border or stretch the thin band left there into streaks).
        The lips' own motion is kept."""
        src = self._landmarks_source
        step = src @ head[:, :2].T + head[:, 2] - src  # (68, 2) rigid displacement
        m = self.margin
        # Either way is bad: toward the border the band there is squeezed (folds), away from
        # it the band is stretched (streaks); so the nearer border on each axis sets the room.
        room = np.minimum([self.width - 1 - m, self.height - 1 - m] - src, src - m)
        need = np.abs(step)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(need > 1e-6, ROOM_USE * np.maximum(room, 0.0) / need, np.inf)
        k = float(min(1.0, ratio.min()))
        if k >= 1.0:
            return lm, head
        identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        limited = identity + k * (head - identity)
        inverse = cv2.invertAffineTransform(head)
        local = lm @ inverse[:, :2].T + inverse[:, 2]  # the landmarks with the head motion undone
        return local @ limited[:, :2].T + limited[:, 2], limited


class PiecewiseAffineWarp:
    """Backward piecewise-affine warp of a fixed source image (H, W, C) over a fixed mesh.

    Per frame: rasterize the destination triangles into an index map, give each pixel its
    triangle's inverse affine (destination -> source), and sample with cv2.remap (bilinear).
    Triangles are drawn in order, later ones on top where they overlap.
    """

    def __init__(self, source_image: np.ndarray, source_points: np.ndarray, triangles: np.ndarray):
        self.source_image = source_image
        self.height, self.width = source_image.shape[:2]
        self.triangles = np.asarray(triangles, np.int32)
        tri_src = np.asarray(source_points, np.float64)[self.triangles]  # (M, 3, 2)
        self._src_t = np.transpose(tri_src, (0, 2, 1))  # (M, 2, 3)
        self._grid_x = np.arange(self.width, dtype=np.float32)[None, :]
        self._grid_y = np.arange(self.height, dtype=np.float32)[:, None]
        self._index = np.empty((self.height, self.width), np.int32)

    def affines(self, dst_points: np.ndarray) -> np.ndarray:
        """Per-triangle destination -> source affines (M + 1, 6); the last one is identity."""
        tri_dst = np.asarray(dst_points, np.float64)[self.triangles]  # (M, 3, 2)
        dst_h = np.concatenate([np.transpose(tri_dst, (0, 2, 1)), np.ones((len(tri_dst), 1, 3))], 1)
        det = np.linalg.det(dst_h)
        ok = np.abs(det) > 1e-6
        mats = np.empty((len(tri_dst), 2, 3))
        mats[ok] = self._src_t[ok] @ np.linalg.inv(dst_h[ok])
        # A collapsed destination triangle covers (almost) no pixels: send them to its centroid.
        mats[~ok] = 0.0
        mats[~ok, :, 2] = self._src_t[~ok].mean(2)
        identity = np.array([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]])
        return np.vstack([mats.reshape(-1, 6), identity]).astype(np.float32)

    def rasterize(self, dst_points: np.ndarray) -> np.ndarray:
        """(H, W) int32 index of the triangle drawn at each pixel (M where none: identity)."""
        index = self._index
        index.fill(len(self.triangles))
        fixed = np.round(np.asarray(dst_points, np.float64) * 16).astype(np.int32)  # shift=4
        for t, tri in enumerate(self.triangles):
            cv2.fillConvexPoly(index, fixed[tri], t, lineType=cv2.LINE_8, shift=4)
        return index

    def maps(self, dst_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Backward maps (map_x, map_y), each (H, W) float32 source coordinates."""
        index = self.rasterize(dst_points)
        coef = self.affines(dst_points).T.copy()  # (6, M + 1): one row per coefficient
        # one coefficient at a time, in place: a (H, W, 6) gather and its temporaries took
        # 1.7x as long (the same numbers)
        term = np.empty(index.shape, np.float32)
        maps = []
        for a, b, c in (coef[0:3], coef[3:6]):
            out = np.take(a, index)
            out *= self._grid_x
            np.take(b, index, out=term)
            term *= self._grid_y
            out += term
            out += np.take(c, index, out=term)
            maps.append(out)
        # Exact identity on the border rows/columns: the fixed anchors keep them in place, and
        # this removes rounding from neighbouring triangles' edges.
        for m, grid in zip(maps, (self._grid_x, self._grid_y), strict=True):
            full = np.broadcast_to(grid, m.shape)
            m[0], m[-1], m[:, 0], m[:, -1] = full[0], full[-1], full[:, 0], full[:, -1]
        return maps[0], maps[1]

    def warp(self, dst_points: np.ndarray) -> np.ndarray:
        """The source image warped so its mesh lands on dst_points (N, 2)."""
        map_x, map_y = self.maps(dst_points)
        # Landmarks off the crop (a face cut by the photo's edge) can map outside it: reflect
        # there, as replicating one border pixel would draw streaks.
        return cv2.remap(
            self.source_image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
