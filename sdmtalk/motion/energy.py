"""EnergyBaseline: a named heuristic baseline, not a learned model (and the default motion
model until SDM weights ship).

Lips: mouth opening follows loudness (the prosody energy channel), mapped onto a fixed
mouth-opening displacement pattern in canonical units (inter-ocular distance = 1). Head: a
small, slow, seeded sway (sum of sinusoids) plus a tiny nod on speech onsets.
"""

from __future__ import annotations

import numpy as np

from sdmtalk.motion.types import Motion, MotionControls, baseline_controls

MAX_GAP = 0.22  # inner-lip opening (IOD units) at full loudness; real speech peaks ~0.15-0.3
ENERGY_FLOOR, ENERGY_SPAN = 0.45, 0.4  # relative-dB energy 0..1: below 0.45 (-33 dB) = closed


def _opening_pattern() -> np.ndarray:
    """(68, 2) displacement per unit of inner-lip gap: the lower lip and jaw drop, the
    upper lip lifts a little, the mouth corners draw in."""
    p = np.zeros((68, 2), np.float32)
    p[[61, 62, 63], 1] = [-0.25, -0.3, -0.25]  # upper inner lip up
    p[[67, 66, 65], 1] = [0.6, 0.7, 0.6]  # lower inner lip down (62-66 gap grows by 1.0)
    p[[50, 51, 52], 1] = -0.2  # upper outer lip
    p[[49, 53], 1] = -0.1
    p[[59, 58, 57, 56, 55], 1] = [0.35, 0.6, 0.65, 0.6, 0.35]  # lower outer lip
    p[[48, 60], 0], p[[54, 64], 0] = 0.06, -0.06  # corners draw in
    p[[48, 54, 60, 64], 1] = 0.12
    p[[4, 5, 6, 7, 8, 9, 10, 11, 12], 1] = [0.05, 0.15, 0.3, 0.4, 0.45, 0.4, 0.3, 0.15, 0.05]
    return p


OPENING_PATTERN = _opening_pattern()


def lip_opening(prosody: np.ndarray) -> np.ndarray:
    """Prosody (T, 4) -> mouth opening (T,) in IOD units: loudness above the floor, smoothed
    over 3 frames (lips do not snap), 0 in silence."""
    loud = np.clip((prosody[:, 2] - ENERGY_FLOOR) / ENERGY_SPAN, 0.0, 1.0)
    smooth = np.convolve(np.pad(loud, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    return (MAX_GAP * np.sqrt(smooth)).astype(np.float32)  # sqrt: quiet syllables still open


def head_sway(num_frames: int, seed: int, fps: float = 25.0) -> np.ndarray:
    """(T, 4) pose [log scale, angle, tx, ty]: three slow sinusoids (0.05-0.35 Hz) per
    parameter with seeded phases and frequencies, zero at frame 0 (the photo's own pose)."""
    rng = np.random.default_rng(seed)
    amp = np.array([0.008, 0.03, 0.03, 0.015])  # log scale, rad, IOD, IOD
    t = np.arange(num_frames) / fps
    pose = np.zeros((num_frames, 4))
    for d in range(4):
        freqs = rng.uniform(0.05, 0.35, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.uniform(0.5, 1.0, 3)
        wave = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
        pose[:, d] = amp[d] * wave / weights.sum()
    return (pose - pose[:1]).astype(np.float32)


class EnergyBaseline:
    """Heuristic MotionModel: loudness -> lip opening, seeded slow head sway."""

    name = "energy"

    def generate(self, features, source_canonical: np.ndarray, controls: MotionControls | None = None) -> Motion:
        """AudioFeatures (T frames) + source canonical (68, 2) -> Motion (T frames)."""
        controls = baseline_controls(controls, source_canonical)
        prosody = np.asarray(features.prosody, dtype=np.float32)
        T = prosody.shape[0]
        opening = lip_opening(prosody) * float(controls.lip_scale)  # scales lips and jaw together
        delta = opening[:, None, None] * OPENING_PATTERN[None]
        pose = np.zeros((T, 4), np.float32)
        if not controls.still:
            pose = head_sway(T, controls.seed) * float(controls.pose_scale)
            nod = np.convolve(prosody[:, 3], np.hanning(7) / 3.0, mode="same")
            pose[:, 3] += 0.01 * float(controls.rhythm_scale) * (nod - nod[0])
        return Motion(pose=pose, delta=delta.astype(np.float32))
