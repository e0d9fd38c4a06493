"""The `sdmtalk serve` subcommand: arguments and run (without the serve extra, only `run` fails)."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from sdmtalk.errors import InputError
from sdmtalk.pipeline import MOTIONS, check_weights
from sdmtalk.serve.config import ServeConfig

try:  # the serve extra (fastapi, uvicorn, gradio): `sdmtalk --help` and the other commands work without it
    from sdmtalk.serve.app import create_app
except ModuleNotFoundError as err:
    if (err.name or "sdmtalk").split(".")[0] == "sdmtalk":
        raise
    create_app, _MISSING_WEB_PACKAGE = None, err.name
else:
    _MISSING_WEB_PACKAGE = None

D = ServeConfig()


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=D.host, help="address to listen on; anything but 127.0.0.1/localhost "
                   "lets other machines in (use --token then)")
    p.add_argument("--port", type=int, default=D.port, help="port to listen on")
    p.add_argument("--token", help="require this token on every request (or set SDMTALK_TOKEN)")
    p.add_argument("--workers", type=int, default=D.workers, help="jobs generated at once (1 per 2 cores)")
    p.add_argument("--queue", type=int, default=D.queue, help="jobs waiting beyond those; more get 429")
    p.add_argument("--max-upload-mb", type=float, default=D.max_upload_mb, help="largest photo, video or audio file (413)")
    p.add_argument("--max-megapixels", type=float, default=D.max_megapixels, help="largest photo (413)")
    p.add_argument("--max-audio-seconds", type=float, default=D.max_audio_seconds, help="longest speech (413)")
    p.add_argument("--max-video-seconds", type=float, default=D.max_video_seconds, help="longest video to dub (413)")
    p.add_argument("--max-samples", type=int, default=D.max_samples, help="most videos per job (422)")
    p.add_argument("--max-streams", type=int, default=D.max_streams,
                   help="live streams at once (page /stream; each takes about one core; 429 beyond)")
    p.add_argument("--result-ttl", type=float, default=D.result_ttl_s,
                   help="seconds a finished job's videos are kept (then 404)")
    p.add_argument("--motion", choices=list(MOTIONS), default=D.motion, help="default motion of a job")
    p.add_argument("--weights", help="SDM weights (default: bundled)")
    p.add_argument("--threads", type=int, default=None, help="render+encode threads per job (default: cores / workers)")
    p.add_argument("--no-page", action="store_true", help="API only, no web page")


def config_from(args: argparse.Namespace, work_dir: Path | None = None) -> ServeConfig:
    for name in ("workers", "queue", "max_samples", "max_streams"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)} is too small: use 1 or more")
    for name in ("max_upload_mb", "max_megapixels", "max_audio_seconds", "max_video_seconds", "result_ttl"):
        if not getattr(args, name) > 0:
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)} must be above 0")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a port: use 1 to 65535 (0: any free port)")
    return ServeConfig(
        host=args.host, port=args.port, token=args.token or os.environ.get("SDMTALK_TOKEN") or None,
        workers=args.workers, queue=args.queue, max_upload_mb=args.max_upload_mb,
        max_megapixels=args.max_megapixels, max_audio_seconds=args.max_audio_seconds,
        max_video_seconds=args.max_video_seconds,
        max_samples=args.max_samples, max_streams=args.max_streams, result_ttl_s=args.result_ttl,
        motion=args.motion, weights=args.weights, threads=args.threads, work_dir=work_dir)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; every upload and result lives in one temp folder,
    removed on the way out."""
    work_dir = Path(tempfile.mkdtemp(prefix="sdmtalk-serve-"))
    try:
        config = config_from(args, work_dir)
        if config.motion == "sdm":
            check_weights(config.weights)
        _serve(config, page=not args.no_page)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def _serve(config: ServeConfig, page: bool) -> None:
    os.environ["GRADIO_TEMP_DIR"] = str(config.work_dir / "gradio")  # Gradio's copies go too
    try:
        import uvicorn  # the serve extra
    except ImportError as err:
        _missing_web_package(err.name)
    if create_app is None:
        _missing_web_package(_MISSING_WEB_PACKAGE)
    sock = _listen(config.host, config.port)  # bound first: the lines below show the real port
    port = sock.getsockname()[1]
    if not config.is_local:
        who = "requests need --token" if config.token else "anyone who reaches it can use it: pass --token"
        print(f"sdmtalk: warning: serving on {config.host}:{port} to other machines; {who}",
              file=sys.stderr)
    app = create_app(config, page=page)
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    shown = f"[{shown}]" if ":" in shown else shown
    where = f"page http://{shown}:{port}/  " if page else ""
    print(f"sdmtalk serve: {where}API http://{shown}:{port}/docs  "
          f"({config.workers} worker(s), queue {config.queue}; Ctrl-C stops)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
    if not server.started:  # uvicorn has logged why
        raise InputError("the server did not start: see the message above")


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, as uvicorn binds it (port 0: any free port)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InputError(f"cannot listen on {host} port {port} ({err.strerror or err}): choose "
                         "another --port (0: any free port) or --host") from None
    sock.set_inheritable(True)
    return sock


def _missing_web_package(name: str | None) -> NoReturn:
    raise InputError(f"sdmtalk serve needs its web packages ({name} is missing): "
                     "pip install 'sdmtalk[serve]'") from None
