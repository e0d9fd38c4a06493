"""Audio-video offsets of a prepared cache: the side table `offsets.json` and how to read it.

Some recordings carry their own audio-video offset (the sound a few frames early or late).
`sdmtalk.train.offsets` measures them with the lip-sync expert and writes the table
(`sdmtalk prepare` runs it at the end unless --no-offsets); this module reads the table
(`OffsetTable`) and re-aligns a loaded clip's audio to its video (`shift_audio`) for
training, the linear fit and the benchmarks.

A correction is APPLIED only when 2 <= |d| <= 12, z >= 3 and at least 20 window pairs stand
behind s(d) (`OffsetRule`; chosen from the data, docs/RESULTS.md "AV offsets of the training
clips"): one frame is the estimate's own resolution, |d| > 12 is the edge of the search
(seen only on 1.2 s clips), and below 3 standard errors 1.2 s clips give spurious offsets
of 6-15 frames.

`offsets.json` in the cache folder holds per clip
{"split", "offset", "confidence", "z", "windows", "applied"[, "expert"]}, the expert's sha1,
the rule and cross_fit.

Sign convention (the expert's): offset d > 0 = the mouth lags the audio, d < 0 = the mouth
leads the audio; `shift_audio(clip, d)` re-aligns a loaded clip so that the expert finds ~0.
"""


from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdmtalk import MEL_PER_FRAME
from sdmtalk.errors import InputError

OFFSETS_FILE = "offsets.json"
FORMAT = "sdmtalk-offsets"
VERSION = 1
# arrays at the audio's rate: shifted against the video arrays (mel has MEL_PER_FRAME rows per frame)
AUDIO_KEYS = ("mel", "prosody", "energy", "speech", "phonemes")


@dataclass(frozen=True)
class OffsetRule:
    """When a measured offset is applied: min_abs <= |offset| <= max_abs frames, z >= min_z
    (standard errors by which s(offset) beats s(0)) and at least min_windows window pairs
    behind s(offset) (fewer than 4 independent ones make z meaningless)."""

    min_abs: int = 2
    max_abs: int = 12
    min_z: float = 3.0
    min_windows: int = 20

    def applied(self, offset, z, windows: int) -> int:
        if offset is None or z is None or not np.isfinite(z):
            return 0
        ok = self.min_abs <= abs(int(offset)) <= self.max_abs and z >= self.min_z and windows >= self.min_windows
        return int(offset) if ok else 0


def offsets_file(cache_dir) -> Path:
    return Path(cache_dir) / OFFSETS_FILE


# --- re-aligning a loaded clip ----------------------------------------------------------------


def shift_audio(clip: dict, offset: int) -> dict:
    """A loaded clip (CacheReader.load, optionally with "phonemes") -> a new dict whose audio
    arrays (mel, prosody, energy, speech, phonemes) are moved by `offset` video frames
    against the video arrays (landmarks, valid, canonical, pose, ...): audio frame t of the
    result pairs with video frame t. Sign: `offset` is the expert's estimate for the clip as
    recorded (+ = the mouth lags the audio, - = the mouth leads it), so the result is in sync.

    Both sides are cropped to the T - |offset| frames that keep their partner (audio frames
    [max(-offset, 0), ...), video frames [max(offset, 0), ...)): no frame is left without
    its audio, nothing is padded. Keys starting with "_" (values derived from the whole
    clip) are dropped; None values and anything else stay as they are."""
    offset = int(offset)
    if offset == 0:
        return dict(clip)
    ref = clip["valid"] if "valid" in clip else clip["landmarks"]
    t = len(ref)
    n = t - abs(offset)
    if n < 1:
        raise ValueError(f"a clip of {t} frames cannot be shifted by {offset} frames")
    a0, v0 = max(-offset, 0), max(offset, 0)
    out = {}
    for key, value in clip.items():
        if key.startswith("_"):
            continue
        if value is None or not hasattr(value, "shape") or len(value.shape) == 0:
            out[key] = value
        elif key == "mel":
            out[key] = value[MEL_PER_FRAME * a0:MEL_PER_FRAME * (a0 + n)]
        elif key in AUDIO_KEYS:
            out[key] = value[a0:a0 + n]
        elif value.shape[0] == t:
            out[key] = value[v0:v0 + n]
        else:
            out[key] = value
    return out


# --- the table --------------------------------------------------------------------------------


def summarize(clips: dict) -> dict:
    """Per split: clips, measured (an estimate exists), corrected, applied offsets by value."""
    out: dict[str, dict] = {}
    for e in clips.values():
        s = out.setdefault(e["split"], {"clips": 0, "measured": 0, "corrected": 0, "applied": Counter(),
                                        "estimated_abs_ge2": 0})
        s["clips"] += 1
        s["measured"] += e["offset"] is not None
        s["estimated_abs_ge2"] += e["offset"] is not None and abs(e["offset"]) >= 2
        if e["applied"]:
            s["corrected"] += 1
            s["applied"][e["applied"]] += 1
    for s in out.values():
        s["applied"] = {f"{k:+d}": v for k, v in sorted(s["applied"].items())}
    return dict(sorted(out.items()))


def summary_lines(table: dict) -> list[str]:
    lines = []
    for split, s in table["summary"].items():
        dist = ", ".join(f"{k}: {v}" for k, v in s["applied"].items()) or "none"
        lines.append(f"{split}: {s['corrected']} of {s['clips']} clips corrected (offsets {dist}); "
                     f"{s['estimated_abs_ge2']} estimated at 2+ frames, {s['clips'] - s['measured']} without an estimate")
    return lines


# --- reading ----------------------------------------------------------------------------------


class OffsetTable:
    """Read the side table: `get(record or clip_id) -> int`, the offset to pass to
    shift_audio (0 when the table or the clip's entry is absent, or when not applied)."""

    def __init__(self, cache_dir):
        self.cache_dir = Path(cache_dir)
        self._applied: dict[str, int] | None = None

    @property
    def available(self) -> bool:
        return offsets_file(self.cache_dir).is_file()

    def _load(self) -> dict[str, int]:
        if self._applied is None:
            self._applied = {}
            if self.available:
                table = json.loads(offsets_file(self.cache_dir).read_text(encoding="utf-8"))
                if table.get("format") != FORMAT:
                    raise InputError(f"{offsets_file(self.cache_dir)}: not an sdmtalk offsets table")
                self._applied = {k: int(e.get("applied") or 0) for k, e in table["clips"].items()}
        return self._applied

    def get(self, record) -> int:
        clip_id = record if isinstance(record, str) else record.clip_id
        return self._load().get(clip_id, 0)

    def corrected(self) -> int:
        """How many clips of the table get a correction."""
        return sum(1 for v in self._load().values() if v)
