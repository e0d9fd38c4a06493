"""Fit the mouth basis: how real faces move when they open their mouths (face/mouth_state.py).

    python calibrate/calibrate_mouth_basis.py --cache CACHE [--split train] [--write sdmtalk/weights/mouth_basis.safetensors]

Prints the fitted numbers; --write stores them (safetensors + sidecar). Over the split's
clips (landmarks found, canonical shapes), the per-point displacement from the clip's mean
shape is regressed on the inner-lip gap's deviation from the clip's mean gap, every speaker
weighted alike: the basis (68, 2) is the displacement per unit of gap, kept on the jaw and
the lips (LOWER_FACE) and zero elsewhere. The resting gap is
the median over speakers of each speaker's median gap in the frames without speech; a
photo counts as open above rest + OPEN_MARGIN. Feeds docs/RESULTS.md, "The photo's own mouth".
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from sdmtalk.data.cache import CacheReader
from sdmtalk.face.align import lip_gap
from sdmtalk.face.mouth_state import MouthBasis, MouthBasisConfig, inner_gap

OPEN_MARGIN = 0.03  # canonical units above the resting gap before a mouth counts as open
# Points the basis may move: the jaw below the ears and the lips. Eyes, brows and nose also
# move with loud speech in the data (expression), but closing a mouth must not move them.
LOWER_FACE = np.r_[3:14, 48:68]


def clip_moments(data: dict) -> tuple[np.ndarray, np.ndarray, float, int] | None:
    """(sum dg * dC (68, 2), sum dg^2, median silent gap or NaN, frames) of one clip."""
    ok = (data["valid"] > 0.5) & np.isfinite(data["canonical"]).all(axis=(1, 2))
    if ok.sum() < 10:
        return None
    canon = data["canonical"][ok].astype(np.float64)
    gap = lip_gap(canon)
    d_gap, d_shape = gap - gap.mean(), canon - canon.mean(0)
    quiet = np.asarray(data["speech"])[ok] < 0.5
    rest = float(np.median(gap[quiet])) if quiet.sum() >= 5 else float("nan")
    return np.einsum("t,tpc->pc", d_gap, d_shape), float(d_gap @ d_gap), rest, int(ok.sum())


def fit(cache: str, split: str) -> MouthBasis:
    reader = CacheReader(cache)
    by_speaker: dict[str, list] = defaultdict(list)
    for rec in reader.clips(split):
        m = clip_moments(reader.load(rec))
        if m is not None:
            by_speaker[rec.speaker].append(m)
    num, den, rests = np.zeros((68, 2)), 0.0, []
    for clips in by_speaker.values():
        frames = sum(c[3] for c in clips)
        num += sum(c[0] for c in clips) / frames  # every speaker weighs alike
        den += sum(c[1] for c in clips) / frames
        speaker_rest = [c[2] for c in clips if np.isfinite(c[2])]
        if speaker_rest:
            rests.append(float(np.median(speaker_rest)))
    basis = np.zeros((68, 2))
    basis[LOWER_FACE] = (num / den)[LOWER_FACE]
    rest = float(np.median(rests))
    cfg = MouthBasisConfig(rest_gap=round(rest, 5), open_gap=round(rest + OPEN_MARGIN, 5),
                           clips=sum(len(c) for c in by_speaker.values()), speakers=len(by_speaker))
    return MouthBasis(basis, cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--write", default=None, help="write the basis here (.safetensors)")
    args = ap.parse_args()
    fitted = fit(args.cache, args.split)
    b = fitted.basis
    print(f"{fitted.cfg.clips} clips, {fitted.cfg.speakers} speakers; resting gap {fitted.cfg.rest_gap:.4f}, "
          f"open above {fitted.cfg.open_gap:.4f} (canonical units, inter-ocular ~ 1)")
    print(f"per unit of gap: lower inner lip y {b[[65, 66, 67], 1].mean():+.3f}, upper inner lip y "
          f"{b[[61, 62, 63], 1].mean():+.3f}, chin y {b[8, 1]:+.3f}, mouth corners x "
          f"{b[54, 0] - b[48, 0]:+.3f}; gap of the basis itself {inner_gap(b):+.3f}")
    if args.write:
        print(f"wrote {fitted.save(args.write)}")


if __name__ == "__main__":
    main()
