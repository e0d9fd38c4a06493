"""`python -m sdmtalk` and the `sdmtalk` command (pyproject's entry point is this main).

sdmtalk.cli imports no library of any stage: each command's modules load inside cli.main,
where a Ctrl-C or SIGTERM while they load ends at once with one line (nothing has started,
nothing to remove) instead of Python's traceback of whichever import it interrupted."""

from sdmtalk.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
