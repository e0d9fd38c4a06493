"""Phoneme posteriors for a prepared cache: a side table the phoneme front-end trains on.

    python -m sdmtalk.data.phonemes --cache CACHE --data-root SRC [--workers N]

(`sdmtalk prepare` runs it at the end unless --no-phonemes; run it by hand after --merge.)

For every shard of the cache, `phonemes/<shard>.safetensors` holds `<clip_id>` -> (T, V)
float16 hama posteriors per video frame (sdmtalk.audio.phonemes), computed from the same
frame-aligned sound track `prepare` used. Resumable: finished shards are skipped; each
file is written to a temp name and renamed.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sdmtalk import FPS
from sdmtalk.audio.phonemes import phoneme_posteriors
from sdmtalk.data.cache import CacheReader
from sdmtalk.errors import InputError, exit_code_of
from sdmtalk.video import aligned_audio, video_start_time

PHONEME_DIR = "phonemes"


def phoneme_file(cache_dir, shard: str) -> Path:
    return Path(cache_dir) / PHONEME_DIR / f"{shard}.safetensors"


def clip_phonemes(path: Path, num_frames: int) -> np.ndarray:
    """A source video -> (num_frames, V) posteriors of its frame-aligned sound track."""
    wav = aligned_audio(path, video_start_time(path), num_frames, FPS)
    return phoneme_posteriors(wav, num_frames)


def add_phonemes(cache_dir, data_root, quiet: bool = False, part: tuple[int, int] = (0, 1)) -> int:
    """Compute the side table for every shard still missing it; returns shards written.
    part (i, n): only shards i, i + n, i + 2n, ... (several processes side by side)."""
    from safetensors.numpy import save_file

    reader = CacheReader(cache_dir)
    by_shard: dict[str, list] = {}
    for rec in reader.clips():
        by_shard.setdefault(rec.shard, []).append(rec)
    todo = [s for j, s in enumerate(sorted(by_shard))
            if j % part[1] == part[0] and not phoneme_file(cache_dir, s).is_file()]
    (Path(cache_dir) / PHONEME_DIR).mkdir(exist_ok=True)
    for shard in tqdm(todo, desc="phonemes", unit="shard", disable=quiet):
        arrays = {}
        for rec in by_shard[shard]:
            src = Path(data_root) / rec.source
            if not src.is_file():
                raise InputError(f"{src}: source clip of the cache not found: pass the folder "
                                 "the cache was prepared from as --data-root")
            arrays[rec.clip_id] = clip_phonemes(src, rec.frames).astype(np.float16)
        out = phoneme_file(cache_dir, shard)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        save_file(arrays, str(tmp))
        os.replace(tmp, out)
    return len(todo)


def _add_part(cache_dir, data_root, part: tuple[int, int]) -> int:
    import torch

    torch.set_num_threads(1)
    return add_phonemes(cache_dir, data_root, quiet=True, part=part)


def add_phonemes_parallel(cache_dir, data_root, workers: int = 1, quiet: bool = False) -> int:
    """add_phonemes over `workers` processes (each takes every workers-th shard)."""
    if workers <= 1:
        return add_phonemes(cache_dir, data_root, quiet)

    with ProcessPoolExecutor(workers) as pool:
        parts = [pool.submit(_add_part, cache_dir, data_root, (i, workers)) for i in range(workers)]
        return sum(f.result() for f in parts)


class PhonemeTable:
    """Read the side table: `get(record) -> (T, V) float32` or None where it is missing."""

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        self._handles: dict[str, object] = {}
        self._pid = os.getpid()

    @property
    def available(self) -> bool:
        return (self.cache_dir / PHONEME_DIR).is_dir()

    @classmethod
    def required(cls, cache_dir, why: str) -> PhonemeTable:
        """The table of a cache whose model reads phonemes; InputError naming the fix if absent."""
        table = cls(cache_dir)
        if not table.available:
            raise InputError(f"{cache_dir}: {why} but the cache has no phoneme table: run "
                             f"python -m sdmtalk.data.phonemes --cache {cache_dir} --data-root SRC")
        return table

    def get(self, record) -> np.ndarray | None:
        from safetensors import safe_open

        if self._pid != os.getpid():  # DataLoader worker: own file handles
            self._handles, self._pid = {}, os.getpid()
        path = phoneme_file(self.cache_dir, record.shard)
        if not path.is_file():
            return None
        if record.shard not in self._handles:
            self._handles[record.shard] = safe_open(str(path), framework="numpy")
        return self._handles[record.shard].get_tensor(record.clip_id).astype(np.float32)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True, help="cache folder from `sdmtalk prepare`")
    ap.add_argument("--data-root", required=True, help="the folder the cache was prepared from")
    ap.add_argument("--part", default="0/1", metavar="I/N", help="only shards i, i+n, ... (parallel runs)")
    ap.add_argument("--workers", type=int, default=1, help="processes (ignored with --part)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    i, _, n_parts = args.part.partition("/")
    import torch

    torch.set_num_threads(1)
    def run() -> None:
        n = add_phonemes(args.cache, args.data_root, args.quiet, (int(i), int(n_parts))) \
            if args.part != "0/1" else add_phonemes_parallel(args.cache, args.data_root, args.workers, args.quiet)
        if not args.quiet:
            print(f"phonemes: {n} shard(s) written to {Path(args.cache) / PHONEME_DIR}")
    return exit_code_of(run)


if __name__ == "__main__":
    raise SystemExit(main())
