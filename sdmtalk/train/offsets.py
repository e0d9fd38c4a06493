"""Measure the audio-video offsets of a prepared cache with the lip-sync expert (offsets.json).

    python -m sdmtalk.train.offsets --cache CACHE [--weights W] [--cross-fit K] [--min-z 3] [--force]

(`sdmtalk prepare` runs it at the end unless --no-offsets; run it by hand after --merge.)

Some recordings carry their own audio-video offset (the sound a few frames early or late).
For every clip the sync expert (`sdmtalk.sync`, shipped weights unless --weights) scores
s(d) = mean cosine of the audio window at t and the mouth window at t + d for
d = -15..+15 frames; the estimated offset is argmax_d s(d) (the expert's `sync_offset`),
its confidence s(best) - median_d s(d) (`sync_offset_conf`), and z the evidence that the
best d beats the clip as recorded: mean over windows of sim(t, t + d) - sim(t, t) divided by
its standard error, windows counted as independent every `window` (5) frames.

A correction is APPLIED only when 2 <= |d| <= 12, z >= 3 and at least 20 window pairs stand
behind s(d) (`OffsetRule`; chosen from the data, docs/RESULTS.md "AV offsets of the training
clips"): one frame is the estimate's own resolution, |d| > 12 is the edge of the search
(seen only on 1.2 s clips), and below 3 standard errors 1.2 s clips give spurious offsets
of 6-15 frames.

An expert reads the clips it was trained on as in sync (its negatives were their own audio,
shifted): on such a cache (the shipped expert's own, ../shared/data) use --cross-fit K, which
measures each train clip with one of K experts trained without its speaker (K x 100 s here).

`offsets.json` in the cache folder (written to a temp name, then renamed) holds per clip
{"split", "offset", "confidence", "z", "windows", "applied"[, "expert"]}, the expert's sha1,
the rule and cross_fit; a rerun measures only clips it lacks and keeps the table's rule and
cross-fit unless told otherwise (the whole cache takes seconds).

Sign convention (the expert's): offset d > 0 = the mouth lags the audio, d < 0 = the mouth
leads the audio; `shift_audio(clip, d)` re-aligns a loaded clip so that the expert finds ~0.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sdmtalk.data.cache import CacheReader, file_sha1
from sdmtalk.data.offsets import FORMAT, VERSION, OffsetRule, offsets_file, summarize, summary_lines
from sdmtalk.errors import InputError, exit_code_of
from sdmtalk.sync.expert import BUNDLED_SYNC_WEIGHTS, SyncExpertConfig, load_expert
from sdmtalk.sync.score import clip_offset
from sdmtalk.train.sync_expert import WEIGHTS, SyncTrainConfig, load_clips, train

CROSS_FIT_DIR = "offsets_experts"
CROSS_FIT_STEPS = 1500  # the shipped expert was selected at step 1200 of 3000


def _json_num(x: float):
    return round(float(x), 4) if np.isfinite(x) else None


def cross_fit_experts(cache_dir, folds: int, steps: int | None = None, quiet: bool = False) -> dict:
    """Train `folds` sync experts, expert k on the train speakers NOT in fold k, each selected
    on the val split like the shipped one; returns {speaker: weights path} for every train
    speaker. An expert scores the clips it was trained on as in sync (its contrastive
    negatives were their own audio, shifted), so a train clip is measured by the expert that
    never saw its speaker. Speakers go to folds in name order (i % folds); the assignment is
    kept in CACHE/offsets_experts/folds.json, and speakers added later get folds after it,
    so a finished expert never measures a speaker it saw. Experts are kept in
    CACHE/offsets_experts/fold<k>/ (a rerun reuses finished folds, resumes a stopped one)."""
    reader = CacheReader(cache_dir)
    root = Path(cache_dir) / CROSS_FIT_DIR
    saved = root / "folds.json"
    fold_of = {}
    if saved.is_file():
        prev = json.loads(saved.read_text(encoding="utf-8"))
        if prev.get("folds") != folds:
            raise InputError(f"{root} holds experts of {prev.get('folds')} folds: remove the folder "
                             f"to cross-fit over {folds}")
        fold_of = prev["speakers"]
    speakers = reader.speakers("train")
    if folds < 2 or len(speakers) < folds:
        raise InputError(f"{cache_dir}: --cross-fit {folds} needs at least 2 folds and as many train speakers "
                         f"({len(speakers)} here)")
    for s in speakers:
        if s not in fold_of:
            fold_of[s] = len(fold_of) % folds
    root.mkdir(exist_ok=True)
    tmp = saved.with_name(f".{saved.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"folds": folds, "speakers": fold_of}, indent=1), encoding="utf-8")
    os.replace(tmp, saved)
    cfg = SyncTrainConfig(steps=steps or CROSS_FIT_STEPS, model=SyncExpertConfig())
    paths, clips, val = {}, None, None
    for k in range(folds):
        out = root / f"fold{k}"
        if not (out / WEIGHTS).is_file():
            if clips is None:
                clips, val = load_clips(reader, "train", cfg.model.window), load_clips(reader, "val", cfg.model.window)
            mine = [c for c in clips if fold_of[c.speaker] != k]
            train(cache_dir, out, cfg, resume=True, quiet=quiet, train_clips=mine, val_clips=val)
        paths.update({s: out / WEIGHTS for s in speakers if fold_of[s] == k})
    return paths


def _previous_table(out_path: Path) -> dict:
    prev = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else {}
    if prev and prev.get("format") != FORMAT:
        raise InputError(f"{out_path}: not an sdmtalk offsets table; remove it")
    return prev


def _measure_clips(cache_dir, reader: CacheReader, todo, model, rule: OffsetRule, cross_fit: int,
                   quiet: bool) -> dict:
    """{clip_id: entry} of the records `todo`, each measured by `model`, or (cross_fit K >= 2)
    a train clip by the fold's expert that never saw its speaker."""
    fold_paths = cross_fit_experts(cache_dir, cross_fit, quiet=quiet) \
        if cross_fit and any(r.split == "train" for r in todo) else {}
    fold_models: dict[Path, object] = {}
    clips = {}
    for rec in tqdm(todo, desc="offsets", unit="clip", disable=quiet):
        by, fold = model, None
        if rec.split == "train" and rec.speaker in fold_paths:
            fold = fold_paths[rec.speaker]
            if fold not in fold_models:
                fold_models[fold] = load_expert(fold)
            by = fold_models[fold]
        d = reader.load(rec)
        m = clip_offset(by, d["mel"], d["canonical"], d["valid"] > 0)
        clips[rec.clip_id] = {"split": rec.split, "offset": m["offset"],
                              "confidence": _json_num(m["confidence"]), "z": _json_num(m["z"]),
                              "windows": m["windows"], "applied": rule.applied(m["offset"], m["z"], m["windows"])}
        if fold is not None:
            clips[rec.clip_id]["expert"] = fold.parent.name
    return clips


def measure_offsets(cache_dir, weights=None, rule: OffsetRule | None = None, force: bool = False,
                    quiet: bool = False, cross_fit: int | None = None) -> dict:
    """Measure every clip of a prepared cache with the sync expert (shipped unless `weights`),
    decide the applied offsets by `rule` (None: the existing table's, else OffsetRule()),
    write CACHE/offsets.json atomically; returns the
    table ({"expert", "rule", "cross_fit", "summary", "clips": {clip_id: entry}}). With
    cross_fit K >= 2 the train clips are measured by experts trained without their speaker
    (`cross_fit_experts`; use it on a cache the expert was trained on); None = as the
    existing table was made (0 without one), so that a rerun of prepare keeps a cross-fitted
    table. Measurements of a previous table made by the same expert(s) are kept and only
    missing clips measured (force: measure all again); the rule is applied anew."""
    reader = CacheReader(cache_dir)
    path = Path(weights) if weights else BUNDLED_SYNC_WEIGHTS
    model = load_expert(weights)
    expert = {"weights": str(path), "sha1": file_sha1(path)}
    out_path = offsets_file(cache_dir)
    prev = _previous_table(out_path)
    if cross_fit is None:
        cross_fit = int(prev.get("cross_fit", 0))
    if rule is None:
        rule = OffsetRule(**prev["rule"]) if prev.get("rule") else OffsetRule()
    old = {}  # measurements are kept when made by the same experts; the rule is applied anew
    if prev and not force and prev.get("expert", {}).get("sha1") == expert["sha1"] \
            and prev.get("cross_fit", 0) == cross_fit:
        old = prev.get("clips", {})
    records = reader.clips()
    todo = [r for r in records if r.clip_id not in old]
    clips = {r.clip_id: dict(old[r.clip_id]) for r in records if r.clip_id in old}
    if not todo and len(clips) == len(old) and prev.get("rule") == asdict(rule):
        return prev
    for e in clips.values():
        e["applied"] = rule.applied(e["offset"], e["z"], e["windows"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clips.update(_measure_clips(cache_dir, reader, todo, model, rule, cross_fit, quiet))
    finally:
        torch.set_num_threads(threads)
    clips = dict(sorted(clips.items()))
    table = {"format": FORMAT, "version": VERSION, "expert": expert, "rule": asdict(rule),
             "cross_fit": cross_fit,
             "sign": "offset > 0: the mouth lags the audio; < 0: the mouth leads it",
             "summary": summarize(clips), "clips": clips}
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(table, indent=1), encoding="utf-8")
    os.replace(tmp, out_path)
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sdmtalk.train.offsets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="cache folder from `sdmtalk prepare`")
    ap.add_argument("--weights", default=None, help="sync expert weights (default: the shipped ones)")
    ap.add_argument("--min-z", type=float, default=None,
                    help=f"evidence needed to apply an offset (default {OffsetRule.min_z})")
    ap.add_argument("--min-abs", type=int, default=None,
                    help=f"smallest offset applied, frames (default {OffsetRule.min_abs})")
    ap.add_argument("--max-abs", type=int, default=None,
                    help=f"largest offset applied, frames (default {OffsetRule.max_abs})")
    ap.add_argument("--min-windows", type=int, default=None,
                    help=f"fewest window pairs behind an applied offset (default {OffsetRule.min_windows})")
    ap.add_argument("--cross-fit", type=int, default=None, metavar="K",
                    help="measure train clips with K experts trained without their speaker (for a cache "
                         "the expert was trained on; K x about 100 s of one core here); 0 = no; "
                         "default: as the existing table")
    ap.add_argument("--force", action="store_true", help="measure every clip again")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    def run() -> None:
        given = {k: getattr(args, k) for k in ("min_abs", "max_abs", "min_z", "min_windows")
                 if getattr(args, k) is not None}
        rule = None
        if given:  # on top of the existing table's rule, else the default one
            path = offsets_file(args.cache)
            base = json.loads(path.read_text(encoding="utf-8")).get("rule", {}) if path.is_file() else {}
            rule = OffsetRule(**{**asdict(OffsetRule()), **base, **given})
        table = measure_offsets(args.cache, args.weights, rule, args.force, args.quiet, args.cross_fit)
        if not args.quiet:
            cf = f", train clips cross-fitted over {table['cross_fit']} folds" if table["cross_fit"] else ""
            print(f"offsets: {offsets_file(args.cache)}{cf}")
            print("\n".join(summary_lines(table)))
    return exit_code_of(run)


if __name__ == "__main__":
    raise SystemExit(main())
