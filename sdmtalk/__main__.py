"""`python -m sdmtalk` and the `sdmtalk` command (pyproject's entry point is this main).

The libraries (torch, dlib, PyAV, ...) take seconds to load, longer on a busy machine; a Ctrl-C
or SIGTERM meanwhile ends at once with one line (nothing has started, nothing to remove)
instead of Python's traceback of whichever import it interrupted. Once loaded, cli.main
handles the signals itself."""

import os
import signal
import sys


def _stopped_while_loading(signum, frame):
    sys.stderr.write(f"sdmtalk: stopped by {signal.Signals(signum).name} while starting: nothing written\n")
    sys.stderr.flush()
    os._exit(128 + signum)


_LOADING = (signal.SIGINT, signal.SIGTERM)
_before = {sig: signal.signal(sig, _stopped_while_loading) for sig in _LOADING}
from sdmtalk.cli import main  # noqa: E402 - after the handlers: the slow imports are what they cover

for _sig, _handler in _before.items():
    signal.signal(_sig, _handler)

if __name__ == "__main__":
    raise SystemExit(main())
