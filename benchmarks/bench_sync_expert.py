"""The sync expert's must-hit numbers on a prepared cache's split (prints a table).

    python benchmarks/bench_sync_expert.py --cache CACHE [--split val] [--weights W] [--no-offsets]

For each clip (cached canonical landmarks of the real video and its log-mel):
- ranking: the sync confidence of the clip as recorded against the same clip with its audio
  shifted by +10 and by -10 frames (cropped so that the shift is real, no padding); a clip
  counts when it beats BOTH shifted versions;
- offset: for each known shift -5..+5 frames, whether the estimated AV offset is within 1
  frame of it (absolute), and within 1 frame of it plus the clip's own estimated offset
  (relative).
Both "as recorded" and, when the cache has an offsets table (sdmtalk.data.offsets),
"corrected": each clip's audio first re-aligned by the offset the table applies.
Goal: ranking >= 95 % of clips, offset >= 90 % of (clip, shift) pairs. Prints the rates per
variant. Feeds docs/RESULTS.md, "Sync expert and AV offsets":

    python benchmarks/bench_sync_expert.py --cache /work/cache/shared
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sdmtalk.data.cache import CacheReader
from sdmtalk.data.offsets import OffsetTable
from sdmtalk.sync.expert import load_expert
from sdmtalk.train.sync_expert import KNOWN_SHIFTS, RANK_SHIFT, benchmark, load_clips


def summary(res: dict, label: str) -> list[str]:
    exact = np.mean([r["offsets"][s] == s for r in res["rows"] for s in KNOWN_SHIFTS
                     if np.isfinite(r["offsets"][s])])
    hits = sum(r["offset_hits"] for r in res["rows"])
    rel = sum(r["offset_rel_hits"] for r in res["rows"])
    return [f"{label}: ranking real > shifted by +-{RANK_SHIFT} frames {100 * res['rank_acc']:.1f} % of "
            f"{res['clips']} clips (goal >= 95 %); known shift {KNOWN_SHIFTS[0]}..+{KNOWN_SHIFTS[-1]} "
            f"found within 1 frame: absolute {100 * res['offset_acc']:.1f} % ({hits}/{res['offset_tries']}, "
            f"goal >= 90 %), relative to the clip's own offset {100 * res['offset_rel_acc']:.1f} % "
            f"({rel}/{res['offset_tries']}); exact {100 * exact:.1f} %"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None, help="default: the shipped sync_expert.safetensors")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-offsets", action="store_true", help="only the clips as recorded")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_expert(args.weights)
    reader = CacheReader(args.cache)
    table = OffsetTable(args.cache)
    t0 = time.perf_counter()
    res = benchmark(model, load_clips(reader, args.split, model.cfg.window))
    fixed = None
    if table.available and not args.no_offsets:
        fixed = benchmark(model, load_clips(reader, args.split, model.cfg.window, table))
    secs = time.perf_counter() - t0
    print(f"{res['clips']} clips of split '{args.split}' ({sum(r['frames'] for r in res['rows'])} frames), "
          f"{secs:.1f} s")
    head = (f"| clip | frames | conf | conf +{RANK_SHIFT} | conf -{RANK_SHIFT} | ranked | offset as recorded "
            f"| known shifts found (of {len(KNOWN_SHIFTS)}) | found relative to own offset |")
    if fixed:
        head += " applied offset | offset corrected | ranked corrected | found corrected |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    applied = {r.clip_id: table.get(r) for r in reader.clips(args.split)} if fixed else {}
    for i, r in enumerate(res["rows"]):
        a, b = r["conf_shifted"]
        line = (f"| {r['clip']} | {r['frames']} | {r['conf']:.3f} | {a:.3f} | {b:.3f} | "
                f"{'yes' if r['rank_ok'] else 'NO'} | {r['offset']:+.0f} | {r['offset_hits']}/{r['offset_tries']} "
                f"| {r['offset_rel_hits']}/{r['offset_tries']} |")
        if fixed:
            f = fixed["rows"][i]
            line += (f" {applied[r['clip']]:+d} | {f['offset']:+.0f} | {'yes' if f['rank_ok'] else 'NO'} "
                     f"| {f['offset_hits']}/{f['offset_tries']} |")
        print(line)
    per_shift = {s: np.mean([abs(r["offsets"][s] - s) <= 1 for r in res["rows"] if np.isfinite(r["offsets"][s])])
                 for s in KNOWN_SHIFTS}
    print("\noffset found within 1 frame, per known shift (as recorded): "
          + ", ".join(f"{s:+d}: {100 * v:.0f} %" for s, v in per_shift.items()))
    print()
    print("\n".join(summary(res, "as recorded")))
    if fixed:
        moved = sum(1 for v in applied.values() if v)
        print("\n".join(summary(fixed, f"corrected ({moved} clips re-aligned by offsets.json)")))
    elif not args.no_offsets:
        print(f"(no {args.cache}/offsets.json: run python -m sdmtalk.train.offsets --cache {args.cache})")


if __name__ == "__main__":
    main()
