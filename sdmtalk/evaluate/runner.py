"""`sdmtalk evaluate`: score methods against real clips (protocol in docs/METRICS.md).

For each clip: the source photo is one real frame (the first with a face), the driving
audio is the clip's own track, and every method's video is compared with the clip's real
frames. Real and generated frames go through the SAME fixed alignment (a similarity from
the source frame's landmarks to the canonical template) onto a square canvas; metrics run
on that canvas resized to `size`, with landmarks DETECTED by dlib on both videos.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sdmtalk import FPS, SAMPLE_RATE
from sdmtalk.data.cache import CacheReader
from sdmtalk.data.offsets import OffsetRule
from sdmtalk.errors import InputError, NoFaceError
from sdmtalk.evaluate import head_metrics, image_metrics, lip_metrics, sync_metrics
from sdmtalk.evaluate.methods import DEFAULT_METHODS, Method, MethodRunner, parse_methods, seeds_for
from sdmtalk.evaluate.report import group_summary, write_report
from sdmtalk.face import LandmarkTracker, detect_face
from sdmtalk.face.align import ALIGN_WEIGHTS, Similarity, fit_similarity
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.video import read_video, write_mp4

WORK = 512  # side of the canvas the methods animate (then area-resized to `size`)
IOD_FRAC = 0.30  # outer-eye-corner distance of the template as a fraction of the side
CENTRE = (0.5, 0.55)  # where the template's centre lands (fractions of the side)
SOURCE_SEARCH = 25  # frames searched for the first face (the source photo)
CSIM_FRAMES = 10  # generated frames embedded per clip (dlib ResNet, ~0.1 s each)
FID_FRAMES = 25  # frames per clip and method entering FID (Inception, ~0.15 s each)
CURVE_CLIPS = 3  # clips whose mouth and pose curves are kept for the plots
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".m4v"}


@dataclass
class ClipSource:
    name: str  # relative path without extension
    path: Path


@dataclass
class RealClip:
    """One clip ready for scoring. source: (WORK, WORK, 3) canvas of the source frame, face:
    its face on that canvas; crops: (T, size, size, 3) aligned real frames (crops[0] is the
    source); wav: (T*640,); landmarks (T, 68, 2) detected on crops; valid (T,) bool.
    photo, photo_face, alignment: the source frame as the video has it, its face, and the
    similarity onto the canvas: the methods animate the photo, and their frames are aligned
    as the real ones are (generated_crops)."""

    clip: ClipSource
    source_index: int
    source: np.ndarray
    face: object
    crops: np.ndarray
    wav: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    photo: np.ndarray | None = None
    photo_face: object = None
    alignment: Similarity | None = None


# --- inputs -----------------------------------------------------------------------------------


def find_clips(source, split: str | None = None, data_root=None) -> list[ClipSource]:
    """A video file, a folder searched recursively for videos, or a prepared cache."""
    source = Path(source)
    if source.is_file():
        return [ClipSource(source.stem, source)]
    if not source.is_dir():
        raise InputError(f"{source} does not exist: give a folder of video clips or a prepared cache")
    if (source / "manifest.json").is_file():
        return _cache_clips(source, split, data_root)
    paths = sorted(Path(d) / f for d, _, files in os.walk(source, followlinks=True)
                   for f in files if Path(f).suffix.lower() in VIDEO_EXTS)
    if not paths:
        raise InputError(f"no video clips (.mp4, .mov, ...) found under {source}: give a folder of clips")
    return [ClipSource(p.relative_to(source).with_suffix("").as_posix(), p) for p in paths]


def _cache_clips(cache_dir: Path, split: str | None, data_root) -> list[ClipSource]:
    """Clips of a prepared cache. Its records name their video relative to the folder given
    to `sdmtalk prepare`, which the cache does not store: `data_root` is that folder."""
    records = CacheReader(cache_dir).clips(split)
    if not records:
        raise InputError(f"{cache_dir}: no clips in split {split!r}; pass another --split or none")
    if data_root is None and not all(Path(r.source).is_absolute() for r in records):
        raise InputError(f"{cache_dir}: pass --data-root FOLDER, the folder the cache was prepared from "
                         "(its clips are listed relative to it)")
    root = Path(data_root) if data_root is not None else Path("/")
    return [ClipSource(r.clip_id, root / r.source) for r in records]


# --- alignment --------------------------------------------------------------------------------


def canvas_alignment(landmarks: np.ndarray, side: int = WORK) -> Similarity:
    """Similarity mapping photo pixels so `landmarks` (68, 2) fit the canonical template
    placed at IOD_FRAC * side inter-ocular distance, centred at CENTRE * side."""
    target = CANONICAL_TEMPLATE.astype(np.float64) * IOD_FRAC * side + np.array(CENTRE) * side
    return Similarity.from_vector(fit_similarity(landmarks, target, ALIGN_WEIGHTS))


def warp(frame: np.ndarray, sim: Similarity, side: int = WORK) -> np.ndarray:
    """Photo frame -> (side, side, 3) canvas; pixels outside the photo are black, in real and
    generated frames alike (repeating the border drew streaks above heads at the frame's top
    edge, which moved with the real head and not with the generated one)."""
    return cv2.warpAffine(frame, sim.matrix(), (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def to_metric_size(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, WORK, WORK, 3) -> (T, size, size, 3), area filter (the same for real and generated)."""
    if frames.shape[1] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _source_face(frames: np.ndarray, clip: ClipSource):
    """(index, FaceDetection) of the first of the first SOURCE_SEARCH frames with a face."""
    for i in range(min(SOURCE_SEARCH, len(frames))):
        try:
            return i, detect_face(frames[i], name=f"{clip.path} frame {i}", use_cnn=False)
        except NoFaceError:
            continue
    raise NoFaceError(f"no face in the first {SOURCE_SEARCH} frames of {clip.path}: "
                      "evaluate on clips that show a face")


def load_real_clip(clip: ClipSource, max_seconds: float, size: int, tracker) -> RealClip:
    """Read, align and track one real clip (at most max_seconds from its source frame)."""
    video = read_video(clip.path, fps=FPS, max_side=1280)
    if video.audio is None:
        raise InputError(f"{clip.path} has no sound track: evaluate on clips with speech")
    start, face = _source_face(video.frames, clip)
    frames = video.frames[start:start + int(round(max_seconds * FPS))]
    hop = SAMPLE_RATE // FPS
    wav = video.audio[start * hop:(start + len(frames)) * hop]
    sim = canvas_alignment(face.landmarks)
    canvas = np.stack([warp(f, sim) for f in frames])
    photo = np.ascontiguousarray(frames[0])
    del video, frames
    source = canvas[0]
    crops = to_metric_size(canvas, size)
    del canvas
    landmarks, valid = tracker.track(crops)[:2]
    canvas_face = detect_face(source, name=f"{clip.path} frame {start} (aligned)")
    return RealClip(clip, start, source, canvas_face, crops, wav, np.asarray(landmarks, np.float64),
                    np.asarray(valid, bool), photo, face, sim)


def generated_crops(runner, method, real: RealClip, seed: int, size: int):
    """A method's video of the clip -> (its frames aligned as the real ones, (n, size, size, 3);
    the AnimateResult). The method animates the source frame as the video has it (the
    renderer sees the photo's true edges), then each frame takes the real frames' alignment."""
    result = runner.generate(method, real.photo, real.wav, seed, face=real.photo_face,
                             video=(real.clip.path, real.source_index))
    frames = result.frames[: len(real.crops)]
    crops = to_metric_size(np.stack([warp(f, real.alignment) for f in frames]), size)
    result.frames = None  # the full-size frames are not kept
    return crops, result


# --- scoring ----------------------------------------------------------------------------------


@dataclass
class Track:
    """Landmarks (T, 68, 2) detected on aligned crops, valid (T,), and what follows from them."""

    landmarks: np.ndarray
    valid: np.ndarray

    @property
    def lip_gap(self) -> np.ndarray:
        return lip_metrics.inner_lip_gap(self.landmarks)

    @property
    def pose(self) -> np.ndarray:
        return head_metrics.head_pose(self.landmarks)


def motion_metrics(track: Track, loudness: np.ndarray, onsets: np.ndarray, mel=None) -> dict:
    """Metrics of one video alone (generated or real): lip sync to its audio and head motion
    (and the sync expert's scores when the clip's log-mel (4T, 80) is given)."""
    offset = lip_metrics.av_offset(track.lip_gap, loudness, valid=track.valid)
    stats = head_metrics.head_motion_stats(track.pose, track.valid)
    beats = head_metrics.kinematic_beats(head_metrics.head_speed(track.landmarks, track.valid))
    keep = track.valid
    return {
        "lip_energy_corr": lip_metrics.lip_energy_correlation(track.lip_gap, loudness, keep),
        "av_offset": offset["offset"], "av_corr": offset["corr"], "av_confidence": offset["confidence"],
        "lip_gap_std": float(np.std(track.lip_gap[keep])) if keep.sum() > 1 else float("nan"),
        **{f"head_{k}": v for k, v in stats.items()},
        "beat_align": head_metrics.beat_align(beats, onsets),
        "jitter": head_metrics.jitter(track.landmarks, keep),
        **(sync_metrics.expert_sync(mel, track.landmarks, keep) if mel is not None else {}),
    }


def paired_metrics(real: RealClip, gen_crops: np.ndarray, gen: Track, own_offset: int = 0) -> dict:
    """Generated vs real frames. The source frame (index 0) is the input, not a generated
    frame, so it is left out; frames where either video lost the face are left out too.
    own_offset: the real clip's applied AV offset (sync_metrics.own_offset) for the *_aligned
    lip columns, which pair generated frame t with real frame t + own_offset."""
    t = min(len(gen_crops), len(real.crops))
    gen_keep = gen.valid[:t].copy()
    gen_keep[0] = False
    keep = real.valid[:t] & gen_keep
    g, r = gen.landmarks[:t], real.landmarks[:t]
    gen_gap, real_gap = gen.lip_gap[:t], lip_metrics.inner_lip_gap(r)
    return {
        "lmd_mouth": lip_metrics.lmd(g, r, lip_metrics.MOUTH, keep),
        "lmd_face": lip_metrics.lmd(g, r, None, keep),
        "lmd_mouth_centred": lip_metrics.lmd(g, r, lip_metrics.MOUTH, keep, centre=True),
        "ssim": image_metrics.ssim(gen_crops[:t], real.crops[:t], keep),
        "psnr": image_metrics.psnr(gen_crops[:t], real.crops[:t], keep),
        "lip_gap_corr": lip_metrics.lip_gap_correlation(gen_gap, real_gap, keep),
        "lip_amp_ratio": lip_metrics.amplitude_ratio(gen_gap, real_gap, keep),
        **lip_metrics.aligned_lip_sync(gen_gap, real_gap, own_offset, gen_keep, real.valid[:t]),
        "frames_scored": int(keep.sum()),
        "frames_face_lost": int((~gen.valid[:t]).sum()),
    }


def spread_indices(valid: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` evenly spread indices of valid frames, the source frame (0) excluded."""
    idx = np.flatnonzero(valid)
    idx = idx[idx > 0]
    if len(idx) <= count:
        return idx
    return idx[np.linspace(0, len(idx) - 1, count).round().astype(int)]


def _nanmean(values) -> float:
    vals = np.array([np.nan if v is None else v for v in values], np.float64)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else float("nan")


def mean_over(dicts: list[dict]) -> dict:
    """Key-wise mean of finite values (NaN where none is finite)."""
    keys = dict.fromkeys(k for d in dicts for k in d)
    return {k: _nanmean([d.get(k) for d in dicts]) for k in keys}


# --- the evaluation loop ----------------------------------------------------------------------


def _curves(track: Track) -> dict:
    """Per-frame mouth opening (T,) and head pose (T, 3) with lost frames as NaN (plots)."""
    gap, pose = track.lip_gap.copy(), track.pose.copy()
    gap[~track.valid], pose[~track.valid] = np.nan, np.nan
    return {"lip_gap": gap.tolist(), "pose": pose.tolist()}


class Evaluator:
    """Scores every method on one clip at a time; collects FID features across clips."""

    def __init__(self, methods: list[Method], seeds: int, size: int, max_seconds: float,
                 weights=None, video_dir: Path | None = None, csim_frames: int = CSIM_FRAMES,
                 fid_frames: int = FID_FRAMES):
        self.methods, self.seeds, self.size, self.max_seconds = methods, seeds, size, max_seconds
        self.runner = MethodRunner(methods, weights, size=WORK)
        self.tracker = LandmarkTracker(quiet=True)
        self.embedder = image_metrics.IdentityEmbedder()
        self.video_dir = video_dir
        self.csim_frames, self.fid_frames = csim_frames, fid_frames
        self.fid_real: list[np.ndarray] = []
        self.fid_gen: dict[str, list[np.ndarray]] = {m.name: [] for m in methods}
        self.mouth_side = image_metrics.mouth_crop_side(size, IOD_FRAC)
        self.mouth_real: list[np.ndarray] = []
        self.mouth_gen: dict[str, list[np.ndarray]] = {m.name: [] for m in methods}

    def clip(self, clip: ClipSource, keep_curves: bool = False, bar=None) -> tuple[dict, dict | None]:
        """One clip -> (report entry, curves or None). Raises InputError for unusable clips."""
        t0 = time.perf_counter()
        real = load_real_clip(clip, self.max_seconds, self.size, self.tracker)
        n = len(real.crops)
        loud, onsets = lip_metrics.frame_loudness(real.wav, n), head_metrics.audio_onsets(real.wav, n)
        mel = sync_metrics.clip_log_mel(real.wav, n)
        own = sync_metrics.own_offset(mel, real.landmarks, real.valid)  # once per clip, shared by every method
        real_track = Track(real.landmarks, real.valid)
        fid_idx = spread_indices(real.valid, self.fid_frames)
        self.fid_real.append(image_metrics.inception_features(real.crops[fid_idx]))
        self.mouth_real.append(self._mouth_features(real.crops, real.landmarks, real.valid, fid_idx))
        source_emb = self.embedder.embed(real.crops[0], real.face.landmarks * (self.size / WORK))
        entry = {"clip": clip.name, "path": str(clip.path), "source_frame": real.source_index,
                 "frames": n, "real_face_lost": int((~real.valid).sum()),
                 "real": motion_metrics(real_track, loud, onsets, mel),
                 "real_offset": {k: own[k] for k in ("offset", "z", "windows", "confidence")},
                 "real_offset_applied": own["applied"], "methods": {}}
        curves = {"clip": clip.name, "real": _curves(real_track), "methods": {}} if keep_curves else None
        panels = [real.crops] if self.video_dir else None
        for method in self.methods:
            if bar is not None:
                bar.set_postfix_str(f"{clip.name}: {method.name}")
            entry["methods"][method.name] = self._method(method, real, loud, onsets, fid_idx,
                                                         source_emb, curves, panels, mel, own["applied"])
        if panels is not None:
            self._write_video(clip, real, panels)
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        return entry, curves

    def _method(self, method, real, loud, onsets, fid_idx, source_emb, curves, panels, mel=None,
                own_offset: int = 0) -> dict:
        per_seed, poses, valids = [], [], []
        for seed in seeds_for(method, self.seeds):
            crops, _ = generated_crops(self.runner, method, real, seed, self.size)
            lm, valid = self.tracker.track(crops)[:2]
            gen = Track(np.asarray(lm, np.float64), np.asarray(valid, bool))
            scores = {**paired_metrics(real, crops, gen, own_offset), **motion_metrics(gen, loud, onsets, mel)}
            if seed == 0:  # identity and FID on the first seed only (they cost ~0.1 s a frame)
                idx = spread_indices(gen.valid, self.csim_frames)
                scores["csim"] = image_metrics.csim(source_emb, [self.embedder.embed(crops[i], gen.landmarks[i]) for i in idx])
                self.fid_gen[method.name].append(image_metrics.inception_features(crops[fid_idx]))
                self.mouth_gen[method.name].append(self._mouth_features(crops, gen.landmarks, gen.valid, fid_idx))
                if curves is not None:
                    curves["methods"][method.name] = _curves(gen)
                if panels is not None:
                    panels.append(crops)
            per_seed.append(scores)
            poses.append(gen.pose)
            valids.append(gen.valid)
        div = head_metrics.pose_diversity(np.stack(poses), np.stack(valids))
        mean = {**mean_over(per_seed), "div_roll_deg": div["roll_deg"], "div_pos_px": div["pos_px"]}
        return {"mean": mean, "seeds": per_seed}

    def _write_video(self, clip: ClipSource, real: RealClip, panels: list[np.ndarray]) -> None:
        """real | method 1 | method 2 ... side by side, with the clip's audio."""
        labels = ["real"] + [m.name for m in self.methods]
        n = min(len(p) for p in panels)
        frames = (np.concatenate([_label(p[i], s) for p, s in zip(panels, labels, strict=True)], axis=1) for i in range(n))
        path = self.video_dir / (clip.name.replace("/", "__") + ".mp4")
        write_mp4(path, frames, real.wav[: n * (SAMPLE_RATE // FPS)], fps=FPS)

    def _mouth_features(self, crops, landmarks, valid, idx) -> np.ndarray:
        """Inception features of mouth crops at frames idx where the face was tracked."""
        idx = idx[valid[idx]]
        return image_metrics.inception_features(image_metrics.mouth_crops(crops[idx], landmarks[idx], self.mouth_side))

    def fid(self) -> dict:
        """FID of each method's frames (key m) and mouth crops (key m + "/mouth") against the
        real ones of the same clips."""
        if not self.fid_real:
            return {m: float("nan") for m in self.fid_gen}
        out = {}
        for real, gen, suffix in ((self.fid_real, self.fid_gen, ""), (self.mouth_real, self.mouth_gen, "/mouth")):
            real = np.concatenate(real)
            out.update({m + suffix: image_metrics.fid(np.concatenate(f), real) if f else float("nan") for m, f in gen.items()})
        return out


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    out = frame.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def aggregate(entries: list[dict], methods: list[Method], fid: dict) -> dict:
    """Clip-averaged metrics per method (each clip weighs the same), FID over pooled frames,
    head-motion ratios gen/real of the clip-averaged statistics, and a `real` reference row."""
    real = mean_over([e["real"] for e in entries])
    out = {}
    for m in methods:
        rows = [e["methods"][m.name]["mean"] for e in entries]
        agg = mean_over(rows)
        agg["fid"] = fid.get(m.name, float("nan"))
        agg["fid_mouth"] = fid.get(m.name + "/mouth", float("nan"))
        for key in ("head_pos_std", "head_roll_std", "head_pos_speed", "head_roll_speed", "jitter"):
            agg[f"{key}_ratio"] = agg.get(key, np.nan) / real[key] if real.get(key, 0) > 0 else float("nan")
        agg["clips"] = len(rows)
        agg["frames_scored"] = int(sum(r.get("frames_scored", 0) for r in rows))
        out[m.name] = agg
    out["real"] = {**real, "clips": len(entries),
                   "clips_realigned": sum(1 for e in entries if e.get("real_offset_applied"))}
    return out


def _check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the report folder {out_dir} ({err.strerror}): choose another --out") from err
    probe = out_dir / ".write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise InputError(f"report folder {out_dir} is not writable: choose another --out") from err


def evaluate(clips_or_cache, out_dir, methods=DEFAULT_METHODS, seeds: int = 5, max_clips: int | None = None,
             size: int = 256, quiet: bool = False, *, max_seconds: float = 8.0, weights=None,
             split: str | None = None, data_root=None, video: bool = False,
             csim_frames: int = CSIM_FRAMES, fid_frames: int = FID_FRAMES) -> dict:
    """Score `methods` on every clip; write report.json, report.md and plots to out_dir.

    Returns the report dict (see docs/METRICS.md for every key). Clips that cannot be used
    (unreadable, no sound, no face) are listed under "failed" and do not stop the run.
    """
    if seeds < 1 or max_seconds <= 0 or not 64 <= size <= WORK or csim_frames < 1 or fid_frames < 2:
        raise InputError(f"bad settings (--seeds {seeds}, --max-seconds {max_seconds}, --size {size}, "
                         f"--csim-frames {csim_frames}, --fid-frames {fid_frames}): use seeds >= 1, "
                         f"max-seconds > 0, 64 <= size <= {WORK}, csim-frames >= 1, fid-frames >= 2")
    if max_clips is not None and max_clips < 1:
        raise InputError(f"--max-clips {max_clips} scores nothing: use 1 or more (or leave it out: every clip)")
    out_dir = Path(out_dir)
    method_list = parse_methods(methods)
    clips = find_clips(clips_or_cache, split, data_root)[:max_clips]
    _check_out_dir(out_dir)
    video_dir = out_dir / "videos" if video else None
    if video_dir:
        video_dir.mkdir(exist_ok=True)
    ev = Evaluator(method_list, seeds, size, max_seconds, weights, video_dir, csim_frames, fid_frames)
    entries, failed, curves = [], [], []
    t0 = time.perf_counter()
    with tqdm(clips, desc="evaluate", unit="clip", disable=quiet or not sys.stderr.isatty()) as bar:
        for clip in bar:
            try:
                entry, c = ev.clip(clip, keep_curves=len(curves) < CURVE_CLIPS, bar=bar)
            except InputError as err:  # a clip we cannot use is listed, not fatal
                failed.append({"clip": clip.name, "path": str(clip.path), "reason": str(err)})
                continue
            entries.append(entry)
            if c is not None:
                curves.append(c)
    total = time.perf_counter() - t0
    report = {
        "settings": {"source": str(clips_or_cache), "methods": [m.name for m in method_list],
                     "method_labels": {m.name: m.label for m in method_list}, "seeds": seeds,
                     "size": size, "work_canvas": WORK, "iod_px": IOD_FRAC * size, "max_seconds": max_seconds,
                     "csim_frames": csim_frames, "fid_frames_per_clip": fid_frames, "split": split,
                     "weights": str(weights) if weights else None, "offset_rule": asdict(OffsetRule())},
        "aggregate": aggregate(entries, method_list, ev.fid()),
        "clips": entries,
        "groups": group_summary(entries, [m.name for m in method_list]),
        "failed": failed,
        "curves": curves,
        "timing": {"total_s": round(total, 1), "clips_scored": len(entries),
                   "per_clip_s": round(total / max(len(entries), 1), 1)},
    }
    write_report(report, out_dir)
    return report


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="folder of video clips (searched recursively), one video, or a prepared cache")
    parser.add_argument("--out", required=True, help="report folder (report.json, report.md, plots)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="comma-separated methods (default: all): " + ", ".join(DEFAULT_METHODS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per stochastic method (default 5)")
    parser.add_argument("--max-clips", type=int, default=None, help="score at most this many clips")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="seconds scored per clip (default 8)")
    parser.add_argument("--size", type=int, default=256, help="side of the aligned face crops (default 256)")
    parser.add_argument("--weights", default=None, help="SDM weights (default: the bundled ones)")
    parser.add_argument("--split", default=None, choices=("train", "val", "test"),
                        help="with a cache: only clips of this split")
    parser.add_argument("--data-root", default=None, help="with a cache: the folder its videos were prepared from")
    parser.add_argument("--fid-frames", type=int, default=FID_FRAMES,
                        help=f"frames per clip and method entering FID (default {FID_FRAMES})")
    parser.add_argument("--csim-frames", type=int, default=CSIM_FRAMES,
                        help=f"generated frames per clip embedded for CSIM (default {CSIM_FRAMES})")
    parser.add_argument("--video", action="store_true", help="also write real | generated comparison videos")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run_evaluate(args: argparse.Namespace) -> int:
    report = evaluate(args.source, args.out, args.methods, args.seeds, args.max_clips, args.size, args.quiet,
                      max_seconds=args.max_seconds, weights=args.weights, split=args.split,
                      data_root=args.data_root, video=args.video, csim_frames=args.csim_frames,
                      fid_frames=args.fid_frames)
    if not args.quiet:
        out = Path(args.out)
        print((out / "report.md").read_text(encoding="utf-8"))
        t = report["timing"]
        print(f"{t['clips_scored']} clip(s) scored, {len(report['failed'])} failed, "
              f"{t['per_clip_s']} s per clip; report in {out}", file=sys.stderr)
    return 0 if report["clips"] else 1
