"""Could a small network of our own replace the phoneme recogniser? (issue 14: hama costs
0.1 s per second of speech, a third of offline `generate`'s work and most of the stream's.)

    python benchmarks/probe_phoneme_student.py --cache /work/cache/shared [--steps 3000] [--hidden 192]

Trains a dilated 1-D conv net on the cache's train split to predict the recogniser's
per-frame posteriors from the log-mel (cross-entropy against hama's soft posteriors, the
cache's phoneme table), then on the val split prints its arg-max agreement with hama, the
L1 distance between the two distributions, its cost per second of audio, and the lip sync
of an SDM (--weights, default the shipped one) fed with its posteriors instead of hama's
(bench_motion's score_clip, 3 seeds). A probe: nothing here is used by sdmtalk.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from bench_motion import _mean, mel_onsets, score_clip

from sdmtalk import FPS, MEL_PER_FRAME
from sdmtalk.data.cache import CacheReader
from sdmtalk.data.offsets import OffsetTable, shift_audio
from sdmtalk.data.phonemes import PhonemeTable
from sdmtalk.pipeline import load_motion_model


class PhonemeStudent(nn.Module):
    """Log-mel rows (B, 4T, 80) -> (B, T, V) log-posteriors; sees about 0.24 s each side."""

    def __init__(self, vocab: int, hidden: int = 192):
        super().__init__()
        self.inp = nn.Conv1d(80, hidden, 5, padding=2)
        self.blocks = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d) for d in (1, 2, 4, 1, 2, 4))
        self.norms = nn.ModuleList(nn.GroupNorm(1, hidden) for _ in self.blocks)
        self.down = nn.Conv1d(hidden, hidden, MEL_PER_FRAME, stride=MEL_PER_FRAME)
        self.post = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.out = nn.Conv1d(hidden, vocab, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.inp(mel.transpose(1, 2)))
        for conv, norm in zip(self.blocks, self.norms, strict=True):
            x = x + F.gelu(conv(norm(x)))
        x = F.gelu(self.down(x))
        x = x + F.gelu(self.post(x))
        return F.log_softmax(self.out(x), 1).transpose(1, 2)


def clip_pairs(reader, table, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(log-mel (4T, 80), hama posteriors (T, V)) of every clip of `split` with both."""
    pairs = []
    for rec in reader.clips(split):
        post = table.get(rec)
        if post is None:
            continue
        mel = reader.load(rec)["mel"]
        t = min(len(post), len(mel) // MEL_PER_FRAME)
        if t >= 20:
            pairs.append((mel[:MEL_PER_FRAME * t], post[:t].astype(np.float32)))
    return pairs


def train_student(pairs, steps: int, hidden: int, window: int = 50, batch: int = 32):
    mel_all = np.concatenate([m for m, _ in pairs])
    mu, sd = mel_all.mean(0), mel_all.std(0) + 1e-5
    model = PhonemeStudent(pairs[0][1].shape[1], hidden)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    rng = np.random.default_rng(0)
    usable = [i for i, (_, p) in enumerate(pairs) if len(p) >= window]
    weight = np.array([len(pairs[i][1]) for i in usable], float)
    for step in range(steps):
        mels, posts = [], []
        for i in rng.choice(usable, batch, p=weight / weight.sum()):
            mel, post = pairs[i]
            s = int(rng.integers(0, len(post) - window + 1))
            mels.append((mel[MEL_PER_FRAME * s:MEL_PER_FRAME * (s + window)] - mu) / sd)
            posts.append(post[s:s + window])
        loss = -(torch.tensor(np.stack(posts)) * model(torch.tensor(np.stack(mels)))).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            print(f"step {step}: cross-entropy {loss.item():.3f}", flush=True)
    model.eval()
    return lambda mel: model(torch.tensor((mel - mu) / sd, dtype=torch.float32)[None])[0].exp().numpy()


@torch.no_grad()
def compare(student, pairs) -> None:
    agree = l1 = frames = 0.0
    for mel, post in pairs:
        q = student(mel)
        agree += float((q.argmax(1) == post.argmax(1)).sum())
        l1 += float(np.abs(q - post).sum(1).sum())
        frames += len(post)
    mel = np.concatenate([m for m, _ in pairs])
    t0 = time.perf_counter()
    student(mel)
    took = time.perf_counter() - t0
    seconds = len(mel) / (MEL_PER_FRAME * FPS)
    print(f"val: arg-max agreement with hama {agree / frames:.3f}, L1 {l1 / frames:.3f}, "
          f"{took / seconds:.4f} s per second of audio ({seconds:.0f} s, one call)")


@torch.no_grad()
def lip_sync(cache, weights, student, seeds: int = 3) -> None:
    reader, table, offsets = CacheReader(cache), PhonemeTable(cache), OffsetTable(cache)
    model = load_motion_model("sdm", weights)
    for name in ("hama", "student"):
        rows = []
        for rec in reader.clips("val"):
            data = {**reader.load(rec), "phonemes": table.get(rec)}
            if name == "student":
                mine = student(data["mel"])[:len(data["phonemes"])]
                data["phonemes"] = np.zeros_like(data["phonemes"])
                data["phonemes"][:len(mine)] = mine
            data = shift_audio(data, offsets.get(rec))
            data["onsets"] = mel_onsets(data["mel"], len(data["landmarks"]))
            rows.append(score_clip(model, {}, data, list(range(seeds)))[0])
        print(f"SDM lips with {name} posteriors: lip r {_mean([r['lip_r'] for r in rows]):.3f}, "
              f"amplitude {_mean([r['lip_amp'] for r in rows]):.3f} ({len(rows)} val clips, {seeds} seeds)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--hidden", type=int, default=192)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    reader, table = CacheReader(args.cache), PhonemeTable(args.cache)
    train = clip_pairs(reader, table, "train")
    print(f"train: {len(train)} clips, {sum(len(p) for _, p in train) / FPS / 60:.0f} min")
    student = train_student(train, args.steps, args.hidden)
    compare(student, clip_pairs(reader, table, "val"))
    torch.set_num_threads(1)
    lip_sync(args.cache, args.weights, student)


if __name__ == "__main__":
    main()
