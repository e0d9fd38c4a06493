"""`sdmtalk prepare`: videos -> training cache (format: docs/CACHE_FORMAT.md).

Each clip goes through ``process_clip`` (sdmtalk/data/prepare_clip.py). The run
(``prepare_dataset``): clips in a stable order, every N-th for ``--shard I/N``, cut into
chunks of ``clips_per_shard``; each chunk becomes one committed shard, so a killed run
continues where it stopped and ends with the same cache. The phoneme side table follows
(`data/phonemes.py`); the command line then measures the audio-video offsets
(`sdmtalk.train.offsets`).
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import multiprocessing
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from sdmtalk import FPS, __version__
from sdmtalk.data.cache import (
    CACHE_VERSION,
    ClipRecord,
    ShardResult,
    finalize,
    part_name,
    read_commit,
    remove_temp_files,
    write_shard,
)
from sdmtalk.data.layouts import LAYOUTS, ClipSource, assign_splits, discover_clips, select_part
from sdmtalk.data.merge import merge_caches
from sdmtalk.data.phonemes import add_phonemes_parallel
from sdmtalk.data.prepare_clip import ClipOutcome, PrepareConfig, config_dict, process_clip
from sdmtalk.errors import InputError

# ---------------------------------------------------------------- the run


@dataclass
class PrepareSummary:
    """What a prepare run did. frames_per_cpu_s is the per-core throughput: decoded video
    frames per second of worker CPU time (decode + landmarks + features)."""

    out_dir: str
    layout: str
    part: str
    clips: int = 0  # clips of this part
    kept: int = 0
    skipped: int = 0
    skipped_by_reason: dict = field(default_factory=dict)
    frames: int = 0  # frames in kept clips (25 fps)
    frames_decoded: int = 0  # frames decoded by this run (kept or not)
    shards_written: int = 0
    shards_resumed: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    workers: int = 1
    frames_per_s: float = 0.0
    frames_per_cpu_s: float = 0.0
    jitter_raw: float | None = None  # median over clips of this run
    jitter_smooth: float | None = None
    complete: bool = False
    splits: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_by_reason.items())) or "none"
        jit = ("" if self.jitter_raw is None else
               f"; landmark jitter {self.jitter_raw:.4f} -> {self.jitter_smooth:.4f} (smoothed)")
        return [
            f"prepared {self.kept} clips ({self.frames} frames at {FPS} fps) into {self.out_dir} "
            f"[{self.layout}, part {self.part}, {self.shards_written} shards written, "
            f"{self.shards_resumed} already done]",
            f"skipped {self.skipped}: {reasons}",
            f"{self.frames_decoded} frames in {self.wall_s:.1f} s with {self.workers} worker(s): "
            f"{self.frames_per_s:.1f} frames/s, {self.frames_per_cpu_s:.1f} frames/s per core{jit}",
            f"splits: {self.splits}" + ("" if self.complete else " (cache not complete yet)"),
        ]


def _settings(cfg: PrepareConfig, layout: str, val_frac: float, test_frac: float,
              clips_per_shard: int) -> tuple[dict, str]:
    settings = dict(config_dict(cfg), layout=layout, val_frac=val_frac, test_frac=test_frac,
                    clips_per_shard=clips_per_shard, sdmtalk=__version__, cache_version=CACHE_VERSION)
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return settings, key


# The code whose output lands in the cache: a resume redoes shards another version made.
_CODE_FILES = ("video.py", "audio/loading.py", "audio/features.py", "face/align.py", "face/detect.py",
               "face/template.py", "face/track.py", "motion/types.py", "data/prepare_clip.py",
               "data/prepare.py", "data/cache.py", "data/layouts.py")


def code_fingerprint() -> str:
    """sha1 over the code of the stages above (syntax tree without docstrings, so comment,
    docstring and layout edits do not count) and the versions of the native libraries."""
    import dlib
    import silero_vad

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1(f"{av.__version__} {dlib.__version__} {np.__version__}".encode())
    h.update(str(getattr(silero_vad, "__version__", "")).encode())
    for name in _CODE_FILES:
        h.update(name.encode() + b"\0" + _code_only((root / name).read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:16]


def _code_only(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _check_existing(out_dir: Path, key: str) -> None:
    path = out_dir / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("settings_key") not in (None, key):
            raise InputError(f"{out_dir} holds a cache prepared with other settings or another "
                             "sdmtalk version: use a new --out folder or delete it")


def prepare_dataset(
    src_dir,
    out_dir,
    layout: str = "auto",
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    manifest=None,
    quiet: bool = False,
    min_face: float = PrepareConfig.min_face,
    min_seconds: float = PrepareConfig.min_seconds,
    min_speech: float = PrepareConfig.min_speech,
    vad: str = PrepareConfig.vad,
    smooth_window: int = PrepareConfig.smooth_window,
    clips_per_shard: int = 100,
    val_frac: float = 0.05,
    test_frac: float = 0.05,
    limit: int | None = None,
    config: PrepareConfig | None = None,
) -> PrepareSummary:
    """Videos under ``src_dir`` -> cache in ``out_dir`` (format: docs/CACHE_FORMAT.md).

    Resumable: shards already committed (same settings, same clips) are kept, the rest are
    made again, so a killed run re-run with the same arguments ends with the same cache.
    ``shard=(I, N)`` prepares every N-th clip starting at I (join parts with merge_caches).
    ``limit`` keeps the first clips of the (sorted) list: for trials. ``config`` overrides
    the individual filter arguments.
    """
    t0 = time.perf_counter()
    cfg = config or PrepareConfig(min_face=min_face, min_seconds=min_seconds, min_speech=min_speech,
                                  vad=vad, smooth_window=smooth_window)
    if workers < 1 or clips_per_shard < 1:
        raise InputError("--workers and --clips-per-shard must be at least 1")
    layout_used, clips = discover_clips(src_dir, layout, manifest)
    clips, split_info = assign_splits(clips, val_frac, test_frac)
    if limit is not None:
        clips = clips[:limit]
    part = part_name(*shard)
    mine = select_part(clips, *shard)
    settings, key = _settings(cfg, layout_used, val_frac, test_frac, clips_per_shard)
    code = code_fingerprint()  # once, before workers start: the code they will run
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_existing(out_dir, key)
    remove_temp_files(out_dir)
    chunks = [mine[i:i + clips_per_shard] for i in range(0, len(mine), clips_per_shard)]
    todo = [k for k, chunk in enumerate(chunks) if not _is_done(out_dir, part, k, chunk, key, code)]
    summary = PrepareSummary(str(out_dir), layout_used, part, clips=len(mine), workers=workers,
                             shards_resumed=len(chunks) - len(todo))
    with _SigtermAsInterrupt():
        _run_chunks(out_dir, part, len(chunks), {k: chunks[k] for k in todo}, cfg, (key, code),
                    workers, quiet, summary)
    parts = {part: len(chunks)}
    manifest_out = finalize(out_dir, settings, key, parts,
                            extra={"layout": layout_used, "split_conflicts": split_info["conflicting_speakers"]})
    _fill_summary(summary, manifest_out, part, time.perf_counter() - t0)
    _log_run(out_dir, summary)
    return summary


def _is_done(out_dir: Path, part: str, k: int, chunk: list[ClipSource], key: str, code: str) -> bool:
    commit = read_commit(out_dir, f"{part}-{k:05d}", verify=True)
    return (commit is not None and commit["settings_key"] == key
            and commit.get("code_key") == code
            and commit["sources"] == [c.clip_id for c in chunk])


def _run_chunks(out_dir, part, n_chunks, todo: dict[int, list[ClipSource]], cfg, keys, workers,
                quiet, summary: PrepareSummary) -> None:
    """Process the clips of the unfinished chunks (in order) and commit each chunk's shard."""
    order = [(k, c) for k in sorted(todo) for c in todo[k]]
    bar = tqdm(total=len(order), desc="prepare", unit="clip",
               disable=quiet or not sys.stderr.isatty())
    jitters: list[tuple[float, float]] = []
    start = time.perf_counter()
    pending: list[ClipOutcome] = []
    with _Outcomes(order, cfg, workers) as results:
        for n_done, ((k, _), outcome) in enumerate(zip(order, results, strict=True), 1):
            pending.append(outcome)
            _count(summary, outcome, jitters)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(1)
            bar.set_postfix_str(f"{n_done / elapsed:.2f} clips/s, {summary.frames_decoded / elapsed:.1f} frames/s")
            if len(pending) == len(todo[k]):
                _commit(out_dir, part, k, n_chunks, todo[k], pending, keys)
                summary.shards_written += 1
                pending = []
                if not quiet and bar.disable:
                    print(f"shard {part}-{k:05d} done: {n_done}/{len(order)} clips, "
                          f"{n_done / elapsed:.2f} clips/s, {summary.frames_decoded / elapsed:.1f} frames/s",
                          file=sys.stderr, flush=True)
    bar.close()
    if jitters:
        summary.jitter_raw = round(float(np.median([j[0] for j in jitters])), 5)
        summary.jitter_smooth = round(float(np.median([j[1] for j in jitters])), 5)


def _count(summary: PrepareSummary, outcome: ClipOutcome, jitters: list) -> None:
    summary.frames_decoded += outcome.frames_decoded
    summary.cpu_s += outcome.cpu_s
    raw, smooth = outcome.stats.get("jitter_raw"), outcome.stats.get("jitter_smooth")
    if raw is not None and smooth is not None:
        jitters.append((raw, smooth))


def _commit(out_dir, part, k, n_chunks, chunk, outcomes: list[ClipOutcome], keys) -> None:
    shard = ShardResult(part=part, number=k, sources=[c.clip_id for c in chunk])
    for o in outcomes:
        if o.skip is not None:
            shard.skipped.append(o.skip)
        else:
            shard.records.append(ClipRecord.from_json(dict(o.record, shard=shard.name)))
            shard.arrays[o.clip.clip_id] = o.arrays
    write_shard(out_dir, shard, keys[0], chunks=n_chunks, code_key=keys[1])


class _Outcomes:
    """Context manager yielding ClipOutcomes in input order, in-process or from a pool."""

    def __init__(self, order, cfg, workers):
        self.clips = [c for _, c in order]
        self.cfg, self.workers, self.pool = cfg, workers, None

    def __enter__(self):
        if self.workers == 1 or len(self.clips) <= 1:
            _init_worker()
            return (process_clip(c, self.cfg) for c in self.clips)
        ctx = multiprocessing.get_context("spawn")  # no fork after torch/dlib threads exist
        self.pool = ctx.Pool(self.workers, initializer=_init_worker)
        return self.pool.imap(functools.partial(process_clip, cfg=self.cfg), self.clips, chunksize=1)

    def __exit__(self, exc_type, *exc):
        if self.pool is not None:
            if exc_type is None:
                self.pool.close()  # all results are in: let the workers exit cleanly
            else:
                self.pool.terminate()  # Ctrl-C or an error: unfinished shards stay uncommitted
            self.pool.join()
        return False


class _SigtermAsInterrupt:
    """`kill PID` stops a run like Ctrl-C: the pool is terminated, no worker is orphaned."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _init_worker() -> None:
    """One thread per worker: N workers use N cores, and numbers stay reproducible."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _fill_summary(summary: PrepareSummary, manifest: dict, part: str, wall: float) -> None:
    summary.wall_s = round(wall, 2)
    summary.cpu_s = round(summary.cpu_s, 2)
    summary.frames_per_s = round(summary.frames_decoded / max(wall, 1e-9), 2)
    summary.frames_per_cpu_s = round(summary.frames_decoded / max(summary.cpu_s, 1e-9), 2)
    counts = manifest["counts"]
    summary.kept, summary.frames = counts["clips"], counts["frames"]
    summary.skipped, summary.skipped_by_reason = counts["skipped"], counts["skipped_by_reason"]
    summary.splits = counts["by_split"]
    summary.complete = manifest["complete"]


def _log_run(out_dir: Path, summary: PrepareSummary) -> None:
    """Run statistics go to runs.jsonl, not the manifest: the cache itself stays identical."""
    entry = dict(asdict(summary), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    with open(out_dir / "runs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


# ---------------------------------------------------------------- command line


def _shard_arg(value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard wants I/N (e.g. 0/4), got {value!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {value}: need 0 <= I < N")
    return i, n


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `sdmtalk prepare` (the CLI registers them as a subcommand)."""
    p.add_argument("src", nargs="?", help="folder of videos (VoxCeleb2, LRS3, LRW or any folder)")
    p.add_argument("--out", help="cache folder to write (resumable: rerun the same command)")
    p.add_argument("--layout", choices=list(LAYOUTS), default="auto", help="dataset layout (default: detect)")
    p.add_argument("--manifest", help="TSV/CSV with columns path, speaker[, split] (overrides the layout)")
    p.add_argument("--workers", type=int, default=1, help="processes on this machine")
    p.add_argument("--shard", type=_shard_arg, default=(0, 1), metavar="I/N",
                   help="prepare part I of N (one per machine); join with --merge")
    p.add_argument("--merge", nargs="+", metavar="CACHE_DIR",
                   help="join prepared caches into --out instead of preparing")
    f = p.add_argument_group("quality filters")
    f.add_argument("--min-face", type=float, default=PrepareConfig.min_face, help="min face box side, px")
    f.add_argument("--min-seconds", type=float, default=PrepareConfig.min_seconds, help="min clip length")
    f.add_argument("--min-speech", type=float, default=PrepareConfig.min_speech,
                   help="min fraction of the clip with speech")
    f.add_argument("--vad", choices=["silero", "energy"], default=PrepareConfig.vad, help="voice activity detector")
    f.add_argument("--smooth-window", type=int, default=PrepareConfig.smooth_window,
                   help="landmark smoothing window in frames (odd; 1 = none)")
    p.add_argument("--clips-per-shard", type=int, default=100, help="clips per shard file")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (a trial run)")
    p.add_argument("--no-phonemes", action="store_true",
                   help="skip the phoneme-posterior side table (the shipped SDM trains on it)")
    p.add_argument("--no-offsets", action="store_true",
                   help="skip the audio-video offset table (offsets.json: the sync expert's per-clip "
                        "offsets, corrected in training where confident)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def run_prepare(args: argparse.Namespace) -> int:
    if not args.out:
        raise InputError("prepare needs --out CACHE_DIR")
    if args.merge:
        manifest = merge_caches(args.out, args.merge)
        if not args.quiet:
            c = manifest["counts"]
            print(f"merged {len(args.merge)} caches into {args.out}: {c['clips']} clips, "
                  f"{c['frames']} frames, splits {c['by_split']}"
                  + ("" if manifest["complete"] else " (some parts are not complete)"))
        return 0
    if not args.src:
        raise InputError("prepare needs a source folder: sdmtalk prepare SRC_DIR --out CACHE_DIR")
    summary = prepare_dataset(
        args.src, args.out, layout=args.layout, workers=args.workers, shard=args.shard,
        manifest=args.manifest, quiet=args.quiet, min_face=args.min_face,
        min_seconds=args.min_seconds, min_speech=args.min_speech, vad=args.vad,
        smooth_window=args.smooth_window, clips_per_shard=args.clips_per_shard, limit=args.limit,
    )
    if not args.quiet:
        print("\n".join(summary.lines()))
    if not args.no_phonemes:
        written = add_phonemes_parallel(args.out, args.src, args.workers, args.quiet)
        if not args.quiet:
            print(f"phoneme posteriors: {written} shard(s) added")
    return 0
