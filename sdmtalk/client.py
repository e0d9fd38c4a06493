"""A small client of `sdmtalk serve` (standard library only; no extra to install).

    from sdmtalk.client import Client
    Client("http://127.0.0.1:7860").generate("me.jpg", "speech.wav", "out.mp4", seed=3)
    Client("http://127.0.0.1:7860").dub("talk.mp4", "speech.wav", "dubbed.mp4", lip_scale=1.2)

Errors come back as the server words them: InputError for a bad input (422) or one beyond
the server's limits (413), Busy when the queue stays full, ServerError otherwise.
"""

from __future__ import annotations

import json
import mimetypes
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from sdmtalk.errors import InputError


class ServerError(Exception):
    """An answer the client cannot act on: status and the server's one-line message."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.retry_after = status, message, retry_after


class Busy(ServerError):
    """429: the server's queue is full; retry_after says when to try again."""


class Client:
    """base_url: where `sdmtalk serve` listens; token: its --token, if it has one."""

    def __init__(self, base_url: str = "http://127.0.0.1:7860", token: str | None = None, timeout: float = 60):
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout

    def submit(self, photo, audio=None, text: str | None = None, **controls) -> str:
        """Queue a job -> its id. controls: seed, num_samples, pose_scale, lip_scale,
        rhythm_scale, still, diffusion_steps, size, crop, motion, face_index, blink."""
        files = {"photo": Path(photo)} | ({"audio": Path(audio)} if audio is not None else {})
        fields = {k: v for k, v in controls.items() if v is not None} | ({"text": text} if text else {})
        body, ctype = _multipart(fields, files)
        return self._call("POST", "/api/jobs", body, ctype)["id"]

    def submit_dub(self, video, audio=None, text: str | None = None, **controls) -> str:
        """Queue a dub (the video's lips say the speech) -> its job id. controls: seed,
        lip_scale, face_index, keep_video_length, motion."""
        files = {"video": Path(video)} | ({"audio": Path(audio)} if audio is not None else {})
        fields = {k: v for k, v in controls.items() if v is not None} | ({"text": text} if text else {})
        body, ctype = _multipart(fields, files)
        return self._call("POST", "/api/dub", body, ctype)["id"]

    def status(self, job_id: str) -> dict:
        """state (queued, running, done, failed), stage, progress 0..1, error, videos, notes."""
        return self._call("GET", f"/api/jobs/{job_id}")

    def wait(self, job_id: str, timeout: float = 600, poll: float = 0.5) -> dict:
        """Poll until the job ends -> its status; a failed job raises its error."""
        deadline = time.monotonic() + timeout
        while (job := self.status(job_id))["state"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:g} s")
            time.sleep(poll)
        if job["state"] == "failed":
            _raise(job["status_code"], job["error"])
        return job

    def download(self, job_id: str, out, sample: int = 0) -> Path:
        """Save a finished job's video `sample` to `out` -> the path."""
        data = self._call("GET", f"/api/jobs/{job_id}/video?sample={sample}", raw=True)
        out = Path(out)
        out.write_bytes(data)
        return out

    def generate(self, photo, audio, out, retries: int = 5, **controls) -> Path:
        """Submit (waiting out a full queue up to `retries` times), wait, download."""
        job_id = self._submit_patiently(lambda: self.submit(photo, audio, **controls), retries)
        self.wait(job_id)
        return self.download(job_id, out)

    def dub(self, video, audio, out, retries: int = 5, **controls) -> Path:
        """Submit a dub (as generate does), wait, download -> the path; the job's notes are
        in status(job_id)["notes"] (submit_dub gives the id)."""
        job_id = self._submit_patiently(lambda: self.submit_dub(video, audio, **controls), retries)
        self.wait(job_id)
        return self.download(job_id, out)

    @staticmethod
    def _submit_patiently(submit, retries: int) -> str:
        """submit() -> a job id, waiting out a full queue (429) up to `retries` times."""
        for _ in range(retries):
            try:
                return submit()
            except Busy as busy:
                time.sleep(busy.retry_after or 1)
        return submit()

    def _call(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None, raw=False):
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if ctype:
            request.add_header("Content-Type", ctype)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except (json.JSONDecodeError, AttributeError):
                message = text.strip()[:200]
            _raise(err.code, message, err.headers.get("Retry-After"))
        return data if raw else json.loads(data)


def _raise(status: int, message: str, retry_after: str | None = None):
    if status in (413, 422):
        raise InputError(message)
    wait = float(retry_after) if retry_after and retry_after.isdigit() else None
    raise (Busy if status == 429 else ServerError)(status, message, wait)


def _multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        value = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        filename = path.name.replace('"', "_")
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n")
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
