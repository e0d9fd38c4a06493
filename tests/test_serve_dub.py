"""Dubbing through `sdmtalk serve`'s HTTP API (POST /api/dub, in process): a good dub gives the
CLI's video byte for byte with its notes in the job; a file that is no video, missing or
doubled speech, bad controls and the limits answer at submit with the CLI's line; a video
without a face fails its job (422) with the CLI's line; the standard-library client dubs."""

from __future__ import annotations

import shutil
import threading
import time

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from skimage import data

from sdmtalk import SAMPLE_RATE
from sdmtalk.audio import synthesize_speech
from sdmtalk.cli import main
from sdmtalk.client import Client
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.video import write_mp4

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from sdmtalk.serve.app import create_app  # noqa: E402
from sdmtalk.serve.config import ServeConfig  # noqa: E402


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """face.mp4: 1.5 s of the astronaut talking (256 px, linear motion); speech.wav: 1 s of
    other speech; wall.mp4: 0.4 s without a face."""
    d = tmp_path_factory.mktemp("dub_media")
    Image.fromarray(data.astronaut()).save(d / "face.png")
    sf.write(d / "own.wav", synthesize_speech("Hello there, how are you today")[: 3 * SAMPLE_RATE // 2], SAMPLE_RATE)
    TalkingFacePipeline(motion="linear", quiet=True, threads=1).generate(d / "face.png", d / "own.wav", d / "face.mp4")
    sf.write(d / "speech.wav", synthesize_speech("Good morning to you")[:SAMPLE_RATE], SAMPLE_RATE)
    write_mp4(d / "wall.mp4", iter([np.full((64, 64, 3), 90, np.uint8)] * 10), None)
    return d


def make_client(tmp_path, start=True, **settings):
    config = ServeConfig(**{"workers": 1, "queue": 4, "motion": "energy", "work_dir": tmp_path / "work", **settings})
    client = TestClient(create_app(config, page=False))
    return client.__enter__() if start else client  # entering runs the lifespan: workers start


def submit_dub(client, video, audio=None, names=("face.mp4", "speech.wav"), **fields):
    files = {"video": (names[0], video.read_bytes() if hasattr(video, "read_bytes") else video)}
    if audio is not None:
        files["audio"] = (names[1], audio.read_bytes() if hasattr(audio, "read_bytes") else audio)
    return client.post("/api/dub", files=files, data={k: str(v) for k, v in fields.items()})


def wait(client, job_id, timeout=600):  # generous: only a stuck job reaches it
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def cli_dub(capsys, monkeypatch, folder, video, audio, *extra, out="cli_dub.mp4"):
    """`sdmtalk dub` on the same files (named as the client named them) -> (rc, its error line)."""
    monkeypatch.chdir(folder)
    rc = main(["dub", "--video", video, "--audio", audio, "-o", out, "--motion", "energy", "-q", *extra])
    return rc, capsys.readouterr().err.strip().removeprefix("sdmtalk: error: ")


def test_a_dub_job_gives_the_cli_video_and_its_notes(tmp_path, media, capsys, monkeypatch):
    client = make_client(tmp_path)
    answer = submit_dub(client, media / "face.mp4", media / "speech.wav", seed=3, lip_scale=1.2)
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == f"/api/jobs/{answer.json()['id']}" and answer.json()["kind"] == "dub"
    job = wait(client, answer.json()["id"])
    assert job["state"] == "done" and job["progress"] == 1.0 and job["stage"] == "render sdmtalk_dub.mp4", job
    assert job["notes"] == ["the video (1.5 s) was cut to the audio's 1.0 s "
                            "(--keep-video-length pads the audio instead)"]
    video = client.get(job["videos"][0])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "served.mp4").write_bytes(video.content)
    with av.open(str(tmp_path / "served.mp4")) as mp4:
        assert mp4.streams.audio and sum(1 for _ in mp4.decode(video=0)) == 25  # 1.0 s of speech at 25 fps
    assert sorted(p.name for p in (tmp_path / "work" / job["id"]).iterdir()) == ["sdmtalk_dub.mp4"]
    kept = wait(client, submit_dub(client, media / "face.mp4", media / "speech.wav",
                                   keep_video_length="true").json()["id"])
    assert kept["state"] == "done" and len(kept["notes"]) == 1 and "padded with silence" in kept["notes"][0]
    client.__exit__(None, None, None)
    shutil.copy(media / "speech.wav", tmp_path / "speech.wav")
    shutil.copy(media / "face.mp4", tmp_path / "face.mp4")
    assert cli_dub(capsys, monkeypatch, tmp_path, "face.mp4", "speech.wav", "--seed", "3", "--lip-scale", "1.2")[0] == 0
    assert video.content == (tmp_path / "cli_dub.mp4").read_bytes()


def test_bad_dub_inputs_answer_at_submit_with_the_cli_line(tmp_path, media, capsys, monkeypatch):
    client = make_client(tmp_path, start=False)  # no worker runs: every answer comes from the submit
    audio_as_video = submit_dub(client, media / "speech.wav", media / "speech.wav", names=("speech.wav", "s.wav"))
    assert audio_as_video.status_code == 422, audio_as_video.text
    rc, line = cli_dub(capsys, monkeypatch, media, "speech.wav", "speech.wav")
    assert rc == 2 and audio_as_video.json()["error"] == line == "no video stream in speech.wav: pass a video " \
        "file, not audio"
    lips = submit_dub(client, media / "face.mp4", media / "speech.wav", lip_scale=5)
    assert lips.status_code == 422
    assert lips.json()["error"] == cli_dub(capsys, monkeypatch, media, "face.mp4", "speech.wav", "--lip-scale", "5")[1]
    empty = submit_dub(client, b"", media / "speech.wav", names=("empty.mp4", "speech.wav"))
    assert empty.status_code == 422 and empty.json()["error"].startswith("video empty.mp4 "), empty.text
    no_video = client.post("/api/dub", files={"audio": ("s.wav", (media / "speech.wav").read_bytes())})
    assert no_video.status_code == 422 and "--video" in no_video.json()["error"]
    both = submit_dub(client, media / "face.mp4", media / "speech.wav", text="Hello")
    assert both.status_code == 422 and both.json()["error"].startswith("both an audio file and text")
    neither = submit_dub(client, media / "face.mp4")
    assert neither.status_code == 422 and neither.json()["error"].startswith("no speech")
    long_text = submit_dub(client, media / "face.mp4", text="word " * 300)
    assert long_text.status_code == 413 and "1499 characters" in long_text.json()["error"]
    static = submit_dub(client, media / "face.mp4", media / "speech.wav", motion="static")
    assert static.status_code == 422 and "cannot dub: use sdm, linear, energy" in static.json()["error"]
    for answer in (audio_as_video, lips, empty, no_video, both, neither, long_text, static):
        assert "\n" not in answer.json()["error"] and str(tmp_path) not in answer.json()["error"]
    assert not any((tmp_path / "work").iterdir()), "a refused dub left files behind"


def test_dub_limits_answer_413(tmp_path, media):
    video = (media / "face.mp4").read_bytes()
    client = make_client(tmp_path, start=False, max_upload_mb=len(video) / 2**20 / 2)
    big = submit_dub(client, media / "face.mp4", media / "speech.wav")
    assert big.status_code == 413 and big.json()["error"].startswith("video face.mp4 is larger than")
    client = make_client(tmp_path, start=False, max_video_seconds=1.0)
    long = submit_dub(client, media / "face.mp4", media / "speech.wav")
    assert long.status_code == 413, long.text
    assert long.json()["error"].startswith("video face.mp4 is 1.5 s long: use at most 1 s (sdmtalk serve "
                                           "--max-video-seconds)")
    client = make_client(tmp_path, start=False, max_megapixels=0.05)
    pixels = submit_dub(client, media / "face.mp4", media / "speech.wav")
    assert pixels.status_code == 413 and "face.mp4 has 256x256 pixels" in pixels.json()["error"]
    client = make_client(tmp_path, start=False, max_audio_seconds=0.5)
    speech = submit_dub(client, media / "face.mp4", media / "speech.wav")
    assert speech.status_code == 413 and speech.json()["error"].startswith("audio speech.wav is 1 s long")
    assert not any((tmp_path / "work").iterdir())


def test_a_video_without_a_face_fails_the_job_with_the_cli_line(tmp_path, media, capsys, monkeypatch):
    client = make_client(tmp_path)
    answer = submit_dub(client, media / "wall.mp4", media / "speech.wav", names=("wall.mp4", "speech.wav"))
    assert answer.status_code == 202, answer.text
    job = wait(client, answer.json()["id"])
    assert job["state"] == "failed" and job["status_code"] == 422, job
    rc, line = cli_dub(capsys, monkeypatch, media, "wall.mp4", "speech.wav")
    assert rc == 2 and job["error"] == line and line.startswith("no face found in wall.mp4")
    assert client.get(f"/api/jobs/{job['id']}/video").json()["error"] == job["error"]
    assert not any((tmp_path / "work" / job["id"]).iterdir()), "inputs of a failed dub were kept"
    assert "/api/dub" in client.get("/openapi.json").json()["paths"]
    client.__exit__(None, None, None)


def test_the_client_dubs_through_a_real_server(tmp_path, media):
    uvicorn = pytest.importorskip("uvicorn")
    config = ServeConfig(port=0, motion="energy", work_dir=tmp_path / "work")
    server = uvicorn.Server(uvicorn.Config(create_app(config, page=False), port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        client = Client(f"http://127.0.0.1:{port}")
        out = client.dub(media / "face.mp4", media / "speech.wav", tmp_path / "dubbed.mp4", seed=1)
        with av.open(str(out)) as mp4:
            assert sum(1 for _ in mp4.decode(video=0)) == 25
        job_id = client.submit_dub(media / "face.mp4", text="Hi there.", keep_video_length=True)
        assert "padded with silence" in client.wait(job_id)["notes"][0]
    finally:
        server.should_exit = True
        thread.join(60)
