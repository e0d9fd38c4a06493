"""motion.filters against the scipy functions they replace on generate's import path."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d as scipy_gaussian
from scipy.signal import lfilter

from sdmtalk.motion.filters import exp_smooth, gaussian_filter1d


@pytest.mark.parametrize("mode", ["reflect", "nearest"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_filter1d_is_scipys(mode, dtype):
    rng = np.random.default_rng(0)
    for frames in (1, 2, 3, 7, 40, 500):  # short clips: the kernel reaches past both ends
        for sigma in (0.5, 2.0, 3.0, 7.5):
            x = (100 + 5 * rng.normal(size=(frames, 4))).astype(dtype)
            ours = gaussian_filter1d(x, sigma, axis=0, mode=mode)
            theirs = scipy_gaussian(x, sigma, axis=0, mode=mode)
            assert ours.dtype == theirs.dtype == dtype
            np.testing.assert_allclose(ours, theirs, rtol=1e-6 if dtype == np.float32 else 1e-13)
            np.testing.assert_allclose(gaussian_filter1d(x[:, 0], sigma, mode=mode),
                                       scipy_gaussian(x[:, 0], sigma, mode=mode), rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        gaussian_filter1d(np.zeros(3), 1.0, mode="wrap")


def test_exp_smooth_is_lfilter():
    x = np.random.default_rng(1).normal(size=(300, 4))
    for a in (0.0, 0.5, 0.97):
        np.testing.assert_array_equal(exp_smooth(x, a), lfilter([1 - a], [1, -a], x, axis=0))
    assert exp_smooth(np.zeros((0, 4)), 0.5).shape == (0, 4)
