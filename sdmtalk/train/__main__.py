"""``python -m sdmtalk.train`` (and ``torchrun --nproc_per_node N -m sdmtalk.train``)."""

import argparse
import sys

from sdmtalk.errors import InputError
from sdmtalk.train.trainer import add_train_arguments, run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdmtalk.train",
                                     description="Train the SDM motion model on a cache.")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_train(args)
    except InputError as err:
        print(f"sdmtalk train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
