"""The SDM's post-sampling stages (normalized motion -> the user's Motion) and its control checks."""

from __future__ import annotations

import numpy as np
import torch

from sdmtalk.audio.features import PROSODY_ONSET
from sdmtalk.errors import InputError
from sdmtalk.face.align import LIP_PAIRS, sim_compose, sim_inverse
from sdmtalk.motion.beat_snap import BeatSnap, accent_frames, snap_pose
from sdmtalk.motion.filters import gaussian_filter1d
from sdmtalk.motion.lip_ensemble import mix_ridge_lips, ridge_for
from sdmtalk.motion.pose_gain import PoseGainState, apply_pose_gain, reference_style
from sdmtalk.motion.sdm_config import MOUTH_POINTS, N_POINTS
from sdmtalk.motion.types import Motion

ABLATIONS = (None, "no_pose", "no_rhythm", "no_diffusion", "full_diffusion")


class SDMFinishMixin:
    """SDMModel's last stage, shared by generate and a stream: finish_motion and the inputs
    it takes from the speech (the ridge's lips, the accents). Needs SDMModel's cfg,
    denormalize and delta_rest."""

    def ridge_lips(self, features) -> np.ndarray | None:
        """The ridge's shape (T, 68, 2) that the lips mix in (lip_ensemble), None when not
        mixed. Offline only: a stream does not mix it (lip_ensemble's docstring says why)."""
        ridge = ridge_for(self)
        return None if ridge is None else ridge.predict_shape(features)

    def finish_motion(self, final: torch.Tensor, source: np.ndarray, controls, smooth: float = 0.0,
                      origin: np.ndarray | None = None, band_start: int = 0,
                      gain_state: PoseGainState | None = None, with_state: bool = False,
                      sampled: bool = True, activity: np.ndarray | None = None,
                      accents: np.ndarray | None = None, gain_style: np.ndarray | None = None,
                      ridge: np.ndarray | None = None):
        """Normalized motion (T, D) -> the user's Motion: relative to the photo's face (minus
        the resting face with delta_ref "clip"; with pose_ref "clip" the pose re-referenced
        to `origin`, the model's pose (4,) of the photo's frame, default this span's frame 0),
        pose smoothed with Gaussian sigma `smooth` frames, the calibrated pose gain, then the
        user controls (lip/pose scale, still) and no crossing lips. generate's last stage; a
        streaming caller runs it on each finished span, passing the denormalized pose of the
        stream's frame 0 and, for its new frames from `band_start` on, the pose gain's state
        after its last emitted frame (with_state: returns (Motion, the low band (T, 4), frame 0's
        gained pose, the gained pose (T, 4) before the beat snap), from which the stream makes
        the next state). sampled: the pose comes from a
        reverse diffusion (False: no diffusion ran), so the sampler's pose_bias comes off.
        activity (T,): the rhythmic branch's head-activity envelope (head_activity.py). accents
        (K,): frames (from final's frame 0) of the speech's accents, where the head's speed dips
        (beat_snap.py; off with the rhythmic branch). gain_style (2, 4): further multipliers of
        the slow and fast pose gains (a stream's cfg.stream_pose_style). ridge (T, 68, 2): the
        ridge's shape of final's frames, mixed into the lips (ridge_lips, lip_ensemble)."""
        pose, delta = (v.cpu().numpy().astype(np.float32) for v in self.denormalize(final))
        delta = mix_ridge_lips(delta, ridge, self.cfg.ridge_mix, self.cfg.ridge_gain)
        if self.cfg.delta_ref == "clip":  # relative to the resting face = the photo's face
            delta = delta - self.delta_rest.cpu().numpy().reshape(N_POINTS, 2)
        if smooth > 0:
            pose = gaussian_filter1d(pose, smooth, axis=0, mode="nearest")
        if self.cfg.pose_ref == "clip":
            origin = pose[0] if origin is None else np.asarray(origin, np.float64)
            pose = sim_compose(sim_inverse(origin), pose).astype(np.float32)
        sampled = sampled and controls.ablation != "no_pose"  # else the pose is G_c's
        reference = controls.pose_reference
        style = None if reference is None or controls.still else reference_style(self.cfg, reference)
        if gain_style is not None:
            style = np.asarray(gain_style, np.float64).reshape(2, 4) * (1.0 if style is None else style)
        gained, low, first = apply_pose_gain(pose, self.cfg, band_start, gain_state, sampled, style, activity)
        pose = snap_pose(gained, accents, self.beat_snap(controls))
        pose, delta = _apply_controls(pose, delta, np.asarray(source, np.float32), controls)
        motion = Motion(pose=pose, delta=delta)
        return (motion, low, first, gained) if with_state else motion

    def beat_snap(self, controls) -> BeatSnap | None:
        """The accents' pull on the head at these controls' rhythm scale (None: off)."""
        return BeatSnap.of(self.cfg, rhythm_weight(controls.ablation, controls.rhythm_scale))

    def accents(self, features, controls) -> np.ndarray | None:
        """The speech's accent frames (beat_snap.accent_frames), None when the snap is off."""
        snap = self.beat_snap(controls)
        return None if snap is None else accent_frames(np.asarray(features.prosody)[:, PROSODY_ONSET], snap)


def rhythm_weight(ablation, rhythm_scale: float) -> float:
    """How much of the rhythmic branch a generation uses: the user's rhythm_scale, 0 for
    the no_rhythm ablation (its F~ and, with rhythm_to_denoiser, its embedding)."""
    return 0.0 if ablation == "no_rhythm" else rhythm_scale


def check_controls(controls, max_steps: int) -> None:
    """Raise InputError for MotionControls an SDM of max_steps diffusion steps cannot run."""
    if controls.ablation not in ABLATIONS:
        raise InputError(f"unknown ablation {controls.ablation!r}: use one of "
                         f"{', '.join(str(a) for a in ABLATIONS)}")
    k = controls.diffusion_steps
    if k != "auto" and not (isinstance(k, int | np.integer) and 0 <= k <= max_steps):
        raise InputError(f"diffusion_steps={k!r}: use 'auto' or an integer from 0 to {max_steps}")


def _apply_controls(pose, delta, source, controls):
    """User controls on denormalized motion: pose (T, 4), delta (T, 68, 2)."""
    pose = np.zeros_like(pose) if controls.still else pose * float(controls.pose_scale)
    delta = delta.copy()
    delta[:, MOUTH_POINTS] *= float(controls.lip_scale)
    return pose, _no_lip_crossing(delta, source)


def _no_lip_crossing(delta: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Keep each lower inner-lip point below its upper partner on the source face (a
    scaled or noisy delta could push the lips through each other)."""
    shapes = source[None] + delta
    for up, lo in LIP_PAIRS:
        overlap = np.minimum(shapes[:, lo, 1] - shapes[:, up, 1], 0.0)
        delta[:, up, 1] += overlap / 2
        delta[:, lo, 1] -= overlap / 2
    return delta

