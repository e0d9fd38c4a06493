"""Live streams of `sdmtalk serve`: POST /api/streams (photo + controls, the job
checks) -> a stream id; WebSocket /api/streams/{id}/ws: 16 kHz float32 PCM in, frames out.

Protocol. Server -> client: a JSON text {"event": "ready", "fps", "sample_rate", "width",
"height"} once the face is found; then one binary message per frame: 4 bytes little-endian
frame index i (its audio is samples [640 i, 640 (i + 1)), shown at i / 25 s) + JPEG, in
increasing i (a dropped frame's index is absent); at the end {"event": "end", "frames",
"dropped", "dropped_render", "dropped_client", "latency_p50", "latency_p95", "latency_max"}:
frames sent, frames dropped (frames + dropped = the frames of the speech) by the stream
(rendering fell behind its latency budget, StreamConfig.max_latency_s) and by this client's
buffer (it read too slowly), and the latency of the frames sent in seconds (the server got
the frame's first audio sample -> the frame went to the socket; null without frames); an
error is {"error": "<the CLI's line>"} and a close. Client -> server: binary float32 little-endian mono 16 kHz samples, any length
(40 ms = 640 samples is typical); the text {"event": "end"} after the last.

A client that sends nothing for IDLE_TIMEOUT_S is closed with an error (its slot is freed).
A client that reads slowly never holds the stream back: frames wait in a short per-client
buffer, and a frame is dropped (and counted) when the buffer is full (the oldest) or when it
is past the latency budget and has waited half of it behind a newer one; one that disconnects ends its stream at once. Either way the server's threads go on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import cv2
import numpy as np
from fastapi import APIRouter, File, Form, UploadFile, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.websockets import WebSocketDisconnect

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.errors import InputError, one_line
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline, validate_stream_request
from sdmtalk.serve.api import ApiError
from sdmtalk.serve.config import ServeConfig
from sdmtalk.serve.intake import (
    LimitError,
    Params,
    check_pixels,
    check_settings,
    display_name,
    parse_diffusion_steps,
    save_upload,
    stored_path,
)
from sdmtalk.stream import StreamConfig
from sdmtalk.stream.pacing import LatencyLog, behind

_LOG = logging.getLogger(__name__)
SEND_BUFFER_FRAMES = 25  # frames waiting for a slow client before the oldest is dropped (1 s)
PENDING_TTL_S = 120.0  # a stream not connected within this is forgotten
IDLE_TIMEOUT_S = 30.0  # a live stream that sends no audio for this long is closed (frees its slot)
JPEG_QUALITY = 85


class StreamsBusy(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the server is busy with {limit} live stream(s): try again in 5 s "
                         "(sdmtalk serve --max-streams)")


@dataclass
class StreamRequest:
    """A checked stream request, waiting for its WebSocket."""

    id: str
    folder: Path
    photo: Path
    controls: MotionControls
    face_index: int | None
    size: int
    crop: str
    blink: bool
    created: float = field(default_factory=time.monotonic)
    names: dict = field(default_factory=dict)


class StreamManager:
    """Stream requests and the pipelines that serve them (one per size/crop/blink, its model
    shared read-only by the streams); at most config.max_streams live at once."""

    def __init__(self, config: ServeConfig, work_dir: Path):
        self.config, self.work_dir = config, work_dir
        self._pending: dict[str, StreamRequest] = {}
        self._live = 0
        self._lock = threading.Lock()
        self._pipelines: dict = {}

    def new_folder(self) -> tuple[str, Path]:
        sid = uuid.uuid4().hex
        folder = self.work_dir / f"stream-{sid}"
        folder.mkdir(parents=True)
        return sid, folder

    def add(self, request: StreamRequest) -> None:
        self._expire()
        with self._lock:
            if self._live >= self.config.max_streams:
                raise StreamsBusy(self.config.max_streams)
            self._pending[request.id] = request

    def claim(self, sid: str) -> StreamRequest | None:
        """The pending request `sid`, taking a live slot (StreamsBusy when none is free)."""
        self._expire()
        with self._lock:
            if sid not in self._pending:
                return None
            if self._live >= self.config.max_streams:
                raise StreamsBusy(self.config.max_streams)
            self._live += 1
            return self._pending.pop(sid)

    def release(self, request: StreamRequest) -> None:
        with self._lock:
            self._live -= 1
        shutil.rmtree(request.folder, ignore_errors=True)

    def pipeline(self, request: StreamRequest):
        key = (request.size, request.crop, request.blink)
        with self._lock:
            if key not in self._pipelines:
                self._pipelines[key] = TalkingFacePipeline(
                    motion="sdm", weights=self.config.weights, size=request.size, crop=request.crop,
                    blink=request.blink, quiet=True, threads=1)
            return self._pipelines[key]

    @property
    def live(self) -> int:
        return self._live

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [r for r in self._pending.values() if now - r.created > PENDING_TTL_S]
            for r in old:
                del self._pending[r.id]
        for r in old:
            shutil.rmtree(r.folder, ignore_errors=True)


class FrameOutbox:
    """Frames (index, message) from the stream thread to one client's sender: a short buffer
    (a slow reader loses frames, never stalls the stream). It drops its oldest frame when
    full, and once the oldest waiting frame is past the latency budget (its audio was pushed
    longer ago: pace) while newer ones wait, all but the newest. `latency`: of the frames sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = SEND_BUFFER_FRAMES,
                 now: Callable[[], float] = time.perf_counter):
        self._frames: deque = deque()
        self._size, self._loop = size, loop
        self._wake = asyncio.Event()
        self._closed = False
        self.dropped = self.frames_sent = 0
        self._lock = threading.Lock()
        self.latency = LatencyLog()
        self._pushed_at, self._budget_s, self._now = None, None, now

    def pace(self, pushed_at: Callable[[int], float], budget_s: float | None) -> None:
        """Measure lateness with pushed_at(index) (FaceStream.pushed_at) against budget_s
        (the rule of sdmtalk/stream/pacing.py)."""
        self._pushed_at, self._budget_s = pushed_at, budget_s

    def put(self, item: tuple[int, bytes]) -> None:
        """(index, message), from any thread."""
        with self._lock:
            if len(self._frames) >= self._size:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append((*item, self._now()))
        self._loop.call_soon_threadsafe(self._wake.set)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._loop.call_soon_threadsafe(self._wake.set)

    async def get(self) -> tuple[int, bytes] | None:
        """The next (index, message) to send (None after close, once the frames are out)."""
        while True:
            with self._lock:
                if self._frames:
                    return self._take()
                if self._closed:
                    return None
                self._wake.clear()
            await self._wake.wait()

    def sent(self, index: int) -> None:
        """Frame `index` went to the socket now."""
        self.frames_sent += 1
        if self._pushed_at is not None:
            self.latency.add(self._now() - self._pushed_at(index))

    def _take(self) -> tuple[int, bytes]:
        frames, now = self._frames, self._now()
        first, _, put_at = frames[0]
        if len(frames) > 1 and self._pushed_at is not None and \
                behind(now - self._pushed_at(first), now - put_at, self._budget_s):
            self.dropped += len(frames) - 1
            item = frames.pop()
            frames.clear()
        else:
            item = frames.popleft()
        return item[:2]


def jpeg_message(frame: np.ndarray, index: int) -> bytes:
    """4-byte little-endian frame index + the frame as JPEG."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return struct.pack("<I", index) + data.tobytes()


def stream_request(manager: StreamManager, config: ServeConfig, fill) -> StreamRequest:
    """A new request filled by fill(sid, folder) -> StreamRequest; its folder goes on refusal."""
    sid, folder = manager.new_folder()
    try:
        request = fill(sid, folder)
        manager.add(request)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return request


def build_stream_request(sid: str, folder: Path, config: ServeConfig, photo: Path | None, params,
                         names: dict) -> StreamRequest:
    """The job checks that apply to a stream: controls, size/crop, the photo (InputError, 422)."""
    controls = MotionControls(seed=params.seed, pose_scale=params.pose_scale, lip_scale=params.lip_scale,
                              rhythm_scale=params.rhythm_scale, still=params.still,
                              diffusion_steps=parse_diffusion_steps(params.diffusion_steps))
    check_settings("sdm", params.size, params.crop)
    if photo is None:
        raise InputError("no photo: upload a face photo (jpg, png, ...)")
    validate_stream_request(photo, controls, params.face_index)
    check_pixels(photo, names.get(photo, "photo"), config)
    return StreamRequest(sid, folder, photo, controls, params.face_index, params.size, params.crop,
                         params.blink, names=names)


async def serve_stream(ws, manager: StreamManager, sid: str) -> None:
    """One WebSocket: open the FaceStream, pump audio in and frames out until either side ends."""
    await ws.accept()
    try:
        request = manager.claim(sid)
    except StreamsBusy as err:
        await _refuse(ws, str(err), 1013)
        return
    if request is None:
        await _refuse(ws, f"no stream {sid[:40]}: create one with POST /api/streams first", 1008)
        return
    loop = asyncio.get_running_loop()
    outbox = FrameOutbox(loop)
    stream = sender = None
    try:
        stream = await loop.run_in_executor(None, _open, manager, request, outbox)
        outbox.pace(stream.pushed_at, stream.config.max_latency_s)
        width, height = stream.renderer.source_crop.shape[1], stream.renderer.source_crop.shape[0]
        await ws.send_text(json.dumps({"event": "ready", "fps": FPS, "sample_rate": SAMPLE_RATE,
                                       "width": width, "height": height}))
        sender = asyncio.create_task(_send_frames(ws, outbox))
        await _receive_audio(ws, stream, manager.config.max_audio_seconds)
        await loop.run_in_executor(None, stream.close)
        outbox.close()
        await sender
        await ws.send_text(json.dumps(_end_event(stream, outbox)))
        await ws.close()
    except InputError as err:
        await _refuse(ws, _named(err, request.names), 1008)
    except WebSocketDisconnect:
        pass  # the client went away: stop its stream below
    except Exception:  # one bad stream must not take the server down
        _LOG.exception("stream %s failed", sid)
        await _refuse(ws, "internal error while streaming: the server log has the details; please report it", 1011)
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
        try:
            if stream is not None:
                await loop.run_in_executor(None, stream.abort)
        finally:  # even when the server shuts down and cancels this handler
            manager.release(request)


def _open(manager: StreamManager, request: StreamRequest, outbox: FrameOutbox):
    pipe = manager.pipeline(request)
    return pipe.open_stream(request.photo, lambda frame, i: outbox.put((i, jpeg_message(frame, i))),
                            request.controls, request.face_index,
                            StreamConfig(max_latency_s=manager.config.stream_max_latency_s))


def _end_event(stream, outbox: FrameOutbox) -> dict:
    """The end message: frames sent, dropped (by the stream + by the client's buffer), latency."""
    render = stream.stats()["dropped"]
    return {"event": "end", "frames": outbox.frames_sent, "dropped": render + outbox.dropped,
            "dropped_render": render, "dropped_client": outbox.dropped, **outbox.latency.summary()}


async def _receive_audio(ws, stream, max_seconds: float) -> None:
    received = 0
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), IDLE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise InputError(f"no audio for {IDLE_TIMEOUT_S:g} s: the stream was closed "
                             "(send samples as they are recorded, then {\"event\": \"end\"})") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        if message.get("bytes") is not None:
            data = message["bytes"]
            if len(data) % 4:
                raise InputError("audio messages must be float32 samples (a multiple of 4 bytes)")
            samples = np.frombuffer(data, "<f4")
            received += len(samples)
            if received > max_seconds * SAMPLE_RATE:
                raise InputError(f"the stream is longer than {max_seconds:g} s: "
                                 "use a shorter one (sdmtalk serve --max-audio-seconds)")
            stream.push(np.nan_to_num(np.clip(samples, -1.0, 1.0)))
        elif message.get("text") is not None and _is_end(message["text"]):
            return
        if stream.error is not None:
            raise stream.error


def _is_end(text: str) -> bool:
    try:
        return json.loads(text).get("event") == "end"
    except (ValueError, AttributeError):
        raise InputError('text messages must be {"event": "end"}') from None


async def _send_frames(ws, outbox: FrameOutbox) -> None:
    while (item := await outbox.get()) is not None:
        index, message = item
        await ws.send_bytes(message)
        outbox.sent(index)


async def _refuse(ws, message: str, code: int) -> None:
    try:
        await ws.send_text(json.dumps({"error": message}))
        await ws.close(code)
    except Exception:  # noqa: BLE001 - the client may already be gone
        pass


def _named(err: BaseException, names: dict) -> str:
    """One line, with the server's paths replaced by the client's names."""
    text = one_line(err)
    for path, name in sorted(names.items(), key=lambda kv: -len(str(kv[0]))):
        text = text.replace(str(path), name)
    return text


def stream_router(manager: StreamManager):
    """POST /api/streams, the WebSocket /api/streams/{id}/ws and the page /stream."""
    config = manager.config
    router = APIRouter()

    @router.post("/api/streams", status_code=201, summary="Open a live stream: photo + controls")
    def create(
        photo: Annotated[UploadFile, File(description="face photo (jpg, png, ...)")],
        seed: Annotated[int, Form()] = 0,
        pose_scale: Annotated[float, Form()] = 1.0,
        lip_scale: Annotated[float, Form()] = 1.0,
        rhythm_scale: Annotated[float, Form()] = 1.0,
        still: Annotated[bool, Form()] = False,
        diffusion_steps: Annotated[str, Form(description="auto, K or 0")] = "auto",
        size: Annotated[int, Form(description="256 or 512")] = 256,
        crop: Annotated[str, Form(description="face or full")] = "face",
        face_index: Annotated[int | None, Form()] = None,
        blink: Annotated[bool, Form()] = True,
    ) -> JSONResponse:
        params = Params(seed, 1, pose_scale, lip_scale, rhythm_scale, still, diffusion_steps, size, crop,
                        "sdm", face_index, blink)

        names: dict = {}

        def fill(sid: str, folder: Path) -> StreamRequest:
            name = display_name(photo.filename, "photo")
            dest = stored_path(SimpleNamespace(folder=folder), "photo", name)
            names[dest], names[folder] = name, "<upload>"
            save_upload(photo.file, dest, "photo", name, config.max_upload_bytes)
            return build_stream_request(sid, folder, config, dest, params, names)

        try:
            request = stream_request(manager, config, fill)
        except LimitError as err:
            raise ApiError(413, _named(err, names)) from None
        except InputError as err:
            raise ApiError(422, _named(err, names)) from None
        except StreamsBusy as err:
            raise ApiError(429, str(err), {"Retry-After": "5"}) from None
        return JSONResponse({"id": request.id, "websocket": f"/api/streams/{request.id}/ws"}, status_code=201)

    @router.websocket("/api/streams/{sid}/ws")
    async def websocket(ws: WebSocket, sid: str) -> None:
        await serve_stream(ws, manager, sid)

    @router.get("/stream", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((Path(__file__).parent / "stream_page.html").read_text(encoding="utf-8"))

    return router
