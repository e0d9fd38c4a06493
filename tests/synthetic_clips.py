"""Synthetic talking clips with a known audio -> mouth relation, shared by the sync-expert and
AV-offset tests (no data files)."""

import numpy as np


def synthetic_clip(seed: int, frames: int = 120):
    """A clip whose mouth opening (points 61-67 pulled apart) is a smoothed random syllable
    envelope and whose log-mel carries the same envelope in a speaker-specific band (plus
    noise): a known audio -> mouth relation at zero offset."""
    rng = np.random.default_rng(seed)
    env = np.convolve(rng.random(frames + 8) > 0.6, np.hanning(5), mode="same")[4:-4]
    env = env / max(env.max(), 1e-6)
    mel = rng.normal(0, 0.3, (4 * frames, 80)).astype(np.float32) - 5
    band = slice(10 + seed % 20, 40 + seed % 20)
    mel[:, band] += 3 * np.repeat(env, 4)[:, None]
    canonical = np.repeat(rng.normal(0, 0.02, (1, 68, 2)), frames, 0)
    canonical[:, 48:68] += np.array([[np.cos(a) * 0.4, np.sin(a) * 0.2] for a in np.linspace(0, 2 * np.pi, 20)])
    canonical[:, 61:64, 1] -= 0.1 * env[:, None]
    canonical[:, 65:68, 1] += 0.2 * env[:, None]
    canonical[:, 48:68] += rng.normal(0, 0.003, (frames, 20, 2))
    return mel, canonical.astype(np.float32)
