"""The SDM's lips averaged with the ridge baseline's: an ensemble of two lip predictors.

On the dev speakers the SDM's lip gap and the ridge's correlate only 0.67 with each other, so
each carries something the other misses (the ridge is the steadier estimate, the SDM the
livelier one). Mixing a share `ridge_mix` of the ridge's mouth motion, scaled by `ridge_gain`
to the SDM's amplitude (the ridge opens the mouth about 2x less), raised the dev lip-gap r
from 0.491 to 0.528 in landmark space with the shipped 0.6 (docs/RESULTS.md, Lips). Only the mouth points mix:
the ridge holds the head still and the SDM's jaw, eyes and brows stay its own.

Both predictors' shapes are relative to the clip's mean shape, so the mix needs no state of
its own. Offline only: the ridge reads 8 frames of speech after each frame and a stream has
4 (`StreamConfig.lookahead`); fed the stream's truncated window it drew a seam at every span
edge (mean lip-gap step there 1.22x the other steps, against 0.86 with the SDM's lips
alone, docs/RESULTS.md, Lips), so a stream keeps the SDM's lips.
`calibrate/calibrate_ridge_mix.py` fits the gain and the share and writes them into the
weights' config; ridge_mix 0 (the default of a freshly trained model) leaves the SDM alone.
"""

from __future__ import annotations

import numpy as np

from sdmtalk.motion.linear import LinearBaseline
from sdmtalk.motion.types import MOUTH  # outer + inner lips, as lip_scale scales them


def mix_ridge_lips(delta: np.ndarray, ridge_shape: np.ndarray | None, share: float, gain: float) -> np.ndarray:
    """delta (T, 68, 2): the SDM's canonical shape minus the clip's mean shape; ridge_shape
    (T, 68, 2): the ridge's (LinearBaseline.predict_shape). -> a copy whose mouth points are
    (1 - share) x the SDM's + share x gain x the ridge's. share 0 or no ridge: delta as is."""
    if share <= 0 or ridge_shape is None:
        return delta
    ridge_shape = np.asarray(ridge_shape, np.float32)
    if ridge_shape.shape != delta.shape:
        raise ValueError(f"ridge shape {ridge_shape.shape} does not match the SDM's {delta.shape}")
    out = np.array(delta, np.float32, copy=True)
    mouth = out[:, MOUTH]
    out[:, MOUTH] = (1.0 - share) * mouth + share * gain * ridge_shape[:, MOUTH]
    return out


def ridge_for(model) -> object | None:
    """The ridge a model mixes into its lips (the bundled linear baseline, loaded once), or
    None when its config does not mix one."""
    if float(getattr(model.cfg, "ridge_mix", 0.0)) <= 0:
        return None
    ridge = getattr(model, "_ridge", None)
    if ridge is None:
        ridge = LinearBaseline.load()
        model._ridge = ridge
    return ridge
