"""2-D similarity transforms and alignment of landmarks to the canonical template.

A similarity maps x -> s R(angle) x + t. As a vector it is [log s, angle, tx, ty]
(float64): the batch functions below work on (..., 4) arrays of such vectors; the
`Similarity` class wraps one of them. Angles are radians; with image axes (y down) a
positive angle turns clockwise on screen.

The canonical frame (method.md, Representation): every frame is Umeyama-aligned to
CANONICAL_TEMPLATE using the rigid points of the face only (ALIGN_WEIGHTS), so that opening
the mouth changes the canonical shape and not the similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdmtalk.face.template import CANONICAL_TEMPLATE, LEFT_EYE_OUTER, RIGHT_EYE_OUTER

# Alignment weights: eyes and nose are rigid; brows and the upper jaw line move a little
# (expressions, yaw); the mouth and the lower jaw move with speech, so they get no weight.
ALIGN_WEIGHTS = np.zeros(68)
ALIGN_WEIGHTS[27:48] = 1.0  # nose 27-35, eyes 36-47
ALIGN_WEIGHTS[17:27] = 0.5  # brows
ALIGN_WEIGHTS[[0, 1, 2, 14, 15, 16]] = 0.5  # jaw line near the ears
ALIGN_WEIGHTS.setflags(write=False)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _as_complex(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points[..., 0] + 1j * points[..., 1]


def _as_points(z: np.ndarray) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


def _multiplier(vec: np.ndarray) -> np.ndarray:
    """s * exp(i angle) for (..., 4) vectors, as complex (...,)."""
    vec = np.asarray(vec, dtype=np.float64)
    return np.exp(vec[..., 0] + 1j * vec[..., 1])


def sim_apply(vec: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply similarities (..., 4) to points (..., N, 2) -> (..., N, 2) float64."""
    vec = np.asarray(vec, dtype=np.float64)
    w = _multiplier(vec)[..., None]
    t = (vec[..., 2] + 1j * vec[..., 3])[..., None]
    return _as_points(w * _as_complex(points) + t)


def sim_inverse(vec: np.ndarray) -> np.ndarray:
    """Inverse similarities (..., 4) -> (..., 4): x -> (1/s) R^T (x - t)."""
    vec = np.asarray(vec, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN rows (lost faces) stay NaN
        t_inv = -(vec[..., 2] + 1j * vec[..., 3]) / _multiplier(vec)
    return np.stack([-vec[..., 0], _wrap(-vec[..., 1]), t_inv.real, t_inv.imag], axis=-1)


def sim_compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for (..., 4) vectors: apply `inner` first, then `outer`."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    t = (
        _multiplier(outer) * (inner[..., 2] + 1j * inner[..., 3])
        + outer[..., 2]
        + 1j * outer[..., 3]
    )
    return np.stack(
        np.broadcast_arrays(
            outer[..., 0] + inner[..., 0], _wrap(outer[..., 1] + inner[..., 1]), t.real, t.imag
        ),
        axis=-1,
    )


def fit_similarity(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Least-squares similarity (no reflection) mapping src onto dst (Umeyama 1991).

    src, dst: (..., N, 2), broadcastable; weights: (N,) or None. Returns (..., 4) vectors
    (NaN for frames with NaN points).
    In complex numbers the problem is linear: minimise sum_k w_k |a z_k + t - y_k|^2.
    """
    zs, zd = np.broadcast_arrays(_as_complex(src), _as_complex(dst))
    w = np.ones(zs.shape[-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean_s = (zs * w).sum(axis=-1, keepdims=True)
    mean_d = (zd * w).sum(axis=-1, keepdims=True)
    zs_c, zd_c = zs - mean_s, zd - mean_d
    spread = (w * np.abs(zs_c) ** 2).sum(axis=-1)
    if np.any(spread <= 1e-12):
        raise ValueError("cannot fit a similarity to landmarks that are all at one point")
    with np.errstate(invalid="ignore"):  # NaN frames (lost faces) give NaN, as documented
        a = (w * np.conj(zs_c) * zd_c).sum(axis=-1) / spread
    t = mean_d[..., 0] - a * mean_s[..., 0]
    return np.stack([np.log(np.abs(a)), np.angle(a), t.real, t.imag], axis=-1)


@dataclass(frozen=True)
class Similarity:
    """x -> scale * R(angle) x + (tx, ty)."""

    scale: float = 1.0
    angle: float = 0.0
    tx: float = 0.0
    ty: float = 0.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"similarity scale must be positive, got {self.scale}")

    def to_vector(self) -> np.ndarray:
        """[log scale, angle, tx, ty] float64 (4,)."""
        return np.array([np.log(self.scale), self.angle, self.tx, self.ty], dtype=np.float64)

    @classmethod
    def from_vector(cls, vec: np.ndarray) -> Similarity:
        log_s, angle, tx, ty = (float(v) for v in np.asarray(vec, dtype=np.float64))
        return cls(float(np.exp(log_s)), angle, tx, ty)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points (..., 2) -> (..., 2) float64."""
        points = np.asarray(points, dtype=np.float64)
        return sim_apply(self.to_vector(), points[..., None, :])[..., 0, :]

    def inverse(self) -> Similarity:
        return Similarity.from_vector(sim_inverse(self.to_vector()))

    def compose(self, other: Similarity) -> Similarity:
        """self ∘ other: apply `other` first, then `self`."""
        return Similarity.from_vector(sim_compose(self.to_vector(), other.to_vector()))

    def matrix(self) -> np.ndarray:
        """(2, 3) affine matrix [s R | t], e.g. for cv2.warpAffine."""
        c, s = self.scale * np.cos(self.angle), self.scale * np.sin(self.angle)
        return np.array([[c, -s, self.tx], [s, c, self.ty]])


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity (no reflection) mapping src (N, 2) onto dst (N, 2)."""
    return Similarity.from_vector(fit_similarity(src, dst, weights))


def to_canonical(
    landmarks: np.ndarray, weights: np.ndarray | None = ALIGN_WEIGHTS
) -> tuple[np.ndarray, np.ndarray]:
    """Align landmarks (T, 68, 2) (or (68, 2)) to CANONICAL_TEMPLATE.

    Returns (canonical float32 like landmarks, sims float64 (T, 4) or (4,)); sims[i] maps
    frame i's pixels onto the template. sims stay float64 so `from_canonical` is exact
    (float32 log-scale alone would cost ~1e-4 px at 500 px coordinates).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    sims = fit_similarity(landmarks, CANONICAL_TEMPLATE, weights)
    canonical = sim_apply(sims, landmarks)
    return canonical.astype(np.float32), sims


def from_canonical(canonical: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """Exact inverse of `to_canonical`: (T, 68, 2) canonical + (T, 4) sims -> float32 pixels."""
    return sim_apply(sim_inverse(sims), canonical).astype(np.float32)


def interocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (points 36 and 45): (..., 68, 2) -> (...)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.linalg.norm(
        landmarks[..., RIGHT_EYE_OUTER, :] - landmarks[..., LEFT_EYE_OUTER, :], axis=-1
    )


LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points facing each other


def lip_gap(shape: np.ndarray) -> np.ndarray:
    """Inner-lip opening of (..., 68, 2) landmarks or canonical shapes -> (...), same units:
    the mean distance of the facing inner-lip pairs 61-67, 62-66, 63-65."""
    shape = np.asarray(shape)
    upper = shape[..., [a for a, _ in LIP_PAIRS], :]
    lower = shape[..., [b for _, b in LIP_PAIRS], :]
    return np.linalg.norm(upper - lower, axis=-1).mean(axis=-1)
