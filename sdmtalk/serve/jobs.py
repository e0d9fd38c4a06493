"""Jobs of the server: a bounded queue in front of a fixed pool of worker threads, each
running the one TalkingFacePipeline (generate a video from a photo, or dub a video); results
expire.

A job owns one folder (inputs and outputs, named by the server, never by the client); its
inputs are removed when it ends, its videos when it expires. Errors are the pipeline's own
InputError lines with the server's paths replaced by the names the client gave.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import cv2
import torch

from sdmtalk.errors import InputError, one_line
from sdmtalk.memory import release_free_memory
from sdmtalk.motion.pose_reference import with_pose_reference
from sdmtalk.motion.types import MotionControls
from sdmtalk.pipeline import TalkingFacePipeline
from sdmtalk.serve.config import ServeConfig
from sdmtalk.threads import default_threads

_LOG = logging.getLogger(__name__)
INTERNAL_ERROR = "internal error while generating: the server log has the details; please report it"
# Share of a job's progress bar each stage fills (rendering and encoding take most time).
_STAGE_SHARE = {"face": (0.0, 0.05), "audio": (0.05, 0.1), "motion": (0.1, 0.3)}
# A dub tracks the face in every video frame first: about as long as rendering them.
_DUB_SHARE = {"video": (0.0, 0.45), "motion": (0.45, 0.5)}
DUB_NAME = "sdmtalk_dub.mp4"  # the CLI's default output name


class QueueFull(Exception):
    """Every worker is busy and the queue is full; retry_after: seconds worth waiting."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy: try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class JobRequest:
    """One generation, as the pipeline takes it."""

    kind: ClassVar[str] = "generate"
    photo: Path
    audio: Path
    controls: MotionControls
    num_samples: int = 1
    face_index: int | None = None
    size: int = 256
    crop: str = "face"
    motion: str = "sdm"
    blink: bool = True
    pose_reference: Path | None = None  # a video whose head style the motion takes

    def inputs(self) -> list[Path]:
        return [p for p in (self.photo, self.audio, self.pose_reference) if p is not None]


@dataclass
class DubRequest:
    """One dub (TalkingFacePipeline.dub): a video's lips say new speech."""

    kind: ClassVar[str] = "dub"
    num_samples: ClassVar[int] = 1
    video: Path
    audio: Path
    controls: MotionControls
    face_index: int | None = None
    motion: str = "sdm"
    keep_video_length: bool = False

    def inputs(self) -> list[Path]:
        return [self.video, self.audio]


@dataclass
class Job:
    """A job's state as the API reports it: queued -> running -> done | failed. `names` maps
    each server path to the name the client gave it (used in messages only)."""

    id: str
    folder: Path
    request: JobRequest | DubRequest | None = None
    state: str = "queued"
    stage: str = ""
    done: int = 0
    total: int = 0
    fraction: float = 0.0
    error: str | None = None
    status_code: int = 200
    videos: list = field(default_factory=list)
    finished: float | None = None
    renders: list = field(default_factory=list)  # render stages seen, one per sample
    names: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # a dub's notes (how the lengths were fitted, ...)

    def on_progress(self, stage: str, done: int, total: int) -> None:
        """The pipeline's progress callback."""
        self.stage, self.done, self.total = stage, done, total
        dub = isinstance(self.request, DubRequest)
        shares, render_from = (_DUB_SHARE, 0.5) if dub else (_STAGE_SHARE, 0.3)
        if stage.startswith("render"):
            if stage not in self.renders:
                self.renders.append(stage)
            per = (1 - render_from) / max(1, self.request.num_samples if self.request else 1)
            index = len(self.renders) - 1  # samples already written
            self.fraction = max(self.fraction, render_from + per * (index + done / max(1, total)))
        else:
            lo, hi = shares.get(stage, (0.0, 0.0))
            self.fraction = max(self.fraction, lo + (hi - lo) * done / max(1, total))

    def message(self, err: BaseException) -> str:
        """One line, with the server's paths replaced by the client's names."""
        return self.clean(one_line(err))

    def clean(self, text: str) -> str:
        """`text` with the server's paths replaced by the client's names."""
        for path, name in self.names.items():
            text = text.replace(str(path), name)
        return text.replace(str(self.folder), "<upload>")


class JobManager:
    """`workers` threads take jobs from a queue of at most `queue` waiting jobs. Each thread
    keeps its own TalkingFacePipeline per (motion, size, crop, blink): the model loads once
    per thread and a pipeline is never shared between two jobs running at once."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.own_dir = config.work_dir is None
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="sdmtalk-serve-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.threads = config.threads or max(1, default_threads() // max(1, config.workers))
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._recent: list[float] = []  # seconds of the last jobs, for Retry-After

    def start(self) -> None:
        """Start the workers and the sweeper of expired results (idempotent)."""
        if self._threads:
            return
        # Jobs on several threads set and restore these process-wide counts; starting from 1
        # every restore lands on 1, so a seed gives the CLI's video whatever runs beside it.
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        for i in range(self.config.workers):
            self._threads.append(threading.Thread(target=self._work, name=f"sdmtalk-job-{i}", daemon=True))
        self._threads.append(threading.Thread(target=self._sweep_loop, name="sdmtalk-sweep", daemon=True))
        for t in self._threads:
            t.start()

    def close(self, timeout: float = 30.0) -> None:
        """Refuse queued jobs, let running ones finish (up to `timeout`), remove the files."""
        self._stop.set()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            self._end(job, "failed", "the server stopped before this job ran: submit it again", 503)
        for t in self._threads:
            t.join(timeout)
        with self._lock:
            ended, self._jobs = list(self._jobs.values()), {}
        for job in ended:
            shutil.rmtree(job.folder, ignore_errors=True)
        if self.own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def new_job(self) -> Job:
        """A job with its own folder; submit() queues it, discard() drops it."""
        job_id = uuid.uuid4().hex
        folder = self.work_dir / job_id
        folder.mkdir()
        return Job(job_id, folder)

    def discard(self, job: Job) -> None:
        shutil.rmtree(job.folder, ignore_errors=True)

    def submit(self, job: Job) -> int:
        """Queue a prepared job -> how many jobs wait before it. Raises QueueFull."""
        with self._lock:
            if self._stop.is_set():
                raise QueueFull(5)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(self.retry_after()) from None
            self._jobs[job.id] = job
            return self._queue.qsize() - 1

    def get(self, job_id: str) -> Job | None:
        """The job, or None when it is unknown or its results expired."""
        self.sweep()
        with self._lock:
            return self._jobs.get(job_id)

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free."""
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 10.0
        return max(1, min(600, math.ceil(typical * (self._queue.qsize() + 1) / self.config.workers)))

    def counts(self) -> dict:
        self.sweep()
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {s: states.count(s) for s in ("queued", "running", "done", "failed")}

    def sweep(self) -> None:
        """Forget ended jobs older than result_ttl_s and delete their folders (-> 404)."""
        now = time.monotonic()
        with self._lock:
            expired = [j for j in self._jobs.values()
                       if j.finished is not None and now - j.finished >= self.config.result_ttl_s]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)

    def _sweep_loop(self) -> None:
        period = min(30.0, max(0.5, self.config.result_ttl_s / 4))
        while not self._stop.wait(period):
            self.sweep()

    def _work(self) -> None:
        pipelines: dict = {}
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._run(job, pipelines)

    def _run(self, job: Job, pipelines: dict) -> None:
        job.state, started = "running", time.monotonic()
        try:
            if isinstance(job.request, DubRequest):
                self._dub(job, pipelines, job.request)
            else:
                self._generate(job, pipelines, job.request)
            job.fraction = 1.0
            self._recent = (self._recent + [time.monotonic() - started])[-20:]
            self._end(job, "done")
        except InputError as err:
            self._end(job, "failed", job.message(err), 422)
        except Exception:  # one bad job must not take a worker (or the server) down
            _LOG.exception("job %s failed", job.id)
            self._end(job, "failed", INTERNAL_ERROR, 500)

    def _generate(self, job: Job, pipelines: dict, req: JobRequest) -> None:
        pipe = self._pipeline(pipelines, req.motion, req.size, req.crop, req.blink)
        pipe.progress = job.on_progress
        controls = req.controls
        if req.pose_reference is not None:  # tracked here, not at submit: it takes seconds
            controls = with_pose_reference(controls, req.pose_reference)
        results = pipe.generate(req.photo, req.audio, job.folder / "sdmtalk.mp4", controls,
                                req.num_samples, req.face_index)
        job.videos = [r.path for r in results]

    def _dub(self, job: Job, pipelines: dict, req: DubRequest) -> None:
        pipe = self._pipeline(pipelines, req.motion, 256, "face", False)  # the CLI's dub pipeline
        pipe.progress = job.on_progress
        result = pipe.dub(req.video, req.audio, job.folder / DUB_NAME, req.controls, req.face_index,
                          req.keep_video_length)
        job.notes = [job.clean(note) for note in result.notes]
        job.videos = [result.path]

    def _pipeline(self, pipelines: dict, motion: str, size: int, crop: str, blink: bool):
        key = (motion, size, crop, blink)
        if key not in pipelines:
            pipelines[key] = TalkingFacePipeline(
                motion=motion, weights=self.config.weights, size=size, crop=crop,
                blink=blink, quiet=True, threads=self.threads)
        return pipelines[key]

    def _end(self, job: Job, state: str, error: str | None = None, status_code: int = 200) -> None:
        """Final state; the inputs go at once, the videos when the job expires."""
        if job.request is not None:
            for path in job.request.inputs():
                path.unlink(missing_ok=True)
        job.error, job.status_code = error, status_code
        job.finished = time.monotonic()
        job.state = state
        release_free_memory()  # an idle server returns to its idle size
