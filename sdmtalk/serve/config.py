"""Settings of one `sdmtalk serve` process: the typed source of every server default."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeConfig:
    """host/port: where to listen (127.0.0.1: this machine only). token: when set, every
    request needs it (header `Authorization: Bearer TOKEN`, or `?token=TOKEN` once in the
    browser). workers: jobs generated at once; queue: jobs waiting beyond those (a full
    queue answers 429). Limits answer 413: max_upload_mb per file, max_megapixels of the
    photo (and of a dub's video frames), max_audio_seconds of the speech, max_video_seconds of
    a video to dub; max_samples per job (422 beyond). max_streams: live streams at once (429 beyond; each
    takes about one core); stream_max_latency_s: their latency budget (StreamConfig.max_latency_s:
    later frames are dropped; None: never drop). Results are
    deleted result_ttl_s seconds after their job ends (then 404). work_dir: where uploads
    and results live (default: a fresh temp folder, removed at exit)."""

    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None
    workers: int = 1
    queue: int = 8
    max_upload_mb: float = 20.0
    max_megapixels: float = 40.0
    max_audio_seconds: float = 120.0
    max_video_seconds: float = 120.0
    max_samples: int = 4
    max_streams: int = 1
    stream_max_latency_s: float | None = 0.5
    result_ttl_s: float = 3600.0
    motion: str = "sdm"
    weights: str | None = None
    threads: int | None = None
    work_dir: Path | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        """A whole request: a photo (or a video to dub), a speech file and the form fields."""
        return 2 * self.max_upload_bytes + 64 * 1024

    @property
    def is_local(self) -> bool:
        """Only this machine can connect (a loopback address or localhost)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
