"""The training loop: cache -> model -> checkpoints, metrics and exported weights.

Run folder (``--out``)::

    config.json        the full resolved ExperimentConfig
    metrics.csv        train rows every log_every steps, val rows every val_every steps
    loss.png           train and val curves
    ckpt-last.pt       everything needed to resume (written every ckpt_every steps and at the end)
    ckpt-best.pt       the state with the best validation (train.select: loss or lip sync)
    model.safetensors  weights for inference (from ckpt-best, else ckpt-last) + model.json

Resuming is exact: the data order depends only on (seed, position in the sample stream)
and the RNG states are saved, so a run killed and resumed ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sdmtalk.config import ExperimentConfig, load_config
from sdmtalk.data.augment import MelAugment
from sdmtalk.data.cache import CacheReader
from sdmtalk.data.offsets import OffsetTable
from sdmtalk.data.phonemes import PhonemeTable
from sdmtalk.data.windows import MotionWindows, compute_motion_stats
from sdmtalk.errors import InputError
from sdmtalk.motion.sdm import build_model
from sdmtalk.train.checkpoint import (
    capture_rng_state,
    export_weights,
    inference_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from sdmtalk.train.distributed import (
    DistContext,
    StepBatchSampler,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_object,
    setup,
    teardown,
    val_indices,
    wrap_for_training,
)
from sdmtalk.train.logging import MetricsLog, plot_losses

CKPT_LAST = "ckpt-last.pt"
CKPT_BEST = "ckpt-best.pt"
WEIGHTS = "model.safetensors"
PLOT_EVERY_S = 30.0  # loss.png is redrawn at validations at most this often, and at the end


@dataclass
class TrainResult:
    out_dir: Path
    steps: int  # optimisation steps completed
    train_metrics: dict[str, float]  # the last logged train averages
    val_metrics: dict[str, float] | None  # the last validation
    best_val_loss: float | None
    best_step: int | None
    checkpoint: Path  # ckpt-last.pt
    best_checkpoint: Path | None
    weights: Path | None  # model.safetensors (written by rank 0)
    elapsed_s: float


def train(cache_dir, config, out_dir, resume: bool = False, quiet: bool = False) -> TrainResult:
    """Train the SDM model on a prepared cache. ``config``: an ExperimentConfig, a preset
    name ("tiny", "base") or a .json/.toml path. Under torchrun this runs DDP."""
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    tc = config.train
    ctx = setup(tc.device)
    try:
        reader = CacheReader(cache_dir)
        phonemes = phoneme_table(cache_dir, config.model)
        # what training windows and the stats are relative to, and their audio re-alignment
        refs = {"reference": config.model.delta_ref, "pose_reference": config.model.pose_ref,
                "offsets": offset_table(cache_dir)}
        train_set = MotionWindows(reader, "train", window=tc.window, seed=tc.seed,
                                  speaker_power=tc.speaker_power, phonemes=phonemes,
                                  augment=MelAugment(tc.mel_warp, tc.mel_masks, prefix_mean=tc.mel_prefix_mean),
                                  **refs)
        if len(train_set) == 0:
            raise InputError(f"{cache_dir}: no training windows of {tc.window} frames in the train "
                             f"split ({len(reader.clips('train'))} clips): prepare more data or "
                             "lower train.window")
        val_set = (MotionWindows(reader, "val", window=tc.window, seed=tc.seed, speaker_power=0.0,
                                 phonemes=phonemes, **refs)
                   if reader.clips("val") else None)
        seed_everything(tc.seed)  # the same initial weights on every rank and every run
        stats = compute_motion_stats(reader, "train", window=tc.window,
                                     num_windows=tc.stats_windows, seed=tc.seed, **refs)
        model = build_model(config.model, stats)
        return fit(model, train_set, val_set, tc, out_dir, config.to_dict(),
                   resume=resume, quiet=quiet, ctx=ctx)
    finally:
        teardown(ctx)


def fit(model, train_set, val_set, cfg, out_dir, config_dict: dict, resume: bool = False,
        quiet: bool = False, ctx=None) -> TrainResult:
    """Train any model with ``training_losses(batch, step) -> {"total": loss, ...}`` (and,
    optionally, ``validation_metrics(batch) -> dict``) on map-style datasets.
    ``config_dict`` is stored in checkpoints (its "model" part rebuilds the model)."""
    return Trainer(model, train_set, val_set, cfg, Path(out_dir), config_dict,
                   ctx or DistContext(), quiet).run(resume)


def offset_table(cache_dir):
    """The cache's audio-video offset table (data.offsets) when prepare wrote one, else None."""
    table = OffsetTable(cache_dir)
    return table if table.available else None


def phoneme_table(cache_dir, model_cfg):
    """The cache's phoneme side table when the model reads phonemes, else None."""
    if not getattr(model_cfg, "phoneme_dim", 0):
        return None
    return PhonemeTable.required(cache_dir, "model.phoneme_dim is set")


def selection_score(metrics: dict[str, float], select: str) -> float:
    """Lower is better: the val total loss, or minus a lip-sync score (see TrainConfig.select)."""
    if select == "loss" or "lip_corr_final" not in metrics:
        return metrics["total"]
    amp = max(metrics.get("lip_amp_final", 1.0), 1e-6)
    return -(metrics["lip_corr_final"] - 0.5 * abs(math.log(amp)))


def seed_everything(seed: int) -> None:


    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch, device: torch.device):
    """Tensors of a (nested) batch moved to ``device``; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Trainer:
    """One run: the loop, validation, checkpoints and logs (rank 0 writes)."""

    def __init__(self, model, train_set, val_set, cfg, out_dir: Path, config_dict: dict,
                 ctx, quiet: bool):
        self.cfg, self.out_dir, self.config_dict, self.ctx = cfg.check(), out_dir, config_dict, ctx
        self.train_set = train_set
        self.val_set = val_set if val_set is not None and len(val_set) > 0 else None
        self.quiet = quiet or not ctx.is_main
        self.model = model.to(ctx.device)
        self.wrapped = wrap_for_training(self.model, ctx)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr,
                                          betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
        self.log = MetricsLog(out_dir / "metrics.csv")
        self.step, self.samples_seen = 0, 0
        self.best_val, self.best_step = None, None
        self.last_train, self.last_val = {}, None
        self.elapsed = 0.0
        self.last_plot = time.perf_counter()
        self.ema = WeightAverage(self.model, cfg.ema) if cfg.ema > 0 else None

    # ----- run folder, resume -------------------------------------------------------
    def prepare(self, resume: bool) -> None:
        """Refuse to overwrite a run; on resume, restore everything from ckpt-last.pt."""
        last = self.out_dir / CKPT_LAST
        if resume and not last.is_file():
            raise InputError(f"--resume: no checkpoint {last}; start a new run without --resume, "
                             "or give the --out folder of an earlier run")
        if not resume and self.out_dir.exists() and any(self.out_dir.iterdir()):
            raise InputError(f"run folder {self.out_dir} already exists: pass --resume to continue "
                             "it, or choose another --out")
        barrier(self.ctx)  # every rank has checked before rank 0 creates files
        if resume:
            self.restore(last)
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(self.config_dict, indent=2) + "\n"
            (self.out_dir / "config.json").write_text(text, encoding="utf-8")
            self.log.load(up_to_step=self.step)
            for row in self.log.rows:  # a finished run resumed reports its last metrics
                metrics = {k: v for k, v in row.items() if k not in ("step", "split")}
                if row["split"] == "train":
                    self.last_train = metrics
                else:
                    self.last_val = metrics

    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location="cpu")
        if ckpt["config"].get("model") != self.config_dict.get("model"):
            raise InputError(f"{path} was trained with another model config: resume with the "
                             "config of that run (see its config.json)")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema is not None:
            self.ema.load(inference_state(ckpt))  # a run that turns ema on starts from its weights
        state = ckpt["trainer"]
        self.step, self.samples_seen = ckpt["step"], state["samples_seen"]
        self.best_val, self.best_step = state["best_val_loss"], state["best_step"]
        self.elapsed = state.get("elapsed_s", 0.0)
        if len(ckpt["rng"]) == self.ctx.world_size:
            restore_rng_state(ckpt["rng"][self.ctx.rank])
        else:
            seed_everything(self.cfg.seed + 1000 * self.step + self.ctx.rank)
            self.say(f"note: {path} was written by {len(ckpt['rng'])} processes, this run has "
                     f"{self.ctx.world_size}: random streams restart from seed and step")
        self.say(f"resuming {self.out_dir} at step {self.step}/{self.cfg.steps}")

    # ----- the loop -----------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        self.prepare(resume)
        if self.val_set is None and self.cfg.val_every > 0:
            self.say("note: no val windows: no validation and no ckpt-best.pt in this run")
        if not resume:  # each rank draws its own noise (diffusion steps, dropout, latents)
            seed_everything(self.cfg.seed + self.ctx.rank)
        t0 = time.perf_counter() - self.elapsed
        self.loop(t0)
        self.elapsed = time.perf_counter() - t0
        weights = None
        if self.ctx.is_main:
            self.plot()
            best = self.out_dir / CKPT_BEST
            weights = export_weights(best if best.is_file() else self.out_dir / CKPT_LAST,
                                     self.out_dir / WEIGHTS)
        barrier(self.ctx)  # every rank returns once the run's files exist
        return self.result(weights)

    def loop(self, t0: float) -> None:
        cfg = self.cfg
        if self.step >= cfg.steps:
            return
        batches = iter(self.loader())
        sums: dict[str, torch.Tensor] = {}
        count = 0  # steps summed in `sums` (fewer than log_every right after a resume)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step",
                   disable=self.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
        window_start = time.perf_counter()
        skipped = 0  # steps whose gradient was not finite, in this log window
        while self.step < cfg.steps:
            losses = self.train_step(next(batches))
            if losses is None:
                skipped += 1
            else:
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
            self.step += 1
            self.samples_seen += cfg.batch_size * self.ctx.world_size
            bar.update(1)
            done = self.step == cfg.steps
            if self.step % cfg.log_every == 0 or done:
                rate = (count + skipped) / max(time.perf_counter() - window_start, 1e-9)
                self.log_train(sums, count, rate, skipped)
                bar.set_postfix(loss=f"{self.last_train['total']:.4g}")
                sums, count, skipped, window_start = {}, 0, 0, time.perf_counter()
            self.after_step(done, t0)
        bar.close()

    def after_step(self, done: bool, t0: float) -> None:
        cfg = self.cfg
        improved = False
        if self.val_set is not None and cfg.val_every > 0 and (self.step % cfg.val_every == 0 or done):
            improved = self.validate()
        if improved:
            self.save(CKPT_BEST, t0)
        if done or (cfg.ckpt_every > 0 and self.step % cfg.ckpt_every == 0):
            self.save(CKPT_LAST, t0)

    def loader(self):
        sampler = StepBatchSampler(len(self.train_set), self.cfg.batch_size, self.cfg.seed,
                                   start=self.samples_seen, rank=self.ctx.rank,
                                   world_size=self.ctx.world_size)
        # own generator: worker seeds must not draw from (and shift) the global torch RNG
        gen = torch.Generator().manual_seed(self.cfg.seed + 7 * self.step + self.ctx.rank)
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=self.cfg.num_workers,
                          pin_memory=self.ctx.device.type == "cuda", generator=gen)

    def train_step(self, batch) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the detached loss terms."""
        self.wrapped.train()
        losses = self.wrapped(to_device(batch, self.ctx.device), self.step)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if not torch.isfinite(grad_norm):  # one bad batch must not poison the weights
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        out = {k: v.detach().float() for k, v in losses.items()}
        out["grad_norm"] = grad_norm.detach().float()
        return out

    # ----- metrics, validation, checkpoints -----------------------------------------
    def log_train(self, sums: dict, n: int, rate: float, skipped: int = 0) -> None:
        """Log the mean loss terms of the last n steps; a window where more than one step in
        ten had a non-finite gradient (skipped, weights untouched) stops the run."""
        if skipped * 10 > n + skipped or not sums:
            raise FloatingPointError(f"{skipped} of the last {n + skipped} steps had a non-finite "
                                     f"gradient by step {self.step}: lower train.lr or "
                                     f"train.grad_clip and resume from {CKPT_LAST}")
        names = sorted(sums)
        vec = all_reduce_sum(self.ctx, torch.stack([torch.as_tensor(sums[k]).cpu() for k in names]))
        metrics = {k: float(v) / (n * self.ctx.world_size) for k, v in zip(names, vec, strict=True)}
        if not math.isfinite(metrics["total"]):
            raise FloatingPointError(f"training loss became {metrics['total']} by step {self.step}: "
                                     f"lower train.lr or train.grad_clip and resume from {CKPT_LAST}")
        metrics["skipped_steps"] = float(skipped)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["steps_per_s"] = rate
        self.last_train = metrics
        if self.ctx.is_main:
            self.log.log(self.step, "train", metrics)

    @torch.no_grad()
    def validate(self) -> bool:
        """Mean val losses (+ ``validation_metrics``) over a fixed val subset, with fixed
        random numbers so that validations are comparable. Returns True on a new best."""
        saved = capture_rng_state()  # validation must not shift the training random streams
        seed_everything(self.cfg.seed + self.ctx.rank)
        self.model.eval()
        live = self.ema.swap_in(self.model) if self.ema is not None else None
        try:
            metrics = self.val_metrics()
        finally:
            if live is not None:
                self.model.load_state_dict(live)
            self.model.train()
            restore_rng_state(saved)
        self.last_val = metrics
        if self.ctx.is_main:
            self.log.log(self.step, "val", metrics)
            if time.perf_counter() - self.last_plot > PLOT_EVERY_S:
                self.plot()
        score = selection_score(metrics, self.cfg.select)
        improved = self.best_val is None or score < self.best_val
        if improved:
            self.best_val, self.best_step = score, self.step
        return improved

    def val_metrics(self) -> dict[str, float]:
        cfg, ctx = self.cfg, self.ctx
        idx = val_indices(len(self.val_set), cfg.val_batches * cfg.batch_size * ctx.world_size,
                          cfg.seed, ctx.rank, ctx.world_size)
        chunks = [idx[i:i + cfg.batch_size] for i in range(0, len(idx), cfg.batch_size)]
        sums: dict[str, float] = {}
        count = 0
        for batch in DataLoader(self.val_set, batch_sampler=chunks, num_workers=0):
            n = len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch[0])
            for k, v in self.batch_val_metrics(to_device(batch, ctx.device)).items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            count += n
        names = broadcast_object(ctx, sorted(sums))  # a rank may have had no val items
        vec = all_reduce_sum(ctx, torch.tensor([sums.get(k, 0.0) for k in names] + [count],
                                               dtype=torch.float64))
        return {k: float(v / vec[-1]) for k, v in zip(names, vec[:-1], strict=True)}

    def batch_val_metrics(self, batch) -> dict[str, float]:
        out = {k: float(v) for k, v in self.model.training_losses(batch, self.step).items()}
        if hasattr(self.model, "validation_metrics"):
            out.update({k: float(v) for k, v in self.model.validation_metrics(batch).items()})
        return out

    def save(self, name: str, t0: float) -> None:
        rng = all_gather_objects(self.ctx, capture_rng_state())  # each rank resumes its own
        if not self.ctx.is_main:
            return
        save_checkpoint(self.out_dir / name, model=self.model, optimizer=self.optimizer,
                        step=self.step, config=self.config_dict, rng=rng, trainer={
                            "samples_seen": self.samples_seen, "best_val_loss": self.best_val,
                            "best_step": self.best_step, "world_size": self.ctx.world_size,
                            "elapsed_s": time.perf_counter() - t0},
                        ema=None if self.ema is None else self.ema.state)

    def plot(self) -> None:
        if self.log.rows:
            plot_losses(self.log, self.out_dir / "loss.png")
            self.last_plot = time.perf_counter()

    def say(self, msg: str) -> None:
        if not self.quiet:

            tqdm.write(msg, file=sys.stderr)

    def result(self, weights) -> TrainResult:
        best = self.out_dir / CKPT_BEST
        return TrainResult(self.out_dir, self.step, self.last_train, self.last_val, self.best_val,
                           self.best_step, self.out_dir / CKPT_LAST,
                           best if best.is_file() else None, weights, self.elapsed)


class WeightAverage:
    """Exponential moving average of a model's floating-point weights and buffers (train.ema).
    The decay ramps up as min(decay, (1 + step) / (10 + step)), so early steps are not frozen
    in; integer buffers (step counters) are copied as they are."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)

    def load(self, state: dict) -> None:
        self.state = {k: v.detach().clone() for k, v in state.items()}

    def swap_in(self, model: torch.nn.Module) -> dict:
        """Load the average into `model`; returns the live weights to load back."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        return live


# ----- command line ------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="CACHE", help="cache folder from `sdmtalk prepare`")
    p.add_argument("--config", metavar="tiny|base|FILE",
                   help="preset name or a .json/.toml file overriding a preset (default: base; "
                   "with --resume, the run's config.json)")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from ckpt-last.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.steps=500 (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")


def run_train(args: argparse.Namespace) -> int:
    name = args.config or "base"
    out = Path(args.out) if args.out else Path("runs") / Path(name).stem
    if args.config is None and args.resume and (out / "config.json").is_file():
        name = out / "config.json"  # continue with the run's own config
    config = load_config(name, args.overrides)
    res = train(args.data, config, out, resume=args.resume, quiet=args.quiet)
    if res.weights is not None and not args.quiet:  # rank 0 only
        what = "val loss" if config.train.select == "loss" else "val lip-sync score"
        value = res.best_val_loss if config.train.select == "loss" else -(res.best_val_loss or 0.0)
        best = (f", best {what} {value:.4g} at step {res.best_step}"
                if res.best_val_loss is not None else "")
        print(f"trained {res.steps} steps in {res.elapsed_s:.0f} s: train loss "
              f"{res.train_metrics.get('total', float('nan')):.4g}{best}; weights {res.weights}")
    return 0
