"""Render a fixed set of shippable photos and write a contact sheet + the renderer's numbers.

Photos (all may be shipped): scikit-image's astronaut (NASA, public domain) shifted so the
face touches each edge, cropped tight, grayscale, upscaled to 2000 px, at 512 px, with the
mouth closed by our own warp, with drawn glasses, turned (mirrored + rotated); matplotlib's
grace_hopper sample (US Navy photo, public domain); scikit-image's camera (public domain).
Each row: the photo's face crop, then frames of SDM motion on the bundled demo speech (the
widest mouth, the furthest head), crop "face" and crop "full" (around the face box).

    python benchmarks/render_gallery.py [--seeds 3] [--out docs/img/gallery.png]

Writes the contact sheet (--out) and prints per photo: the largest new-streak share,
outside-the-photo share and mouth flicker over all seeds (the tests hold the same numbers to
limits on synthetic motion). Feeds docs/RESULTS.md, "Image quality" (current numbers;
"Renderer on real photos") and docs/img/gallery.png:

    python benchmarks/render_gallery.py --seeds 3 --stride 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import skimage.data
from PIL import Image

from sdmtalk.assets import DEMO_SPEECH
from sdmtalk.audio import load_audio
from sdmtalk.errors import NoFaceError
from sdmtalk.face import detect_face
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.render import Renderer
from sdmtalk.render import quality as Q

THUMB = 128  # px per contact-sheet cell
FLICKER_FRAMES = 100  # consecutive frames scored for mouth flicker


def _closed_mouth(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The photo with its lips closed by our own mesh warp (inner lips meet in the middle)."""
    target = lm.copy()
    mid = (lm[[61, 62, 63]] + lm[[67, 66, 65]]) / 2
    target[[61, 62, 63]], target[[67, 66, 65]] = mid, mid
    lower = lm[[65, 66, 67], 1].mean() - mid[:, 1].mean()
    target[list(range(55, 60)), 1] -= lower  # the outer lower lip follows
    target[list(range(5, 12)), 1] -= 0.5 * lower  # and the chin, a little
    return Renderer(image, lm, crop="full").render(target)


def _glasses(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Dark round frames drawn over the eyes and a bridge across the nose."""
    out = image.copy()
    eyes = [lm[36:42].mean(0), lm[42:48].mean(0)]
    r = 0.45 * np.linalg.norm(eyes[1] - eyes[0])
    for c in eyes:
        cv2.ellipse(
            out,
            (int(c[0]), int(c[1])),
            (int(r), int(0.75 * r)),
            0,
            0,
            360,
            (25, 20, 20),
            4,
            cv2.LINE_AA,
        )
    a, b = eyes[0] + [r, 0], eyes[1] - [r, 0]
    cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (25, 20, 20), 4, cv2.LINE_AA)
    return out


def _edge_cuts(image: np.ndarray, lm: np.ndarray) -> dict[str, np.ndarray]:
    """The photo cut so the face (brows to chin, jaw to jaw) touches each edge."""
    x0, y0 = np.floor(lm.min(0)).astype(int)
    x1, y1 = np.ceil(lm.max(0)).astype(int)
    return {
        "face at top edge": image[max(y0 - 4, 0) :],
        "face at bottom edge": image[: y1 + 4],
        "face at left edge": image[:, max(x0 - 4, 0) :],
        "face at right edge": image[:, : x1 + 4],
        "tight crop": image[max(y0 - 30, 0) : y1 + 6, max(x0 - 6, 0) : x1 + 6],
    }


def _turned(image: np.ndarray) -> np.ndarray:
    """Mirrored and rotated 12 degrees (a head tilted the other way)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 12, 1.0)
    return cv2.warpAffine(
        image[:, ::-1], m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
    )


def gallery_photos() -> dict[str, np.ndarray]:
    """name -> uint8 RGB photo; every one may be shipped (see the module docstring)."""
    astro = skimage.data.astronaut()
    lm = detect_face(astro).landmarks
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = cv2.cvtColor(
            cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )
    gray = cv2.cvtColor(cv2.cvtColor(astro, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    photos = {
        "astronaut 512 px": astro,
        "mouth closed": _closed_mouth(astro, lm),
        **_edge_cuts(astro, lm),
        "grayscale": gray,
        "upscaled 2000 px": cv2.resize(astro, (2000, 2000), interpolation=cv2.INTER_CUBIC),
        "glasses": _glasses(astro, lm),
        "turned": _turned(astro),
        "grace_hopper": hopper,
        "camera (grayscale)": cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2RGB),
    }
    return {k: np.ascontiguousarray(v) for k, v in photos.items()}


def sdm_landmarks(photo: np.ndarray, face, seed: int) -> np.ndarray:
    """(T, 68, 2) SDM landmarks for the bundled demo speech (blinks included)."""
    if not hasattr(sdm_landmarks, "pipe"):  # load the model and the speech once
        sdm_landmarks.pipe = TalkingFacePipeline(quiet=True)
        sdm_landmarks.wav = load_audio(DEMO_SPEECH)
    return sdm_landmarks.pipe.landmarks_for(
        photo, sdm_landmarks.wav, MotionControls(seed=seed), face
    )[0]


def _thumb(image: np.ndarray, side: int = THUMB) -> np.ndarray:
    """image letterboxed (grey) into side x side."""
    h, w = image.shape[:2]
    s = side / max(h, w)
    small = cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )
    out = np.full((side, side, 3), 128, np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(cell, text, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.36, colour, width, cv2.LINE_AA)
    return cell


def photo_row(
    name: str, photo: np.ndarray, seeds: int, stride: int
) -> tuple[list[np.ndarray], dict]:
    """Contact-sheet cells for one photo and its worst numbers over all seeds."""
    face = detect_face(photo)
    worst = {"streak": 0.0, "outside_still": 0.0, "outside": 0.0, "flicker": 0.0}
    cells = [_label(_thumb(photo), name)]
    sdm_landmarks(photo, face, 0)  # loads the pipeline once
    rest = sdm_landmarks.pipe.rest_landmarks(face)  # as generate: motion from the mouth at rest
    for crop in ("face", "full"):
        r = Renderer(photo, face.landmarks, size=256, crop=crop, rest_landmarks=rest)
        worst["outside_still"] = max(worst["outside_still"], Q.outside_share(r, face.landmarks))
        ref = Q.photo_reference(photo, r.box, r.source_crop.shape[0])
        for seed in range(seeds):
            lm = sdm_landmarks(photo, face, seed)
            frames = np.stack([r.render(x)[_box_slice(r)] for x in lm[::stride]])
            drawn = [r.mesh.points_for(x) for x in r.to_crop(lm[::stride])]
            mouths = [Q.mouth_interior(frames[0].shape, x) for x in drawn]  # painted, not warped
            shares = [Q.new_streak_share(f, ref, m) for f, m in zip(frames, mouths, strict=True)]
            worst["streak"] = max(worst["streak"], *shares)
            worst["outside"] = max(worst["outside"], *(Q.outside_share(r, x) for x in lm[::stride]))
            if crop == "face":  # flicker: consecutive frames (the first 4 s)
                run = lm[:FLICKER_FRAMES]
                box = Q.mouth_box(r.to_crop(run))
                flicker = Q.temporal_flicker(np.stack([r.render(x) for x in run]), box)
                worst["flicker"] = max(worst["flicker"], flicker)
            if seed == 0:
                cells += _pick_cells(frames, r.to_crop(lm[::stride]), crop)
    return cells, worst


def _box_slice(r: Renderer):
    """The face box of a full-photo frame (the whole frame for crop="face")."""
    if r.crop == "face":
        return np.s_[:, :]
    x0, y0, side = r.box
    return np.s_[y0 : y0 + side, x0 : x0 + side]


def _pick_cells(frames: np.ndarray, lm: np.ndarray, crop: str) -> list[np.ndarray]:
    """The frame with the widest mouth (and, for crop "face", a 2x close-up of its mouth) and
    the one with the head furthest from the first."""
    gap = np.linalg.norm(lm[:, [61, 62, 63]] - lm[:, [67, 66, 65]], axis=-1).mean(-1)
    moved = np.linalg.norm(lm[:, 27:36].mean(1) - lm[0, 27:36].mean(0), axis=-1)
    wide = int(np.argmax(gap))
    cells = [_label(_thumb(frames[wide]), f"{crop}: widest mouth")]
    if crop == "face":
        cx, cy = lm[wide, 48:68].mean(0)
        half = THUMB // 4  # a THUMB/2 square, shown at 2x
        x0, y0 = (
            int(np.clip(cx - half, 0, 256 - 2 * half)),
            int(np.clip(cy - half, 0, 256 - 2 * half)),
        )
        cells.append(
            _label(_thumb(frames[wide][y0 : y0 + 2 * half, x0 : x0 + 2 * half]), "mouth 2x")
        )
    return cells + [_label(_thumb(frames[int(np.argmax(moved))]), f"{crop}: head moved")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--stride", type=int, default=1, help="score every n-th frame (1: all, flicker too)"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/img/gallery.png"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows = []
    print(
        f"{'photo':22} {'new streaks':>11} {'outside (still)':>15} {'outside (moving)':>16} {'mouth flicker':>13}"
    )
    for name, photo in gallery_photos().items():
        try:
            cells, worst = photo_row(name, photo, args.seeds, args.stride)
        except NoFaceError:
            print(f"{name:22} no face found: left out")
            continue
        rows.append(np.concatenate(cells, axis=1))
        print(
            f"{name:22} {worst['streak']:11.5f} {worst['outside_still']:15.5f} {worst['outside']:16.5f}"
            f" {worst['flicker']:13.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep the sheet small enough for git (a third of the RGB PNG's size)
    sheet = Image.fromarray(np.concatenate(rows, axis=0)).quantize(256, dither=Image.Dither.NONE)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
