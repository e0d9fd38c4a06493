"""The sync expert's must-hit numbers on a prepared cache's split (prints a table).

    python benchmarks/bench_sync_expert.py --cache CACHE [--split val] [--weights W]

For each clip (cached canonical landmarks of the real video and its log-mel):
- ranking: the sync confidence of the clip as recorded against the same clip with its audio
  shifted by +10 and by -10 frames (cropped so that the shift is real, no padding); a clip
  counts when it beats BOTH shifted versions;
- offset: for each known shift -5..+5 frames, whether the estimated AV offset is within 1
  frame of it.
Goal (issue 10): ranking >= 95 % of clips, offset >= 90 % of (clip, shift) pairs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sdmtalk.data.cache import CacheReader
from sdmtalk.sync.expert import load_expert
from sdmtalk.sync.train import KNOWN_SHIFTS, RANK_SHIFT, benchmark, load_clips


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None, help="default: the shipped sync_expert.safetensors")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_expert(args.weights)
    clips = load_clips(CacheReader(args.cache), args.split, model.cfg.window)
    t0 = time.perf_counter()
    res = benchmark(model, clips)
    secs = time.perf_counter() - t0
    print(f"{res['clips']} clips of split '{args.split}' ({sum(r['frames'] for r in res['rows'])} frames), "
          f"{secs:.1f} s")
    print(f"| clip | frames | conf | conf +{RANK_SHIFT} | conf -{RANK_SHIFT} | ranked | offset as recorded "
          f"| known shifts found (of {len(KNOWN_SHIFTS)}) | found relative to own offset |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        a, b = r["conf_shifted"]
        print(f"| {r['clip']} | {r['frames']} | {r['conf']:.3f} | {a:.3f} | {b:.3f} | "
              f"{'yes' if r['rank_ok'] else 'NO'} | {r['offset']:+d} | {r['offset_hits']}/{r['offset_tries']} | {r['offset_rel_hits']}/{r['offset_tries']} |")
    per_shift = {s: np.mean([abs(r["offsets"][s] - s) <= 1 for r in res["rows"] if np.isfinite(r["offsets"][s])])
                 for s in KNOWN_SHIFTS}
    print("\noffset found within 1 frame, per known shift: "
          + ", ".join(f"{s:+d}: {100 * v:.0f} %" for s, v in per_shift.items()))
    exact = np.mean([r["offsets"][s] == s for r in res["rows"] for s in KNOWN_SHIFTS if np.isfinite(r["offsets"][s])])
    print(f"offset within 1 frame of a known shift, relative to the clip's own estimated offset: "
          f"{100 * res['offset_rel_acc']:.1f} %")
    print(f"\nranking real > shifted by +-{RANK_SHIFT} frames: {100 * res['rank_acc']:.1f} % of clips (goal >= 95 %)")
    print(f"offset within 1 frame of a known shift {KNOWN_SHIFTS[0]}..+{KNOWN_SHIFTS[-1]}: "
          f"{100 * res['offset_acc']:.1f} % of {res['offset_tries']} (clip, shift) pairs (goal >= 90 %); "
          f"exact: {100 * exact:.1f} %")


if __name__ == "__main__":
    main()
