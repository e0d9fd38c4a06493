"""Each evaluation metric on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sdmtalk.evaluate import head_metrics, image_metrics, lip_metrics, sync_metrics
from sdmtalk.face.template import CANONICAL_TEMPLATE

RNG = np.random.default_rng(0)


def face_track(t: int = 50) -> np.ndarray:
    """(T, 68, 2) landmarks of a still face: the template at 70 px inter-ocular, centred at 128."""
    return np.repeat((CANONICAL_TEMPLATE * 70 + 128)[None].astype(np.float64), t, axis=0)


def smooth_signal(n: int, seed: int = 0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.random.default_rng(seed).normal(size=n), 2.0)


# --- LMD --------------------------------------------------------------------------------------


def test_lmd_identical_is_zero():
    lm = face_track() + RNG.normal(size=(50, 68, 2))
    assert lip_metrics.lmd(lm, lm) == 0.0
    assert lip_metrics.lmd(lm, lm, points=lip_metrics.MOUTH) == 0.0


def test_lmd_shifted_set_gives_the_shift_length():
    lm = face_track()
    assert lip_metrics.lmd(lm + np.array([3.0, 4.0]), lm) == pytest.approx(5.0)
    shifted_mouth = lm.copy()
    shifted_mouth[:, lip_metrics.MOUTH] += np.array([0.0, 2.0])
    assert lip_metrics.lmd(shifted_mouth, lm, points=lip_metrics.MOUTH) == pytest.approx(2.0)
    assert lip_metrics.lmd(shifted_mouth, lm) == pytest.approx(2.0 * 20 / 68)
    # centred: a mouth that only moved is the same mouth shape
    assert lip_metrics.lmd(shifted_mouth, lm, points=lip_metrics.MOUTH, centre=True) == pytest.approx(0.0, abs=1e-9)


def test_lmd_scores_valid_frames_only():
    lm = face_track(4)
    bad = lm.copy()
    bad[1] += 100.0
    valid = np.array([True, False, True, True])
    assert lip_metrics.lmd(bad, lm, valid=valid) == 0.0
    assert np.isnan(lip_metrics.lmd(bad, lm, valid=np.zeros(4, bool)))


# --- SSIM / PSNR --------------------------------------------------------------------------------


def test_ssim_psnr_identical_and_noisy():
    from skimage import data

    frames = np.stack([data.astronaut()[i:i + 64, 200:264] for i in (0, 40, 80)])
    assert image_metrics.ssim(frames, frames) == pytest.approx(1.0)
    assert image_metrics.psnr(frames, frames) == np.inf
    noisy = np.clip(frames.astype(int) + RNG.normal(0, 20, frames.shape), 0, 255).astype(np.uint8)
    mse = ((noisy.astype(float) - frames) ** 2).reshape(3, -1).mean(1)
    assert image_metrics.psnr(noisy, frames) == pytest.approx(np.mean(10 * np.log10(255**2 / mse)))
    assert 0.0 < image_metrics.ssim(noisy, frames) < 0.95


def test_ssim_matches_skimage():
    from skimage import data
    from skimage.metrics import structural_similarity

    a = data.astronaut()[100:228, 150:278]
    b = np.clip(a.astype(int) + RNG.normal(0, 15, a.shape), 0, 255).astype(np.uint8)
    c = data.astronaut()[110:238, 140:268]
    for other in (a, b, c):
        ref = structural_similarity(other, a, channel_axis=-1, data_range=255)
        assert image_metrics.ssim_frame(other, a) == pytest.approx(ref, abs=1e-4)


# --- CSIM ---------------------------------------------------------------------------------------


def _detect(image: np.ndarray) -> np.ndarray:
    import dlib

    det = dlib.get_frontal_face_detector()(image, 1)
    pred = dlib.shape_predictor(str(image_metrics.dlib_model_dir() / "shape_predictor_68_face_landmarks.dat"))
    shape = pred(image, max(det, key=lambda r: r.area()))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


@pytest.fixture(scope="module")
def faces():
    import matplotlib.cbook
    from skimage import data

    astronaut = data.astronaut()
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        from PIL import Image

        hopper = np.asarray(Image.open(f).convert("RGB"))
    return astronaut, hopper


def test_csim_same_face_high_other_face_lower(faces):
    astronaut, hopper = faces
    emb = image_metrics.IdentityEmbedder()
    a = emb.embed(astronaut, _detect(astronaut))
    assert a.shape == (128,)
    brighter = np.clip(astronaut.astype(int)[:, ::-1] + 25, 0, 255).astype(np.uint8)  # mirrored, brighter
    a2 = emb.embed(brighter, _detect(brighter))
    h = emb.embed(hopper, _detect(hopper))
    same = image_metrics.csim(a, a2[None])
    other = image_metrics.csim(a, h[None])
    assert same > 0.95
    assert other < same - 0.03
    assert image_metrics.csim(a, np.stack([a, a])) == pytest.approx(1.0)


# --- FID ----------------------------------------------------------------------------------------


def test_frechet_distance_known_gaussians():
    d = 4
    mu = np.zeros(d)
    assert image_metrics.frechet_distance(mu, np.eye(d), mu + 2.0, np.eye(d)) == pytest.approx(4.0 * d)
    # diagonal covariances: sum (sqrt(a) - sqrt(b))^2
    a, b = np.diag([1.0, 4.0, 9.0, 1.0]), np.diag([4.0, 4.0, 1.0, 1.0])
    assert image_metrics.frechet_distance(mu, a, mu, b) == pytest.approx(1 + 0 + 4 + 0)


def test_fid_identical_sets_zero_and_shift_grows():
    x = RNG.normal(size=(400, 8))
    assert image_metrics.fid(x, x) == pytest.approx(0.0, abs=1e-6)
    assert image_metrics.fid(x, x + 1.0) == pytest.approx(8.0, rel=1e-6)


def test_fid_matches_the_sqrtm_formula():
    a, b = RNG.normal(size=(30, 12)), 0.5 * RNG.normal(size=(20, 12)) + 0.3
    expected = image_metrics.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert image_metrics.fid(a, b) == pytest.approx(expected, rel=1e-6)
    few_a, few_b = RNG.normal(size=(5, 12)), RNG.normal(size=(6, 12))  # singular covariances
    expected = image_metrics.frechet_distance(few_a.mean(0), np.cov(few_a, rowvar=False),
                                  few_b.mean(0), np.cov(few_b, rowvar=False))
    assert image_metrics.fid(few_a, few_b) == pytest.approx(expected, rel=1e-4)


def test_inception_features_shape_and_determinism():
    import torch

    torch.set_num_threads(1)
    imgs = RNG.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    f = image_metrics.inception_features(imgs)
    assert f.shape == (2, 2048)
    assert np.isfinite(f).all() and (f >= 0).all()  # pool features after ReLU
    np.testing.assert_allclose(image_metrics.inception_features(imgs[:1]), f[:1], rtol=1e-4, atol=1e-5)


# --- lip sync -----------------------------------------------------------------------------------


def test_inner_lip_gap_known_opening():
    lm = face_track(3)
    lm[1, lip_metrics.INNER_LOWER, 1] += 6.0
    gap = lip_metrics.inner_lip_gap(lm)
    assert gap[1] - gap[0] == pytest.approx(6.0, abs=0.5)  # exactly 6 if the lips were vertical
    assert gap[0] == pytest.approx(gap[2])


def test_av_offset_recovers_a_known_delay():
    energy = smooth_signal(200)
    for delay in (-4, 0, 3, 7):
        mouth = np.roll(energy, delay) + 0.1 * smooth_signal(200, seed=5)
        res = lip_metrics.av_offset(mouth, energy, max_offset=10)
        assert res["offset"] == delay
        assert res["corr"] > 0.9 and res["confidence"] > 0.3


def test_lip_energy_and_gap_correlation_and_amplitude_ratio():
    real = smooth_signal(150)
    assert lip_metrics.lip_energy_correlation(real, real) == pytest.approx(1.0)
    assert lip_metrics.lip_gap_correlation(0.4 * real + 3, real) == pytest.approx(1.0)
    assert lip_metrics.amplitude_ratio(0.4 * real + 3, real) == pytest.approx(0.4)
    assert np.isnan(lip_metrics.lip_gap_correlation(np.ones(150), real))  # static mouth: undefined


def test_frame_loudness_follows_the_envelope():
    sr, t = 16000, 50
    env = np.repeat(np.where(np.arange(t) % 10 < 5, 1.0, 0.01), sr // 25)
    wav = env * np.sin(2 * np.pi * 220 * np.arange(len(env)) / sr)
    loud = lip_metrics.frame_loudness(wav, t)
    assert loud.shape == (t,)
    assert loud.max() == 0.0
    np.testing.assert_allclose(loud[5:10], -40.0, atol=0.5)


# --- head motion --------------------------------------------------------------------------------


def test_head_pose_roll_and_translation():
    lm = face_track(2)
    centre = lm[0, head_metrics.RIGID].mean(0)
    angle = np.radians(10)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lm[1] = (lm[1] - centre) @ rot.T + centre + np.array([5.0, -2.0])
    pose = head_metrics.head_pose(lm)
    assert pose[1, 0] - pose[0, 0] == pytest.approx(10.0, abs=1e-6)
    np.testing.assert_allclose(pose[1, 1:] - pose[0, 1:], [5.0, -2.0], atol=1e-6)


def test_head_motion_stats_known_values():
    t = np.arange(100)
    pose = np.stack([np.where(t % 2 == 0, 1.0, -1.0), 0.2 * t, np.zeros(100)], axis=1)
    s = head_metrics.head_motion_stats(pose, fps=25)
    assert s["roll_std"] == pytest.approx(1.0)
    assert s["roll_speed"] == pytest.approx(2.0 * 25)
    assert s["pos_speed"] == pytest.approx(0.2 * 25)


def test_pose_diversity_zero_for_equal_seeds_known_for_offsets():
    base = np.stack([smooth_signal(60), smooth_signal(60, 1), smooth_signal(60, 2)], axis=1)
    assert head_metrics.pose_diversity(np.stack([base, base, base]))["roll_deg"] == pytest.approx(0.0, abs=1e-12)
    div = head_metrics.pose_diversity(np.stack([base + [1.0, 3.0, 4.0], base - [1.0, 3.0, 4.0]]))
    assert div["roll_deg"] == pytest.approx(1.0)
    assert div["pos_px"] == pytest.approx(5.0)
    assert np.isnan(head_metrics.pose_diversity(base[None])["roll_deg"])


def test_jitter_constant_zero_alternating_known():
    lm = face_track(20)
    assert head_metrics.jitter(lm) == 0.0
    assert head_metrics.jitter(lm + np.linspace(0, 10, 20)[:, None, None]) == pytest.approx(0.0, abs=1e-9)
    shaky = lm.copy()
    shaky[:, :, 0] += np.where(np.arange(20) % 2 == 0, 0.5, -0.5)[:, None]
    assert head_metrics.jitter(shaky) == pytest.approx(2.0)  # |0.5 - 2(-0.5) + 0.5|


def test_beat_align_known_cases():
    beats = np.array([10, 30, 50])
    assert head_metrics.beat_align(beats, beats) == pytest.approx(1.0)
    assert head_metrics.beat_align(beats + 100, beats) == pytest.approx(0.0, abs=1e-12)
    assert head_metrics.beat_align(beats + 2, beats, sigma=2.0) == pytest.approx(np.exp(-0.5))
    assert head_metrics.beat_align(np.array([]), beats) == 0.0
    assert np.isnan(head_metrics.beat_align(beats, np.array([])))


def test_kinematic_beats_at_speed_minima():
    # the head swings x = 10 sin(2 pi t / 20): speed minima at the turning points t = 5, 15, ...
    t = np.arange(100)
    lm = face_track(100) + (10 * np.sin(2 * np.pi * t / 20))[:, None, None] * np.array([1.0, 0.0])
    beats = head_metrics.kinematic_beats(head_metrics.head_speed(lm))
    turning = np.arange(5, 100, 10)
    assert len(beats) >= 8
    assert np.abs(beats[:, None] - turning[None]).min(axis=1).max() <= 1


def test_audio_onsets_on_clicks():
    sr = 16000
    wav = np.zeros(sr * 4, np.float32)
    for f in (20, 45, 70):  # bursts at frames 20, 45, 70
        s = f * 640
        wav[s:s + 1600] = np.random.default_rng(f).normal(0, 0.5, 1600)
    on = head_metrics.audio_onsets(wav, 100)
    assert len(on) == 3
    np.testing.assert_allclose(on, [20, 45, 70], atol=1)


def test_sync_expert_reads_tracks_smoothed_as_prepare_smooths_them():
    """The expert learned from prepare's smoothed tracks: evaluate's raw dlib jitter is taken
    off the same way before it scores a video (the lip gap's slow motion stays)."""
    from sdmtalk.face.align import to_canonical
    from sdmtalk.face.track import landmark_jitter

    rng = np.random.default_rng(0)
    t = np.arange(100)
    lm = np.repeat((CANONICAL_TEMPLATE * 80 + 128)[None], 100, 0).astype(np.float64)
    lm[:, 57, 1] += 6 * np.sin(2 * np.pi * t / 20)  # a mouth opening 1.25 times a second
    noisy = lm + rng.normal(0, 0.8, lm.shape)
    canon, keep = sync_metrics._canonical(noisy)
    raw = to_canonical(noisy)[0]
    assert keep.all() and canon.shape == (100, 68, 2)
    assert landmark_jitter(canon) < 0.6 * landmark_jitter(raw)
    assert np.corrcoef(canon[:, 57, 1], to_canonical(lm)[0][:, 57, 1])[0, 1] > 0.9
