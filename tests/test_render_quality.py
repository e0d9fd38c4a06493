"""The renderer on the gallery's photos, held to numbers: streaks, pixels from outside the
photo, mouth flicker, mouth colour; and the measures themselves on constructed cases."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from sdmtalk.evaluate.image_metrics import mouth_crops
from sdmtalk.face import detect_face
from sdmtalk.render import Renderer
from sdmtalk.render import quality as Q

GALLERY = Path(__file__).parent.parent / "benchmarks" / "render_gallery.py"
_JAW = {5: 0.3, 6: 0.6, 7: 0.9, 8: 1.0, 9: 0.9, 10: 0.6, 11: 0.3}
_LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]


def _load_gallery():
    spec = importlib.util.spec_from_file_location("render_gallery", GALLERY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gallery():
    """name -> (photo, landmarks) for every gallery photo (the 2000 px one at 1000 px: the
    same framing, half the test time)."""
    photos = _load_gallery().gallery_photos()
    big = photos.pop("upscaled 2000 px")
    photos["upscaled (1000 px here)"] = cv2.resize(big, (1000, 1000), interpolation=cv2.INTER_AREA)
    return {name: (p, detect_face(p).landmarks) for name, p in photos.items()}


def talking(lm: np.ndarray, seed: int, frames: int = 6) -> np.ndarray:
    """(frames, 68, 2): seeded head moves (shift up to 20 % of the face, roll 7 deg, scale 5 %)
    and jaw openings, larger than SDM's, toward every direction the seed picks."""
    rng = np.random.default_rng(seed)
    extent = float(np.ptp(lm, 0).max())
    centre = lm.mean(0)
    out = []
    for _ in range(frames):
        th, sc = np.deg2rad(rng.uniform(-7, 7)), 1 + rng.uniform(-0.05, 0.05)
        rot = sc * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        x = open_jaw(lm, rng.uniform(0, 0.12) * extent)
        out.append((x - centre) @ rot.T + centre + rng.uniform(-0.2, 0.2, 2) * extent)
    return np.stack(out)


def open_jaw(lm: np.ndarray, pixels: float) -> np.ndarray:
    out = np.array(lm, np.float64)
    for i, w in _JAW.items():
        out[i, 1] += w * pixels
    out[_LOWER_LIP, 1] += pixels
    return out


# --- the measures on constructed cases ----------------------------------------------------------


def test_streak_detector_finds_replicated_borders_and_not_the_photo():
    photo = skimage.data.astronaut()[100:356, 100:356]
    assert Q.new_streak_share(photo, photo) == 0.0
    padded = cv2.copyMakeBorder(photo[60:], 60, 0, 0, 0, cv2.BORDER_REPLICATE)  # 60 rows smeared
    reference = np.zeros_like(photo)
    reference[60:] = photo[60:]  # what the photo shows there: nothing above row 60
    share = Q.new_streak_share(padded, reference)
    assert share > 0.03  # the textured part of the 23 % smeared rows
    # A reflected + blurred fill reads as background: no streaks.
    fill = cv2.copyMakeBorder(photo[60:], 60, 0, 0, 0, cv2.BORDER_REFLECT_101)
    fill[:60] = cv2.GaussianBlur(fill[:80], (0, 0), 4)[:60]
    assert Q.new_streak_share(fill, reference) < 0.002


def test_temporal_flicker_is_zero_for_still_and_linear_change():
    base = np.random.default_rng(0).integers(0, 200, (32, 32, 3)).astype(np.float64)
    ramp = np.stack([base + 2 * t for t in range(5)]).astype(np.uint8)
    assert Q.temporal_flicker(ramp, (0, 0, 32, 32)) < 0.01
    noisy = ramp.astype(np.int64) + np.random.default_rng(1).integers(-8, 9, ramp.shape)
    assert Q.temporal_flicker(np.clip(noisy, 0, 255).astype(np.uint8), (0, 0, 32, 32)) > 3


def test_mouth_crops_centre_the_mouth():
    frames = np.zeros((2, 100, 100, 3), np.uint8)
    lm = np.zeros((2, 68, 2))
    lm[0, 48:68], lm[1, 48:68] = (40, 60), (70, 30)
    frames[0, 58:63, 38:43] = 255  # a 5 x 5 white square on each mouth
    frames[1, 28:33, 68:73] = 255
    crops = mouth_crops(frames, lm, 20)
    assert crops.shape == (2, 20, 20, 3)
    for crop in crops:
        ys, xs = np.nonzero(crop[..., 0] > 128)
        assert abs(ys.mean() - 9.5) <= 0.6 and abs(xs.mean() - 9.5) <= 0.6


# --- the renderer on the gallery ----------------------------------------------------------------


@pytest.mark.parametrize("crop", ["face", "full"])
def test_gallery_has_no_streaks_and_samples_only_the_photo(gallery, crop):
    for name, (photo, lm) in gallery.items():
        r = Renderer(photo, lm, size=256, crop=crop)  # streaks are >= 15 px long
        assert Q.outside_share(r, lm) == 0.0, name  # a still head: never off the photo
        reference = Q.photo_reference(photo, r.box, r.source_crop.shape[0])
        x0, y0, side = r.box
        for seed in range(3):
            for target in talking(lm, seed, frames=3 if crop == "full" else 6):
                frame = r.render(target)
                if crop == "full":
                    frame = frame[y0 : y0 + side, x0 : x0 + side]
                mouth = Q.mouth_interior(frame.shape, r.mesh.points_for(r.to_crop(target)))
                share = Q.new_streak_share(frame, reference, ignore=mouth)
                assert share < 0.003, (
                    f"{name}, seed {seed}: {share:.4f} of the frame in new streaks"
                )
                assert Q.outside_share(r, target) < 0.01, name


def _step_changes(frames: np.ndarray, box) -> np.ndarray:
    """Mean |F[t+1] - F[t]| (luma) inside box for each step of a sequence."""
    x0, y0, x1, y1 = box
    g = np.stack([Q.luma(f[y0:y1, x0:x1]) for f in frames])
    return np.abs(np.diff(g, axis=0)).mean((1, 2))


@pytest.mark.parametrize("name", ["mouth closed", "grace_hopper"])
def test_mouth_opens_without_popping(gallery, name):
    """Opening the jaw in 40 even steps of ~0.15 px: every step changes the mouth about as
    much as the next (no frame where teeth or the cavity switch on), and never much more than
    the warp of the lips alone changes it."""
    photo, lm = gallery[name]
    r = Renderer(photo, lm, size=256)
    extent = float(np.ptp(lm, 0).max())
    targets = [open_jaw(lm, 0.12 * extent * k / 40) for k in range(41)]
    crop_lm = r.to_crop(np.stack(targets))
    box = Q.mouth_box(crop_lm)
    painted = _step_changes(np.stack([r.render(t) for t in targets]), box)
    warp_only = _step_changes(np.stack([r.warp.warp(r.mesh.points_for(x)) for x in crop_lm]), box)
    assert painted.max() < 4 * np.median(painted), np.round(painted, 2)
    assert painted.max() < 3 * warp_only.max() + 0.3, (painted.max(), warp_only.max())
    # Held still, the mouth is bit-for-bit still (nothing random frame to frame).
    still = np.stack([r.render(targets[20]) for _ in range(3)])
    assert Q.temporal_flicker(still, box) == 0.0


def _interior(frame, crop_lm):
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(crop_lm[60:68]).astype(np.int32)], 1)
    return frame[cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0].astype(np.float64)


@pytest.mark.parametrize("name", ["mouth closed", "grace_hopper", "grayscale"])
def test_opened_closed_mouth_is_dark_with_teeth_in_the_photo_colours(gallery, name):
    photo, lm = gallery[name]
    r = Renderer(photo, lm, size=256)
    target = open_jaw(lm, 0.12 * float(np.ptp(lm, 0).max()))
    inside = _interior(r.render(target), r.to_crop(target))
    luma = Q.luma(inside[None])[0]
    assert len(inside) > 150 and np.percentile(luma, 30) < 60  # a dark cavity
    assert np.percentile(luma, 97) > 150  # and teeth under the upper lip
    if name == "grayscale":  # colours come from the photo: a grey photo, a grey mouth
        assert np.abs(inside - inside.mean(1, keepdims=True)).max() < 4
    else:  # a colour photo: a warm (red over blue) interior, not a grey hole
        dark = inside[luma < np.percentile(luma, 50)]
        assert dark[:, 0].mean() > dark[:, 2].mean() + 3
