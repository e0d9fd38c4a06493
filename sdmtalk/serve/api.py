"""The HTTP API: submit a job (photo + speech + controls, or a video to dub + speech), poll
it, download its mp4. A dub (POST /api/dub) is a job like the others: the same answers, polled
and downloaded at /api/jobs/{id}.

Answers: 202 queued; 401 no or wrong token; 404 unknown or expired job; 409 not finished;
413 beyond a limit; 422 a bad input (the CLI's one-line message); 429 queue full, with
Retry-After. Every error body is {"error": "<one line>"}.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse

from sdmtalk.errors import InputError
from sdmtalk.serve.intake import (
    DubParams,
    LimitError,
    Params,
    build_dub_request,
    build_request,
    display_name,
    save_upload,
    stored_path,
)
from sdmtalk.serve.jobs import Job, JobManager, QueueFull


class ApiError(Exception):
    """An answer other than 2xx: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def job_json(job: Job, ttl: float) -> dict:
    """What a poll shows of a job."""
    body = {"id": job.id, "kind": job.request.kind if job.request else "generate", "state": job.state,
            "stage": job.stage, "done": job.done, "total": job.total,
            "progress": round(job.fraction, 3), "error": job.error, "status_code": job.status_code,
            "videos": [f"/api/jobs/{job.id}/video?sample={i}" for i in range(len(job.videos))],
            "notes": list(job.notes)}
    if job.finished is not None:
        body["expires_in_s"] = max(0, round(ttl - (time.monotonic() - job.finished)))
    return body


def submit_job(manager: JobManager, fill) -> Job:
    """A new job filled by `fill(job)` (uploads saved, JobRequest built) and queued; on any
    refusal its folder is removed. InputError -> 422, LimitError -> 413, QueueFull -> 429."""
    job = manager.new_job()
    try:
        job.request = fill(job)
        manager.submit(job)
    except LimitError as err:
        manager.discard(job)
        raise ApiError(413, job.message(err)) from None
    except InputError as err:
        manager.discard(job)
        raise ApiError(422, job.message(err)) from None
    except QueueFull as err:
        manager.discard(job)
        raise ApiError(429, str(err), {"Retry-After": str(err.retry_after)}) from None
    except BaseException:
        manager.discard(job)
        raise
    return job


def api_router(manager: JobManager) -> APIRouter:
    config = manager.config
    router = APIRouter(prefix="/api")

    @router.post("/jobs", status_code=202, summary="Submit a job: photo + speech (or text) + controls")
    def submit(
        photo: Annotated[UploadFile, File(description="face photo (jpg, png, ...)")],
        audio: Annotated[UploadFile | None, File(description="speech (wav, mp3, m4a, flac, ogg)")] = None,
        text: Annotated[str | None, Form(description="text to speak when no audio is sent")] = None,
        seed: Annotated[int, Form()] = 0,
        num_samples: Annotated[int, Form(description="videos with different head motion")] = 1,
        pose_scale: Annotated[float, Form()] = 1.0,
        lip_scale: Annotated[float, Form()] = 1.0,
        rhythm_scale: Annotated[float, Form()] = 1.0,
        still: Annotated[bool, Form()] = False,
        diffusion_steps: Annotated[str, Form(description="auto, K or 0")] = "auto",
        size: Annotated[int, Form(description="256 or 512")] = 256,
        crop: Annotated[str, Form(description="face or full")] = "face",
        motion: Annotated[str | None, Form(description="sdm, energy, linear or static")] = None,
        face_index: Annotated[int | None, Form()] = None,
        blink: Annotated[bool, Form()] = True,
        pose_reference: Annotated[UploadFile | None, File(
            description="a video whose head motion style (how far, how fast) the head takes")] = None,
    ) -> JSONResponse:
        params = Params(seed, num_samples, pose_scale, lip_scale, rhythm_scale, still, diffusion_steps,
                        size, crop, motion, face_index, blink)

        def fill(job: Job):
            photo_path = _save(job, photo, "photo", config.max_upload_bytes)
            audio_path = _save(job, audio, "audio", config.max_upload_bytes) if audio is not None else None
            reference = (_save(job, pose_reference, "pose_reference", config.max_upload_bytes)
                         if pose_reference is not None else None)
            return build_request(job, config, photo_path, audio_path, text, params, reference)

        return _accepted(submit_job(manager, fill), config)

    _add_dub_route(router, manager)

    @router.get("/jobs/{job_id}", summary="A job's state and progress")
    def status(job_id: str) -> dict:
        return job_json(_job(manager, job_id), config.result_ttl_s)

    @router.get("/jobs/{job_id}/video", summary="Download a finished job's mp4", response_class=FileResponse)
    def video(job_id: str, sample: int = 0) -> FileResponse:
        job = _job(manager, job_id)
        if job.state == "failed":
            raise ApiError(job.status_code, job.error or "the job failed")
        if job.state != "done":
            raise ApiError(409, f"job {job_id} is {job.state}: poll /api/jobs/{job_id} until it is done")
        if not 0 <= sample < len(job.videos) or not job.videos[sample].is_file():
            raise ApiError(404, f"job {job_id} has no sample {sample}: use 0 to {len(job.videos) - 1}")
        return FileResponse(job.videos[sample], media_type="video/mp4", filename=job.videos[sample].name)

    @router.get("/health", summary="Workers, queue and job counts")
    def health() -> dict:
        return {"ok": True, "workers": config.workers, "queue": config.queue, "jobs": manager.counts()}

    return router


def _add_dub_route(router: APIRouter, manager: JobManager) -> None:
    config = manager.config

    @router.post("/dub", status_code=202,
                 summary="Submit a dub: a video + new speech (or text); its lips say the speech")
    def dub(
        video: Annotated[UploadFile, File(description="the video to dub: one person talking (mp4, mov, mkv, webm)")],
        audio: Annotated[UploadFile | None, File(description="the new speech (wav, mp3, m4a, flac, ogg)")] = None,
        text: Annotated[str | None, Form(description="text to speak when no audio is sent")] = None,
        seed: Annotated[int, Form()] = 0,
        lip_scale: Annotated[float, Form()] = 1.0,
        face_index: Annotated[int | None, Form(description="which face (left to right from 0; default: the largest)")] = None,
        keep_video_length: Annotated[bool, Form(
            description="pad or trim the speech to the video (default: the video follows the speech)")] = False,
        motion: Annotated[str | None, Form(description="sdm, linear or energy")] = None,
    ) -> JSONResponse:
        params = DubParams(seed, lip_scale, face_index, keep_video_length, motion)

        def fill(job: Job):
            video_path = _save(job, video, "video", config.max_upload_bytes)
            audio_path = _save(job, audio, "audio", config.max_upload_bytes) if audio is not None else None
            return build_dub_request(job, config, video_path, audio_path, text, params)

        return _accepted(submit_job(manager, fill), config)


def _accepted(job: Job, config) -> JSONResponse:
    return JSONResponse(job_json(job, config.result_ttl_s), status_code=202, headers={"Location": f"/api/jobs/{job.id}"})


def _save(job: Job, upload: UploadFile, role: str, limit: int):
    name = display_name(upload.filename, role)
    dest = stored_path(job, role, upload.filename)
    job.names[dest] = name
    save_upload(upload.file, dest, role, name, limit)
    return dest


def _job(manager: JobManager, job_id: str) -> Job:
    job = manager.get(job_id)
    if job is None:
        raise ApiError(404, f"no job {job_id[:40]}: it never existed or its results expired")
    return job


def install_error_handlers(app) -> None:
    """Every error as {"error": one line}; never a stack trace."""
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        field = str(first.get("loc", ["", "input"])[-1])
        got = f", got {first['input']!r}" if isinstance(first.get("input"), str | int | float) else ""
        return error_response(422, f"--{field.replace('_', '-')}: {first.get('msg', 'not valid')}{got}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, err: Exception):
        logging.getLogger(__name__).exception("request %s failed", request.url.path)
        return error_response(500, "internal server error: the server log has the details; please report it")
