"""The HTTP API of `sdmtalk serve`, in process (FastAPI's TestClient): a good job, every
bad input the CLI rejects (same one-line message), limits (413), a full queue (429),
expired results (404), the token (401), client names kept out of paths, a crash contained."""

from __future__ import annotations

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

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from sdmtalk.serve.app import create_app  # noqa: E402
from sdmtalk.serve.config import ServeConfig  # noqa: E402
from sdmtalk.serve.jobs import JobManager  # noqa: E402
from sdmtalk.serve.web import build_page  # noqa: E402


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    Image.fromarray(data.astronaut()).save(d / "face.png")
    sf.write(d / "speech.wav", synthesize_speech("Hi there, how are you")[: SAMPLE_RATE], SAMPLE_RATE)
    return d


def make_client(tmp_path, start=True, page=False, **settings):
    config = ServeConfig(**{"workers": 1, "queue": 4, "motion": "energy", "work_dir": tmp_path / "work", **settings})
    client = TestClient(create_app(config, page=page))
    return client.__enter__() if start else client  # entering runs the lifespan: workers start


def submit(client, photo, audio=None, names=("face.png", "speech.wav"), **fields):
    files = {"photo": (names[0], photo.read_bytes() if hasattr(photo, "read_bytes") else photo)}
    if audio is not None:
        files["audio"] = (names[1], audio.read_bytes() if hasattr(audio, "read_bytes") else audio)
    return client.post("/api/jobs", files=files, data={k: str(v) for k, v in fields.items()})


def wait(client, job_id, timeout=600):  # generous: only a stuck job reaches it
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def cli_error(capsys, monkeypatch, folder, image, audio, *extra):
    """The line `sdmtalk generate` prints for the same files (named as the client named them)."""
    monkeypatch.chdir(folder)
    rc = main(["generate", "--image", image, "--audio", audio, "-o", "cli_out.mp4", "--motion", "energy", "-q", *extra])
    assert rc == 2
    return capsys.readouterr().err.strip().removeprefix("sdmtalk: error: ")


def test_a_good_job_gives_a_valid_mp4_and_leaves_no_inputs(tmp_path, media):
    client = make_client(tmp_path)
    answer = submit(client, media / "face.png", media / "speech.wav", seed=3, lip_scale=1.2)
    assert answer.status_code == 202, answer.text
    job = wait(client, answer.json()["id"])
    assert job["state"] == "done" and job["progress"] == 1.0 and job["stage"] == "render sdmtalk.mp4"
    video = client.get(job["videos"][0])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(video.content)
    with av.open(str(tmp_path / "out.mp4")) as mp4:
        assert mp4.streams.video[0].codec_context.name == "h264" and mp4.streams.audio
        assert sum(1 for _ in mp4.decode(video=0)) == 25  # 1.0 s of speech at 25 fps
    folder = tmp_path / "work" / job["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["sdmtalk.mp4"]  # uploads removed
    client.__exit__(None, None, None)  # the server stops: its results go with it
    assert not folder.exists()


# (API fields, the same options for the CLI or None where argparse words it differently, needle)
BAD_CONTROLS = [
    ({"seed": -1}, ["--seed", "-1"], "--seed"),
    ({"seed": 2**31}, ["--seed", str(2**31)], "--seed"),
    ({"seed": "abc"}, None, "--seed"),
    ({"num_samples": 0}, ["--num-samples", "0"], "--num-samples"),
    ({"num_samples": 101}, ["--num-samples", "101"], "--num-samples"),
    ({"num_samples": 5}, None, "--num-samples 5 is more than this server"),
    ({"lip_scale": 5}, ["--lip-scale", "5"], "--lip-scale"),
    ({"pose_scale": -1}, ["--pose-scale", "-1"], "--pose-scale"),
    ({"rhythm_scale": "nan"}, ["--rhythm-scale", "nan"], "--rhythm-scale"),
    ({"diffusion_steps": -1}, None, "--diffusion-steps"),
    ({"diffusion_steps": "deep"}, None, "--diffusion-steps"),
    ({"face_index": -1}, ["--face-index", "-1"], "--face-index"),
    ({"size": 300}, None, "--size 300"),
    ({"crop": "wide"}, None, "--crop wide"),
    ({"motion": "magic"}, None, "unknown motion 'magic'"),
]


@pytest.mark.parametrize("fields,cli_args,needle", BAD_CONTROLS, ids=[str(b[0]) for b in BAD_CONTROLS])
def test_bad_controls_answer_422_with_the_cli_line(tmp_path, media, capsys, monkeypatch, fields, cli_args, needle):
    client = make_client(tmp_path, start=False)
    answer = submit(client, media / "face.png", media / "speech.wav", **fields)
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]
    assert needle in message and "\n" not in message and "Traceback" not in message
    if cli_args is not None:
        assert message == cli_error(capsys, monkeypatch, media, "face.png", "speech.wav", *cli_args)
    assert not any((tmp_path / "work").iterdir()), "a refused job left files behind"


def test_empty_files_and_missing_speech_answer_422(tmp_path, media, capsys, monkeypatch):
    client = make_client(tmp_path, start=False)
    (tmp_path / "empty.png").write_bytes(b"")
    answer = submit(client, b"", media / "speech.wav", names=("empty.png", "speech.wav"))
    assert answer.status_code == 422
    assert answer.json()["error"] == cli_error(capsys, monkeypatch, tmp_path, "empty.png", str(media / "speech.wav"))
    answer = submit(client, media / "face.png", b"", names=("face.png", "empty.wav"))
    assert answer.status_code == 422 and answer.json()["error"].startswith("audio file empty.wav is an empty file")
    answer = submit(client, media / "face.png")
    assert answer.status_code == 422 and answer.json()["error"].startswith("no speech")
    answer = client.post("/api/jobs", data={"seed": "1"})
    assert answer.status_code == 422 and "--photo" in answer.json()["error"]


def _bad_files(folder):
    """Files the CLI refuses only once it decodes them: name -> bytes."""
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8)).save(folder / "wall.png")
    sf.write(folder / "short.wav", synthesize_speech("Hi")[: SAMPLE_RATE // 10], SAMPLE_RATE)
    sf.write(folder / "silent.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    (folder / "notes.jpg").write_text("this is not a picture")
    (folder / "notes.mp3").write_text("this is not a sound")
    return {"photo": ["wall.png", "notes.jpg"], "audio": ["short.wav", "silent.wav", "notes.mp3"]}


def _cli_line(capsys, monkeypatch, tmp_path, media, photo, audio):
    """The CLI's line for the same two files side by side, named as the client named them."""
    (tmp_path / "cli").mkdir(exist_ok=True)
    for n in (photo, audio):
        (tmp_path / "cli" / n).write_bytes(((tmp_path if (tmp_path / n).exists() else media) / n).read_bytes())
    return cli_error(capsys, monkeypatch, tmp_path / "cli", photo, audio)


def test_a_photo_that_fails_to_decode_or_has_no_face_answers_422_at_once(tmp_path, media, capsys, monkeypatch):
    client = make_client(tmp_path, start=False)  # no worker runs: the answer comes from the submit
    for photo in _bad_files(tmp_path)["photo"]:
        answer = submit(client, tmp_path / photo, media / "speech.wav", names=(photo, "speech.wav"))
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == _cli_line(capsys, monkeypatch, tmp_path, media, photo, "speech.wav")
        assert not any((tmp_path / "work").iterdir()), "a refused job left files behind"


def test_speech_that_fails_to_decode_fails_the_job_with_the_cli_line(tmp_path, media, capsys, monkeypatch):
    client = make_client(tmp_path)
    for audio in _bad_files(tmp_path)["audio"]:
        answer = submit(client, media / "face.png", tmp_path / audio, names=("face.png", audio))
        assert answer.status_code == 202, answer.text
        job = wait(client, answer.json()["id"])
        assert job["state"] == "failed" and job["status_code"] == 422, job
        assert job["error"] == _cli_line(capsys, monkeypatch, tmp_path, media, "face.png", audio)
        video = client.get(f"/api/jobs/{job['id']}/video")
        assert video.status_code == 422 and video.json()["error"] == job["error"]
        assert not any((tmp_path / "work" / job["id"]).iterdir()), "inputs of a failed job were kept"
    client.__exit__(None, None, None)


def test_uploads_beyond_the_limits_answer_413_and_leave_nothing(tmp_path, media):
    photo = (media / "face.png").read_bytes()  # 512 x 512
    client = make_client(tmp_path, start=False, max_upload_mb=len(photo) / 2**20 / 2, max_megapixels=0.2,
                         max_audio_seconds=0.5)
    whole = client.post("/api/jobs", files={"photo": ("big.png", photo * 3)})  # the request: by Content-Length
    assert whole.status_code == 413 and "request body over" in whole.json()["error"]
    chunks = iter([photo] * 3)  # streamed, no Content-Length: cut off once past the limit
    streamed = client.post("/api/jobs", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
    assert streamed.status_code == 413 and "request body over" in streamed.json()["error"]
    one = submit(client, photo, media / "speech.wav", names=("face.png", "speech.wav"))
    assert one.status_code == 413 and one.json()["error"].startswith("photo face.png is larger than")
    client = make_client(tmp_path, start=False, max_megapixels=0.2, max_audio_seconds=0.5)
    pixels = submit(client, media / "face.png", media / "speech.wav")
    assert pixels.status_code == 413 and "face.png has 512x512 pixels" in pixels.json()["error"]
    client = make_client(tmp_path, start=False, max_audio_seconds=0.5)
    seconds = submit(client, media / "face.png", media / "speech.wav")
    assert seconds.status_code == 413 and seconds.json()["error"].startswith("audio speech.wav is 1 s long")
    text = client.post("/api/jobs", files={"photo": ("f.png", photo)}, data={"text": "word " * 300})
    assert text.status_code == 413 and "1499 characters" in text.json()["error"]
    assert not any((tmp_path / "work").iterdir())


def test_a_full_queue_answers_429_with_retry_after(tmp_path, media):
    client = make_client(tmp_path, start=False, queue=2)  # workers not started: jobs wait
    first = [submit(client, media / "face.png", media / "speech.wav") for _ in range(2)]
    assert [a.status_code for a in first] == [202, 202]
    refused = submit(client, media / "face.png", media / "speech.wav")
    assert refused.status_code == 429 and refused.json()["error"].startswith("the server is busy")
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(list((tmp_path / "work").iterdir())) == 2  # the refused upload is gone
    assert client.get("/api/health").json()["jobs"]["queued"] == 2


def test_results_expire_to_404_and_are_deleted(tmp_path, media):
    client = make_client(tmp_path, result_ttl_s=1.0)
    job = wait(client, submit(client, media / "face.png", media / "speech.wav").json()["id"])
    assert client.get(job["videos"][0]).status_code == 200 and job["expires_in_s"] <= 1
    time.sleep(1.1)
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    gone = client.get(job["videos"][0])
    assert gone.status_code == 404 and "expired" in gone.json()["error"]
    assert not (tmp_path / "work" / job["id"]).exists()
    client.__exit__(None, None, None)


def test_a_token_is_required_when_set(tmp_path):
    client = make_client(tmp_path, start=False, token="s3cret")
    assert client.get("/api/health").status_code == 401
    wrong = client.get("/api/health", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"].startswith("a wrong token")
    assert client.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/api/jobs").status_code == 401  # no work at all before the token
    assert client.get("/api/health?token=s3cret").status_code == 200  # sets the cookie (the page)
    assert client.get("/api/health").status_code == 200


def test_client_names_never_become_paths(tmp_path, media):
    client = make_client(tmp_path, start=False)
    names = ("../../../etc/evil<b>.png", "..\\..\\x;rm -rf.wav")
    answer = submit(client, media / "face.png", media / "speech.wav", names=names)
    assert answer.status_code == 202
    folder = tmp_path / "work" / answer.json()["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["audio.wav", "photo.png"]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [folder.name]
    bad = submit(client, b"", media / "speech.wav", names=("../../secret/<script>.png", "s.wav"))
    assert bad.json()["error"].startswith("photo _script_.png is an empty file")
    assert str(tmp_path) not in bad.json()["error"]


def test_a_crash_in_one_job_is_contained(tmp_path, media, monkeypatch):
    from sdmtalk.pipeline import TalkingFacePipeline

    real = TalkingFacePipeline.generate
    calls = []

    def crash_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug deep inside\nwith a second line")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TalkingFacePipeline, "generate", crash_once)
    client = make_client(tmp_path)
    crashed = wait(client, submit(client, media / "face.png", media / "speech.wav").json()["id"])
    assert crashed["state"] == "failed" and crashed["status_code"] == 500
    assert "bug" not in crashed["error"] and "server log" in crashed["error"]
    spoken = submit(client, media / "face.png", text="Hello from the server.")  # the next job still runs
    assert wait(client, spoken.json()["id"])["state"] == "done"
    client.__exit__(None, None, None)


def test_page_and_openapi_are_served_by_the_same_app(tmp_path):
    pytest.importorskip("gradio")
    client = make_client(tmp_path, page=True)
    page = client.get("/")
    assert page.status_code == 200 and "gradio" in page.text.lower()
    assert client.get("/docs").status_code == 200
    assert "/api/jobs" in client.get("/openapi.json").json()["paths"]
    client.__exit__(None, None, None)


def test_the_page_queue_does_not_spin_while_idle(tmp_path):
    """Gradio's queue polls every 1 ms by default (7 % of a core with no visitor); the page
    sets 50 ms (job start) and 100 ms (progress): under 1 % of a core, idle."""
    pytest.importorskip("gradio")
    queue = build_page(JobManager(ServeConfig(work_dir=tmp_path / "work")))._queue
    assert queue.sleep_when_free >= 0.05 and queue.progress_update_sleep_when_free >= 0.1


def test_a_job_gives_the_cli_video_byte_for_byte(tmp_path, media, monkeypatch):
    client = make_client(tmp_path)
    job = wait(client, submit(client, media / "face.png", media / "speech.wav", seed=7, pose_scale=1.5).json()["id"])
    served = client.get(job["videos"][0]).content
    client.__exit__(None, None, None)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--image", str(media / "face.png"), "--audio", str(media / "speech.wav"),
                 "-o", "cli.mp4", "--motion", "energy", "--seed", "7", "--pose-scale", "1.5", "-q"]) == 0
    assert served == (tmp_path / "cli.mp4").read_bytes()


def test_a_pose_reference_video_is_used_and_its_errors_are_the_cli_lines(tmp_path, media):
    from test_data_media import make_clip, write_video

    reference = make_clip(tmp_path / "anchor.mp4", seconds=2.4)[0].read_bytes()
    client = make_client(tmp_path)
    files = lambda ref, name: {"photo": ("face.png", (media / "face.png").read_bytes()),  # noqa: E731
                               "audio": ("speech.wav", (media / "speech.wav").read_bytes()),
                               "pose_reference": (name, ref)}
    answer = client.post("/api/jobs", files=files(reference, "anchor.mp4"), data={"motion": "energy"})
    assert answer.status_code == 422 and "--pose-reference works with --motion sdm" in answer.json()["error"]
    answer = client.post("/api/jobs", files=files(reference, "anchor.mp4"), data={"motion": "sdm", "seed": "2"})
    job = wait(client, answer.json()["id"])
    assert job["state"] == "done", job
    assert sorted(p.name for p in (tmp_path / "work" / job["id"]).iterdir()) == ["sdmtalk.mp4"]
    blank = write_video(tmp_path / "blank.mp4", np.full((60, 64, 64, 3), 90, np.uint8), 25.0, None)
    answer = client.post("/api/jobs", files=files(blank.read_bytes(), "my clip.mp4"), data={"motion": "sdm"})
    job = wait(client, answer.json()["id"])
    assert job["state"] == "failed" and job["status_code"] == 422
    assert job["error"].startswith("--pose-reference my clip.mp4: no face found"), job["error"]
    client.__exit__(None, None, None)
