"""The photo's own mouth, by eye: photos with closed, open, laughing and toothy-smile mouths
speaking the bundled demo speech, the video's mouth at its most closed and most open frame.

    python benchmarks/mouth_gallery.py [--out docs/img/mouth_gallery.png]

Photos (all may be shipped): scikit-image's astronaut (NASA, public domain; a toothy smile)
and matplotlib's grace_hopper sample (US Navy, public domain; closed mouth), and the same two
faces with their mouths opened by our own renderer (mid-sentence, a laugh). Each row: the
photo's mouth, then SDM (seed 0, head still) with the photo's mouth as the photo has it
(the behaviour before the mouth was brought to rest) and at rest (shipped): the most closed
and the most open frame of each, all at 2x zoom. Prints each video's mouth opening range
(inner-lip gap, inter-ocular units). Feeds docs/img/mouth_gallery.png and docs/RESULTS.md,
"The photo's own mouth".
"""

from __future__ import annotations

import argparse

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image

from sdmtalk.assets import DEMO_SPEECH
from sdmtalk.audio import load_audio
from sdmtalk.face import detect_face, from_canonical, to_canonical
from sdmtalk.face.mouth_state import bundled_basis, inner_gap, mouth_opening, rest_mouth
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.render import Renderer

ZOOM, SIDE = 2, 256


def opened_photo(image: np.ndarray, gap: float) -> np.ndarray:
    """`image` with its face's mouth opened to `gap` along the mouth basis, by our renderer."""
    lm = detect_face(image).landmarks
    canon, sims = to_canonical(lm[None])
    shape = canon[0].astype(np.float64) + (gap - inner_gap(canon[0])) * bundled_basis().basis
    renderer = Renderer(image, lm, crop="full", rest_landmarks=rest_mouth(lm))
    return renderer.render(from_canonical(shape[None], sims)[0])


def photos() -> list[tuple[str, np.ndarray]]:
    astronaut = skimage.data.astronaut()
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    return [("closed (Hopper)", hopper), ("toothy smile (astronaut)", astronaut),
            ("mid-sentence (Hopper, opened)", opened_photo(hopper, 0.25)),
            ("laugh (astronaut, opened)", opened_photo(astronaut, 0.42))]


def mouth_tile(frame: np.ndarray, lm: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    tile = frame[y0:y1, x0:x1]
    return cv2.resize(tile, (ZOOM * tile.shape[1], ZOOM * tile.shape[0]), interpolation=cv2.INTER_CUBIC)


def mouth_box(lm: np.ndarray) -> tuple[int, int, int, int]:
    """A fixed box around the mouth of crop landmarks (68, 2), wide enough for a laugh."""
    centre = lm[48:68].mean(0)
    half_w = 0.9 * (lm[54, 0] - lm[48, 0])
    x0, y0 = np.round(centre - [half_w, 0.55 * half_w]).astype(int)
    w, h = int(2 * half_w), int(1.3 * half_w)
    return max(x0, 0), max(y0, 0), min(x0 + w, SIDE), min(y0 + h, SIDE)


def row(name, image, wav, pipes) -> np.ndarray:
    face = detect_face(image)
    tiles, text = [], [name]
    for label, pipe in pipes:
        result = pipe.animate(image, wav, MotionControls(seed=0, still=True), face=face)
        crop_lm = pipe.renderer(image, face).to_crop
        gaps = np.array([mouth_opening(x) for x in result.landmarks])
        if not tiles:
            first = crop_lm(face.landmarks)
            box = mouth_box(first)
            tiles.append(mouth_tile(Renderer(image, face.landmarks).source_crop, first, box))
        for i in (int(np.argmin(gaps)), int(np.argmax(gaps))):
            tiles.append(mouth_tile(result.frames[i], crop_lm(result.landmarks[i]), box))
        text.append(f"{label}: gap {gaps.min():.2f}-{gaps.max():.2f}")
    print("; ".join(text))
    h = min(t.shape[0] for t in tiles)
    out = np.hstack([t[:h] for t in tiles])
    cv2.putText(out, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/img/mouth_gallery.png")
    args = ap.parse_args()
    wav = load_audio(DEMO_SPEECH)
    pipes = [("as photo", TalkingFacePipeline(quiet=True, mouth_at_rest=False)),
             ("at rest", TalkingFacePipeline(quiet=True))]
    rows = [row(name, image, wav, pipes) for name, image in photos()]
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows])
    header = np.full((22, width, 3), 255, np.uint8)
    labels = ["photo", "as photo: most closed", "most open", "at rest: most closed", "most open"]
    step = width // len(labels)
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * step + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(args.out, cv2.cvtColor(np.vstack([header, sheet]), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
