"""create_app(config): the API, its OpenAPI page (/docs) and the web page (/) in one app."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from sdmtalk import __version__
from sdmtalk.serve.api import api_router, install_error_handlers
from sdmtalk.serve.config import ServeConfig
from sdmtalk.serve.guard import BodyLimit, TokenGuard
from sdmtalk.serve.jobs import JobManager
from sdmtalk.serve.streams import StreamManager, stream_router
from sdmtalk.serve.web import mount_page

DESCRIPTION = """One face photo + speech -> a talking-face mp4.

POST /api/jobs (multipart: photo, audio or text, controls) -> 202 with the job id; poll
GET /api/jobs/{id}; download GET /api/jobs/{id}/video. Dub a video: POST /api/dub (multipart:
video, audio or text, seed, lip_scale, face_index, keep_video_length) -> the same job. Live: POST /api/streams (photo +
controls) -> WebSocket /api/streams/{id}/ws (PCM in, JPEG frames out; page /stream).
Errors: {"error": "<one line>"}."""


def create_app(config: ServeConfig | None = None, page: bool = True) -> FastAPI:
    """The whole server. Workers start with the app (lifespan) and stop with it, removing
    every upload and result. page=False leaves out the Gradio page (API only)."""
    config = config or ServeConfig()
    manager = JobManager(config)
    streams = StreamManager(config, manager.work_dir)

    @asynccontextmanager
    async def lifespan(app):
        manager.start()
        try:
            yield
        finally:
            manager.close()

    app = FastAPI(title="sdmtalk", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.manager = manager
    install_error_handlers(app)
    app.include_router(api_router(manager))
    app.include_router(stream_router(streams))
    if page:
        app = mount_page(app, manager)
    app.add_middleware(BodyLimit, limit=config.max_request_bytes)
    app.add_middleware(TokenGuard, token=config.token)  # outermost: no token, no work at all
    return app
