"""The rhythmic branch's say in when the head moves: a head-activity envelope from prosody.

Real heads move faster while the voice is active and slow down in pauses (docs/RESULTS.md, Head motion: a
linear readout of the rhythmic embedding M~ and the prosody predicts a real head's log speed
within a clip with r 0.35 on unseen speakers, benchmarks/bench_head_activity.py). The deep pose pass does not hear prosody, so
its head moves as fast in pauses as in speech. The envelope exp(gain x a_t), a_t the readout
standardized on the training clips, scales the fast band of the pose (pose_gain.py): the
head moves where the rhythm says, and the no_rhythm ablation (envelope 1) shows the branch's
effect. Pointwise in time plus a short Gaussian, so a stream gets (nearly) offline's envelope.
The readout is fitted by calibrate/calibrate_pose_gain.py (fit_head_activity) on train clips.
"""

from __future__ import annotations

import numpy as np

from sdmtalk.motion.filters import gaussian_filter1d

SPEED_SMOOTH = 3.0  # Gaussian sigma (frames) of the real head speed the readout learns
ENVELOPE_SMOOTH = 2.0  # Gaussian sigma (frames) of the envelope: per-frame voicing flips are no nods
LOG_FLOOR = 0.1  # x the clip's median step, added before the log: a still head is not -inf
ENVELOPE_RANGE = (-2.0, 2.0)  # the log envelope is clipped here (at most e^2 = 7.4x)


def activity_inputs(emb: np.ndarray, prosody: np.ndarray) -> np.ndarray:
    """(T, E) rhythmic embedding M~ and (T, P) normalized prosody -> readout inputs (T, E + P + 1)."""
    emb, prosody = np.asarray(emb, np.float64), np.asarray(prosody, np.float64)
    return np.concatenate([emb, prosody, np.ones((len(emb), 1))], 1)


def head_activity(cfg, emb: np.ndarray, prosody: np.ndarray, scale: float = 1.0) -> np.ndarray | None:
    """The envelope (T,) for the fast pose band, None when the weights have no readout or
    the gain (cfg.head_activity_gain x the user's rhythm scale; 0 with no_rhythm) is 0."""
    if not active(cfg, scale) or len(emb) == 0:
        return None
    return envelope(readout(cfg.head_activity, emb, prosody), cfg.head_activity_gain * scale)


def active(cfg, scale: float = 1.0) -> bool:
    """Whether cfg has a readout and a non-zero gain at this rhythm scale."""
    return len(cfg.head_activity) > 0 and float(cfg.head_activity_gain) * float(scale) != 0.0


def readout(weights, emb: np.ndarray, prosody: np.ndarray) -> np.ndarray:
    """The standardized activity a_t (T,): the linear readout, smoothed over a few frames."""
    a = activity_inputs(emb, prosody) @ np.asarray(weights, np.float64)
    return gaussian_filter1d(a, ENVELOPE_SMOOTH, mode="nearest") if len(a) > 1 else a


def envelope(activity: np.ndarray, gain: float) -> np.ndarray:
    """exp(gain x a_t), its log clipped to ENVELOPE_RANGE."""
    return np.exp(np.clip(gain * np.asarray(activity, np.float64), *ENVELOPE_RANGE))


def model_inputs(model, prosody: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A clip's raw prosody (T, P) -> (M~ (T, E), the normalized prosody (T, P)) as SDMModel
    computes them (one pass: clips that fit in one of its chunks get exactly generate's)."""
    import torch

    pros = model.normalize_prosody(torch.as_tensor(np.asarray(prosody), dtype=torch.float32)[None])
    with torch.no_grad():
        emb = model.rhythm(pros)[0]
    return emb[0].numpy(), pros[0].numpy()


def log_pose_speed(pose: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Head pose (T, 4) [log scale, angle, tx, ty] -> log translation speed (T,), smoothed
    (SPEED_SMOOTH) and centred on the clip's mean (the readout says when a head moves, not
    how much a speaker moves); NaN at frames whose step touches an invalid frame."""
    pose = np.asarray(pose, np.float64)
    step = np.full(len(pose), np.nan)
    if len(pose) > 1:
        step[1:] = np.linalg.norm(np.diff(pose[:, 2:4], axis=0), axis=1)
        if valid is not None:
            valid = np.asarray(valid, bool)
            step[1:][~(valid[1:] & valid[:-1])] = np.nan
    ok = np.isfinite(step)
    if ok.sum() < 2:
        return np.full(len(pose), np.nan)
    filled = gaussian_filter1d(np.where(ok, step, np.nanmedian(step)), SPEED_SMOOTH)
    y = np.log(filled + LOG_FLOOR * np.nanmedian(step))
    y[~ok] = np.nan
    return y - np.nanmean(y)


def coupling_slope(log_speed: np.ndarray, activity: np.ndarray) -> float:
    """Within-clip least-squares slope of a head's centred log speed on a_t (NaN frames out)."""
    ok = np.isfinite(log_speed)
    a = np.asarray(activity, np.float64)[: len(log_speed)][ok]
    a = a - a.mean()
    return float(a @ log_speed[ok] / max(a @ a, 1e-12)) if ok.sum() > 2 else float("nan")


def fit_head_activity(samples, ridge: float = 1.0) -> tuple[np.ndarray, float]:
    """samples: [(inputs (T, F) from activity_inputs, centred log speed (T,), weight)] -> (readout
    weights (F,) whose output has unit std over the samples, the raw fit's std). Weighted
    ridge, the weight spread over each sample's frames (one speaker should count once)."""
    xs, ys, ws = [], [], []
    for x, y, w in samples:
        ok = np.isfinite(y)
        if ok.sum() < 2:
            continue
        xs.append(x[ok]), ys.append(y[ok]), ws.append(np.full(ok.sum(), w / ok.sum()))
    if not xs:
        raise ValueError("no clip with a tracked head to fit the head-activity readout on")
    x, y, w = np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)
    sw = np.sqrt(w / w.mean())
    a, b = x * sw[:, None], y * sw
    reg = ridge * np.eye(x.shape[1])
    reg[-1, -1] = 0.0  # the bias is not shrunk
    coef = np.linalg.solve(a.T @ a + reg, a.T @ b)
    pred = x @ coef
    mean = np.average(pred, weights=w)
    std = float(np.sqrt(np.average((pred - mean) ** 2, weights=w)))
    coef[-1] -= mean
    return coef / max(std, 1e-9), std
