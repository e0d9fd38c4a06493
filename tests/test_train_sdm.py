"""`sdmtalk train` end to end with the real SDM model on a small synthetic cache.

The cache is written with the cache module's own writer: faces are the canonical template
at 100 px with a head sway and a mouth that opens with a syllable-rate envelope, and the
mel frames carry the same envelope, so there is something to learn.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sdmtalk import MEL_PER_FRAME
from sdmtalk.config import load_config
from sdmtalk.data.cache import ARRAYS, ClipRecord, ShardResult, finalize, write_shard
from sdmtalk.errors import InputError
from sdmtalk.face.align import to_canonical
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.motion.load import load_model
from sdmtalk.motion.sdm_config import SDMConfig
from sdmtalk.motion.types import motion_from_landmarks
from sdmtalk.train.trainer import CKPT_BEST, CKPT_LAST, add_train_arguments, run_train, train
from sdmtalk.weights.io import load_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = ["train.steps=4", "train.val_every=2", "train.ckpt_every=2", "train.log_every=2",
        "train.device=cpu"]


def _clip_arrays(T: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 25.0
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 4) * t + rng.uniform(0, 6)), 0, None)
    shape = np.repeat(CANONICAL_TEMPLATE[None].astype(np.float64), T, 0)
    shape[:, 57:60, 1] += 0.25 * env[:, None]  # lower lip (outer, inner) drops as the mouth opens
    shape[:, 65:68, 1] += 0.25 * env[:, None]
    ang = 0.05 * np.sin(2 * np.pi * 0.3 * t)
    rot = np.stack([np.cos(ang), -np.sin(ang), np.sin(ang), np.cos(ang)], -1).reshape(T, 2, 2)
    offset = np.stack([np.full(T, 160.0), 120 + 5 * np.sin(t)], -1)[:, None]
    lm = 100 * np.einsum("tij,tpj->tpi", rot, shape) + offset
    lm += rng.normal(0, 0.3, lm.shape)
    canonical, sims = to_canonical(lm)
    motion, _, _ = motion_from_landmarks(lm)
    mel = -8 + 6 * np.repeat(env, MEL_PER_FRAME)[:, None] * np.linspace(1, 0.2, 80)[None]
    mel += rng.normal(0, 0.3, mel.shape)
    known = {"landmarks": lm, "canonical": canonical, "sims": sims, "pose": motion.pose,
             "delta": motion.delta, "mel": mel, "energy": env, "valid": np.ones(T),
             "speech": np.ones(T), "prosody": np.stack([env, env > 0.1, env, env], 1),
             "box": np.tile([110, 60, 210, 180], (T, 1))}
    return {name: np.asarray(known.get(name, np.zeros((len(mel) if name == "mel" else T, *shape_))),
                             dtype=dtype)
            for name, (dtype, shape_) in ARRAYS.items()}


def make_cache(cache_dir: Path) -> Path:
    """4 train speakers x 2 clips and 2 val speakers x 1 clip, 40-70 frames each."""
    clips = [(f"s{s}", "train" if s < 4 else "val", c) for s in range(6) for c in range(2 if s < 4 else 1)]
    shard = ShardResult(part="p000of001", number=0, sources=[])
    for i, (speaker, split, c) in enumerate(clips):
        arrays = _clip_arrays(40 + 10 * (i % 4), seed=i)
        cid = f"{speaker}-{c}"
        shard.sources.append(cid)
        shard.records.append(ClipRecord(clip_id=cid, speaker=speaker, split=split,
                                        frames=len(arrays["valid"]), fps=25.0, source=f"{cid}.mp4",
                                        sha1="0" * 40, shard=shard.name))
        shard.arrays[cid] = arrays
    write_shard(cache_dir, shard, settings_key="synthetic", chunks=1)
    finalize(cache_dir, {"synthetic": True}, "synthetic", {"p000of001": 1})
    return cache_dir


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return make_cache(tmp_path_factory.mktemp("cache"))


def test_tiny_preset_learns_validates_and_exports_a_loadable_model(cache, tmp_path):
    res = train(cache, load_config("tiny", ["train.device=cpu"]), tmp_path / "run", quiet=True)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    totals = [float(r["total"]) for r in rows if r["split"] == "train"]
    assert res.steps == 100 and totals[-1] < 0.85 * totals[0]  # it trains for real
    assert {"reg", "ind", "rec", "diff", "kl"} <= set(res.train_metrics)
    assert {"lip_corr_coarse", "lip_amp_final"} <= set(res.val_metrics)
    for path in (res.weights, tmp_path / "run" / CKPT_LAST, res.best_checkpoint):
        model = load_model(path)
        assert not model.training and type(model).__name__ == "SDMModel"
    best = load_checkpoint(res.best_checkpoint)
    for k, v in load_model(res.weights).state_dict().items():
        assert torch.equal(v, best["model"][k]), k  # weights = the best checkpoint, stats included
    side = json.loads(res.weights.with_suffix(".json").read_text())
    assert SDMConfig.from_dict(side["model_config"]) == load_config("tiny").model
    assert side["step"] == res.best_step


def test_sdm_resume_matches_straight_run(cache, tmp_path):
    """With 2 DataLoader workers too: items depend on (seed, index) only."""
    cfg = [*TINY, "train.num_workers=2"]
    train(cache, load_config("tiny", cfg), tmp_path / "a", quiet=True)
    train(cache, load_config("tiny", [*cfg, "train.steps=2"]), tmp_path / "b", quiet=True)
    train(cache, load_config("tiny", cfg), tmp_path / "b", resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "a" / CKPT_LAST)["model"]
    b = load_checkpoint(tmp_path / "b" / CKPT_LAST)["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_weight_average_is_validated_exported_and_resumed(cache, tmp_path):
    """train.ema: checkpoints carry the moving average, exports and load_model use it (not
    the live weights), and a resumed run continues the same average."""
    cfg = [*TINY, "train.ema=0.9"]
    res = train(cache, load_config("tiny", cfg), tmp_path / "a", quiet=True)
    last = load_checkpoint(tmp_path / "a" / CKPT_LAST)
    assert set(last["ema"]) == set(last["model"])
    assert any(not torch.equal(last["ema"][k], last["model"][k]) for k in last["model"])
    best = load_checkpoint(res.best_checkpoint)
    for k, v in load_model(res.weights).state_dict().items():
        assert torch.equal(v, best["ema"][k]), k
    for k, v in load_model(tmp_path / "a" / CKPT_LAST).state_dict().items():
        assert torch.equal(v, last["ema"][k]), k
    train(cache, load_config("tiny", [*cfg, "train.steps=2"]), tmp_path / "b", quiet=True)
    train(cache, load_config("tiny", cfg), tmp_path / "b", resume=True, quiet=True)
    resumed = load_checkpoint(tmp_path / "b" / CKPT_LAST)["ema"]
    for k in last["ema"]:
        assert torch.equal(last["ema"][k], resumed[k]), k
    with pytest.raises(InputError, match="train.ema"):
        load_config("tiny", ["train.ema=1.0"]).train.check()


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    return p.parse_args(list(argv))


def test_cli_entry_and_its_errors(cache, tmp_path):
    out = str(tmp_path / "run")
    sets = [x for kv in TINY for x in ("--set", kv)]
    assert run_train(_args("--data", str(cache), "--config", "tiny", "--out", out, "-q", *sets)) == 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["split"] for r in rows] == ["train", "val", "train", "val"]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000
    with pytest.raises(InputError, match="already exists"):
        run_train(_args("--data", str(cache), "--config", "tiny", "--out", out, "-q", *sets))
    # --resume without --config continues with the run's config.json (steps=4: nothing left)
    assert run_train(_args("--data", str(cache), "--out", out, "--resume", "-q")) == 0
    with pytest.raises(InputError, match="no checkpoint"):
        run_train(_args("--data", str(cache), "--config", "tiny", "--out", out + "2", "--resume"))
    with pytest.raises(InputError, match="unknown config key 'train.stepz'"):
        run_train(_args("--data", str(cache), "--config", "tiny", "--set", "train.stepz=1"))
    with pytest.raises(InputError, match="another model config"):
        run_train(_args("--data", str(cache), "--config", "tiny", "--out", out, "--resume",
                        "--set", "model.z_dim=5", *sets))
    with pytest.raises(InputError, match="manifest.json"):
        run_train(_args("--data", str(tmp_path), "--config", "tiny", "--out", out + "3"))


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(cache, tmp_path):
    """`torchrun --nproc_per_node 2 -m sdmtalk.train` runs DDP with gloo on CPU."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "sdmtalk.train", "--data", str(cache), "--config", "tiny",
           "--out", str(tmp_path / "run"), *[x for kv in TINY for x in ("--set", kv)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained 4 steps" in proc.stdout  # rank 0 alone prints
    assert proc.stdout.count("trained") == 1
    ckpt = load_checkpoint(tmp_path / "run" / CKPT_LAST)
    assert ckpt["trainer"]["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert ckpt["trainer"]["samples_seen"] == 4 * 2 * load_config("tiny").train.batch_size
    assert (tmp_path / "run" / CKPT_BEST).is_file()
