"""Load test of `sdmtalk serve` on 127.0.0.1: CLIENTS threads each get JOBS videos through
sdmtalk.client (a 429 waits its Retry-After and tries again). Bounded: it stops by itself.
Prints jobs/minute, p50/p95 latency (accepted -> downloaded), 429s, 5xx, failed jobs,
invalid mp4s and the server's memory (idle after warm-up, peak, after the results expired).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/load_serve.py --clients 20 --jobs 5 --workers 2 --queue 8 --seconds 1 --ttl 20

Feeds docs/RESULTS.md, "Serving".
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from sdmtalk.assets import DEMO_SPEECH, demo_inputs
from sdmtalk.client import Busy, Client, ServerError


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(args, log) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "sdmtalk", "serve", "--port", str(port), "--workers", str(args.workers),
           "--queue", str(args.queue), "--result-ttl", str(args.ttl), "--motion", args.motion, "--no-page"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/api/health", timeout=2).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start: see " + log.name)


def valid_mp4(path: Path, frames: int) -> bool:
    try:
        with av.open(str(path)) as mp4:
            n = sum(1 for _ in mp4.decode(video=0))
            return bool(mp4.streams.audio) and abs(n - frames) <= 1
    except (av.FFmpegError, OSError):
        return False


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency, self.busy, self.server_errors, self.failed, self.invalid = [], 0, 0, [], 0

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                if k == "latency":
                    self.latency.append(v)
                elif k == "failed":
                    self.failed.append(v)
                else:
                    setattr(self, k, getattr(self, k) + v)


def one_job(client: Client, photo, audio, out: Path, frames: int, stats: Stats, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            job_id = client.submit(photo, audio, seed=len(stats.latency))
            break
        except Busy as busy:
            stats.add(busy=1)
            time.sleep(min(busy.retry_after or 1, 5))
    else:
        return
    t0 = time.monotonic()
    try:
        client.wait(job_id, timeout=max(1, deadline - t0), poll=0.25)
        client.download(job_id, out)
    except ServerError as err:
        stats.add(server_errors=int(err.status >= 500), failed=str(err))
        return
    except Exception as err:  # a failed job (InputError) or a timeout: counted, reported
        stats.add(failed=f"{type(err).__name__}: {err}")
        return
    stats.add(latency=time.monotonic() - t0, invalid=int(not valid_mp4(out, frames)))


def run_clients(args, url, photo, audio, tmp: Path, frames: int) -> tuple[Stats, float]:
    stats, client = Stats(), Client(url)
    deadline = time.monotonic() + args.max_minutes * 60

    def worker(c):
        for j in range(args.jobs):
            one_job(client, photo, audio, tmp / f"c{c}_{j}.mp4", frames, stats, deadline)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats, time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--jobs", type=int, default=5, help="jobs per client")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--queue", type=int, default=8)
    p.add_argument("--seconds", type=float, default=1.0, help="speech length of each job")
    p.add_argument("--motion", default="sdm")
    p.add_argument("--ttl", type=float, default=20, help="server --result-ttl")
    p.add_argument("--rounds", type=int, default=2, help="the whole load this many times, one after another")
    p.add_argument("--max-minutes", type=float, default=15, help="clients stop submitting after this")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        photo, _ = demo_inputs(tmp)
        wav, rate = sf.read(DEMO_SPEECH, dtype="float32")
        sf.write(tmp / "speech.wav", wav[: int(args.seconds * rate)], rate)
        frames = round(args.seconds * 25)
        with open(tmp / "server.log", "w") as log:
            proc, url = start_server(args, log)
            try:
                report = measure(args, proc, url, photo, tmp / "speech.wav", tmp, frames)
            finally:
                proc.terminate()
                proc.wait(60)
            report["server_exit_code"] = proc.returncode
    print(json.dumps(report, indent=1))


def measure(args, proc, url, photo, audio, tmp, frames) -> dict:
    warm = [threading.Thread(target=Client(url).generate, args=(photo, audio, tmp / f"warm{i}.mp4"))
            for i in range(args.workers)]  # every worker loads its model once
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    settle = args.ttl + min(30, args.ttl / 4) + 2  # results expire and the sweeper removes them
    time.sleep(settle)
    report = {"clients": args.clients, "jobs_each": args.jobs, "workers": args.workers, "queue": args.queue,
              "speech_s": args.seconds, "motion": args.motion, "rss_idle_mb": round(rss_mb(proc.pid)), "rounds": []}
    for _ in range(args.rounds):  # the same load again: memory after it should not keep growing
        peak, done = [rss_mb(proc.pid)], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, peak, done))
        sampler.start()
        stats, wall = run_clients(args, url, photo, audio, tmp, frames)
        done.set()
        sampler.join()
        time.sleep(settle)
        report["rounds"].append(round_report(stats, wall, max(peak), rss_mb(proc.pid)))
    report["health_after"] = json.loads(urllib.request.urlopen(url + "/api/health").read())
    return report


def sample_rss(pid: int, into: list, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        into.append(rss_mb(pid))


def round_report(stats: Stats, wall: float, peak: float, after: float) -> dict:
    lat = np.array(stats.latency) if stats.latency else np.array([np.nan])
    return {"finished": len(stats.latency), "jobs_per_min": round(len(stats.latency) / wall * 60, 1),
            "wall_s": round(wall, 1), "p50_s": round(float(np.percentile(lat, 50)), 2),
            "p95_s": round(float(np.percentile(lat, 95)), 2), "http_429": stats.busy,
            "http_5xx": stats.server_errors, "failed": stats.failed[:5], "invalid_mp4": stats.invalid,
            "rss_peak_mb": round(peak), "rss_after_mb": round(after)}


if __name__ == "__main__":
    main()
