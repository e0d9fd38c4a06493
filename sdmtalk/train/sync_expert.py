"""Train the SyncExpert on a prepared cache (contrastive, speaker-balanced, resumable).

    python -m sdmtalk.train.sync_expert --data CACHE --out RUN [--steps 4000] [--resume]

Run folder: ckpt-last.pt (resume), ckpt-best.pt (best on the val split), metrics.jsonl,
sync_expert.safetensors + sync_expert.json (from ckpt-best; the shipped weights are a copy).

Loss: InfoNCE (Oord et al. 2018; CLIP's symmetric form) over the batch: the mouth window
of item i must pick its own audio window among the B audio windows of the batch (other
clips, mostly other speakers) and among K hard negatives, the audio of the same clip
shifted by 2-12 frames (what an offset estimate must tell apart); and each audio window
must pick its mouth window among the batch's. Items are speaker-balanced: a speaker with
probability proportional to (its frames) ** speaker_power, then a clip by its frames, then
a centre frame whose mouth window has no lost frame. The batch of step n is a pure function
of (seed, n): a resumed run sees the same data as an uninterrupted one.

Selection: every val_every steps the val clips are scored as the benchmark does (real
vs 10-frame-shifted confidence, offset recovery of known shifts -5..+5); the best sum wins.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdmtalk import MEL_PER_FRAME
from sdmtalk.data.cache import CacheReader
from sdmtalk.data.offsets import OffsetTable, shift_audio
from sdmtalk.errors import InputError, exit_code_of
from sdmtalk.sync.expert import (
    SyncExpert,
    SyncExpertConfig,
    audio_input,
    gather_audio,
    gather_mouth,
    mouth_input,
    save_expert,
)
from sdmtalk.sync.score import shifted_pair, sync_scores
from sdmtalk.train.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from sdmtalk.typed_config import to_dict
from sdmtalk.weights.io import load_checkpoint

CKPT_LAST, CKPT_BEST = "ckpt-last.pt", "ckpt-best.pt"
WEIGHTS = "sync_expert.safetensors"
RANK_SHIFT = 10  # the benchmark's "audio shifted by 10 frames"
KNOWN_SHIFTS = tuple(range(-5, 6))


@dataclass
class SyncTrainConfig:
    """steps: optimisation steps; batch: items per step; hard_negatives: shifted audio
    windows per item, |shift| in [min_shift, max_shift] frames; speaker_power: 0 = every
    speaker alike, 1 = by time; lr: AdamW peak (cosine decay after `warmup` steps);
    threads: torch CPU threads (the development machine is shared)."""

    steps: int = 3000
    batch: int = 256
    hard_negatives: int = 2
    min_shift: int = 2
    max_shift: int = 12
    speaker_power: float = 0.5
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    val_every: int = 300
    seed: int = 0
    threads: int = 1
    model: SyncExpertConfig = field(default_factory=SyncExpertConfig)


# --- data -----------------------------------------------------------------------------------


@dataclass
class SyncClip:
    """One clip ready for windows: audio (4T, A) from audio_input, mouth (T, 20, 2) from
    mouth_input (NaN where lost), centres (N,) frames whose two windows are complete;
    raw_mouth (T, 20, 2): the canonical mouth points before mouth_input (NaN where lost),
    for scoring cropped versions of the clip as a user's clip would be scored."""

    clip_id: str
    speaker: str
    audio: np.ndarray
    mouth: np.ndarray
    centres: np.ndarray
    raw_mouth: np.ndarray


def prepare_clip(clip_id: str, speaker: str, mel: np.ndarray, canonical: np.ndarray, valid,
                 window: int, extra: np.ndarray | None = None) -> SyncClip:
    audio, mouth = audio_input(mel, extra), mouth_input(canonical, valid)
    raw = np.asarray(canonical, np.float32)[:, 48:68].copy()
    raw[~np.isfinite(mouth).all(axis=(1, 2))] = np.nan
    t = min(len(audio) // MEL_PER_FRAME, len(mouth))
    half = window // 2
    c = np.arange(half, t - half)
    if len(c):
        c = c[np.isfinite(gather_mouth(mouth, c, window)).all(axis=(1, 2, 3))]
    return SyncClip(clip_id, speaker, audio, mouth, c, raw)


def load_clips(reader, split: str, window: int, offsets=None) -> list[SyncClip]:
    """Every clip of `split` of a CacheReader, prepared (canonical landmarks, valid, mel);
    offsets (a data.offsets.OffsetTable): each clip's audio re-aligned to its video first."""
    out = []
    for rec in reader.clips(split):
        d = reader.load(rec)
        if offsets is not None:
            d = shift_audio(d, offsets.get(rec))
        out.append(prepare_clip(rec.clip_id, rec.speaker, d["mel"], d["canonical"], d["valid"] > 0, window))
    return out


class WindowSampler:
    """Speaker-balanced batches of (audio, mouth, hard-negative audio) windows."""

    def __init__(self, clips: list[SyncClip], cfg: SyncTrainConfig):
        self.cfg, self.w = cfg, cfg.model.window
        self.clips = [c for c in clips if len(c.centres)]
        if not self.clips:
            raise InputError("no training clip has a complete mouth window: check the cache")
        speakers = sorted({c.speaker for c in self.clips})
        self.by_speaker = [np.array([i for i, c in enumerate(self.clips) if c.speaker == s]) for s in speakers]
        frames = [np.array([len(self.clips[i].centres) for i in idx], float) for idx in self.by_speaker]
        self.clip_p = [f / f.sum() for f in frames]
        w = np.array([f.sum() for f in frames]) ** cfg.speaker_power
        self.speaker_p = w / w.sum()

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """audio (B, 4W, A), mouth (B, W, 20, 2), neg_audio (B, K, 4W, A), neg_ok (B, K)."""
        cfg, w = self.cfg, self.w
        rng = np.random.default_rng([cfg.seed, step])
        spk = rng.choice(len(self.by_speaker), size=cfg.batch, p=self.speaker_p)
        half, k = w // 2, cfg.hard_negatives
        audio, mouth, neg, neg_ok = [], [], [], np.zeros((cfg.batch, k), bool)
        for b, s in enumerate(spk):
            clip = self.clips[int(rng.choice(self.by_speaker[s], p=self.clip_p[s]))]
            t = int(clip.centres[rng.integers(len(clip.centres))])
            audio.append(gather_audio(clip.audio, [t], w)[0])
            mouth.append(gather_mouth(clip.mouth, [t], w)[0])
            t_a = len(clip.audio) // MEL_PER_FRAME
            shifts = rng.integers(cfg.min_shift, cfg.max_shift + 1, size=k) * rng.choice([-1, 1], size=k)
            centres = []
            for j, d in enumerate(shifts):
                for cand in (t + d, t - d):  # the other direction when one leaves the clip
                    if half <= cand < t_a - half:
                        centres.append(cand)
                        neg_ok[b, j] = True
                        break
                else:
                    centres.append(t)  # placeholder, masked out
            neg.append(gather_audio(clip.audio, centres, w))
        return {"audio": torch.from_numpy(np.stack(audio)), "mouth": torch.from_numpy(np.stack(mouth)),
                "neg_audio": torch.from_numpy(np.stack(neg)), "neg_ok": torch.from_numpy(neg_ok)}


def input_stats(clips: list[SyncClip], max_rows: int = 400_000, seed: int = 0) -> dict[str, torch.Tensor]:
    """audio_mean/std (A,) and mouth_std (1,) over the training clips (clip-balanced sample)."""
    rng = np.random.default_rng(seed)
    per_clip = max(1, max_rows // max(len(clips), 1))
    rows = [c.audio[rng.integers(len(c.audio), size=min(per_clip, len(c.audio)))] for c in clips if len(c.audio)]
    a = np.concatenate(rows).astype(np.float64)
    m = np.concatenate([c.mouth[np.isfinite(c.mouth).all(axis=(1, 2))].reshape(-1) for c in clips])
    return {"audio_mean": torch.tensor(a.mean(0), dtype=torch.float32),
            "audio_std": torch.tensor(np.maximum(a.std(0), 1e-3), dtype=torch.float32),
            "mouth_std": torch.tensor([max(float(m.std()), 1e-4)], dtype=torch.float32)}


# --- loss and validation ----------------------------------------------------------------------


def contrastive_loss(model: SyncExpert, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE with in-batch negatives + same-clip shifted hard negatives.
    Returns (loss, accuracy of the mouth -> audio choice)."""
    tau = model.cfg.temperature
    a = model.embed_audio(batch["audio"])
    v = model.embed_mouth(batch["mouth"])
    b, k = batch["neg_ok"].shape
    an = model.embed_audio(batch["neg_audio"].flatten(0, 1)).reshape(b, k, -1)
    logits = v @ a.T / tau  # (B, B): row i = mouth i against every audio window
    hard = (v[:, None] * an).sum(-1) / tau
    hard = hard.masked_fill(~batch["neg_ok"], float("-inf"))
    target = torch.arange(b)
    full = torch.cat([logits, hard], dim=1)
    loss = 0.5 * (F.cross_entropy(full, target) + F.cross_entropy(logits.T, target))
    acc = float((full.argmax(1) == target).float().mean())
    return loss, acc


def benchmark(model: SyncExpert, clips: list[SyncClip], rank_shift: int = RANK_SHIFT,
              known_shifts=KNOWN_SHIFTS) -> dict:
    """The must-hit measures on clips (prepared, e.g. the val split):
    rank_acc: share of clips whose sync confidence is higher as given than with the audio
    shifted by +rank_shift AND by -rank_shift frames; offset_acc: share of (clip, shift)
    pairs whose estimated offset is within 1 frame of the known shift; offset_rel_acc: the
    same for the estimate minus the clip's own estimated offset (a recording whose sound is
    itself off by some frames fails offset_acc for every shift). Per-clip rows too."""
    rows = []
    model.eval()
    for c in clips:
        t = min(len(c.audio) // MEL_PER_FRAME, len(c.mouth))
        # audio_input only re-centres the (already centred) rows: the same as scoring raw log-mel
        mel, mouth = c.audio[: MEL_PER_FRAME * t], c.raw_mouth[:t]
        real = sync_scores(mel, mouth, model=model)
        shifted = [sync_scores(*shifted_pair(mel, mouth, s), model=model)["sync_conf"]
                   if t > abs(s) + 10 else float("nan") for s in (rank_shift, -rank_shift)]
        offsets = {}
        for s in known_shifts:
            offsets[s] = sync_scores(*shifted_pair(mel, mouth, s), model=model)["sync_offset"] \
                if t > abs(s) + 10 else float("nan")
        rank_ok = bool(np.isfinite(real["sync_conf"]) and all(np.isfinite(x) and real["sync_conf"] > x for x in shifted))
        hits = [abs(o - s) <= 1 for s, o in offsets.items() if np.isfinite(o)]
        rows.append({"clip": c.clip_id, "speaker": c.speaker, "frames": t, "conf": real["sync_conf"],
                     "offset": real["sync_offset"], "conf_shifted": shifted, "rank_ok": rank_ok,
                     "offsets": offsets, "offset_hits": int(sum(hits)), "offset_tries": len(hits)})
    n = len(rows)
    tries = sum(r["offset_tries"] for r in rows)
    for r in rows:  # the shift recovered relative to the clip's own estimated offset (shift 0)
        own = r["offsets"].get(0, float("nan"))
        r["offset_rel_hits"] = int(sum(abs(o - own - s) <= 1 for s, o in r["offsets"].items()
                                       if np.isfinite(o) and np.isfinite(own)))
    return {"clips": n, "rank_acc": sum(r["rank_ok"] for r in rows) / max(n, 1),
            "offset_acc": sum(r["offset_hits"] for r in rows) / max(tries, 1),
            "offset_rel_acc": sum(r["offset_rel_hits"] for r in rows) / max(tries, 1),
            "offset_tries": tries, "rows": rows}


# --- training loop ----------------------------------------------------------------------------


def _lr(cfg: SyncTrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


def _clips_of(cache, cfg: SyncTrainConfig, offsets, train_clips, val_clips, log):
    """The given train / val clips, or the cache's splits loaded where not given."""
    if train_clips is not None and val_clips is not None:
        return train_clips, val_clips
    reader = CacheReader(cache)
    t0 = time.perf_counter()
    train_clips = load_clips(reader, "train", cfg.model.window, offsets) if train_clips is None else train_clips
    val_clips = load_clips(reader, "val", cfg.model.window, offsets) if val_clips is None else val_clips
    log(f"loaded {len(train_clips)} train / {len(val_clips)} val clips in {time.perf_counter() - t0:.0f} s")
    return train_clips, val_clips


def _resume(out: Path, resume: bool, config: dict, model, opt, log) -> tuple[int, dict | None, list]:
    """(step, best, history) of the run in `out` when resuming it (model, optimiser and RNG
    restored), else a fresh start; InputError for a run that is there but not resumed."""
    if not resume and (out / CKPT_LAST).is_file():
        raise InputError(f"{out} holds a run already: pass --resume to continue it or use a new --out")
    if not (resume and (out / CKPT_LAST).is_file()):
        return 0, None, []
    ckpt = load_checkpoint(out / CKPT_LAST)
    if ckpt["config"] != config:
        raise InputError(f"{out / CKPT_LAST} was trained with another config: use a new --out")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    restore_rng_state(ckpt["rng"][0])
    log(f"resumed at step {ckpt['step']}")
    return ckpt["step"], ckpt["trainer"].get("best"), ckpt["trainer"].get("history", [])


def _val_row(model: SyncExpert, val_clips: list[SyncClip], step: int, losses, accs, t0: float) -> dict:
    """One validation row: the benchmark on val (ranking and offset recovery) + train stats."""
    with torch.no_grad():
        res = benchmark(model, val_clips) if val_clips else {"rank_acc": float("nan"), "offset_acc": float("nan")}
    return {"step": step, "loss": float(np.mean(losses)), "batch_acc": float(np.mean(accs)),
            "val_rank_acc": res["rank_acc"], "val_offset_acc": res["offset_acc"],
            "val_offset_rel_acc": res.get("offset_rel_acc", float("nan")),
            "seconds": round(time.perf_counter() - t0, 1)}


def _export_best(out: Path, model: SyncExpert, config: dict, facts: dict, log) -> Path:
    """Load the best checkpoint (the last if none) into `model` and export it as the weights."""
    src = out / CKPT_BEST if (out / CKPT_BEST).is_file() else out / CKPT_LAST
    ckpt = load_checkpoint(src)
    model.load_state_dict(ckpt["model"])
    b = ckpt["trainer"].get("best") or {}
    extra = {"step": ckpt["step"], "train_config": config["train"], **facts,
             "val_rank_acc": b.get("val_rank_acc"), "val_offset_acc": b.get("val_offset_acc"),
             "val_offset_rel_acc": b.get("val_offset_rel_acc")}
    path = save_expert(model, out / WEIGHTS, extra)
    log(f"wrote {path} (step {ckpt['step']}, val rank {b.get('val_rank_acc')}, offset {b.get('val_offset_acc')})")
    return path


def train(cache, out_dir, cfg: SyncTrainConfig | None = None, resume: bool = False,
          quiet: bool = False, train_clips: list[SyncClip] | None = None,
          val_clips: list[SyncClip] | None = None, stop_after: int | None = None,
          offsets=None) -> Path | None:
    """Train on the train split of `cache` (or the given clips), select on val, export the
    best state to out_dir/sync_expert.safetensors. Returns that path (None when stopped
    early by `stop_after` steps, which simulates a kill: tests of resume). offsets (a
    data.offsets.OffsetTable): the cache's clips re-aligned to their video first."""
    cfg = cfg or SyncTrainConfig()
    torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    train_clips, val_clips = _clips_of(cache, cfg, offsets, train_clips, val_clips, log)
    sampler = WindowSampler(train_clips, cfg)
    torch.manual_seed(cfg.seed)
    model = SyncExpert(cfg.model)
    for name, value in input_stats(train_clips, seed=cfg.seed).items():
        getattr(model, name).copy_(value)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    config = {"model": to_dict(cfg.model), "train": {k: v for k, v in to_dict(cfg).items() if k != "model"}}
    step, best, history = _resume(out, resume, config, model, opt, log)

    def save(path):
        save_checkpoint(path, model=model, optimizer=opt, step=step, config=config,
                        rng=[capture_rng_state()], trainer={"best": best, "history": history})

    t0, losses, accs = time.perf_counter(), [], []
    while step < cfg.steps:
        model.train()
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        loss, acc = contrastive_loss(model, sampler.batch(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        accs.append(acc)
        if step % cfg.val_every == 0 or step == cfg.steps:
            row = _val_row(model, val_clips, step, losses, accs, t0)
            losses, accs = [], []
            history.append(row)
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            log(json.dumps(row))
            score = row["val_rank_acc"] + row["val_offset_acc"]
            if best is None or score > best["score"] or not np.isfinite(best["score"]):
                best = {"score": score, **row}
                save(out / CKPT_BEST)
            save(out / CKPT_LAST)
        if stop_after is not None and step >= stop_after:
            return None
    if not (out / CKPT_BEST).is_file() and not (out / CKPT_LAST).is_file():
        save(out / CKPT_LAST)
    facts = {"data": str(cache), "train_clips": len(train_clips), "val_clips": len(val_clips),
             "train_speakers": len({c.speaker for c in train_clips})}
    return _export_best(out, model, config, facts, log)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdmtalk.train.sync_expert", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, metavar="CACHE", help="cache folder from `sdmtalk prepare`")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=SyncTrainConfig.steps)
    p.add_argument("--batch", type=int, default=SyncTrainConfig.batch)
    p.add_argument("--threads", type=int, default=SyncTrainConfig.threads)
    p.add_argument("--seed", type=int, default=SyncTrainConfig.seed)
    p.add_argument("--val-every", type=int, default=SyncTrainConfig.val_every)
    p.add_argument("--window", type=int, default=SyncExpertConfig.window, help="frames per window (odd)")
    p.add_argument("--max-shift", type=int, default=SyncTrainConfig.max_shift,
                   help="largest shift of the hard-negative audio windows (frames)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/ckpt-last.pt")
    p.add_argument("--offsets", action="store_true",
                   help="re-align the clips' audio by the cache's offsets.json (train and val)")
    args = p.parse_args(argv)
    cfg = SyncTrainConfig(steps=args.steps, batch=args.batch, threads=args.threads, seed=args.seed,
                          val_every=args.val_every, max_shift=args.max_shift,
                          model=SyncExpertConfig(window=args.window))
    offsets = None
    if args.offsets:
        offsets = OffsetTable(args.data)
        if not offsets.available:
            print(f"sdmtalk: error: {args.data} has no offsets.json: run python -m sdmtalk.train.offsets "
                  f"--cache {args.data}", file=sys.stderr)
            return 2
    return exit_code_of(train, args.data, args.out, cfg, resume=args.resume, offsets=offsets)


if __name__ == "__main__":
    sys.exit(main())
