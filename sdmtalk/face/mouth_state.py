"""The photo's own mouth: how open it is, whether teeth show, and the same face with its
mouth brought to rest (closed), which every motion then starts from.

A photo grabbed mid-sentence, a laugh or a toothy smile shows an open mouth. Motion is a
displacement of the photo's landmarks, so without this the lips would move around the
photo's own opening and never close. `rest_mouth` closes an open photo mouth to a resting
one along the direction in which real faces open their mouths (`MouthBasis`: per-point
displacement per unit of inner-lip gap, fitted on the train split of a prepared cache by
calibrate/calibrate_mouth_basis.py): the lower lip and the chin come up, the upper lip comes
down a little, the lips keep their thickness and the corners their smile.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from sdmtalk.face.align import LIP_PAIRS, from_canonical, to_canonical
from sdmtalk.typed_config import to_dict
from sdmtalk.weights.io import read_tagged_weights, write_weights

BUNDLED_MOUTH_BASIS = Path(__file__).resolve().parents[1] / "weights" / "mouth_basis.safetensors"
LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class MouthBasisConfig:
    kind: str = "mouth_basis"
    rest_gap: float = 0.0  # inner-lip gap of a resting mouth, canonical units (inter-ocular ~ 1)
    open_gap: float = 0.0  # the gap above which a mouth counts as open (rest + margin)
    clips: int = 0  # training facts, for the sidecar
    speakers: int = 0


@dataclass(frozen=True)
class MouthBasis:
    """basis (68, 2) canonical displacement per unit of inner-lip gap, and the resting gap."""

    basis: np.ndarray
    cfg: MouthBasisConfig

    def save(self, path) -> Path:
        tensors = {"basis": torch.from_numpy(np.asarray(self.basis, np.float32))}
        return write_weights(tensors, to_dict(self.cfg), path, {"step": 0, "train_config": {}})

    @classmethod
    def load(cls, path=None) -> MouthBasis:
        tensors, cfg = read_tagged_weights(
            path or BUNDLED_MOUTH_BASIS, "mouth_basis", MouthBasisConfig, "mouth basis",
            "python calibrate/calibrate_mouth_basis.py --cache CACHE --write PATH")
        return cls(tensors["basis"].numpy().astype(np.float64), cfg)


@lru_cache(maxsize=1)
def bundled_basis() -> MouthBasis:
    """The shipped basis, read once per process."""
    return MouthBasis.load()


def signed_gaps(shapes: np.ndarray) -> np.ndarray:
    """Signed inner-lip openings of (..., 68, 2) shapes: mean distance of the facing pairs,
    negative where the lower lip lies above the upper one (crossed lips)."""
    shapes = np.asarray(shapes, np.float64)
    return _signed_pair_gaps(shapes[..., _LOWER_LIP, :] - shapes[..., _UPPER_LIP, :])


_UPPER_LIP, _LOWER_LIP = ([pair[i] for pair in LIP_PAIRS] for i in (0, 1))


def _signed_pair_gaps(apart: np.ndarray) -> np.ndarray:
    """signed_gaps from the facing pairs alone: apart (..., 3, 2), each lower inner-lip point
    minus the upper one facing it (align.lip_gap's distances)."""
    return np.where(apart[..., 1].mean(axis=-1) >= 0, 1.0, -1.0) * np.linalg.norm(apart, axis=-1).mean(axis=-1)


def inner_gap(shape: np.ndarray) -> float:
    """Signed inner-lip opening of one (68, 2) shape (`signed_gaps`)."""
    return float(signed_gaps(shape))


def _canonical(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(canonical shape (68, 2), the similarities (1, 4) that map the photo onto it)."""
    canon, sims = to_canonical(np.asarray(landmarks, np.float64)[None])
    return np.asarray(canon[0], np.float64), sims


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap of photo landmarks (68, 2) in canonical units (inter-ocular ~ 1)."""
    return inner_gap(_canonical(landmarks)[0])


def rest_mouth(landmarks: np.ndarray, basis: MouthBasis | None = None,
               open_above: float | None = None) -> np.ndarray:
    """Photo landmarks (68, 2) with an open mouth closed to rest: moved along the basis until
    the inner-lip gap is the resting one. A mouth that opens no wider than `open_above`
    (default the basis's `open_gap`: closed, at rest, lips pressed together) is returned as it
    is: parting pressed lips to the resting gap opened rendered mouths too far and cost mouth
    FID on dev (docs/RESULTS.md, "The photo's own mouth"); speech parts them instead
    (`part_pressed_lips`). A video being dubbed passes the resting gap itself: any opening of
    its own speech must go."""
    basis = basis or bundled_basis()
    lm = np.asarray(landmarks, np.float64)
    canon, sims = _canonical(lm)
    gap = inner_gap(canon)
    if gap <= (basis.cfg.open_gap if open_above is None else open_above):
        return lm.astype(np.float32)
    closed = canon + _basis_step(canon, basis.cfg.rest_gap, basis) * basis.basis
    return np.asarray(from_canonical(closed[None], sims)[0], np.float32)


def _basis_step(canon: np.ndarray, target_gap: float, basis: MouthBasis) -> float:
    """The coefficient c for which canon + c * basis has the inner-lip gap `target_gap`:
    negative closes, positive opens. A search over the bracket [0, 2 x the gap's shortfall]
    that narrows it 256-fold per round, on the facing lip points alone (signed_gaps of
    canon + c * basis for 257 values of c at once): a video's every frame goes through here,
    and 4 such rounds cost a fifth of the 30 whole-shape steps of a bisection, to the same
    2^-32 of the bracket."""
    apart = canon[_LOWER_LIP] - canon[_UPPER_LIP]  # (3, 2)
    moves = basis.basis[_LOWER_LIP] - basis.basis[_UPPER_LIP]
    lo, hi = sorted((0.0, 2.0 * (target_gap - _signed_pair_gaps(apart))))
    for _ in range(4):
        c = np.linspace(lo, hi, SEARCH_POINTS)
        below = _signed_pair_gaps(apart + c[:, None, None] * moves) < target_gap  # (257,)
        k = int(np.argmin(below)) if not below.all() else SEARCH_POINTS - 1  # first point at or past the gap
        lo, hi = c[max(k - 1, 0)], c[k]
    return 0.5 * (lo + hi)


SEARCH_POINTS = 257  # _basis_step: 256 intervals a round
PART_SPAN = 3.0  # openings (in resting gaps) by which pressed lips have parted fully: dev-chosen


def part_pressed_lips(landmarks: np.ndarray, delta: np.ndarray, basis: MouthBasis | None = None,
                      span: float = PART_SPAN) -> np.ndarray:
    """Motion deltas (T, 68, 2) (canonical) for a face whose lips are pressed together at rest
    (photo landmarks (68, 2), inner-lip gap below the resting one): as the speech opens the
    mouth by g, the lips also part by a share g / (`span` x the resting gap) (at most all)
    of the photo's shortfall from the resting gap. The motion model's openings are relative to
    an average resting mouth, so added to pressed lips they stayed shut through loud speech;
    parting them all the time instead painted a mouth that never rests, and a steeper share
    opened it too wide (docs/RESULTS.md, "The photo's own mouth"). Pauses and bilabials
    (g <= 0) keep the photo's pressed lips. Any other mouth gets `delta` back unchanged."""
    basis = basis or bundled_basis()
    canon, _ = _canonical(np.asarray(landmarks, np.float64))
    gap, rest = inner_gap(canon), basis.cfg.rest_gap
    if gap >= rest - 1e-3:  # a mouth at rest (rest_mouth closes to it within 1e-9)
        return delta
    parting = _basis_step(canon, rest, basis) * basis.basis  # (68, 2): pressed -> resting gap
    opening = signed_gaps(canon[None] + np.asarray(delta, np.float64)) - gap
    share = np.clip(opening / (span * rest), 0.0, 1.0)[:, None, None]
    return (np.asarray(delta, np.float64) + share * parting).astype(np.asarray(delta).dtype)


def sealed_lips(landmarks: np.ndarray, overlap: float = 0.0) -> np.ndarray:
    """Landmarks (68, 2) whose inner lips meet on their midline, each lip reaching `overlap`
    (in the landmarks' units) past it toward the other: the mouth the renderer paints the
    photo's lips into, so no interior pixel of an open photo survives closing."""
    out = np.array(landmarks, np.float64)
    down = out[8] - out[27]  # nose bridge -> chin
    down /= max(float(np.hypot(*down)), 1e-9)
    for a, b in LIP_PAIRS:
        mid = 0.5 * (out[a] + out[b])
        out[a], out[b] = mid + 0.5 * overlap * down, mid - 0.5 * overlap * down
    return out.astype(np.float32)


def _lip_colour(image: np.ndarray, lm: np.ndarray, inside: np.ndarray) -> tuple[float, float] | None:
    """(median luma, median tint = chroma / luma) of the lip band: inside the outer lip line
    and outside the opening; None when the band has too few pixels."""
    lips = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(lips, [lm[48:60]], 1)
    lips[inside > 0] = 0
    if lips.sum() < 4:
        return None
    lip = image[lips > 0].astype(np.float64)
    return float(np.median(lip @ LUMA)), float(np.median(_tint(lip)))


def _tint(pixels: np.ndarray) -> np.ndarray:
    return (pixels.max(-1) - pixels.min(-1)) / np.maximum(pixels @ LUMA, 1.0)


def _tooth_like(pixels: np.ndarray, lip: tuple[float, float]) -> np.ndarray:
    """Pixels brighter and greyer than the lips (teeth, not lip or cavity)."""
    return (pixels @ LUMA > lip[0] + 15) & (_tint(pixels) < 0.75 * lip[1])


def _mouth_regions(image: np.ndarray, landmarks: np.ndarray):
    """(landmarks rounded to pixels, the opening's mask (H, W) uint8, the lip colour or None)."""
    lm = np.round(np.asarray(landmarks, np.float64)).astype(np.int32)
    inside = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inside, [lm[60:68]], 1)
    return lm, inside, _lip_colour(image, lm, inside)


def teeth_showing(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Share of the mouth opening's pixels that look like teeth: brighter and greyer than the
    photo's own lips (0..1; 0 for a closed mouth). image (H, W, 3) uint8 RGB, landmarks
    (68, 2) in its pixels."""
    _, inside, lip = _mouth_regions(image, landmarks)
    if inside.sum() < 4 or lip is None:
        return 0.0
    return float(np.mean(_tooth_like(image[inside > 0].astype(np.float64), lip)))


def teeth_mask(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) uint8, 255 at the tooth-like pixels inside the outer lip line (the opening and
    the lip band alike), 0 elsewhere."""
    lm, _, lip = _mouth_regions(image, landmarks)
    mask = np.zeros(image.shape[:2], np.uint8)
    if lip is None:
        return mask
    mouth = np.zeros_like(mask)
    cv2.fillPoly(mouth, [lm[48:60]], 1)
    ys, xs = np.nonzero(mouth)
    teeth = _tooth_like(image[ys, xs].astype(np.float64), lip)
    mask[ys[teeth], xs[teeth]] = 255
    return mask
