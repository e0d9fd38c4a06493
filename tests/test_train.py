"""Training loop, checkpoints, resume and logs, on a small real regression model."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch import nn

from sdmtalk.config import TrainConfig
from sdmtalk.errors import InputError
from sdmtalk.train.checkpoint import capture_rng_state, export_weights, restore_rng_state
from sdmtalk.train.distributed import StepBatchSampler, val_indices
from sdmtalk.train.logging import MetricsLog
from sdmtalk.train.trainer import CKPT_BEST, CKPT_LAST, fit, seed_everything
from sdmtalk.typed_config import to_dict
from sdmtalk.weights.io import load_checkpoint, read_weights

torch.set_num_threads(1)


class Pairs(torch.utils.data.Dataset):
    """y = A x + b + noise, fixed by ``seed``: items {"x": (4,), "y": (2,)}."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        a = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.3, 0.0, -1.0, 2.0]])
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ a.T + 0.5 + 0.05 * torch.randn(n, 2, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class Regression(nn.Module):
    """A real small model with the trainer's interface. ``noise`` and dropout make its
    training draw random numbers, so resume must restore the RNG to be exact."""

    def __init__(self, noise: float = 0.05, dropout: float = 0.1, fail_at_step: int | None = None,
                 nan_steps=()):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Dropout(dropout), nn.Linear(32, 2))
        self.noise, self.fail_at_step, self.nan_steps = noise, fail_at_step, set(nan_steps)

    def training_losses(self, batch, step):
        if self.training and step == self.fail_at_step:
            raise KeyboardInterrupt  # stands in for a kill
        x = batch["x"]
        if self.training and self.noise:
            x = x + self.noise * torch.randn_like(x)
        mse = ((self.net(x) - batch["y"]) ** 2).mean()
        if self.training and step in self.nan_steps:  # a batch that blows up
            mse = mse * float("nan")
        return {"total": mse, "mse": mse, "step_seen": torch.tensor(float(step))}

    def validation_metrics(self, batch):
        return {"mae": (self.net(batch["x"]) - batch["y"]).abs().mean()}


def make_cfg(**kw) -> TrainConfig:
    base = dict(steps=6, batch_size=4, lr=1e-2, window=8, val_every=2, val_batches=2,
                ckpt_every=3, log_every=2, seed=3, num_workers=0, device="cpu")
    return TrainConfig(**{**base, **kw})


def run(out, cfg, resume=False, seed=0, fail_at_step=None, nan_steps=()):
    seed_everything(seed)
    model = Regression(fail_at_step=fail_at_step, nan_steps=nan_steps)
    config_dict = {"model": {"kind": "regression"}, "train": to_dict(cfg)}
    return fit(model, Pairs(64, 1), Pairs(24, 2), cfg, out, config_dict, resume=resume,
               quiet=True), model


def test_fit_learns_and_writes_run_folder(tmp_path):
    res, _ = run(tmp_path / "r", make_cfg(steps=60, val_every=20, ckpt_every=20, log_every=10))
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    val = [float(r["total"]) for r in rows if r["split"] == "val"]
    assert len(val) == 3 and val[-1] < 0.5 * val[0]
    assert {"mae", "mse", "grad_norm", "lr"} <= set(rows[0]) and res.val_metrics["mae"] > 0
    for name in ("config.json", "loss.png", CKPT_LAST, CKPT_BEST, "model.safetensors", "model.json"):
        assert (tmp_path / "r" / name).is_file(), name
    assert res.steps == 60 and res.best_val_loss == pytest.approx(min(val), rel=1e-5)
    assert res.best_step == [20, 40, 60][val.index(min(val))]
    assert load_checkpoint(res.best_checkpoint)["step"] == res.best_step


def test_a_rare_non_finite_step_is_skipped_and_a_frequent_one_stops_the_run(tmp_path):
    cfg = make_cfg(steps=40, val_every=20, ckpt_every=20, log_every=20)
    res, model = run(tmp_path / "rare", cfg, nan_steps={7})
    assert res.steps == 40 and all(torch.isfinite(p).all() for p in model.parameters())
    rows = [r for r in csv.DictReader(open(tmp_path / "rare" / "metrics.csv")) if r["split"] == "train"]
    assert [float(r["skipped_steps"]) for r in rows] == [1.0, 0.0]
    with pytest.raises(FloatingPointError, match="non-finite"):
        run(tmp_path / "often", cfg, nan_steps=set(range(3, 40, 3)))


def test_resume_gives_same_weights_as_straight_run(tmp_path):
    _, straight = run(tmp_path / "a", make_cfg(steps=6))
    run(tmp_path / "b", make_cfg(steps=3))
    _, resumed = run(tmp_path / "b", make_cfg(steps=6), resume=True, seed=99)
    for (k, v), w in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    rows = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    # log windows: steps {0,1}, {2} (end of the first run), {3} (resumed), {4,5}
    assert [float(r["step_seen"]) for r in rows if r["split"] == "train"] == [0.5, 2, 3, 4.5]
    # the check can fail: another seed gives other weights
    _, other = run(tmp_path / "c", make_cfg(steps=6, seed=4))
    assert not torch.equal(other.net[0].weight, straight.net[0].weight)


def test_resume_after_kill_redoes_steps_after_last_checkpoint(tmp_path):
    _, straight = run(tmp_path / "a", make_cfg(steps=6, ckpt_every=2))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", make_cfg(steps=6, ckpt_every=2), fail_at_step=4)
    assert load_checkpoint(tmp_path / "b" / CKPT_LAST)["step"] == 4
    _, resumed = run(tmp_path / "b", make_cfg(steps=6, ckpt_every=2), resume=True)
    assert torch.equal(straight.net[0].weight, resumed.net[0].weight)
    rows = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    steps = [(int(r["step"]), r["split"]) for r in rows]
    assert steps == [(2, "train"), (2, "val"), (4, "train"), (4, "val"), (6, "train"), (6, "val")]
    # the model saw steps 0..5 once each in the log windows (averages 0.5, 2.5, 4.5)
    assert [float(r["step_seen"]) for r in rows if r["split"] == "train"] == [0.5, 2.5, 4.5]


def test_run_folder_is_never_silently_overwritten(tmp_path):
    run(tmp_path / "r", make_cfg(steps=2))
    with pytest.raises(InputError, match="already exists.*--resume"):
        run(tmp_path / "r", make_cfg(steps=2))
    with pytest.raises(InputError, match="no checkpoint .*ckpt-last.pt"):
        run(tmp_path / "empty", make_cfg(steps=2), resume=True)


def test_resume_refuses_another_model_config(tmp_path):
    run(tmp_path / "r", make_cfg(steps=2))
    cfg = make_cfg(steps=4)
    with pytest.raises(InputError, match="another model config"):
        fit(Regression(), Pairs(64, 1), None, cfg, tmp_path / "r",
            {"model": {"kind": "other"}, "train": to_dict(cfg)}, resume=True, quiet=True)


def test_checkpoint_loads_with_weights_only_and_restores_rng(tmp_path):
    res, model = run(tmp_path / "r", make_cfg(steps=2))
    ckpt = torch.load(res.checkpoint, weights_only=True)
    assert ckpt["step"] == 2 and ckpt["sdmtalk_version"]
    assert ckpt["config"]["model"] == {"kind": "regression"}
    assert torch.equal(ckpt["model"]["net.0.weight"], model.net[0].weight.detach())
    import random

    import numpy as np

    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]


def test_corrupt_checkpoint_is_an_input_error(tmp_path):
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        load_checkpoint(bad)


def test_export_weights_metadata_and_sidecar(tmp_path):
    res, model = run(tmp_path / "r", make_cfg(steps=2))
    out = export_weights(res.checkpoint, tmp_path / "w.safetensors")
    tensors, model_config = read_weights(out)
    assert model_config == {"kind": "regression"}
    assert torch.equal(tensors["net.3.bias"], model.net[3].bias.detach())
    side = json.loads((tmp_path / "w.json").read_text())
    assert side["step"] == 2 and side["num_parameters"] == sum(p.numel() for p in model.parameters())
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(InputError, match="not an sdmtalk weights"):
        read_weights(tmp_path / "foreign.safetensors")


def test_step_batch_sampler_is_a_function_of_seed_and_position():
    one = StepBatchSampler(10, 4, seed=5)
    batches = [one.batch(s) for s in range(5)]  # 20 items = 2 epochs of 10
    assert sorted(sum(batches[:2], []) + batches[2][:2]) == list(range(10))
    # two ranks of batch 2 see exactly the single-process batch of 4, split in halves
    ranks = [StepBatchSampler(10, 2, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for s in range(5):
        assert ranks[0].batch(s) + ranks[1].batch(s) == batches[s]
    resumed = StepBatchSampler(10, 4, seed=5, start=8)
    assert resumed.batch(0) == batches[2] and resumed.batch(1) == batches[3]
    assert StepBatchSampler(10, 4, seed=6).batch(0) != batches[0]
    shares = [val_indices(7, 5, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert len(shares[0]) == 3 and len(set(shares[0] + shares[1])) == 5


def test_metrics_log_widens_and_truncates(tmp_path):
    log = MetricsLog(tmp_path / "m.csv")
    log.log(1, "train", {"total": 1.0})
    log.log(2, "val", {"total": 0.5, "mae": 0.25})
    log.log(3, "train", {"total": 0.75})
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [r["mae"] for r in rows] == ["", "0.25", ""]
    again = MetricsLog(tmp_path / "m.csv")
    again.load(up_to_step=2)
    assert [r["step"] for r in again.rows] == [1, 2]
    assert again.series("val", "mae") == ([2], [0.25])
    assert len(list(csv.DictReader(open(tmp_path / "m.csv")))) == 2
