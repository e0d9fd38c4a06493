"""LinearBaseline: closed-form ridge regression from a speech window to the face's non-rigid
motion (a named baseline row: what a linear model reaches on the same data and features).

For video frame t the input is the speech feature matrix row of `speech_feature_matrix`
(log-mel of frames t - context .. t + context, flattened, with the clip's mean log-mel per
bin removed; optional extra per-frame features, so another front-end plugs in without
touching the regression); the output is the canonical shape of frame t minus the clip's
mean shape (68 x 2, canonical units). At inference the Motion delta is that prediction
minus the prediction for frame 0 (delta is relative to the photo, which is frame 0), and
the head stays still (pose 0): this baseline is about lips and jaw.

Training: `sdmtalk.train.linear` (`python -m sdmtalk.train.linear --data CACHE --out RUN`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdmtalk import MEL_PER_FRAME
from sdmtalk.motion.types import Motion, MotionControls, baseline_controls
from sdmtalk.typed_config import to_dict
from sdmtalk.weights.io import read_tagged_weights, write_weights

WEIGHTS_NAME = "linear_baseline"
BUNDLED_LINEAR_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / f"{WEIGHTS_NAME}.safetensors"
PREDICT_ROWS = 256  # frames per block of the window matrix: ~5 MB at the shipped context


@dataclass
class LinearConfig:
    """kind: fixed tag (never mistaken for SDM weights); context: video frames of speech on
    each side of frame t; pool_mel: average the 4 mel rows of a frame (80 values per frame)
    instead of keeping them (320); extra_dims: extra per-frame features (front-end);
    alpha: ridge strength added to the inputs' unit variances (chosen on val); speaker_power: training
    weight of a speaker = (its frames) ** speaker_power."""

    kind: str = "linear_baseline"
    context: int = 8  # dev lip r 0.488 / 0.499 / 0.494 at 4 / 8 / 12 (docs/RESULTS.md, Lips)
    pool_mel: bool = True
    extra_dims: int = 0
    alpha: float = 0.01
    speaker_power: float = 0.5

    @property
    def needs_phonemes(self) -> bool:
        """extra_dims > 0 means the extra features are phoneme posteriors (the front-end)."""
        return self.extra_dims > 0

    def feature_dims(self, mel_bins: int = 80) -> int:
        per_frame = mel_bins * (1 if self.pool_mel else MEL_PER_FRAME) + self.extra_dims
        return (2 * self.context + 1) * per_frame


def speech_feature_matrix(features, context: int = 4, pool_mel: bool = True,
                          extra: np.ndarray | None = None) -> np.ndarray:
    """AudioFeatures (mel (4T, 80)) [+ extra (T, k)] -> (T, (2 context + 1) * F) float32.

    Row t = per-frame features of frames t - context .. t + context (edge frames repeated),
    per-frame features = the frame's 4 log-mel rows (or their mean with pool_mel) minus
    the clip's mean log-mel per bin, then `extra`'s row. Shared by the ridge baseline and
    any model that wants a flat speech window per frame."""
    per = per_frame_features(features, pool_mel, extra)
    return context_rows(per, context, 0, len(per))


def per_frame_features(features, pool_mel: bool = True, extra: np.ndarray | None = None) -> np.ndarray:
    """speech_feature_matrix's per-frame features, (T, F) float32, before the context window."""
    mel = np.asarray(features.mel if hasattr(features, "mel") else features, np.float32)
    t = len(mel) // MEL_PER_FRAME
    mel = mel[: MEL_PER_FRAME * t]
    mel = mel - mel.mean(axis=0, keepdims=True) if t else mel
    per = mel.reshape(t, MEL_PER_FRAME, -1)
    per = per.mean(axis=1) if pool_mel else per.reshape(t, -1)
    if extra is not None:
        per = np.concatenate([per, np.asarray(extra, np.float32)[:t]], axis=1)
    return per


def context_rows(per: np.ndarray, context: int, start: int, stop: int) -> np.ndarray:
    """Rows start..stop of speech_feature_matrix from its per-frame features (T, F)."""
    t = len(per)
    idx = np.clip(np.arange(start, stop)[:, None] + np.arange(-context, context + 1), 0, max(t - 1, 0))
    return np.ascontiguousarray(per[idx].reshape(stop - start, -1), dtype=np.float32)


def phoneme_log_features(posteriors: np.ndarray) -> np.ndarray:
    """(T, V) phoneme posteriors -> (T, V) log posteriors (floored), the ridge's extra input."""
    return np.log(np.asarray(posteriors, np.float32) + 1e-4)


class LinearBaseline:
    """Ridge MotionModel. weight (D, 136), bias (136,), x_mean/x_std (D,) float32; rest
    (136,) or None: the resting face relative to the clip's mean shape (the median target
    over training frames without speech), which generate takes the photo's face to be, as
    the SDM does (without it, the predicted face of frame 0)."""

    name = "linear"

    def __init__(self, cfg: LinearConfig, weight, bias, x_mean, x_std, rest=None):
        self.cfg = cfg
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.x_mean = np.asarray(x_mean, np.float32)
        self.x_std = np.asarray(x_std, np.float32)
        self.rest = None if rest is None else np.asarray(rest, np.float32).reshape(136)
        if self.weight.shape != (cfg.feature_dims(), 136):
            raise ValueError(f"weight must be ({cfg.feature_dims()}, 136), got {self.weight.shape}")

    @property
    def needs_phonemes(self) -> bool:
        return self.cfg.needs_phonemes

    def predict_shape(self, features, extra=None) -> np.ndarray:
        """AudioFeatures (T frames) -> (T, 68, 2) canonical shape minus the clip mean."""
        if extra is None and self.cfg.needs_phonemes:
            if getattr(features, "phonemes", None) is None:
                raise ValueError("this linear baseline reads phoneme posteriors: "
                                 "compute_features(wav, phonemes=True)")
            extra = phoneme_log_features(features.phonemes)
        per = per_frame_features(features, self.cfg.pool_mel, extra)
        y = np.empty((len(per), 136), np.float32)
        for s in range(0, len(per), PREDICT_ROWS):  # the window matrix of 10 min is ~0.8 GB
            x = context_rows(per, self.cfg.context, s, min(s + PREDICT_ROWS, len(per)))
            x -= self.x_mean  # in place: no block-sized temporaries beside x
            x /= self.x_std
            y[s:s + len(x)] = x @ self.weight + self.bias
        return y.reshape(-1, 68, 2)

    def generate(self, features, source_canonical: np.ndarray, controls: MotionControls | None = None) -> Motion:
        """AudioFeatures (T frames) + source canonical (68, 2) -> Motion (T frames, pose 0)."""
        controls = baseline_controls(controls, source_canonical)
        shape = self.predict_shape(features)
        # The photo is the face at rest: taking it for frame 0's prediction instead cost 0.044
        # dev lip r (a frame 0 predicted open pushed later closed mouths through each other)
        rest = shape[:1] if self.rest is None else self.rest.reshape(1, 68, 2)
        delta = (shape - rest) * float(controls.lip_scale) if len(shape) else shape
        return Motion(np.zeros((len(shape), 4), np.float32), delta)

    def save(self, path, extra: dict | None = None) -> Path:
        """path (.safetensors, config in its metadata) + path.json, sdmtalk weights format."""
        names = ("weight", "bias", "x_mean", "x_std") + (() if self.rest is None else ("rest",))
        tensors = {k: torch.from_numpy(getattr(self, k)) for k in names}
        return write_weights(tensors, to_dict(self.cfg), path,
                             {"step": 0, "train_config": {}, **(extra or {})})

    @classmethod
    def load(cls, path=None) -> LinearBaseline:
        """The shipped baseline (path None) or weights written by `save`."""
        tensors, cfg = read_tagged_weights(
            path or BUNDLED_LINEAR_WEIGHTS, "linear_baseline", LinearConfig, "linear baseline",
            "python -m sdmtalk.train.linear --data CACHE --out RUN")
        rest = tensors["rest"].numpy() if "rest" in tensors else None
        return cls(cfg, *(tensors[k].numpy() for k in ("weight", "bias", "x_mean", "x_std")), rest=rest)
