"""Lazy commands (docs/ARCHITECTURE.md): `sdmtalk` loads a command's modules only when that
command is given, so `--help` answers without torch, OpenCV or FastAPI."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sdmtalk.cli import COMMANDS, build_parser, load

HEAVY = ("torch", "cv2", "dlib", "av", "numpy", "scipy", "fastapi", "gradio", "librosa")


def _modules_after(code: str) -> set[str]:
    run = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; sys.stderr.write(' '.join(sys.modules))"],
                         capture_output=True, text=True, timeout=120)
    return set(run.stderr.split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_names_functions_that_load(name):
    assert callable(load(COMMANDS[name].arguments)) and callable(load(COMMANDS[name].run))


def test_the_top_level_help_lists_every_command():
    text = build_parser().format_help()
    assert all(f"    {name} " in text for name in COMMANDS), text


@pytest.mark.parametrize("command", ["generate", "dub"])
def test_help_of_generate_and_dub_loads_no_library(command):
    loaded = _modules_after(f"from sdmtalk.cli import main\ntry:\n    main(['{command}', '--help'])\n"
                            "except SystemExit:\n    pass")
    assert "sdmtalk.cli.arguments" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert {m for m in loaded if m.startswith("sdmtalk")} <= {
        "sdmtalk", "sdmtalk.cli", "sdmtalk.cli.arguments", "sdmtalk.errors", "sdmtalk.limits"}


def test_generate_loads_no_other_command():
    loaded = _modules_after("from sdmtalk.cli import COMMANDS, load\nload(COMMANDS['generate'].run)")
    assert "sdmtalk.pipeline" in loaded
    assert not {m for m in loaded if m.split(".")[:2] in (["sdmtalk", "serve"], ["sdmtalk", "evaluate"],
                                                         ["sdmtalk", "train"], ["sdmtalk", "data"])}
    assert not {m for m in loaded if m.split(".")[0] in ("fastapi", "gradio", "librosa", "matplotlib")}


def test_a_mistyped_option_is_one_line():
    run = subprocess.run([sys.executable, "-m", "sdmtalk", "generate", "--sede", "3"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--sede" in run.stderr
