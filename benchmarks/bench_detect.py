"""Face detection cost and landmarks: the shipped HOG detector file against dlib's built-in one.

    python benchmarks/bench_detect.py [--data ../shared/data/dev] [--repeat 5] [--hog-side 640]

Photos: render_gallery's (public-domain astronaut variants, grace_hopper, camera), frame 0 of
every dev clip under --data, and two astronauts side by side (face count and order). Prints
the model load times (dlib.get_frontal_face_detector decodes its detector from text; the
shipped sdmtalk/assets copy is read from a file), then per photo: detect_face seconds with
the models loaded (median of --repeat, one thread), the landmark error (mean / max px) of
sdmtalk's detector against dlib's built-in one, and the face count and chosen index of each.
--hog-side N also scores HOG on a copy downscaled to N px (current: HOG_MAX_SIDE) against
the current detection: its seconds and landmark error on the photos larger than N.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import dlib
import numpy as np
import torch
from render_gallery import gallery_photos

from sdmtalk.face import detect as D
from sdmtalk.video import iter_video_frames


def first_frames(folder: Path) -> dict[str, np.ndarray]:
    frames = {}
    for path in sorted(folder.glob("*/*.mp4")):
        stream = iter_video_frames(path)
        frames[path.parent.name] = next(iter(stream))
        getattr(stream, "close", lambda: None)()
    return frames


def two_faces(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut at full size on the left and at 0.7x on the right (as the tests)."""
    small = cv2.resize(astronaut, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + small.shape[1], 3), 128, np.uint8)
    canvas[:, :512] = astronaut
    canvas[: small.shape[0], 512:] = small
    return canvas


def timed(fn, repeat: int):
    """(median seconds, last result) of fn() over `repeat` calls."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def load_times() -> None:
    t0 = time.perf_counter()
    dlib.get_frontal_face_detector()
    t1 = time.perf_counter()
    dlib.fhog_object_detector(str(D.HOG_FACE_DETECTOR))
    t2 = time.perf_counter()
    dlib.shape_predictor(str(D.model_path("shape_predictor_68_face_landmarks.dat")))
    t3 = time.perf_counter()
    print(f"load: HOG built-in {t1 - t0:.3f} s, HOG from the shipped file {t2 - t1:.4f} s, "
          f"68-point predictor {t3 - t2:.3f} s (unchanged)")


def errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(a, np.float64) - b, axis=-1)


def compare_detectors(photos: dict[str, np.ndarray], repeat: int) -> None:
    original = D.hog_detector
    builtin, shipped = dlib.get_frontal_face_detector(), original()
    per_point, same = [], 0
    print(f"{'photo':28s} {'size':>10s} {'built-in s':>10s} {'shipped s':>10s} "
          f"{'err mean':>8s} {'err max':>8s}  faces/index")
    for name, photo in photos.items():
        runs = {}
        for tag, detector in (("built-in", builtin), ("shipped", shipped)):
            D.hog_detector = lambda d=detector: d  # hog_faces looks it up on each call
            runs[tag] = timed(lambda p=photo: D.detect_face(p), repeat)
        D.hog_detector = original
        (t_old, old), (t_new, new) = runs["built-in"], runs["shipped"]
        err = errors(new.landmarks, old.landmarks)
        per_point.append(err)
        same += (new.num_faces, new.index, new.box) == (old.num_faces, old.index, old.box)
        print(f"{name:28s} {photo.shape[1]:>4d}x{photo.shape[0]:<5d} {t_old:10.3f} {t_new:10.3f} "
              f"{err.mean():8.3f} {err.max():8.3f}  {old.num_faces}/{old.index} -> "
              f"{new.num_faces}/{new.index} ({old.detector})")
    allerr = np.concatenate(per_point)
    print(f"all {len(photos)} photos: landmark error mean {allerr.mean():.4f} px, max "
          f"{allerr.max():.4f} px; same box, face count and index on {same}/{len(photos)}")


def downscaled_hog(photos: dict[str, np.ndarray], side: int, repeat: int) -> None:
    """HOG on a copy with long side `side` (boxes mapped back, landmarks at full size)."""
    big = {k: v for k, v in photos.items() if max(v.shape[:2]) > side}
    print(f"\nHOG on a {side} px copy (current: {D.HOG_MAX_SIDE} px), {len(big)} photos larger:")
    for name, photo in big.items():
        gray = D.to_gray(photo)
        t_cur, cur = timed(lambda g=gray: D.hog_faces(g), repeat)
        t_low, low = timed(lambda g=gray: D.hog_faces(g, max_side=side), repeat)
        if len(cur) != len(low):
            print(f"{name:28s} faces {len(cur)} -> {len(low)}")
            continue
        pick = max(range(len(cur)), key=lambda i: D._area(cur[i][0]))
        ref = D.refine_landmarks(gray, cur[pick][0])
        err = errors(D.refine_landmarks(gray, low[pick][0]), ref)
        print(f"{name:28s} HOG {t_cur:.3f} -> {t_low:.3f} s  landmark error mean "
              f"{err.mean():.3f} max {err.max():.3f} px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/dev"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hog-side", type=int, default=0, help="also score HOG at this long side")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    load_times()
    D.shape_predictor()
    photos = gallery_photos()
    photos["two astronauts"] = two_faces(photos["astronaut 512 px"])
    photos.update(first_frames(args.data))
    D.cnn_faces(photos["camera (grayscale)"])  # load the CNN fallback outside the timings
    compare_detectors(photos, args.repeat)
    if args.hog_side:
        downscaled_hog(photos, args.hog_side, args.repeat)


if __name__ == "__main__":
    main()
