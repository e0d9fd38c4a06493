"""What `prepare` and the offset rule did to each corpus of a cache: kept, skipped (and why),
audio-video offsets applied.

    python probes/offsets_by_corpus.py --cache CACHE --manifest ../shared/data/MANIFEST.tsv

Corpus = the manifest's source repository. Columns: clips kept, clips skipped by prepare's
filters (the commonest reasons), clips whose offset the rule applies (and the offsets),
clips estimated 2+ frames off that the rule leaves (not confident). Feeds docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter, defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--manifest", required=True)
    args = ap.parse_args()
    cache = Path(args.cache)
    with open(args.manifest, newline="") as f:
        corpus = {f"{r['split']}/{r['path']}": r["source_repo"] for r in csv.DictReader(f, delimiter="\t")}
    kept = [json.loads(line) for line in open(cache / "index.jsonl")]
    skipped = [json.loads(line) for line in open(cache / "skipped.jsonl")]
    offsets = json.loads((cache / "offsets.json").read_text())["clips"]
    rows: dict[str, dict] = defaultdict(lambda: {"kept": 0, "skipped": Counter(), "applied": Counter(), "left": 0})
    for clip in kept:
        row = rows[corpus.get(clip["source"], "?")]
        row["kept"] += 1
        est = offsets.get(clip["clip_id"], {})
        if est.get("applied"):
            row["applied"][est["applied"]] += 1
        elif abs(est.get("offset") or 0) >= 2:
            row["left"] += 1
    for clip in skipped:
        rows[corpus.get(clip["source"], "?")]["skipped"][clip["reason"]] += 1
    print("| corpus | kept | skipped (why) | offset applied (frames: clips) | 2+ frames, not confident |")
    print("|---|---:|---|---|---:|")
    for name, row in sorted(rows.items(), key=lambda kv: -kv[1]["kept"]):
        why = ", ".join(f"{r} {n}" for r, n in row["skipped"].most_common(3))
        shifts = ", ".join(f"{d:+d}: {n}" for d, n in sorted(row["applied"].items()))
        print(f"| {name} | {row['kept']} | {sum(row['skipped'].values())} {f'({why})' if why else ''} | "
              f"{sum(row['applied'].values())} {f'({shifts})' if shifts else ''} | {row['left']} |")


if __name__ == "__main__":
    main()
