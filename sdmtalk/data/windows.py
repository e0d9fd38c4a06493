"""MotionWindows: speaker-balanced training windows of the cache for the SDM model.

Each item is W consecutive frames of one clip. The head pose is relative to the window's
first frame (pose_reference "first": pose 0 there, as at inference where the photo is frame
0) or to the clip's mean head pose ("clip"); the landmark motion (delta) is relative to the
window's first frame (reference "first") or to the clip's mean canonical shape ("clip").
The state of one arbitrary frame (an open mouth, a turned head) is not predictable from
speech, the clip's mean is: see SDMConfig.delta_ref and pose_ref. Items are a pure
function of (seed, index): any index order, any number of DataLoader workers, any rank
gives the same window for the same index.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from sdmtalk import MEL_PER_FRAME
from sdmtalk.data.offsets import shift_audio
from sdmtalk.face import to_canonical
from sdmtalk.face.align import sim_compose, sim_inverse
from sdmtalk.motion.types import motion_from_landmarks

SPLITS = ("train", "val", "test")
REFERENCES = ("first", "clip")


class MotionWindows(torch.utils.data.Dataset):
    """Map-style dataset of W-frame windows of one split of a CacheReader.

    Sampling is SPEAKER-BALANCED (one speaker holds most of the minutes): item i picks a
    speaker with probability proportional to (its frames) ** speaker_power (0 = every
    speaker alike, 1 = by time; default 0.5), then a clip of that speaker proportional to
    its frames, then a start frame whose landmarks were detected. Clips shorter than W are
    padded (valid = 0 there).

    Item: dict of float32 tensors mel (4W, 80), prosody (W, 4), pose (W, 4), delta
    (W, 68, 2), source_canonical (68, 2) (the first frame's canonical shape), valid (W,).
    len: the number of non-overlapping windows the split holds (at least one per clip).
    """

    def __init__(self, reader, split: str = "train", window: int = 50, seed: int = 0,
                 speaker_power: float = 0.5, length: int | None = None, phonemes=None,
                 reference: str = "first", offsets=None, pose_reference: str = "first",
                 augment=None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if window < 2:
            raise ValueError(f"window must be >= 2 frames, got {window}")
        if reference not in REFERENCES or pose_reference not in REFERENCES:
            raise ValueError(f"reference and pose_reference must be one of {REFERENCES}, got "
                             f"{reference!r} and {pose_reference!r}")
        self.reader, self.split, self.window, self.seed = reader, split, window, seed
        self.reference, self.pose_reference = reference, pose_reference
        self.offsets = offsets  # a data.offsets.OffsetTable: audio re-aligned to the video
        self.phonemes = phonemes  # a data.phonemes.PhonemeTable: items carry "phonemes" (W, V)
        self.augment = augment  # a data.augment.MelAugment (train split only)
        self.records = [r for r in reader.clips(split) if r.frames >= 2]
        by_speaker: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(self.records):
            by_speaker[r.speaker].append(i)
        self.speakers = sorted(by_speaker)
        self._clips = [np.array(by_speaker[s]) for s in self.speakers]
        frames = [np.array([self.records[i].frames for i in c], float) for c in self._clips]
        self._clip_p = [f / f.sum() for f in frames]
        w = np.array([f.sum() for f in frames]) ** speaker_power
        self._speaker_p = w / w.sum() if len(w) else w
        natural = sum(max(1, r.frames // window) for r in self.records)
        self._len = natural if length is None else int(length)

    def __len__(self) -> int:
        return self._len if self.records else 0

    def pick(self, index: int) -> tuple[int, int]:
        """(record index, start frame) of item `index` (deterministic)."""
        rng = np.random.default_rng([self.seed, index])
        s = rng.choice(len(self.speakers), p=self._speaker_p)
        return int(rng.choice(self._clips[s], p=self._clip_p[s])), float(rng.random())

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rec_i, u = self.pick(index)
        clip = self.reader.load(self.records[rec_i])
        if self.phonemes is not None:
            clip["phonemes"] = self.phonemes.get(self.records[rec_i])
            if clip["phonemes"] is None:
                raise ValueError(f"no phoneme posteriors for clip {self.records[rec_i].clip_id}: run "
                                 "python -m sdmtalk.data.phonemes on the cache first")
        if self.offsets is not None:
            clip = shift_audio(clip, self.offsets.get(self.records[rec_i]))
        start = _start_frame(clip["valid"], clip["landmarks"], self.window, u)
        item = make_window(clip, start, self.window, self.reference, self.pose_reference)
        if self.augment is not None and self.augment.active:
            item = self.augment(item, np.random.default_rng([self.seed, index, 1]))
        return {k: torch.from_numpy(v) for k, v in item.items()}


def _start_frame(valid: np.ndarray, landmarks: np.ndarray, window: int, u: float) -> int:
    """A start frame chosen by u in [0, 1) among those with a detected, finite first frame."""
    T = len(valid)
    last = max(T - window, 0)
    ok = (valid[: last + 1] > 0) & np.isfinite(landmarks[: last + 1]).all(axis=(1, 2))
    cand = np.flatnonzero(ok)
    if len(cand) == 0:  # no detected frame in range: any finite one
        cand = np.flatnonzero(np.isfinite(landmarks[: last + 1]).all(axis=(1, 2)))
    if len(cand) == 0:
        raise ValueError("clip has no finite landmarks in its start range")
    return int(cand[min(int(u * len(cand)), len(cand) - 1)])


def make_window(clip: dict[str, np.ndarray], start: int, window: int,
                reference: str = "first", pose_reference: str = "first") -> dict[str, np.ndarray]:
    """Cut frames [start, start + window) of a loaded clip and re-reference them (pose to
    the window's first frame or, pose_reference "clip", to the clip's mean pose; delta to
    the first frame or, reference "clip", to the clip's mean canonical shape, which is then
    the item's source_canonical); frames past the clip's end are padded with valid = 0.
    Items carry "speech" (W,) when the clip has it."""
    end = min(start + window, len(clip["valid"]))
    n, pad = end - start, window - (end - start)
    motion, source, _ = motion_from_landmarks(clip["landmarks"][start:end])
    if reference == "clip":
        mean_shape = clip_reference(clip)["shape"]
        motion.delta = motion.delta + (source - mean_shape)
        source = mean_shape
    if pose_reference == "clip":  # pose_i = R ∘ sims_i^-1, R the clip's mean similarity
        ref = clip_reference(clip)
        motion.pose = sim_compose(ref["mean_sim"], sim_inverse(ref["sims"][start:end])).astype(np.float32)
    valid = (clip["valid"][start:end] > 0) & np.isfinite(motion.delta).all(axis=(1, 2)) \
        & np.isfinite(motion.pose).all(axis=1)
    mel = clip["mel"][MEL_PER_FRAME * start:MEL_PER_FRAME * end]
    silence = mel.min(axis=0, keepdims=True) if len(mel) else np.zeros((1, mel.shape[1]), np.float32)
    out = {
        "mel": np.concatenate([mel, np.repeat(silence, MEL_PER_FRAME * pad, 0)]),
        "prosody": np.pad(clip["prosody"][start:end], ((0, pad), (0, 0))),
        "pose": np.pad(np.nan_to_num(motion.pose), ((0, pad), (0, 0))),
        "delta": np.pad(np.nan_to_num(motion.delta), ((0, pad), (0, 0), (0, 0))),
        "source_canonical": source,
        "valid": np.pad(valid.astype(np.float32), (0, pad)),
        # the clip's mean log-mel: per-clip mel normalisation (SDMConfig.mel_cmn) must see
        # the whole clip's mean as at inference, not the window's (which removes the loudness
        # of this stretch against the rest, the slow part of the lip motion)
        "mel_mean": clip["mel"].mean(axis=0) if len(clip["mel"]) else np.zeros(clip["mel"].shape[1]),
        # ... or, for a running mean (SDMConfig.mel_cmn_prior), the log-mel rows before the window
        "mel_sum_before": clip["mel"][:MEL_PER_FRAME * start].sum(axis=0, dtype=np.float64),
        "mel_rows_before": np.array(min(MEL_PER_FRAME * start, len(clip["mel"]))),
    }
    for key in ("phonemes", "speech"):
        if key in clip:
            part = clip[key][start:end]
            out[key] = np.pad(part, ((0, pad),) + ((0, 0),) * (part.ndim - 1))
    assert out["mel"].shape[0] == MEL_PER_FRAME * window and n > 0
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def clip_reference(clip: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A clip's references over its valid, finite frames: "shape", the mean canonical shape
    (68, 2) float32; "sims" (T, 4), each frame's image->canonical similarity; "mean_sim"
    (4,), their mean (the clip's mean head pose). Kept in the clip dict: every window of a
    loaded clip shares them."""
    if "_reference" not in clip:
        canonical, sims = to_canonical(np.asarray(clip["landmarks"], np.float64))
        ok = (np.asarray(clip["valid"]) > 0) & np.isfinite(canonical).all(axis=(1, 2))
        if not ok.any():
            ok = np.isfinite(canonical).all(axis=(1, 2))
        clip["_reference"] = {"shape": canonical[ok].mean(0).astype(np.float32), "sims": sims,
                              "mean_sim": sims[ok].mean(0)}
    return clip["_reference"]


def compute_motion_stats(reader, split: str = "train", window: int = 50, num_windows: int = 2000,
                         seed: int = 0, reference: str = "first", offsets=None,
                         pose_reference: str = "first") -> dict[str, np.ndarray]:
    """Per-dimension normalization stats over speaker-balanced windows of `split`:
    motion_mean/std (140,) of [pose (4), delta (136)], mel_mean/std (80,), prosody_mean/std
    (4,), float32; with reference "clip" also delta_rest (136,): the median delta over
    frames without speech (the resting face, relative to the clip's mean shape; generate
    subtracts it, so a photo's face is the face at rest). Delta stds are floored at a
    quarter of their median so that near-rigid points (nose, eye corners) are not blown up
    into noise."""
    data = MotionWindows(reader, split, window=window, seed=seed + 7919, length=num_windows,
                         reference=reference, offsets=offsets, pose_reference=pose_reference)
    if len(data) == 0:
        raise ValueError(f"no clips in the {split!r} split to compute stats on")
    motion, mel, pros, rest = [], [], [], []
    for item in (data[i] for i in range(len(data))):
        keep = item["valid"].numpy() > 0
        if "speech" in item:
            rest.append(item["delta"].numpy().reshape(window, -1)[keep & (item["speech"].numpy() < 0.5)])
        motion.append(np.concatenate([item["pose"].numpy(), item["delta"].numpy().reshape(window, -1)], 1)[keep])
        mel.append(item["mel"].numpy().reshape(window, MEL_PER_FRAME, -1)[keep].reshape(-1, item["mel"].shape[1]))
        pros.append(item["prosody"].numpy()[keep])
    stats = {}
    for name, rows in (("motion", motion), ("mel", mel), ("prosody", pros)):
        x = np.concatenate(rows).astype(np.float64)
        stats[f"{name}_mean"], stats[f"{name}_std"] = x.mean(0), x.std(0)
    std = stats["motion_std"]
    std[:4] = np.maximum(std[:4], 1e-4)
    std[4:] = np.maximum(std[4:], 0.25 * np.median(std[4:]))
    stats["mel_std"] = np.maximum(stats["mel_std"], 1e-3)
    stats["prosody_std"] = np.maximum(stats["prosody_std"], 1e-3)
    if reference == "clip":
        quiet = np.concatenate(rest) if rest else np.zeros((0, stats["motion_mean"].size - 4))
        stats["delta_rest"] = np.median(quiet, 0) if len(quiet) >= 50 else stats["motion_mean"][4:].copy()
    return {k: v.astype(np.float32) for k, v in stats.items()}
