"""Live streams of `sdmtalk serve` (issue 14): a stream end to end over the WebSocket, bad
inputs answered with the CLI's line, and clients that read slowly or vanish (a real server
over TCP) neither stall nor crash it. A tiny untrained SDM keeps it fast."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from sdmtalk import SAMPLE_RATE

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from sdmtalk.serve.app import create_app  # noqa: E402
from sdmtalk.serve.config import ServeConfig  # noqa: E402

CHUNK = 640  # 40 ms
SLOW_MACHINE_S = 600  # how long a wait may take on a loaded machine before it counts as never


def config_for(tmp_path, stream_media, **kw) -> ServeConfig:
    return ServeConfig(**{"workers": 1, "queue": 2, "motion": "energy", "weights": str(stream_media[0] / "tiny.safetensors"),
                          "work_dir": tmp_path / "work", **kw})


def open_stream(client, photo, **fields):
    files = {"photo": (photo.name, photo.read_bytes())}
    return client.post("/api/streams", files=files, data={k: str(v) for k, v in fields.items()})


def run_stream(ws, wav):
    """Send wav in 40 ms chunks, then end; -> (ready message, frame indices, JPEGs, end message)."""
    ready = json.loads(ws.receive_text())
    for i in range(0, len(wav), CHUNK):
        ws.send_bytes(wav[i:i + CHUNK].astype("<f4").tobytes())
    ws.send_text(json.dumps({"event": "end"}))
    indices, jpegs = [], []
    while True:
        message = ws.receive()
        if message.get("text") is not None:
            return ready, indices, jpegs, json.loads(message["text"])
        indices.append(struct.unpack("<I", message["bytes"][:4])[0])
        jpegs.append(message["bytes"][4:])


def test_a_stream_gives_every_frame_in_order(tmp_path, stream_media):
    folder, speech = stream_media
    wav = speech[: 2 * SAMPLE_RATE]
    config = config_for(tmp_path, stream_media, stream_max_latency_s=None)  # sent at once: keep every frame
    with TestClient(create_app(config, page=False)) as client:
        answer = open_stream(client, folder / "face.png", seed=3, lip_scale=1.2)
        assert answer.status_code == 201, answer.text
        with client.websocket_connect(answer.json()["websocket"]) as ws:
            ready, indices, jpegs, end = run_stream(ws, wav)
        assert ready["event"] == "ready" and ready["fps"] == 25 and ready["sample_rate"] == SAMPLE_RATE
        assert indices == list(range(50))
        assert {k: end[k] for k in ("event", "frames", "dropped", "dropped_render", "dropped_client")} == \
            {"event": "end", "frames": 50, "dropped": 0, "dropped_render": 0, "dropped_client": 0}
        assert 0 <= end["latency_p50"] <= end["latency_p95"] <= end["latency_max"]
        frame = cv2.imdecode(np.frombuffer(jpegs[10], np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (ready["height"], ready["width"], 3) == (256, 256, 3)
        assert client.get("/stream").status_code == 200
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").glob("stream-*"))


def test_a_slow_stream_drops_late_frames_and_counts_them(tmp_path, stream_media, monkeypatch):
    """Each frame takes 0.1 s to encode and 2 s of speech arrive at once: past the latency
    budget the stream skips to its newest frame; the end event counts and times it all."""
    import sdmtalk.serve.streams as streams

    encode = streams.jpeg_message

    def slow_jpeg(frame, index):
        time.sleep(0.1)
        return encode(frame, index)

    monkeypatch.setattr(streams, "jpeg_message", slow_jpeg)
    folder, speech = stream_media
    with TestClient(create_app(config_for(tmp_path, stream_media), page=False)) as client:
        answer = open_stream(client, folder / "face.png")
        with client.websocket_connect(answer.json()["websocket"]) as ws:
            _, indices, _, end = run_stream(ws, speech[: 2 * SAMPLE_RATE])
    assert indices == sorted(set(indices)) and indices[-1] == 49 and end["frames"] == len(indices)
    assert end["dropped_render"] > 0 and end["frames"] + end["dropped"] == 50
    assert end["dropped"] == end["dropped_render"] + end["dropped_client"]
    assert 0 < end["latency_p50"] <= end["latency_p95"] <= end["latency_max"]


def test_the_outbox_sends_the_newest_frame_once_the_oldest_is_late():
    import asyncio

    from sdmtalk.serve.streams import FrameOutbox

    now = [100.0]
    loop = asyncio.new_event_loop()
    try:
        outbox = FrameOutbox(loop, size=3, now=lambda: now[0])
        outbox.pace(lambda i: 99.0 if i < 3 else 100.0, 0.5)  # frames 0-2 pushed 1 s ago
        for i in range(4):
            outbox.put((i, b"%d" % i))  # the full buffer drops frame 0
        assert loop.run_until_complete(outbox.get()) == (1, b"1")  # late, but it did not wait
        now[0] = 100.3
        assert loop.run_until_complete(outbox.get()) == (3, b"3") and outbox.dropped == 2  # 2 waited 0.3 s
        outbox.sent(3)
        outbox.put((4, b"4"))
        outbox.put((5, b"5"))
        outbox.close()
        got = [loop.run_until_complete(outbox.get()) for _ in range(3)]
        assert got == [(4, b"4"), (5, b"5"), None] and outbox.dropped == 2
        assert outbox.frames_sent == 1 and outbox.latency.summary()["latency_max"] == pytest.approx(0.3)
    finally:
        loop.close()


def test_bad_inputs_answer_with_the_cli_line(tmp_path, stream_media, capsys, monkeypatch):
    from test_serve_api import cli_error

    folder, _ = stream_media
    with TestClient(create_app(config_for(tmp_path, stream_media), page=False)) as client:
        answer = open_stream(client, folder / "face.png", lip_scale=5)
        assert answer.status_code == 422
        expected = cli_error(capsys, monkeypatch, folder, "face.png", str(folder / "tiny.safetensors"), "--lip-scale", "5")
        assert answer.json()["error"] == expected
        answer = open_stream(client, folder / "wall.png")  # decodes, but holds no face
        assert answer.status_code == 201
        with client.websocket_connect(answer.json()["websocket"]) as ws:
            message = json.loads(ws.receive_text())
        expected = cli_error(capsys, monkeypatch, folder, "wall.png", "face.png")  # any readable file as audio
        assert message == {"error": expected} and "wall.png" in expected
        with client.websocket_connect("/api/streams/nosuchid/ws") as ws:
            assert json.loads(ws.receive_text())["error"].startswith("no stream nosuchid")


def test_a_client_that_sends_nothing_is_closed_and_its_slot_freed(tmp_path, stream_media, monkeypatch):
    import sdmtalk.serve.streams as streams

    monkeypatch.setattr(streams, "IDLE_TIMEOUT_S", 0.5)
    released = _on_release(monkeypatch)
    folder, _ = stream_media
    with TestClient(create_app(config_for(tmp_path, stream_media), page=False)) as client:
        answer = open_stream(client, folder / "face.png")
        with client.websocket_connect(answer.json()["websocket"]) as ws:
            assert json.loads(ws.receive_text())["event"] == "ready"
            assert json.loads(ws.receive_text())["error"].startswith("no audio for 0.5 s")
        assert released.wait(SLOW_MACHINE_S), "the slot was never released"  # just after the close
        assert open_stream(client, folder / "face.png").status_code == 201


def _on_release(monkeypatch) -> threading.Event:
    """An event set each time a stream's slot is released (waited on, not polled against a
    clock: a loaded machine may take long, a broken server never sets it)."""
    import sdmtalk.serve.streams as streams

    released, release = threading.Event(), streams.StreamManager.release

    def tell(self, request):
        release(self, request)
        released.set()

    monkeypatch.setattr(streams.StreamManager, "release", tell)
    return released


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(tmp_path, stream_media):
    """A real uvicorn server on a free port (TCP: a slow reader really fills its buffers)."""
    import uvicorn

    port = _free_port()
    app = create_app(config_for(tmp_path, stream_media, max_streams=1), page=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(SLOW_MACHINE_S * 10):  # uvicorn's own flag; the thread ends if it fails
        if server.started or not thread.is_alive():
            break
        time.sleep(0.1)
    assert server.started, "the live server did not start"
    yield url, app
    server.should_exit = True
    thread.join(30)


def _post_photo(url, photo) -> str:
    boundary = "sdmtalkboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"face.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/api/streams", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(urllib.request.urlopen(request, timeout=SLOW_MACHINE_S).read())["websocket"]


def _healthy(url) -> bool:
    return json.loads(urllib.request.urlopen(url + "/api/health", timeout=SLOW_MACHINE_S).read())["ok"]


def test_slow_and_vanishing_clients_never_stall_the_server(live_server, stream_media, monkeypatch):
    """Client A sends 20 s of speech, never reads (its tiny receive buffer fills at once) and
    then drops the connection without a close frame. Meanwhile the server answers while A
    still holds its slot, and afterwards client B streams normally: A's slot and threads were
    released. Each wait is for an event, with a limit only a broken server reaches."""
    websocket = pytest.importorskip("websocket", reason="websocket-client (with the serve extra's selenium) is missing")

    url, app = live_server
    released = _on_release(monkeypatch)
    folder, speech = stream_media
    wav = np.tile(speech, 20 * SAMPLE_RATE // len(speech) + 1)[: 20 * SAMPLE_RATE]
    ws_url = url.replace("http", "ws")
    slow = websocket.create_connection(ws_url + _post_photo(url, folder / "face.png"), timeout=SLOW_MACHINE_S,
                                       sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    assert json.loads(slow.recv())["event"] == "ready"
    for i in range(0, len(wav), CHUNK):
        slow.send_binary(wav[i:i + CHUNK].astype("<f4").tobytes())
    time.sleep(3.0)  # the stream renders into a client that does not read
    # answered while A's stream still runs: without its "end" it holds the slot however fast
    # the machine (a fast idle one finished the 20 s, dropping frames, within the 3 s)
    assert _healthy(url) and not released.is_set()
    slow.send(json.dumps({"event": "end"}))
    slow.sock.shutdown(socket.SHUT_RDWR)  # vanish: no close frame
    slow.sock.close()
    assert released.wait(SLOW_MACHINE_S), "the slot of the vanished client was never released"
    ok = websocket.create_connection(ws_url + _post_photo(url, folder / "face.png"), timeout=SLOW_MACHINE_S)
    assert json.loads(ok.recv())["event"] == "ready"
    two = speech[: 2 * SAMPLE_RATE]
    for i in range(0, len(two), CHUNK):
        ok.send_binary(two[i:i + CHUNK].astype("<f4").tobytes())
    ok.send(json.dumps({"event": "end"}))
    indices = []
    while True:
        opcode, payload = ok.recv_data()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            end = json.loads(payload)
            break
        indices.append(struct.unpack("<I", payload[:4])[0])
    ok.close()
    assert end["event"] == "end" and end["frames"] == len(indices) and indices[-1] == 49
    assert indices == sorted(set(indices)) and len(indices) + end["dropped"] == 50
    assert end["dropped"] == end["dropped_render"] + end["dropped_client"]
    assert _healthy(url)
