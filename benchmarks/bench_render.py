"""Renderer speed on one core: frames/s for crop="face" at 256 and 512, and crop="full".

crop="full" renders the face box at the photo's own resolution, so its speed depends on the
photo, not on `size`: it is measured on the astronaut photo (512 px) and a 2x upscale.

    .venv/bin/python benchmarks/bench_render.py [--frames 200]

Prints frames/s per crop and size. Feeds docs/RESULTS.md, "Speed and memory" (renderer row;
"First `generate` and renderer timings") and "Image quality" ("Renderer on real photos"):

    python benchmarks/bench_render.py --frames 100
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import skimage.data

from sdmtalk.face import detect_face
from sdmtalk.render import Renderer, add_blinks


def talking_motion(landmarks: np.ndarray, frames: int) -> np.ndarray:
    """(T, 68, 2): mouth opening at ~4 Hz, a slow head sway, blinks."""
    t = np.arange(frames) / 25.0
    extent = np.ptp(landmarks, 0).max()
    out = np.repeat(landmarks[None].astype(np.float64), frames, 0)
    opening = 0.08 * extent * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    out[:, [55, 56, 57, 58, 59, 65, 66, 67], 1] += opening[:, None]
    out[:, 5:12, 1] += opening[:, None] * np.array([0.3, 0.6, 0.9, 1.0, 0.9, 0.6, 0.3])
    angle = np.deg2rad(4.0) * np.sin(2 * np.pi * 0.3 * t)
    centre = landmarks.mean(0)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    rel = out - centre
    out = (
        np.stack([cos * rel[..., 0] - sin * rel[..., 1], sin * rel[..., 0] + cos * rel[..., 1]], -1)
        + centre
    )
    out[..., 0] += 0.03 * extent * np.sin(2 * np.pi * 0.2 * t)[:, None]
    return add_blinks(out.astype(np.float32), seed=0)


def bench(renderer: Renderer, motion: np.ndarray) -> float:
    renderer.render(motion[0])  # warm-up
    start = time.perf_counter()
    for _frame in renderer.render_sequence(motion):
        pass
    return len(motion) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core, as the target says
    photo = skimage.data.astronaut()
    landmarks = detect_face(photo).landmarks
    cases = [
        ("face", 256, photo, landmarks),
        ("face", 512, photo, landmarks),
        ("full", 256, photo, landmarks),
    ]
    big = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    cases.append(("full", 512, big, (landmarks + 0.5) * 2 - 0.5))
    print(f"{'crop':5} {'size':>5} {'photo':>10} {'warp px':>9} {'init ms':>8} {'frames/s':>9}")
    for crop, size, image, lm in cases:
        start = time.perf_counter()
        renderer = Renderer(image, lm, size=size, crop=crop)
        init_ms = 1000 * (time.perf_counter() - start)
        fps = bench(renderer, talking_motion(lm, args.frames))
        side = renderer.source_crop.shape[0]
        shape = f"{image.shape[1]}x{image.shape[0]}"
        print(
            f"{crop:5} {size if crop == 'face' else '-':>5} {shape:>10} {side:>4}x{side:<4}"
            f" {init_ms:8.1f} {fps:9.1f}"
        )


if __name__ == "__main__":
    main()
