"""MotionWindows and compute_motion_stats over a tiny synthetic in-memory cache."""

import numpy as np
import pytest
import torch

from sdmtalk.data.cache import ClipRecord
from sdmtalk.data.windows import MotionWindows, _start_frame, compute_motion_stats, make_window
from sdmtalk.face.align import to_canonical
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.motion.sdm import build_model
from sdmtalk.motion.sdm_config import SDMConfig

torch.set_num_threads(1)


def fake_clip(T: int, rng) -> dict:
    """A face drifting and turning in pixels, mouth opening now and then."""
    t = np.arange(T)
    open_ = 0.15 * (np.sin(t / 3.0) > 0.5)
    shapes = np.repeat(CANONICAL_TEMPLATE[None], T, 0).copy()
    shapes[:, 57:60, 1] += open_[:, None]
    shapes[:, 65:68, 1] += open_[:, None]
    angle = 0.05 * np.sin(t / 10.0)
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1),
                    np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    landmarks = 80.0 * np.einsum("tij,tpj->tpi", rot, shapes) + np.array([200.0, 150.0]) \
        + t[:, None, None] * 0.5 + rng.normal(0, 0.2, (T, 68, 2))
    valid = np.ones(T, np.float32)
    valid[: min(3, T - 1)] = 0  # face not found in the first frames
    return {"landmarks": landmarks.astype(np.float32), "mel": rng.normal(-5, 1, (4 * T, 80)).astype(np.float32),
            "prosody": rng.random((T, 4)).astype(np.float32), "valid": valid}


class FakeReader:
    """The two methods of CacheReader that MotionWindows uses."""

    def __init__(self, clips: dict[str, tuple[str, str, int]], seed: int = 0):
        rng = np.random.default_rng(seed)
        self.records = [ClipRecord(cid, spk, split, T, 25.0, f"{cid}.mp4", "0", "s0")
                        for cid, (spk, split, T) in clips.items()]
        self.data = {r.clip_id: fake_clip(r.frames, rng) for r in self.records}

    def clips(self, split=None):
        return [r for r in self.records if split is None or r.split == split]

    def load(self, record):
        return self.data[record.clip_id]


@pytest.fixture(scope="module")
def reader():
    clips = {f"big{i:02d}": ("big", "train", 75) for i in range(20)}  # one speaker, most minutes
    clips.update({"small0": ("small", "train", 60), "short": ("tiny", "train", 20),
                  "val0": ("v", "val", 80)})
    return FakeReader(clips)


def test_item_shapes_and_reference_frame(reader):
    ds = MotionWindows(reader, "train", window=32, seed=0)
    assert len(ds) == 20 * 2 + 1 + 1
    item = ds[0]
    shapes = {"mel": (128, 80), "prosody": (32, 4), "pose": (32, 4), "delta": (32, 68, 2),
              "source_canonical": (68, 2), "valid": (32,), "mel_mean": (80,), "mel_sum_before": (80,),
              "mel_rows_before": (1,)}
    assert {k: tuple(v.shape) for k, v in item.items()} == shapes
    assert all(v.dtype == torch.float32 for v in item.values())
    assert item["pose"][0].abs().max() < 1e-6 and item["delta"][0].abs().max() < 1e-6  # window-referenced
    rec, u = ds.pick(0)
    clip = reader.load(ds.records[rec])
    start = _start_frame(clip["valid"], clip["landmarks"], 32, u)
    assert torch.equal(torch.from_numpy(make_window(clip, start, 32)["source_canonical"]),
                       item["source_canonical"])
    assert clip["valid"][start] == 1  # windows start on a detected face
    canon, _ = to_canonical(clip["landmarks"][start])
    np.testing.assert_allclose(item["source_canonical"].numpy(), canon, atol=1e-4)
    # the mouth opening shows in delta, not in pose
    gap = (item["delta"][:, 66, 1] - item["delta"][:, 62, 1]).numpy()
    assert gap.max() - gap.min() > 0.1


def test_deterministic_and_seeded(reader):
    a, b = MotionWindows(reader, "train", 32, seed=0), MotionWindows(reader, "train", 32, seed=0)
    c = MotionWindows(reader, "train", 32, seed=1)
    for i in (0, 5, 17):
        assert all(torch.equal(a[i][k], b[i][k]) for k in a[i])
    assert any(not torch.equal(a[i]["mel"], c[i]["mel"]) for i in range(10))
    with pytest.raises(IndexError):
        a[len(a)]


def test_speaker_balanced(reader):
    ds = MotionWindows(reader, "train", 32, seed=0, speaker_power=0.0, length=900)
    counts = {}
    for i in range(len(ds)):
        spk = ds.records[ds.pick(i)[0]].speaker
        counts[spk] = counts.get(spk, 0) + 1
    assert set(counts) == {"big", "small", "tiny"}
    assert all(250 < n < 350 for n in counts.values())  # 1/3 each, not 1500 : 60 : 20 frames
    by_time = MotionWindows(reader, "train", 32, seed=0, speaker_power=1.0, length=300)
    big = sum(by_time.records[by_time.pick(i)[0]].speaker == "big" for i in range(300))
    assert big > 250


def test_short_clip_is_padded(reader):
    clip = reader.load(reader.clips()[-2])  # "short": 20 frames
    w = make_window(clip, 3, 32)
    assert w["valid"][:17].all() and not w["valid"][17:].any()
    assert not w["delta"][17:].any() and w["mel"].shape == (128, 80)


def test_val_split_and_stats_feed_the_model(reader):
    val = MotionWindows(reader, "val", 32, seed=0)
    assert len(val) == 2 and {val.records[val.pick(i)[0]].split for i in range(2)} == {"val"}
    stats = compute_motion_stats(reader, window=32, num_windows=40)
    assert stats["motion_mean"].shape == (140,) and stats["mel_std"].shape == (80,)
    assert all(np.isfinite(v).all() for v in stats.values()) and (stats["motion_std"] > 0).all()
    model = build_model(SDMConfig.tiny(), stats)
    batch = torch.utils.data.default_collate([MotionWindows(reader, "train", 32)[i] for i in range(4)])
    losses = model.training_losses(batch, 0)
    assert torch.isfinite(losses["total"])
    x = model.normalize(batch["pose"], batch["delta"])[batch["valid"] > 0]
    assert 0.2 < float(x.std()) < 5  # normalized units


def test_clip_reference_is_the_clips_mean_shape_and_stats_hold_the_rest_face(reader):
    """reference "clip": source_canonical + delta is each frame's canonical shape, and
    source_canonical is the clip's mean shape, the same for every window of the clip."""
    ds = MotionWindows(reader, "train", window=32, seed=0, reference="clip")
    item = ds[3]
    rec, u = ds.pick(3)
    clip = reader.load(ds.records[rec])
    start = _start_frame(clip["valid"], clip["landmarks"], 32, u)
    canon, _ = to_canonical(clip["landmarks"][start:start + 32].astype(np.float64))
    got = (item["source_canonical"][None] + item["delta"]).numpy()
    np.testing.assert_allclose(got, canon, atol=1e-4)
    all_canon, _ = to_canonical(clip["landmarks"].astype(np.float64))
    np.testing.assert_allclose(item["source_canonical"].numpy(), all_canon[clip["valid"] > 0].mean(0), atol=1e-4)
    assert item["pose"][0].abs().max() < 1e-6  # the head is still relative to the window's start
    with pytest.raises(ValueError, match="reference"):
        MotionWindows(reader, "train", window=32, reference="photo")
    for c in reader.data.values():  # silence where the mouth is closed (fake_clip's open_ == 0)
        c["speech"] = (np.sin(np.arange(len(c["valid"])) / 3.0) > 0.5).astype(np.float32)
    try:
        stats = compute_motion_stats(reader, window=32, num_windows=40, reference="clip")
    finally:
        for c in reader.data.values():
            c.pop("speech")
    rest = stats["delta_rest"].reshape(68, 2)
    assert rest.shape == (68, 2) and rest[66, 1] - rest[62, 1] < 0  # at rest the mouth is
    #   more closed than the clip's mean
    model = build_model(SDMConfig.tiny().__class__(**{**SDMConfig.tiny().__dict__, "delta_ref": "clip"}), stats)
    np.testing.assert_allclose(model.delta_rest.numpy(), stats["delta_rest"])


def test_items_carry_the_clips_mean_log_mel(reader):
    """Per-clip mel normalisation in training uses the whole clip's mean, as inference does."""
    ds = MotionWindows(reader, "train", window=32, seed=0)
    rec, _ = ds.pick(5)
    np.testing.assert_allclose(ds[5]["mel_mean"].numpy(), reader.load(ds.records[rec])["mel"].mean(0), rtol=1e-5)


def test_clip_pose_reference_is_relative_to_the_clips_mean_pose(reader):
    """pose_reference "clip": a window's pose is the clip's mean similarity composed with
    each frame's inverse; re-referenced to the window's first frame it is the "first" pose."""
    from sdmtalk.face.align import sim_compose, sim_inverse

    first = MotionWindows(reader, "train", window=32, seed=0)[7]
    clip_ref = MotionWindows(reader, "train", window=32, seed=0, pose_reference="clip")[7]
    assert clip_ref["pose"][0].abs().max() > 1e-4  # not the window's first frame
    back = sim_compose(sim_inverse(clip_ref["pose"][0].numpy()), clip_ref["pose"].numpy())
    keep = first["valid"].numpy() > 0
    np.testing.assert_allclose(back[keep], first["pose"].numpy()[keep], atol=1e-4)
    torch.testing.assert_close(clip_ref["delta"], first["delta"])
