"""DDP on CPU: 2 processes (gloo) train the regression model of test_train.py.

Both ranks must end with identical weights, equal (to float rounding) to one process with
the doubled batch, and a 2-process run resumed half-way must equal an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from test_train import Pairs, Regression, make_cfg

from sdmtalk.train.distributed import setup, teardown
from sdmtalk.train.trainer import fit, seed_everything
from sdmtalk.typed_config import to_dict

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit(ctx, out, cfg, resume=False, noise=0.0, dropout=0.0):
    seed_everything(0)
    model = Regression(noise=noise, dropout=dropout)
    fit(model, Pairs(64, 1), Pairs(24, 2), cfg, out, {"model": {"kind": "regression"},
        "train": to_dict(cfg)}, resume=resume, quiet=True, ctx=ctx)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, tmp: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    ctx = setup("cpu")
    try:
        plain = _fit(ctx, f"{tmp}/plain", make_cfg(steps=4, batch_size=2))
        noisy = dict(noise=0.05, dropout=0.1)
        straight = _fit(ctx, f"{tmp}/straight", make_cfg(steps=4, batch_size=2), **noisy)
        _fit(ctx, f"{tmp}/resumed", make_cfg(steps=2, batch_size=2), **noisy)
        resumed = _fit(ctx, f"{tmp}/resumed", make_cfg(steps=4, batch_size=2), resume=True, **noisy)
        torch.save({"plain": plain, "straight": straight, "resumed": resumed},
                   f"{tmp}/rank{rank}.pt")
    finally:
        teardown(ctx)


def _val_totals(path) -> list[float]:
    return [float(r["total"]) for r in csv.DictReader(open(path)) if r["split"] == "val"]


def test_ddp_two_processes_match_each_other_and_one_big_batch(tmp_path):
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD,
                       start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    for run in ("plain", "straight", "resumed"):
        for k in r0[run]:
            assert torch.equal(r0[run][k], r1[run][k]), (run, k)
    for k in r0["straight"]:
        assert torch.equal(r0["straight"][k], r0["resumed"][k]), k
    single = _fit(None, tmp_path / "single", make_cfg(steps=4, batch_size=4))
    for k in single:
        torch.testing.assert_close(r0["plain"][k], single[k], rtol=1e-5, atol=1e-6)
    # the same val subset, split over the ranks and all-reduced
    assert _val_totals(tmp_path / "plain" / "metrics.csv") == pytest.approx(
        _val_totals(tmp_path / "single" / "metrics.csv"), rel=1e-4)
    rows = list(csv.DictReader(open(tmp_path / "plain" / "metrics.csv")))
    assert len(rows) == 4  # rank 0 alone writes: train and val rows at steps 2 and 4
