"""Motion-stage numbers on a prepared cache, in landmark space (no rendering; prints a table).

    python benchmarks/bench_motion.py --cache CACHE [--split val] [--weights W] [--seeds 5] [--no-offsets]
        [--methods linear --linear-weights RUN/linear_baseline.safetensors]

For each clip of the split the source is the clip's first frame and the driving audio its own
track (cached features). Generated and real landmarks go through the same fixed alignment
(the real first frame's similarity to the canonical template, inter-ocular = 0.3 x 256 px),
then: mouth and face LMD (px), lip-gap correlation with the real clip, lip amplitude ratio
(the mouth columns: mean over seeds; the head's std and speed: seed 0), head-pose diversity
across seeds (roll degrees, position px), real-vs-generated head motion
std, motion-stage seconds per second of audio, and the shallow diffusion depth used.
When the cache has an offsets table (sdmtalk.data.offsets) each clip's audio is re-aligned to
its video first, so that the real lips are scored against in-sync speech (--no-offsets: the
clips as recorded).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sdmtalk import FPS
from sdmtalk.audio import AudioFeatures
from sdmtalk.data.cache import CacheReader
from sdmtalk.data.offsets import OffsetTable, shift_audio
from sdmtalk.data.phonemes import PhonemeTable
from sdmtalk.evaluate.groups import clip_group
from sdmtalk.evaluate.metrics import (
    amplitude_ratio,
    beat_align,
    head_motion_stats,
    head_pose,
    head_speed,
    kinematic_beats,
    lip_gap_correlation,
    lmd,
    pose_diversity,
)
from sdmtalk.face import to_canonical
from sdmtalk.face.align import sim_apply
from sdmtalk.motion.types import MOUTH, MotionControls, apply_motion, lip_gap
from sdmtalk.pipeline import load_motion_model

CROP_SCALE = 0.3 * 256  # canonical inter-ocular 1 -> 76.8 px, as `sdmtalk evaluate` crops

METHODS = {  # name: (motion, controls)
    "static": ("static", {}),
    "energy": ("energy", {}),
    "linear": ("linear", {}),
    "sdm": ("sdm", {}),
    "sdm-no-pose": ("sdm", {"ablation": "no_pose"}),
    "sdm-no-rhythm": ("sdm", {"ablation": "no_rhythm"}),
    "sdm-no-diffusion (k=0)": ("sdm", {"diffusion_steps": 0}),
    "sdm-k15": ("sdm", {"diffusion_steps": 15}),
    "sdm-full-diffusion (k=T)": ("sdm", {"ablation": "full_diffusion"}),
}


def method_spec(name: str) -> tuple[str, dict]:
    """(motion, controls) of a method name: one of METHODS, or "sdm-k<N>" for a fixed
    shallow-diffusion depth N (a point of the lip sync / head motion curve against k)."""
    if name in METHODS:
        return METHODS[name]
    if name.startswith("sdm-k") and name[5:].isdigit():
        return "sdm", {"diffusion_steps": int(name[5:])}
    raise SystemExit(f"unknown method {name!r}: use {', '.join(METHODS)} or sdm-k<N>")


def aligned(landmarks: np.ndarray, ref_sim: np.ndarray) -> np.ndarray:
    """(T, 68, 2) photo pixels -> the fixed crop frame of the clip's first real frame."""
    return sim_apply(ref_sim, landmarks) * CROP_SCALE


def score_clip(model, controls_kw, data, seeds):
    real = data["landmarks"]
    valid = data["valid"] > 0.5
    feats = AudioFeatures(mel=data["mel"], prosody=data["prosody"], energy=data["energy"],
                          phonemes=data.get("phonemes"))
    source, sims = to_canonical(real[:1])
    source_canonical = source[0]
    gens, seconds, ks = [], 0.0, []
    for seed in seeds:
        t0 = time.perf_counter()
        motion = model.generate(feats, source_canonical, MotionControls(seed=seed, **controls_kw))
        seconds += time.perf_counter() - t0
        ks += list(getattr(model, "last_k_windows", []) or getattr(model, "last_k", []))
        gens.append(aligned(apply_motion(real[0], motion), sims[0]))
    real_a = aligned(real, sims[0])
    g = gens[0]
    gen_bas = [bas_pair(x, None, data["onsets"], len(real)) for x in gens]
    real_bas = bas_pair(real_a, valid, data["onsets"], len(real))
    head, real_head = head_motion_stats(head_pose(g)), head_motion_stats(head_pose(real_a), valid)
    row = {
        **_seed_mean([mouth_scores(x, real_a, valid, data["speech"]) for x in gens]),
        "roll_std": head["roll_std"], "real_roll_std": real_head["roll_std"],
        "pos_std": head["pos_std"], "real_pos_std": real_head["pos_std"],
        "pos_speed": head["pos_speed"], "real_pos_speed": real_head["pos_speed"],
        "sec_per_audio_sec": seconds / len(seeds) / (len(real) / FPS),
        "real_sil_std": silent_std(lip_gap(real_a), data["speech"], valid),
        # head motion and prosody: beat alignment with the audio's onsets, and head speed in
        # pauses over head speed in speech (real heads slow down in pauses)
        "bas_seeds": [b for b, _ in gen_bas],
        "real_bas": real_bas[0],
        "pause_speed": _mean([pause_speed_ratio(head_speed(x), data["speech"]) for x in gens]),
        "real_pause_speed": pause_speed_ratio(head_speed(real_a, valid), data["speech"]),
        "bas_chance": _mean([c for _, c in gen_bas]),
        "coupling": _mean([prosody_coupling(x, data["energy"]) for x in gens]),
        "real_coupling": prosody_coupling(real_a, data["energy"], valid),
        "real_bas_chance": real_bas[1],
    }
    row["bas"] = _mean(row["bas_seeds"])
    if len(seeds) > 1:
        div = pose_diversity(np.stack([head_pose(x) for x in gens]))
        row["div_roll"], row["div_pos"] = div["roll_deg"], div["pos_px"]
    return row, ks


def mouth_scores(gen: np.ndarray, real: np.ndarray, valid: np.ndarray, speech: np.ndarray) -> dict:
    """One generated clip's mouth against the real one: landmark distances, lip sync, lip
    amplitude and whether the mouth rests in silence (lip-gap std over non-speech frames)."""
    gen_gap, real_gap = lip_gap(gen), lip_gap(real)
    return {"lmd_mouth": lmd(gen, real, MOUTH, valid), "lmd_face": lmd(gen, real, None, valid),
            "lmd_mouth_shape": lmd(gen, real, MOUTH, valid, centre=True),
            "lip_r": lip_gap_correlation(gen_gap, real_gap, valid),
            "lip_amp": amplitude_ratio(gen_gap, real_gap, valid),
            **fast_and_slow_lip_r(gen_gap, real_gap, valid),
            "sil_std": silent_std(gen_gap, speech, valid)}


def _seed_mean(rows: list[dict]) -> dict:
    """Each key's mean over seeds (NaNs left out)."""
    return {k: _mean([r[k] for r in rows]) for k in rows[0]}


def apply_overrides(model, overrides: list[str]) -> None:
    """KEY=VALUE strings (inference settings: pose_k, k_tau_infer, k_auto_max...) onto a
    loaded model's config, parsed and type-checked as `train --set` does (sdmtalk.config)."""
    from sdmtalk.config import override, parse_override

    for item in overrides:
        model.cfg = override(model.cfg, parse_override(item), "--set")


def bas_interval_lines(seed_bas: dict) -> list[str]:
    """Beat alignment over seeds (each seed's mean over clips): mean and 95 % interval, and
    for every other method the paired difference from "sdm" (same seeds, same clips)."""
    def interval(x):
        half = 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
        return f"{x.mean():.4f} ({x.mean() - half:.4f} to {x.mean() + half:.4f})"

    lines = ["beat alignment over seeds, mean (95 % interval):"]
    for name, x in seed_bas.items():
        line = f"  {name}: {interval(x)}"
        ref = seed_bas.get("sdm")
        if ref is not None and name != "sdm" and len(ref) == len(x) > 1:
            line += f"; minus sdm, paired: {interval(x - ref)}"
        lines.append(line)
    return lines


def window_k_text(model, ks: list[int]) -> str:
    """Each diffusion window's own k (before the clip takes the median): median, 10-90 %
    range and the share of windows pinned at the "auto" clamp."""
    if not ks:
        return "-"
    cfg = getattr(model, "cfg", None)
    clamp = (getattr(cfg, "k_auto_max", 0) or getattr(cfg, "k_max", 0)) if cfg else 0
    lo, mid, hi = np.percentile(ks, [10, 50, 90])
    pinned = f", {100 * np.mean(np.asarray(ks) >= clamp):.0f} % at {clamp}" if clamp else ""
    return f"{mid:.0f} ({lo:.0f}-{hi:.0f}){pinned}"


def fast_and_slow_lip_r(gen: np.ndarray, real: np.ndarray, valid: np.ndarray) -> dict:
    """Lip-gap r of the fast part (each series minus its 2 s moving average: syllables) and
    of the slow part (the moving average: how open the mouth is over a phrase)."""
    from scipy.ndimage import uniform_filter1d

    n = min(len(gen), len(real))
    real = np.where(np.isfinite(real[:n]), real[:n], np.nanmean(real[:n]))
    slow = [uniform_filter1d(np.asarray(x[:n], float), 2 * int(FPS), mode="nearest") for x in (gen, real)]
    return {"lip_r_fast": lip_gap_correlation(gen[:n] - slow[0], real - slow[1], valid[:n]),
            "lip_r_slow": lip_gap_correlation(slow[0], slow[1], valid[:n])}


def mel_onsets(mel: np.ndarray, num_frames: int) -> np.ndarray:
    """Audio beats from the cached log-mel (4 rows per video frame): spectral-flux onsets as
    `sdmtalk evaluate` takes them from the waveform -> video frame indices (K,)."""
    import librosa

    env = librosa.onset.onset_strength(S=np.asarray(mel, np.float32).T, sr=16000, hop_length=160)
    rows = librosa.onset.onset_detect(onset_envelope=env, sr=16000, hop_length=160, units="frames")
    frames = np.unique(rows // 4)
    return frames[frames < num_frames]


def pause_speed_ratio(speed: np.ndarray, speech: np.ndarray) -> float:
    """Mean head speed over frames without speech / over frames with speech (NaN when
    either has under 10 frames)."""
    n = min(len(speed), len(speech))
    speed, talk = speed[:n], speech[:n] > 0.5
    ok = np.isfinite(speed)
    quiet, loud = ok & ~talk, ok & talk
    if quiet.sum() < 10 or loud.sum() < 10:
        return float("nan")
    return float(speed[quiet].mean() / max(speed[loud].mean(), 1e-9))


def prosody_coupling(landmarks: np.ndarray, energy: np.ndarray, valid=None) -> float:
    """Within-clip Pearson r of the head's log speed (rigid points, Gaussian sigma 3 frames)
    with the frame loudness: real heads move more while the voice is loud (NaN under 10 frames)."""
    speed = head_speed(landmarks, valid, smooth=3.0)
    loud = np.asarray(energy, np.float64)[: len(speed)]
    ok = np.isfinite(speed[: len(loud)]) & np.isfinite(loud)
    if ok.sum() < 10:
        return float("nan")
    return float(np.corrcoef(np.log(speed[: len(loud)][ok] + 1e-3), loud[ok])[0, 1])


def bas_pair(landmarks: np.ndarray, valid, onsets: np.ndarray, frames: int) -> tuple[float, float]:
    """(BAS, chance BAS) of one head's landmarks (T, 68, 2) against the audio's onsets."""
    beats = kinematic_beats(head_speed(landmarks, valid))
    return beat_align(beats, onsets), chance_bas(beats, onsets, frames)


def chance_bas(beats: np.ndarray, onsets: np.ndarray, frames: int, shifts: int = 20) -> float:
    """Beat alignment of the same motion beats with the onsets moved by seeded random circular
    shifts: what BAS gives for motion unrelated to the audio's rhythm. Shifts of 10 frames
    or more (a quarter of a clip under 40 frames: the 1.2 s dev clips count too, where BAS
    is highest and would otherwise have no chance level to compare with)."""
    if frames < 16 or len(onsets) == 0:
        return float("nan")
    rng = np.random.default_rng(frames)
    least = min(10, frames // 4)
    return _mean([beat_align(beats, (np.asarray(onsets) + rng.integers(least, frames - least + 1)) % frames)
                  for _ in range(shifts)])


def silent_std(gap: np.ndarray, speech: np.ndarray, valid: np.ndarray) -> float:
    """Std of the lip gap over valid frames without speech (NaN under 10 such frames)."""
    quiet = valid & (speech[: len(gap)] < 0.5)
    return float(gap[quiet].std()) if quiet.sum() >= 10 else float("nan")


def load_scored_clips(cache: str, split: str, use_offsets: bool = True) -> tuple[list, list[dict]]:
    """(the split's ClipRecords, its clips as score_clip takes them: cached features, phoneme
    posteriors, the audio re-aligned by the cache's offsets.json unless use_offsets is False,
    onsets)."""
    reader, table, offsets = CacheReader(cache), PhonemeTable(cache), OffsetTable(cache)
    records = reader.clips(split)
    clips = [{**reader.load(r), "phonemes": table.get(r) if table.available else None} for r in records]
    if offsets.available and use_offsets:
        moved = [(r.clip_id, offsets.get(r)) for r in records if offsets.get(r)]
        clips = [shift_audio(c, offsets.get(r)) for c, r in zip(clips, records, strict=True)]
        print(f"audio re-aligned by {cache}/offsets.json on {len(moved)} clip(s): "
              + (", ".join(f"{c} {o:+d}" for c, o in moved) or "none"))
    else:
        print("clips as recorded (" + ("offsets ignored" if offsets.available else "no offsets.json") + ")")
    for data in clips:
        data["onsets"] = mel_onsets(data["mel"], len(data["landmarks"]))
    return records, clips


def speaker_half_splits(records) -> list[tuple[list[int], list[int]]]:
    """Cross-validation over speakers: the split's sorted speakers dealt into two halves, as
    [(clip indices of half A, of half B), (of half B, of half A)] (fit on one, score on the
    other, both ways)."""
    speakers = sorted({r.speaker for r in records})
    halves = [set(speakers[0::2]), set(speakers[1::2])]
    index = [[i for i, r in enumerate(records) if r.speaker in h] for h in halves]
    return [(index[0], index[1]), (index[1], index[0])]


def _mean(values) -> float:
    values = np.asarray(values, float)
    return float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="comma-separated; sdm-k<N> = SDM at a fixed diffusion depth N")
    ap.add_argument("--no-offsets", action="store_true", help="ignore the cache's offsets.json")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override an inference setting of the SDM config, e.g. --set k_tau_infer=0.3")
    ap.add_argument("--linear-weights", default=None,
                    help="weights of the linear method (default: the shipped linear_baseline)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records, clips = load_scored_clips(args.cache, args.split, not args.no_offsets)
    cols = ["lmd_mouth", "lmd_mouth_shape", "lmd_face", "lip_r", "lip_r_fast", "lip_r_slow", "lip_amp", "sil_std", "roll_std",
            "pos_std", "pos_speed", "div_roll", "div_pos", "bas", "bas_chance", "pause_speed", "coupling", "sec_per_audio_sec"]
    group_lines = []
    print(f"{len(clips)} clips of split '{args.split}', seeds {args.seeds}, {args.threads} thread(s)")
    print("| method | " + " | ".join(cols) + " | window k: median (10-90 %), share at the clamp |")
    print("|---" * (len(cols) + 2) + "|")
    real_rows, seed_bas = [], {}
    for name in args.methods.split(","):
        motion, kw = method_spec(name)
        if motion == "linear" and args.linear_weights:
            from sdmtalk.motion.linear import LinearBaseline

            model = LinearBaseline.load(args.linear_weights)
        else:
            model = load_motion_model(motion, args.weights)
            if motion == "sdm":
                apply_overrides(model, args.overrides)
        seeds = [0] if motion in ("static", "linear") else list(range(args.seeds))
        rows, ks = [], []
        for data in clips:
            row, k = score_clip(model, kw, data, seeds)
            rows.append(row)
            ks += k
        real_rows = rows
        seed_bas[name] = np.array([_mean([r["bas_seeds"][i] for r in rows]) for i in range(len(seeds))])
        group_lines.append(f"{name}: " + "  ".join(
            f"{g} r {_mean([r['lip_r'] for r, rec in zip(rows, records, strict=True) if clip_group(rec.speaker) == g]):.3f}"
            for g in sorted({clip_group(rec.speaker) for rec in records})))
        means = [_mean([r.get(c, np.nan) for r in rows]) for c in cols]
        k_txt = window_k_text(model, ks)
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {k_txt} |", flush=True)
    real = [_mean([r[c] for r in real_rows])
            for c in ("real_sil_std", "real_roll_std", "real_pos_std", "real_pos_speed")]
    bas = [_mean([r[c] for r in real_rows]) for c in ("real_bas", "real_bas_chance", "real_pause_speed",
                                                       "real_coupling")]
    print("| real clips | | | | 1 | 1 | 1 | 1 | " + " | ".join(f"{v:.3f}" for v in real) + " | | | "
          + " | ".join(f"{v:.3f}" for v in bas) + " | | |")
    print("bas_chance: the beat alignment of the same head with the onsets shifted at random "
          "(what BAS gives for motion unrelated to the audio)")
    print("\n" + "\n".join(bas_interval_lines(seed_bas)))
    print("\nlip-gap r per dev group (mean over clips):")
    print("\n".join(group_lines))


if __name__ == "__main__":
    main()
