"""`python -m sdmtalk.cli` (the same as `python -m sdmtalk`)."""

import sys

from sdmtalk.cli import main

if __name__ == "__main__":
    sys.exit(main())
