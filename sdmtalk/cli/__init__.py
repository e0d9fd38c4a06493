"""Command line: argument parsing only; every command calls the library.

Each command's module loads only when that command runs (COMMANDS, by importlib): `sdmtalk
generate --help` answers in a tenth of a second instead of loading torch, OpenCV, dlib and
FastAPI first, and `generate` loads none of serve, evaluate, train or data.prepare. This
module itself imports no sdmtalk stage (docs/ARCHITECTURE.md, "Lazy commands")."""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import logging
import os
import re
import signal
import sys
import threading
from contextlib import contextmanager
from typing import NamedTuple, NoReturn

from sdmtalk import __version__
from sdmtalk.errors import InputError, Stopped, one_line


class Command(NamedTuple):
    """A subcommand: its help line, then "module:function" of what adds its arguments to a
    parser and of what runs it (imported when the command is given, not before)."""

    help: str
    arguments: str
    run: str


COMMANDS = {
    "generate": Command("photo + speech -> talking-face mp4",
                        "sdmtalk.cli.arguments:add_generate_arguments", "sdmtalk.cli.generate:run_generate"),
    "dub": Command("video + new speech -> the same video saying it (mouth and jaw re-rendered)",
                   "sdmtalk.cli.arguments:add_dub_arguments", "sdmtalk.cli.generate:run_dub"),
    "prepare": Command("videos -> training cache",
                       "sdmtalk.data.prepare:add_prepare_arguments", "sdmtalk.cli.prepare:run_prepare_command"),
    "train": Command("train the SDM motion model on a cache",
                     "sdmtalk.train.trainer:add_train_arguments", "sdmtalk.train.trainer:run_train"),
    "evaluate": Command("metrics of methods on real clips",
                        "sdmtalk.evaluate.runner:add_evaluate_arguments", "sdmtalk.evaluate.runner:run_evaluate"),
    "serve": Command("web page + HTTP API on one local server (pip install 'sdmtalk[serve]')",
                     "sdmtalk.serve.command:add_serve_arguments", "sdmtalk.serve.command:run_serve"),
}
_STOPS_AT_ONCE = ("generate", "dub")  # a stopped one exits without the interpreter's teardown


def load(spec: str):
    """"module:function" -> the function (importing its module now)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default (unless it is unset or already named)."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not unset and "default" not in text:
            text += " (default: %(default)s)"
        return text


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class OneLineParser(argparse.ArgumentParser):
    """Argument mistakes as one line (argparse's usage block is one `--help` away), exit 2;
    help shows every default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)
        # `--lip-scale -inf` (or -1e3, -nan) is a value, not an option: argparse's own pattern
        # takes only -1 and -.5 for numbers, and would answer "expected one argument".
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _CommandParser(OneLineParser):
    """A subcommand's parser that adds its arguments (loading their module) when that
    command is parsed or its help is shown, not when the top-level parser is built."""

    def __init__(self, *args, arguments: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._arguments = arguments

    def _add_arguments(self) -> None:
        spec, self._arguments = self._arguments, ""
        if spec:
            load(spec)(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_arguments()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self._add_arguments()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sdmtalk", description="Talking-face video from one photo and speech.")
    parser.add_argument("--version", action="version", version=f"sdmtalk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, arguments=command.arguments)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every user mistake ends as one line on stderr and exit code 2; a
    SIGTERM or Ctrl-C removes the unfinished output, says so, and exits 128 + signal."""
    # The interpreter's last garbage collections at exit walk every object torch made: about
    # a second after the work is done (or a Ctrl-C handled) for memory the OS frees anyway.
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
    with _stops_while_starting():  # the command's arguments, then its libraries, load here
        args = build_parser().parse_args(argv)
        run = load(COMMANDS[args.command].run)
    with _warnings_to_stderr(), _signals_raise_stopped():
        try:
            return int(run(args) or 0)
        except InputError as err:
            print(f"sdmtalk: error: {one_line(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            print(f"sdmtalk: stopped by {signal.Signals(signum).name}: unfinished output removed",
                  file=sys.stderr)
            if isinstance(stop, Stopped) and args.command in _STOPS_AT_ONCE:
                _exit_now(128 + signum)
            return 128 + signum


def _exit_now(code: int) -> NoReturn:
    """End a stopped `generate` at once: its output is removed and nothing else needs a
    clean-up, while the interpreter's teardown (torch's destructors, every module) takes
    over a second on a busy machine, longer beside the phoneme recogniser's abandoned
    threads, which finish their chunk (hama's engine cannot be interrupted)."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _stopped_while_starting(signum, frame) -> NoReturn:
    sys.stderr.write(f"sdmtalk: stopped by {signal.Signals(signum).name} while starting: nothing written\n")
    sys.stderr.flush()
    os._exit(128 + signum)


@contextmanager
def _stops_while_starting():
    """The libraries (torch, dlib, PyAV, ...) take seconds to load, longer on a busy machine:
    a Ctrl-C or SIGTERM meanwhile ends at once with one line (nothing has started, nothing
    to remove) instead of Python's traceback of whichever import it interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stopped_while_starting) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _signals_raise_stopped():
    """SIGTERM (timeout, docker stop, systemd) and SIGINT raise Stopped in the main thread,
    so the cleanup that runs for an error (temp files, worker threads) runs for them too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        for sig in (signal.SIGTERM, signal.SIGINT):  # cleanup runs once, undisturbed
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _warnings_to_stderr():
    """sdmtalk's logged warnings (e.g. a truncated audio file) as `sdmtalk: warning: ...`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sdmtalk: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    log = logging.getLogger("sdmtalk")
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
