"""Speaker augmentation of training windows' log-mel (data.augment)."""

import numpy as np
import pytest
from test_motion_windows import FakeReader

from sdmtalk.config import TrainConfig
from sdmtalk.data.augment import MelAugment, apply_warp, mel_centres, warp_bins
from sdmtalk.data.windows import MotionWindows
from sdmtalk.errors import InputError


def formant_rows(centre_hz: float, rows: int = 8) -> np.ndarray:
    """Log-mel rows with one bump at centre_hz."""
    c = mel_centres()
    return np.repeat(-((c - centre_hz) / 150.0) ** 2, rows).reshape(len(c), rows).T.astype(np.float32)


def test_warp_moves_formants_by_the_factor_and_identity_is_exact():
    c = mel_centres()
    assert len(c) == 80 and c[0] > 55 and c[-1] < 7600 and np.all(np.diff(c) > 0)
    rows = formant_rows(1500.0)
    np.testing.assert_allclose(apply_warp(rows, warp_bins(1.0, c)), rows, atol=1e-6)
    for alpha in (0.9, 1.1):
        peak = c[np.argmax(apply_warp(rows, warp_bins(alpha, c))[0])]
        assert abs(peak / 1500.0 - alpha) < 0.04, (alpha, peak)


def test_warp_keeps_the_clip_mean_consistent_and_masks_set_the_mean():
    rng = np.random.default_rng(0)
    mel = rng.normal(-5, 1, (200, 80)).astype(np.float32)
    item = {"mel": mel, "mel_mean": mel.mean(0), "mel_sum_before": mel[:40].sum(0)}
    out = MelAugment(warp=0.12)(item, np.random.default_rng(3))
    assert not np.allclose(out["mel"], mel)
    np.testing.assert_allclose(out["mel"].mean(0), out["mel_mean"], atol=1e-4)  # warp(mean) = mean(warp)
    np.testing.assert_allclose(out["mel"][:40].sum(0), out["mel_sum_before"], rtol=1e-4, atol=1e-3)
    masked = MelAugment(masks=3, freq_width=10, time_width=12)(item, np.random.default_rng(3))["mel"]
    changed = masked != mel
    assert changed.any() and np.all(np.isclose(masked, mel) | np.isclose(masked, np.broadcast_to(mel.mean(0), mel.shape)))
    assert changed.mean() < 0.4
    assert np.array_equal(item["mel"], mel)  # the input is not modified


def test_train_windows_are_augmented_deterministically():
    reader = FakeReader({f"c{i}": ("s", "train", 75) for i in range(3)})
    plain = MotionWindows(reader, "train", window=32, seed=0)
    aug = MotionWindows(reader, "train", window=32, seed=0, augment=MelAugment(warp=0.1, masks=2))
    again = MotionWindows(reader, "train", window=32, seed=0, augment=MelAugment(warp=0.1, masks=2))
    a, b, p = aug[1], again[1], plain[1]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not np.allclose(a["mel"].numpy(), p["mel"].numpy())
    for k in ("delta", "pose", "prosody", "valid"):  # only the log-mel changes
        assert np.array_equal(a[k].numpy(), p[k].numpy()), k
    streamed = MotionWindows(reader, "train", window=32, seed=0, augment=MelAugment(prefix_mean=1.0))
    assert not np.allclose(streamed[1]["mel_mean"].numpy(), p["mel_mean"].numpy())
    off = MotionWindows(reader, "train", window=32, seed=0, augment=MelAugment())
    assert np.array_equal(off[1]["mel"].numpy(), p["mel"].numpy())


@pytest.mark.parametrize("key,value", [("mel_warp", 0.6), ("mel_warp", -0.1), ("mel_masks", -1)])
def test_bad_augmentation_settings_are_named(key, value):
    with pytest.raises(InputError, match=f"train.{key}"):
        TrainConfig(**{key: value}).check()


def test_prefix_mean_is_what_a_stream_has_heard():
    rng = np.random.default_rng(1)
    clip = rng.normal(-5, 1, (300, 80)).astype(np.float32)
    item = {"mel": clip[100:200], "mel_mean": clip.mean(0), "mel_sum_before": clip[:100].sum(0, dtype=np.float64),
            "mel_rows_before": np.array(100.0)}
    out = MelAugment(prefix_mean=1.0)(item, np.random.default_rng(2))
    heard = [clip[:100 + j].mean(0) for j in range(1, 101)]
    assert min(np.abs(out["mel_mean"] - h).max() for h in heard) < 1e-5
    assert np.abs(out["mel_mean"] - clip.mean(0)).max() > 1e-3
    with pytest.raises(InputError, match="train.mel_prefix_mean"):
        TrainConfig(mel_prefix_mean=1.5).check()
