"""`sdmtalk prepare`: the training cache, then its audio-video offsets. Loaded by sdmtalk.cli
only when this command runs."""

from __future__ import annotations

import argparse

from sdmtalk.data.offsets import summary_lines
from sdmtalk.data.prepare import run_prepare
from sdmtalk.train.offsets import measure_offsets


def run_prepare_command(args: argparse.Namespace) -> int:
    """`sdmtalk prepare`: the cache and its phoneme table, then the audio-video offsets table
    measured by the sync expert (unless --no-offsets; a --merge is measured by hand)."""
    code = run_prepare(args)
    if code == 0 and not args.merge and not args.no_offsets:
        table = measure_offsets(args.out, quiet=args.quiet)
        if not args.quiet:
            print("audio-video offsets (offsets.json): " + "; ".join(summary_lines(table)))
    return code
