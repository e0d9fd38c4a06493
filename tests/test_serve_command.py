"""`sdmtalk serve` as a command: argument mistakes as one line, the local-only default, and
a SIGTERM that stops it cleanly with its temp folder removed, --port 0 showing the port it got."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sdmtalk.cli import main
from sdmtalk.serve.config import ServeConfig


@pytest.mark.parametrize("host,local", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                        ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_only_loopback_counts_as_local(host, local):
    assert ServeConfig(host=host).is_local is local


@pytest.mark.parametrize("args,needle", [(["--workers", "0"], "--workers 0 is too small"),
                                         (["--max-upload-mb", "0"], "--max-upload-mb 0.0 must be above 0"),
                                         (["--max-video-seconds", "-1"], "--max-video-seconds -1.0 must be above 0"),
                                         (["--port", "70000"], "--port 70000 is not a port")])
def test_bad_settings_are_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir()), "the server's temp folder was left behind"


def test_a_port_in_use_is_one_line(capsys, tmp_path, monkeypatch):
    pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port), "--no-page", "--motion", "energy"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1 port {port}" in err and "--port" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir()), "the server's temp folder was left behind"


def test_port_0_shows_the_real_port_and_sigterm_stops_the_server_cleanly(tmp_path):
    pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")
    env = {**os.environ, "TMPDIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sdmtalk", "serve", "--port", "0", "--host", "0.0.0.0",
                             "--no-page", "--motion", "energy"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()  # printed once the port is bound
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/docs", banner).group(1))
        assert port > 0, banner
        for _ in range(600):  # the banner comes before the app starts: generous
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5).read()
                break
            except OSError:
                time.sleep(0.5)
        assert [p.name[:14] for p in tmp_path.iterdir()] == ["sdmtalk-serve-"]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert f"warning: serving on 0.0.0.0:{port}" in err and "pass --token" in err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir()), "the server's temp folder was left behind"


def test_readme_says_which_browser_tests_skip_without_chromium():
    root = Path(__file__).resolve().parents[1]
    browser = [root / "tests" / "test_serve_browser.py", root / "tests" / "test_serve_stream_browser.py"]
    count = sum(f.read_text().count("\ndef test_") for f in browser)
    readme = " ".join((root / "README.md").read_text().split())
    assert f"The {count} browser tests" in readme and "chromium chromium-driver" in readme
