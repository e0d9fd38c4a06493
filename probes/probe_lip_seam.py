"""The dark line where closed lips meet, measured on real closed mouths: how dark and how
wide, for the renderer's painted seam (render.renderer.rest_mouth_image).

    python probes/probe_lip_seam.py --cache CACHE --data-root ../shared/data [--split train] [--speakers 80] [--rendered]

One clip per speaker: up to 3 s of frames tracked as `sdmtalk evaluate` tracks, the frame whose
inner lips are closest together (closed: gap under 0.03 inter-ocular units) is kept. Across
the mouth's middle (u 0.2-0.8 from corner 60 to 64) the luma is sampled along normals to the
lips' meeting line, at offsets in units of the mouth width, and divided by the median luma
of the lip band. Prints the median profile over clips, the depth at the line and its width
(where the profile is halfway back to 1), and the same at the corners (u 0.05-0.15, 0.85-0.95);
and the share of tooth-like pixels (mouth_state.teeth_mask) inside the outer lip line.
--rendered: the same on the renderer's closed mouth instead: each clip's most open frame
(gap over 0.15) closed at rest by `sdmtalk generate`'s renderer, drawn at rest.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from sdmtalk import FPS
from sdmtalk.data.cache import CacheReader
from sdmtalk.face import LandmarkTracker
from sdmtalk.face.align import lip_gap
from sdmtalk.face.mouth_state import rest_mouth, teeth_mask
from sdmtalk.render.renderer import Renderer
from sdmtalk.video import read_video

OFFSETS = np.linspace(-0.12, 0.12, 25)  # across the line, x the mouth width (down is +)
LUMA = np.array([0.299, 0.587, 0.114])


def meeting_line(lm: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points on the line where the lips meet (mean of the upper and lower inner lines) at
    fractions u from corner 60 to 64, and unit normals pointing down (toward the chin)."""
    upper, lower = lm[[60, 61, 62, 63, 64]], lm[[60, 67, 66, 65, 64]]
    mid = 0.5 * (upper + lower)
    seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(mid, axis=0), axis=1))]
    s = u * seg[-1]
    pts = np.column_stack([np.interp(s, seg, mid[:, 0]), np.interp(s, seg, mid[:, 1])])
    ex = (lm[64] - lm[60]) / max(np.linalg.norm(lm[64] - lm[60]), 1e-6)
    return pts, np.broadcast_to(np.array([-ex[1], ex[0]]), pts.shape)


def seam_profile(image: np.ndarray, lm: np.ndarray, u: np.ndarray) -> np.ndarray | None:
    luma = (image.astype(np.float32) @ LUMA).astype(np.float32)
    lips = np.zeros(luma.shape, np.uint8)
    cv2.fillPoly(lips, [np.round(lm[48:60]).astype(np.int32)], 1)
    if lips.sum() < 20:
        return None
    lip_luma = float(np.median(luma[lips > 0]))
    width = float(np.linalg.norm(lm[64] - lm[60]))
    pts, normal = meeting_line(lm, u)
    xy = pts[:, None, :] + OFFSETS[None, :, None] * width * normal[:, None, :]
    vals = cv2.remap(luma, xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32), cv2.INTER_LINEAR)
    return vals.mean(0) / max(lip_luma, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--speakers", type=int, default=80)
    ap.add_argument("--rendered", action="store_true", help="measure the renderer's closed mouths instead")
    args = ap.parse_args()
    reader, tracker = CacheReader(args.cache), LandmarkTracker(quiet=True)
    seen, middle, corners, widths, teeth = set(), [], [], [], []
    for rec in reader.clips(args.split):
        if rec.speaker in seen or len(seen) >= args.speakers:
            continue
        frames = read_video(f"{args.data_root}/{rec.source}", fps=FPS, max_side=720).frames[: 3 * FPS]
        lm, valid = (np.asarray(a) for a in tracker.track(frames)[:2])
        if not valid.any():
            continue
        iod = np.linalg.norm(lm[:, 42:48].mean(1) - lm[:, 36:42].mean(1), axis=1)
        gap = np.where(valid, lip_gap(np.nan_to_num(lm)) / np.maximum(iod, 1e-6), np.inf)
        k = int(np.argmax(np.where(np.isfinite(gap), gap, -1))) if args.rendered else int(np.argmin(gap))
        if (gap[k] < 0.15 if args.rendered else gap[k] > 0.03) or np.linalg.norm(lm[k, 64] - lm[k, 60]) < 24:
            continue
        image, points = frames[k], lm[k]
        if args.rendered:
            points = rest_mouth(lm[k])
            image = Renderer(frames[k], lm[k], crop="full", rest_landmarks=points).render(points)
        mid = seam_profile(image, points, np.linspace(0.2, 0.8, 13))
        ends = seam_profile(image, points, np.r_[np.linspace(0.05, 0.15, 3), np.linspace(0.85, 0.95, 3)])
        if mid is None:
            continue
        seen.add(rec.speaker)
        outer = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(outer, [np.round(points[48:60]).astype(np.int32)], 1)
        teeth.append(float((teeth_mask(image, points) > 0).sum() / max(outer.sum(), 1)))
        middle.append(mid), corners.append(ends), widths.append(np.linalg.norm(lm[k, 64] - lm[k, 60]))
    teeth = np.array(teeth)
    print(f"tooth-like share of the lips: mean {teeth.mean():.3f}, median {np.median(teeth):.3f}, "
          f"over 0.02 on {np.mean(teeth > 0.02):.0%} of clips")
    for name, rows in (("middle", middle), ("corners", corners)):
        prof = np.median(np.stack(rows), 0)
        centre = len(OFFSETS) // 2
        depth = prof[centre - 2 : centre + 3].min()
        half = 1 - 0.5 * (1 - depth)
        below = np.flatnonzero(prof < half)
        fwhm = (OFFSETS[below.max()] - OFFSETS[below.min()]) if len(below) else 0.0
        print(f"{name}: {len(rows)} clips (mouth width median {np.median(widths):.0f} px), "
              f"darkest {depth:.2f} x the lip luma, width at half depth {fwhm:.3f} x the mouth width")
        print("  offset  " + " ".join(f"{o:+.2f}" for o in OFFSETS[::2]))
        print("  luma    " + " ".join(f"{v:5.2f}" for v in prof[::2]))


if __name__ == "__main__":
    main()
