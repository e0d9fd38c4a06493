"""The rhythmic branch's beat snap: the head's speed dips on the speech's accents (sdmtalk.motion.beat_snap)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sdmtalk.evaluate.head_metrics import kinematic_beats
from sdmtalk.motion.beat_snap import (
    CATCH_UP,
    MAX_STRENGTH,
    BeatSnap,
    accent_frames,
    snap_pose,
    warp_pose,
    warp_times,
)
from sdmtalk.motion.sdm import build_model
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.motion.types import MotionControls


def onsets_with_peaks(T: int, peaks, height: float = 1.0, floor: float = 0.1) -> np.ndarray:
    onset = np.full(T, floor)
    onset[list(peaks)] = height
    return onset


def test_accents_are_strong_local_peaks_at_least_gap_apart():
    onset = onsets_with_peaks(60, [5, 7, 20, 40], floor=0.0)
    onset[30] = 0.2  # below the threshold
    assert accent_frames(onset, BeatSnap(1.0, gap=4, threshold=0.3)).tolist() == [5, 20, 40]
    assert accent_frames(onset, BeatSnap(1.0, gap=4, threshold=0.1)).tolist() == [5, 20, 30, 40]
    # a stream's later call: peaks before `start` are judged already, the gap counts from `after`
    assert accent_frames(onset, BeatSnap(1.0, gap=4), after=18, start=19).tolist() == [40]
    assert accent_frames(onset, BeatSnap(1.0, gap=4), after=5, start=6).tolist() == [20, 40]


def test_the_clock_slows_on_an_accent_and_is_back_on_time_after_it():
    tau = warp_times(80, np.array([20, 50]), 1.0)
    rate = np.diff(tau)
    assert (rate >= 0).all() and tau[0] == 0
    assert rate[19] < 0.4 and rate[49] < 0.4  # the step into each accent frame
    assert rate[24] > 1.0  # catching up
    np.testing.assert_allclose(tau[:18], np.arange(18))  # nothing moves before DIP_HALF
    np.testing.assert_allclose(tau[50 + CATCH_UP[1] + 1:], np.arange(50 + CATCH_UP[1] + 1, 80), atol=1e-9)
    np.testing.assert_allclose(warp_times(30, np.zeros(0, int), 1.0), np.arange(30))
    crowded = warp_times(60, np.arange(10, 50, 4), MAX_STRENGTH)  # close accents wait, never rewind
    assert (np.diff(crowded) >= 0).all()


def test_warp_reads_integer_times_exactly_and_lines_as_lines():
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(20, 4))
    np.testing.assert_allclose(warp_pose(pose, np.arange(20.0)), pose, atol=1e-6)
    line = np.outer(np.arange(20.0), [1.0, -2.0, 0.5, 3.0])
    tau = np.linspace(0, 19, 37)
    np.testing.assert_allclose(warp_pose(line, tau), np.outer(tau, [1.0, -2.0, 0.5, 3.0]), atol=1e-4)


def test_a_head_moving_steadily_gets_a_beat_on_each_accent():
    """A pan at constant speed has no speed minima; snapped, it has one on every accent."""
    pose = np.zeros((120, 4))
    pose[:, 2] = 0.5 * np.arange(120)
    accents = np.array([15, 40, 70, 95])
    snapped = snap_pose(pose, accents, BeatSnap(1.0))
    speed = np.r_[0.5, np.abs(np.diff(snapped[:, 2]))]
    beats = kinematic_beats(speed)
    assert len(beats) == len(accents)
    assert np.abs(beats - accents).max() <= 1
    assert snapped[-1, 2] == pytest.approx(pose[-1, 2])  # the path is the same, only its timing moved
    assert snap_pose(pose, accents, None) is pose and snap_pose(pose, None, BeatSnap(1.0)) is pose


@pytest.mark.parametrize("ablation,scale,on", [(None, 1.0, True), ("no_rhythm", 1.0, False), (None, 0.0, False)])
def test_the_snap_is_part_of_the_rhythmic_branch(ablation, scale, on):
    model = build_model(dataclasses.replace(SDMConfig.tiny(), beat_snap=0.5))
    snap = model.beat_snap(MotionControls(ablation=ablation, rhythm_scale=scale))
    assert (snap is not None) == on
    assert build_model(SDMConfig.tiny()).beat_snap(MotionControls()) is None
    huge = build_model(dataclasses.replace(SDMConfig.tiny(), beat_snap=0.9)).beat_snap(MotionControls(rhythm_scale=3.0))
    assert huge.strength == MAX_STRENGTH
