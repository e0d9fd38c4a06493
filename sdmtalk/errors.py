"""Errors a user can fix. The CLI prints their message as one line and exits non-zero."""

import sys


class InputError(Exception):
    """Bad user input: the message names the file and says what to do."""


class NoFaceError(InputError):
    """No usable face in a photo or a video frame."""


class AudioError(InputError):
    """Audio that cannot be decoded, is empty, or holds no speech."""


class Stopped(KeyboardInterrupt):
    """The run was stopped by a signal (SIGTERM, SIGINT); `signum` says which. A subclass of
    KeyboardInterrupt, so every cleanup that handles Ctrl-C handles it too."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Cancelled(KeyboardInterrupt):
    """Work given up because its caller set a stop event (a stop asked for from another
    thread). A KeyboardInterrupt, like Stopped: `except Exception` does not swallow it."""


def one_line(err: BaseException) -> str:
    """An error's message on one line (the first line of a multi-line library message)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def exit_code_of(command, *args, **kwargs) -> int:
    """Run a command-line entry point's work: 0 when it returns, 2 with one line on stderr
    when it raises InputError (the module entry points outside `sdmtalk` use this)."""
    try:
        command(*args, **kwargs)
    except InputError as err:
        print(f"sdmtalk: error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0
