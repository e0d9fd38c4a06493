"""LandmarkTracker on synthetic videos with known motion; smoothing and the jitter measure."""

import cv2
import numpy as np
import pytest
from scipy.signal import savgol_filter
from skimage import data

from sdmtalk.face.align import Similarity
from sdmtalk.face.detect import detect_face
from sdmtalk.face.track import LandmarkTracker, landmark_jitter, savgol_interp, smooth_landmarks


@pytest.fixture(scope="module")
def astronaut_face():
    image = data.astronaut()
    return image, detect_face(image).landmarks


def _moving_video(image, landmarks, frames=40, size=320):
    """The astronaut moved, scaled (1.1-1.4x) and rolled (+-5 deg) over the frames; returns
    (frames, true landmarks (T, 68, 2)): the photo's landmarks under the same motion."""
    centre = landmarks.mean(axis=0)
    video, truth = [], []
    for i in range(frames):
        phase = 2 * np.pi * i / frames
        spin = Similarity(1.25 + 0.15 * np.sin(phase), 0.09 * np.sin(2 * phase))
        target = np.array([size / 2 + 25 * np.sin(1.5 * phase), size / 2 + 15 * np.cos(phase)])
        sim = Similarity(spin.scale, spin.angle, *(target - spin.apply(centre)))
        video.append(
            cv2.warpAffine(image, sim.matrix(), (size, size), borderMode=cv2.BORDER_REFLECT)
        )
        truth.append(sim.apply(landmarks))
    return video, np.array(truth, dtype=np.float32)


def test_tracker_recovers_known_motion(astronaut_face):
    video, truth = _moving_video(*astronaut_face)
    landmarks, valid, faces = LandmarkTracker(quiet=True).track(video)
    assert landmarks.shape == (40, 68, 2) and landmarks.dtype == np.float32
    assert valid.all() and (faces == 1).all()
    error = np.linalg.norm(landmarks - truth, axis=-1)
    assert error.mean() < 1.5 and error.max() < 6.0
    # The face centre follows the true path to within a pixel.
    assert np.abs(landmarks.mean(axis=1) - truth.mean(axis=1)).max() < 1.5


def test_still_video_gives_still_landmarks(astronaut_face):
    image, _ = astronaut_face
    frame = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA)
    landmarks, valid, _ = LandmarkTracker(quiet=True).track(iter([frame] * 12))  # any iterable
    assert valid.all()
    assert np.abs(landmarks - landmarks[0]).max() < 1e-4
    assert landmark_jitter(landmarks) < 1e-6


def test_face_lost_and_found_again(astronaut_face):
    image, _ = astronaut_face
    face = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA)
    blank = np.full_like(face, 128)
    bricks = np.repeat(cv2.resize(data.brick(), (320, 320))[..., None], 3, axis=2)
    # The cuts fall between detection frames (every 5th): the patch check must see them.
    frames = [face] * 7 + [blank] * 3 + [face] * 6 + [bricks] * 3 + [face] * 4
    landmarks, valid, faces = LandmarkTracker(quiet=True).track(frames)
    expected = np.array([1] * 7 + [0] * 3 + [1] * 6 + [0] * 3 + [1] * 4, dtype=bool)
    np.testing.assert_array_equal(valid, expected)
    assert np.isnan(landmarks[~valid]).all() and np.isfinite(landmarks[valid]).all()
    assert (faces[valid] == 1).all() and (faces[~valid] == 0).all()
    np.testing.assert_allclose(landmarks[-1], landmarks[0], atol=0.5)


def test_follow_gives_each_frame_as_it_comes_and_the_same_track(astronaut_face):
    image, _ = astronaut_face
    face = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA)
    frames = [face] * 4 + [np.full_like(face, 128)] * 2 + [face] * 3
    landmarks, valid, faces = LandmarkTracker(quiet=True).track(frames)
    taken = []

    def source():
        for frame in frames:
            taken.append(1)
            yield frame

    for i, (found, seen) in enumerate(LandmarkTracker(quiet=True).follow(source())):
        assert len(taken) == i + 1  # one frame in, one result out: nothing read ahead or kept
        assert seen == faces[i] and (found is not None) == valid[i]
        if found is not None:
            np.testing.assert_array_equal(found, landmarks[i])


def test_two_faces_are_counted_and_the_largest_tracked(astronaut_face):
    image, _ = astronaut_face
    small = cv2.resize(image, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + small.shape[1], 3), 128, np.uint8)
    canvas[:, :512], canvas[: small.shape[0], 512:] = image, small
    landmarks, valid, faces = LandmarkTracker(quiet=True, detect_max_side=900).track([canvas] * 3)
    assert valid.all() and (faces == 2).all()
    assert landmarks[:, :, 0].max() < 512  # the big face on the left


def test_empty_video():
    landmarks, valid, faces = LandmarkTracker(quiet=True).track([])
    assert landmarks.shape == (0, 68, 2) and valid.shape == (0,) and faces.shape == (0,)


def _noisy_track(rng, frames=100):
    t = np.arange(frames)[:, None, None]
    base = rng.normal(0, 30, (1, 68, 2)) + 200
    base[0, 36], base[0, 45] = (150, 200), (250, 200)  # inter-ocular distance 100
    clean = base + 20 * np.sin(2 * np.pi * t / 50)  # slow head sway
    return clean, clean + rng.normal(0, 1.0, clean.shape)


def test_smoothing_reduces_jitter_and_keeps_slow_motion():
    rng = np.random.default_rng(0)
    clean, noisy = _noisy_track(rng)
    smooth = smooth_landmarks(noisy, window=7)
    assert landmark_jitter(smooth) < 0.3 * landmark_jitter(noisy)
    assert np.abs(smooth - clean).mean() < np.abs(noisy - clean).mean()
    np.testing.assert_array_equal(smooth_landmarks(noisy, window=1), noisy.astype(np.float32))


def test_smoothing_respects_invalid_frames():
    rng = np.random.default_rng(1)
    _, noisy = _noisy_track(rng, frames=30)
    noisy[10:12] = np.nan
    valid = np.isfinite(noisy).all(axis=(1, 2))
    smooth = smooth_landmarks(noisy, valid, window=5)
    assert np.isnan(smooth[10:12]).all() and np.isfinite(smooth[valid]).all()
    line = np.linspace(0, 30, 6)[:, None, None] * np.ones((6, 68, 2))
    np.testing.assert_allclose(smooth_landmarks(line, window=5), line, atol=1e-4)  # exact on lines


def test_jitter_measure():
    line = np.linspace(0, 10, 8)[:, None, None] * np.ones((8, 68, 2))
    line[:, 45, 0] += 50  # inter-ocular distance 50
    assert landmark_jitter(line) == pytest.approx(0.0, abs=1e-9)
    bump = line.copy()
    bump[4] += [3.0, 4.0]  # one frame off by 5 px: accelerations 5, 10, 5 px around it
    valid = np.ones(8, bool)
    assert landmark_jitter(bump, valid) == pytest.approx((5 + 10 + 5) / 50 / 6)
    valid[4] = False
    assert landmark_jitter(bump, valid) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(landmark_jitter(line[:2]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_savgol_interp_gives_scipys_numbers(dtype):
    # The NumPy smoother replaced scipy.signal.savgol_filter(mode="interp") (a 1.2 s import):
    # float64 agrees to rounding; in float32 scipy's edge fit runs in single precision, so
    # the two agree to float32 precision of the data (~1e-6 relative).
    rng = np.random.default_rng(2)
    cases = [(5, 5, 2), (6, 5, 2), (7, 7, 2), (40, 7, 2), (40, 5, 3), (9, 3, 1)]
    for frames, length, order in cases:  # (frames, window, polynomial order)
        x = (rng.uniform(0, 1000, (1, 68, 2)) + rng.normal(0, 3, (frames, 68, 2))).astype(dtype)
        ours = savgol_interp(x, length, order)
        theirs = savgol_filter(x, length, order, axis=0, mode="interp")
        assert ours.dtype == theirs.dtype == dtype
        exact = savgol_filter(x.astype(np.float64), length, order, axis=0, mode="interp")
        if dtype == np.float64:
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-9)
        else:  # 1e-6 of the coordinates' scale; scipy's float32 edges are the rougher ones
            scale = 1e-6 * np.abs(x).max()
            assert np.abs(ours - exact).max() <= np.spacing(np.float32(np.abs(x).max()))  # 1 step
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=scale)
