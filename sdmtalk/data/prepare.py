"""`sdmtalk prepare`: videos -> training cache (format: docs/CACHE_FORMAT.md).

Per clip (``process_clip``): probe + decode with PyAV at 25 fps (nearest earlier source
frame by timestamp), audio at 16 kHz mono lined up with frame 0, voice activity
(silero-vad), 68 landmarks per frame (LandmarkTracker: HOG on a downscaled frame every few
frames, landmark-box tracking in between), quality filters with reasons, Savitzky-Golay
smoothing within runs of found faces, linear interpolation over lost frames, canonical
alignment with the per-frame similarity, Motion(pose, delta), and the audio features of the
generate pipeline. A clip that cannot be used is skipped with its reason, never a crash.

The run (``prepare_dataset``): clips in a stable order, every N-th for ``--shard I/N``, cut
into chunks of ``clips_per_shard``; each chunk becomes one committed shard, so a killed run
continues where it stopped and ends with the same cache.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import multiprocessing
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from sdmtalk import FPS, SAMPLE_RATE, __version__
from sdmtalk.audio.features import SAMPLES_PER_FRAME, compute_features, speech_activity
from sdmtalk.audio.loading import decode_audio
from sdmtalk.data.cache import (
    CACHE_VERSION,
    ClipRecord,
    ShardResult,
    file_sha1,
    finalize,
    part_name,
    read_commit,
    remove_temp_files,
    write_shard,
)
from sdmtalk.data.layouts import LAYOUTS, ClipSource, assign_splits, discover_clips, select_part
from sdmtalk.data.merge import merge_caches
from sdmtalk.errors import InputError
from sdmtalk.face.align import to_canonical
from sdmtalk.face.detect import box_from_landmarks
from sdmtalk.face.track import LandmarkTracker, landmark_jitter, smooth_landmarks
from sdmtalk.motion.types import motion_from_landmarks
from sdmtalk.video import align_audio, iter_video_frames, probe_video, video_start_time

SKIP_REASONS = ("corrupt", "too_short", "no_audio", "no_speech", "no_face", "face_too_small",
                "multiple_faces", "error")


@dataclass(frozen=True)
class PrepareConfig:
    """Every setting that changes the cache's content (its sha1 is the cache's settings key)."""

    min_seconds: float = 1.0  # shorter clips are skipped (too_short)
    min_face: float = 64.0  # median face box side in source pixels (face_too_small)
    min_valid: float = 0.5  # fraction of frames where the face was found (no_face)
    min_speech: float = 0.1  # fraction of frames with speech (no_speech)
    vad: str = "silero"  # silero | energy
    # A second face counts when its box side is >= second_face_ratio x the main face's and it
    # is seen in >= second_face_frac of the detection frames (multiple_faces); see docs.
    second_face_ratio: float = 0.6
    second_face_frac: float = 0.3
    # Savitzky-Golay window chosen by measurement on 48 real clips (docs/CACHE_FORMAT.md):
    # 7 frames cut jitter by 2/3 and gave the best lip-gap/loudness correlation on GRID.
    smooth_window: int = 7
    smooth_polyorder: int = 2
    detect_every: int = 5
    detect_max_side: int = 320
    max_gap_frames: int = 0  # > 0: skip clips with a longer run of lost frames (0 = no limit)

    def __post_init__(self) -> None:
        if self.vad not in ("silero", "energy"):
            raise InputError(f"unknown --vad {self.vad!r}: use silero or energy")
        if self.smooth_window < 1 or self.smooth_window % 2 == 0:
            raise InputError(f"--smooth-window must be an odd number >= 1, got {self.smooth_window}")


@dataclass
class ClipOutcome:
    """The result of one clip: ``record`` + ``arrays`` when kept, ``skip`` when not."""

    clip: ClipSource
    sha1: str
    record: dict | None = None
    arrays: dict[str, np.ndarray] | None = None
    skip: dict | None = None
    frames_decoded: int = 0
    cpu_s: float = 0.0
    stats: dict = field(default_factory=dict)


class _Skip(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class _RecordingTracker(LandmarkTracker):
    """LandmarkTracker that keeps every detection's boxes (for the several-faces filter)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.detections: list[list[tuple[float, float, float, float]]] = []

    def _detect(self, gray):
        boxes = super()._detect(gray)
        self.detections.append(boxes)
        return boxes


def process_clip(clip: ClipSource, cfg: PrepareConfig) -> ClipOutcome:
    """Never raises for a bad clip: problems become ``skip = {reason, detail}``."""
    start = time.process_time()
    out = ClipOutcome(clip, sha1="")
    try:
        out.sha1 = file_sha1(clip.path)
        _process(clip, cfg, out)
    except _Skip as s:
        out.skip = {"reason": s.reason, "detail": s.detail}
    except (InputError, OSError, av.FFmpegError) as err:  # unreadable, corrupt or truncated
        out.skip = {"reason": "corrupt", "detail": str(err)}
    except Exception as err:  # one odd clip must not end a day-long run; reported
        out.skip = {"reason": "error", "detail": f"{type(err).__name__}: {err}"}
    if out.skip is not None:
        out.skip.update(clip_id=clip.clip_id, source=clip.rel, speaker=clip.speaker,
                        split=clip.split, sha1=out.sha1, frames=out.frames_decoded)
    out.cpu_s = time.process_time() - start
    return out


def _process(clip: ClipSource, cfg: PrepareConfig, out: ClipOutcome) -> None:
    info = probe_video(clip.path)
    if info["duration"] and info["duration"] < cfg.min_seconds - 0.5 / FPS:
        raise _Skip("too_short", f"{info['duration']:.2f} s < {cfg.min_seconds} s")
    if not info["has_audio"]:
        raise _Skip("no_audio", "the video has no sound track")
    track = decode_audio(clip.path)
    speech_ranges = _speech_ranges(track.samples, cfg.vad)
    speech_frac = _covered(speech_ranges, len(track.samples))
    if speech_frac < cfg.min_speech:
        raise _Skip("no_speech", f"speech in {speech_frac:.0%} of the audio < {cfg.min_speech:.0%}")
    video_start = video_start_time(clip.path)
    frames = _FrameCounter(iter_video_frames(clip.path))
    tracker = _RecordingTracker(detect_every=cfg.detect_every, detect_max_side=cfg.detect_max_side,
                                quiet=True)
    raw, valid, _ = tracker.track(frames)
    out.frames_decoded = n = len(raw)
    expected = info["duration"] * FPS
    if expected and n < 0.8 * expected - 2:  # FFmpeg stops quietly at a cut-off file
        raise _Skip("corrupt", f"truncated: decoded {n} of ~{expected:.0f} frames")
    if n < round(cfg.min_seconds * FPS):
        raise _Skip("too_short", f"{n} frames < {cfg.min_seconds} s at {FPS} fps")
    second = _check_faces(raw, valid, tracker.detections, cfg)
    wav = align_audio(track.samples, track.start_time - video_start, n)
    speech = _frame_mask(speech_ranges, int(round((track.start_time - video_start) * SAMPLE_RATE)), n)
    out.arrays, stats = _arrays(raw, valid, wav, speech, cfg)
    out.stats = stats
    out.record = dict(
        clip_id=clip.clip_id, speaker=clip.speaker, split=clip.split, frames=n, fps=float(FPS),
        source=clip.rel, sha1=out.sha1, src_fps=round(float(info["fps"]), 3),
        width=frames.width, height=frames.height, face_size=stats["face_size"],
        valid_frac=round(float(valid.mean()), 4), speech_frac=round(float(speech.mean()), 4),
        orig_split=clip.orig_split, jitter_raw=stats["jitter_raw"], jitter_smooth=stats["jitter_smooth"],
        second_face_frac=round(second, 4),
        max_faces=max((len(d) for d in tracker.detections), default=0),
    )


class _FrameCounter:
    """Passes frames through and remembers the frame size."""

    def __init__(self, frames):
        self.frames, self.width, self.height = frames, 0, 0

    def __iter__(self):
        for f in self.frames:
            self.height, self.width = f.shape[:2]
            yield f


@lru_cache(maxsize=1)
def _silero():
    from silero_vad import load_silero_vad

    return load_silero_vad()


def _speech_ranges(samples: np.ndarray, vad: str) -> list[tuple[int, int]]:
    """Speech as [(start, end)] sample ranges of the 16 kHz track."""
    if len(samples) == 0:
        return []
    if vad == "energy":
        mask = speech_activity(samples)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
        return [(a * SAMPLES_PER_FRAME, b * SAMPLES_PER_FRAME) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    import torch
    from silero_vad import get_speech_timestamps

    ts = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(samples)), _silero(),
                               sampling_rate=SAMPLE_RATE)
    return [(int(t["start"]), int(t["end"])) for t in ts]


def _covered(ranges: list[tuple[int, int]], n: int) -> float:
    return sum(min(b, n) - a for a, b in ranges) / n if n else 0.0


def _frame_mask(ranges: list[tuple[int, int]], offset: int, num_frames: int) -> np.ndarray:
    """(T,) bool: video frames whose 40 ms span is mostly speech (ranges shifted by offset)."""
    mask = np.zeros(num_frames * SAMPLES_PER_FRAME, bool)
    for a, b in ranges:
        mask[max(0, a + offset): max(0, b + offset)] = True
    return mask.reshape(num_frames, SAMPLES_PER_FRAME).mean(axis=1) >= 0.5


def face_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) -> (T, 4) detector-style face boxes (x0, y0, x1, y1), NaN where invalid."""
    boxes = np.full((len(landmarks), 4), np.nan, np.float32)
    for i, lm in enumerate(landmarks):
        if np.isfinite(lm).all():
            boxes[i] = box_from_landmarks(lm)
    return boxes


def second_face_fraction(detections: list[list[tuple]], ratio: float) -> float:
    """Fraction of detection frames that hold a second face whose box side is at least
    ``ratio`` x the largest face's (small background faces and one-off hits do not count)."""
    if not detections:
        return 0.0
    hits = 0
    for boxes in detections:
        sides = sorted((b[2] - b[0] for b in boxes), reverse=True)
        hits += len(sides) >= 2 and sides[1] >= ratio * sides[0]
    return hits / len(detections)


def _check_faces(raw, valid, detections, cfg: PrepareConfig) -> float:
    """Apply the face filters (raise _Skip); returns the second-face fraction of a kept clip."""
    if valid.mean() < cfg.min_valid:
        raise _Skip("no_face", f"face found in {valid.mean():.0%} of frames < {cfg.min_valid:.0%}")
    if cfg.max_gap_frames > 0 and _longest_run(~valid) > cfg.max_gap_frames:
        raise _Skip("no_face", f"face lost for {_longest_run(~valid)} frames in a row")
    boxes = face_boxes(raw[valid])
    size = float(np.median(boxes[:, 2] - boxes[:, 0]))
    if size < cfg.min_face:
        raise _Skip("face_too_small", f"face box {size:.0f} px < {cfg.min_face:.0f} px")
    frac = second_face_fraction(detections, cfg.second_face_ratio)
    if frac >= cfg.second_face_frac:
        raise _Skip("multiple_faces", f"a second face in {frac:.0%} of detections")
    return frac


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def interpolate_invalid(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid frames of (T, 68, 2) linearly from the valid ones (edges hold)."""
    if valid.all():
        return landmarks.astype(np.float32)
    t = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1)
    filled = np.stack([np.interp(t, t[valid], flat[valid, j]) for j in range(flat.shape[1])], 1)
    return filled.reshape(landmarks.shape).astype(np.float32)


def _arrays(raw, valid, wav, speech, cfg: PrepareConfig) -> tuple[dict, dict]:
    smooth = smooth_landmarks(raw, valid, cfg.smooth_window, cfg.smooth_polyorder)
    landmarks = interpolate_invalid(smooth, valid)
    canonical, sims = to_canonical(landmarks)
    motion, _, _ = motion_from_landmarks(landmarks)
    feats = compute_features(wav, num_frames=len(landmarks))
    boxes = face_boxes(landmarks)
    arrays = {
        "landmarks": landmarks, "canonical": canonical, "sims": sims.astype(np.float32),
        "pose": motion.pose, "delta": motion.delta, "mel": feats.mel, "prosody": feats.prosody,
        "energy": feats.energy, "valid": valid.astype(np.uint8), "box": boxes,
        "speech": speech.astype(np.uint8),
    }
    stats = {
        "face_size": round(float(np.median(boxes[valid, 2] - boxes[valid, 0])), 2),
        "jitter_raw": _round(landmark_jitter(raw, valid)),
        "jitter_smooth": _round(landmark_jitter(smooth, valid)),
    }
    return arrays, stats


def _round(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


def config_dict(cfg: PrepareConfig) -> dict:
    return asdict(cfg)


# ---------------------------------------------------------------- the run


@dataclass
class PrepareSummary:
    """What a prepare run did. frames_per_cpu_s is the per-core throughput: decoded video
    frames per second of worker CPU time (decode + landmarks + features)."""

    out_dir: str
    layout: str
    part: str
    clips: int = 0  # clips of this part
    kept: int = 0
    skipped: int = 0
    skipped_by_reason: dict = field(default_factory=dict)
    frames: int = 0  # frames in kept clips (25 fps)
    frames_decoded: int = 0  # frames decoded by this run (kept or not)
    shards_written: int = 0
    shards_resumed: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    workers: int = 1
    frames_per_s: float = 0.0
    frames_per_cpu_s: float = 0.0
    jitter_raw: float | None = None  # median over clips of this run
    jitter_smooth: float | None = None
    complete: bool = False
    splits: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped_by_reason.items())) or "none"
        jit = ("" if self.jitter_raw is None else
               f"; landmark jitter {self.jitter_raw:.4f} -> {self.jitter_smooth:.4f} (smoothed)")
        return [
            f"prepared {self.kept} clips ({self.frames} frames at {FPS} fps) into {self.out_dir} "
            f"[{self.layout}, part {self.part}, {self.shards_written} shards written, "
            f"{self.shards_resumed} already done]",
            f"skipped {self.skipped}: {reasons}",
            f"{self.frames_decoded} frames in {self.wall_s:.1f} s with {self.workers} worker(s): "
            f"{self.frames_per_s:.1f} frames/s, {self.frames_per_cpu_s:.1f} frames/s per core{jit}",
            f"splits: {self.splits}" + ("" if self.complete else " (cache not complete yet)"),
        ]


def _settings(cfg: PrepareConfig, layout: str, val_frac: float, test_frac: float,
              clips_per_shard: int) -> tuple[dict, str]:
    settings = dict(config_dict(cfg), layout=layout, val_frac=val_frac, test_frac=test_frac,
                    clips_per_shard=clips_per_shard, sdmtalk=__version__, cache_version=CACHE_VERSION)
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return settings, key


# The code whose output lands in the cache: a resume redoes shards another version made.
_CODE_FILES = ("video.py", "audio/loading.py", "audio/features.py", "face/align.py", "face/detect.py",
               "face/template.py", "face/track.py", "motion/types.py", "data/prepare.py",
               "data/cache.py", "data/layouts.py")


def code_fingerprint() -> str:
    """sha1 over the code of the stages above (syntax tree without docstrings, so comment,
    docstring and layout edits do not count) and the versions of the native libraries."""
    import dlib
    import silero_vad

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha1(f"{av.__version__} {dlib.__version__} {np.__version__}".encode())
    h.update(str(getattr(silero_vad, "__version__", "")).encode())
    for name in _CODE_FILES:
        h.update(name.encode() + b"\0" + _code_only((root / name).read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:16]


def _code_only(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def _check_existing(out_dir: Path, key: str) -> None:
    path = out_dir / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("settings_key") not in (None, key):
            raise InputError(f"{out_dir} holds a cache prepared with other settings or another "
                             "sdmtalk version: use a new --out folder or delete it")


def prepare_dataset(
    src_dir,
    out_dir,
    layout: str = "auto",
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    manifest=None,
    quiet: bool = False,
    min_face: float = PrepareConfig.min_face,
    min_seconds: float = PrepareConfig.min_seconds,
    min_speech: float = PrepareConfig.min_speech,
    vad: str = PrepareConfig.vad,
    smooth_window: int = PrepareConfig.smooth_window,
    clips_per_shard: int = 100,
    val_frac: float = 0.05,
    test_frac: float = 0.05,
    limit: int | None = None,
    config: PrepareConfig | None = None,
) -> PrepareSummary:
    """Videos under ``src_dir`` -> cache in ``out_dir`` (format: docs/CACHE_FORMAT.md).

    Resumable: shards already committed (same settings, same clips) are kept, the rest are
    made again, so a killed run re-run with the same arguments ends with the same cache.
    ``shard=(I, N)`` prepares every N-th clip starting at I (join parts with merge_caches).
    ``limit`` keeps the first clips of the (sorted) list: for trials. ``config`` overrides
    the individual filter arguments.
    """
    t0 = time.perf_counter()
    cfg = config or PrepareConfig(min_face=min_face, min_seconds=min_seconds, min_speech=min_speech,
                                  vad=vad, smooth_window=smooth_window)
    if workers < 1 or clips_per_shard < 1:
        raise InputError("--workers and --clips-per-shard must be at least 1")
    layout_used, clips = discover_clips(src_dir, layout, manifest)
    clips, split_info = assign_splits(clips, val_frac, test_frac)
    if limit is not None:
        clips = clips[:limit]
    part = part_name(*shard)
    mine = select_part(clips, *shard)
    settings, key = _settings(cfg, layout_used, val_frac, test_frac, clips_per_shard)
    code = code_fingerprint()  # once, before workers start: the code they will run
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_existing(out_dir, key)
    remove_temp_files(out_dir)
    chunks = [mine[i:i + clips_per_shard] for i in range(0, len(mine), clips_per_shard)]
    todo = [k for k, chunk in enumerate(chunks) if not _is_done(out_dir, part, k, chunk, key, code)]
    summary = PrepareSummary(str(out_dir), layout_used, part, clips=len(mine), workers=workers,
                             shards_resumed=len(chunks) - len(todo))
    with _SigtermAsInterrupt():
        _run_chunks(out_dir, part, len(chunks), {k: chunks[k] for k in todo}, cfg, (key, code),
                    workers, quiet, summary)
    parts = {part: len(chunks)}
    manifest_out = finalize(out_dir, settings, key, parts,
                            extra={"layout": layout_used, "split_conflicts": split_info["conflicting_speakers"]})
    _fill_summary(summary, manifest_out, part, time.perf_counter() - t0)
    _log_run(out_dir, summary)
    return summary


def _is_done(out_dir: Path, part: str, k: int, chunk: list[ClipSource], key: str, code: str) -> bool:
    commit = read_commit(out_dir, f"{part}-{k:05d}", verify=True)
    return (commit is not None and commit["settings_key"] == key
            and commit.get("code_key") == code
            and commit["sources"] == [c.clip_id for c in chunk])


def _run_chunks(out_dir, part, n_chunks, todo: dict[int, list[ClipSource]], cfg, keys, workers,
                quiet, summary: PrepareSummary) -> None:
    """Process the clips of the unfinished chunks (in order) and commit each chunk's shard."""
    order = [(k, c) for k in sorted(todo) for c in todo[k]]
    bar = tqdm(total=len(order), desc="prepare", unit="clip",
               disable=quiet or not sys.stderr.isatty())
    jitters: list[tuple[float, float]] = []
    start = time.perf_counter()
    pending: list[ClipOutcome] = []
    with _Outcomes(order, cfg, workers) as results:
        for n_done, ((k, _), outcome) in enumerate(zip(order, results, strict=True), 1):
            pending.append(outcome)
            _count(summary, outcome, jitters)
            elapsed = max(time.perf_counter() - start, 1e-9)
            bar.update(1)
            bar.set_postfix_str(f"{n_done / elapsed:.2f} clips/s, {summary.frames_decoded / elapsed:.1f} frames/s")
            if len(pending) == len(todo[k]):
                _commit(out_dir, part, k, n_chunks, todo[k], pending, keys)
                summary.shards_written += 1
                pending = []
                if not quiet and bar.disable:
                    print(f"shard {part}-{k:05d} done: {n_done}/{len(order)} clips, "
                          f"{n_done / elapsed:.2f} clips/s, {summary.frames_decoded / elapsed:.1f} frames/s",
                          file=sys.stderr, flush=True)
    bar.close()
    if jitters:
        summary.jitter_raw = round(float(np.median([j[0] for j in jitters])), 5)
        summary.jitter_smooth = round(float(np.median([j[1] for j in jitters])), 5)


def _count(summary: PrepareSummary, outcome: ClipOutcome, jitters: list) -> None:
    summary.frames_decoded += outcome.frames_decoded
    summary.cpu_s += outcome.cpu_s
    raw, smooth = outcome.stats.get("jitter_raw"), outcome.stats.get("jitter_smooth")
    if raw is not None and smooth is not None:
        jitters.append((raw, smooth))


def _commit(out_dir, part, k, n_chunks, chunk, outcomes: list[ClipOutcome], keys) -> None:
    shard = ShardResult(part=part, number=k, sources=[c.clip_id for c in chunk])
    for o in outcomes:
        if o.skip is not None:
            shard.skipped.append(o.skip)
        else:
            shard.records.append(ClipRecord.from_json(dict(o.record, shard=shard.name)))
            shard.arrays[o.clip.clip_id] = o.arrays
    write_shard(out_dir, shard, keys[0], chunks=n_chunks, code_key=keys[1])


class _Outcomes:
    """Context manager yielding ClipOutcomes in input order, in-process or from a pool."""

    def __init__(self, order, cfg, workers):
        self.clips = [c for _, c in order]
        self.cfg, self.workers, self.pool = cfg, workers, None

    def __enter__(self):
        if self.workers == 1 or len(self.clips) <= 1:
            _init_worker()
            return (process_clip(c, self.cfg) for c in self.clips)
        ctx = multiprocessing.get_context("spawn")  # no fork after torch/dlib threads exist
        self.pool = ctx.Pool(self.workers, initializer=_init_worker)
        return self.pool.imap(functools.partial(process_clip, cfg=self.cfg), self.clips, chunksize=1)

    def __exit__(self, exc_type, *exc):
        if self.pool is not None:
            if exc_type is None:
                self.pool.close()  # all results are in: let the workers exit cleanly
            else:
                self.pool.terminate()  # Ctrl-C or an error: unfinished shards stay uncommitted
            self.pool.join()
        return False


class _SigtermAsInterrupt:
    """`kill PID` stops a run like Ctrl-C: the pool is terminated, no worker is orphaned."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _init_worker() -> None:
    """One thread per worker: N workers use N cores, and numbers stay reproducible."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _fill_summary(summary: PrepareSummary, manifest: dict, part: str, wall: float) -> None:
    summary.wall_s = round(wall, 2)
    summary.cpu_s = round(summary.cpu_s, 2)
    summary.frames_per_s = round(summary.frames_decoded / max(wall, 1e-9), 2)
    summary.frames_per_cpu_s = round(summary.frames_decoded / max(summary.cpu_s, 1e-9), 2)
    counts = manifest["counts"]
    summary.kept, summary.frames = counts["clips"], counts["frames"]
    summary.skipped, summary.skipped_by_reason = counts["skipped"], counts["skipped_by_reason"]
    summary.splits = counts["by_split"]
    summary.complete = manifest["complete"]


def _log_run(out_dir: Path, summary: PrepareSummary) -> None:
    """Run statistics go to runs.jsonl, not the manifest: the cache itself stays identical."""
    entry = dict(asdict(summary), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    with open(out_dir / "runs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


# ---------------------------------------------------------------- command line


def _shard_arg(value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard wants I/N (e.g. 0/4), got {value!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard {value}: need 0 <= I < N")
    return i, n


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `sdmtalk prepare` (the CLI registers them as a subcommand)."""
    p.add_argument("src", nargs="?", help="folder of videos (VoxCeleb2, LRS3, LRW or any folder)")
    p.add_argument("--out", help="cache folder to write (resumable: rerun the same command)")
    p.add_argument("--layout", choices=list(LAYOUTS), default="auto", help="dataset layout (default: detect)")
    p.add_argument("--manifest", help="TSV/CSV with columns path, speaker[, split] (overrides the layout)")
    p.add_argument("--workers", type=int, default=1, help="processes on this machine")
    p.add_argument("--shard", type=_shard_arg, default=(0, 1), metavar="I/N",
                   help="prepare part I of N (one per machine); join with --merge")
    p.add_argument("--merge", nargs="+", metavar="CACHE_DIR",
                   help="join prepared caches into --out instead of preparing")
    f = p.add_argument_group("quality filters")
    f.add_argument("--min-face", type=float, default=PrepareConfig.min_face, help="min face box side, px")
    f.add_argument("--min-seconds", type=float, default=PrepareConfig.min_seconds, help="min clip length")
    f.add_argument("--min-speech", type=float, default=PrepareConfig.min_speech,
                   help="min fraction of the clip with speech")
    f.add_argument("--vad", choices=["silero", "energy"], default=PrepareConfig.vad, help="voice activity detector")
    f.add_argument("--smooth-window", type=int, default=PrepareConfig.smooth_window,
                   help="landmark smoothing window in frames (odd; 1 = none)")
    p.add_argument("--clips-per-shard", type=int, default=100, help="clips per shard file")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (a trial run)")
    p.add_argument("--no-phonemes", action="store_true",
                   help="skip the phoneme-posterior side table (the shipped SDM trains on it)")
    p.add_argument("--no-offsets", action="store_true",
                   help="skip the audio-video offset table (offsets.json: the sync expert's per-clip "
                        "offsets, corrected in training where confident)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def run_prepare(args: argparse.Namespace) -> int:
    if not args.out:
        raise InputError("prepare needs --out CACHE_DIR")
    if args.merge:
        manifest = merge_caches(args.out, args.merge)
        if not args.quiet:
            c = manifest["counts"]
            print(f"merged {len(args.merge)} caches into {args.out}: {c['clips']} clips, "
                  f"{c['frames']} frames, splits {c['by_split']}"
                  + ("" if manifest["complete"] else " (some parts are not complete)"))
        return 0
    if not args.src:
        raise InputError("prepare needs a source folder: sdmtalk prepare SRC_DIR --out CACHE_DIR")
    summary = prepare_dataset(
        args.src, args.out, layout=args.layout, workers=args.workers, shard=args.shard,
        manifest=args.manifest, quiet=args.quiet, min_face=args.min_face,
        min_seconds=args.min_seconds, min_speech=args.min_speech, vad=args.vad,
        smooth_window=args.smooth_window, clips_per_shard=args.clips_per_shard, limit=args.limit,
    )
    if not args.quiet:
        print("\n".join(summary.lines()))
    if not args.no_phonemes:
        from sdmtalk.data.phonemes import add_phonemes_parallel

        written = add_phonemes_parallel(args.out, args.src, args.workers, args.quiet)
        if not args.quiet:
            print(f"phoneme posteriors: {written} shard(s) added")
    if not args.no_offsets:
        from sdmtalk.data.offsets import measure_offsets, summary_lines

        table = measure_offsets(args.out, quiet=args.quiet)
        if not args.quiet:
            print("audio-video offsets (offsets.json): " + "; ".join(summary_lines(table)))
    return 0
