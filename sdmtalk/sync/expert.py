"""SyncExpert: a lip-sync expert in landmark space (SyncNet's idea, our own network).

Two small encoders map a W-frame window of speech and the W-frame window of mouth motion at
the same time to unit vectors; trained contrastively (sdmtalk.train.sync_expert), their cosine
similarity is high when the two windows belong together and low when the audio is from
elsewhere or shifted in time. sdmtalk.sync.score turns it into a per-clip sync confidence
and audio-video offset.

Inputs (one clip; prepared by `audio_input` and `mouth_input`, which the encoders never see
un-normalised):
  audio: (4T, A) rows at 100 Hz: log-mel (80) minus the clip's mean per bin (recording
      channel removed), plus `extra_dims` optional per-video-frame features repeated on
      their 4 mel rows (pluggable front-end: phoneme posteriors, prosody, ...).
  mouth: (T, 20, 2) mouth points 48-67 in the canonical frame (cache `canonical`, or
      face.to_canonical of detected landmarks) minus the clip's median mouth shape, divided
      by the clip's median mouth width (corner 48 to corner 54): no identity, no scale.
A window at frame t covers video frames t - W//2 .. t + W//2 and mel rows 4(t - W//2) ..
4(t + W//2 + 1) - 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdmtalk import MEL_PER_FRAME
from sdmtalk.typed_config import to_dict
from sdmtalk.weights.io import read_tagged_weights, write_weights

MOUTH_POINTS = slice(48, 68)
WEIGHTS_NAME = "sync_expert"
BUNDLED_SYNC_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / f"{WEIGHTS_NAME}.safetensors"


@dataclass
class SyncExpertConfig:
    """kind: fixed tag so that these weights are never mistaken for SDM's.
    window: video frames per window (odd; 5 = 0.2 s, SyncNet's); mel_bins + extra_dims =
    audio channels per mel row; hidden: encoder width; embed: embedding size;
    temperature: InfoNCE softmax temperature."""

    kind: str = "sync_expert"
    window: int = 5
    mel_bins: int = 80
    extra_dims: int = 0
    hidden: int = 96
    embed: int = 64
    temperature: float = 0.07

    @property
    def audio_dims(self) -> int:
        return self.mel_bins + self.extra_dims


class AudioEncoder(nn.Module):
    """(B, 4W, A) normalised audio rows -> (B, E) unit embeddings (1-D convs over time)."""

    def __init__(self, cfg: SyncExpertConfig):
        super().__init__()
        h = cfg.hidden
        self.convs = nn.Sequential(  # 4W mel rows -> 2W -> W steps (one per video frame)
            nn.Conv1d(cfg.audio_dims, h, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv1d(h, h, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv1d(h, h, 3, padding=1), nn.GELU(),
        )
        steps = MEL_PER_FRAME * cfg.window
        for _ in range(2):
            steps = (steps - 1) // 2 + 1
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(h * steps, h), nn.GELU(), nn.Linear(h, cfg.embed))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.convs(audio.transpose(1, 2))), dim=-1)


class MouthEncoder(nn.Module):
    """(B, W, 20, 2) normalised mouth windows -> (B, E) unit embeddings (MLP over positions
    and frame-to-frame velocities)."""

    def __init__(self, cfg: SyncExpertConfig):
        super().__init__()
        h, w = cfg.hidden, cfg.window
        self.net = nn.Sequential(
            nn.Linear(w * 40 + (w - 1) * 40, h), nn.GELU(),
            nn.Linear(h, h), nn.GELU(),
            nn.Linear(h, cfg.embed),
        )

    def forward(self, mouth: torch.Tensor) -> torch.Tensor:
        b = mouth.shape[0]
        vel = mouth[:, 1:] - mouth[:, :-1]
        x = torch.cat([mouth.reshape(b, -1), 4.0 * vel.reshape(b, -1)], dim=1)
        return F.normalize(self.net(x), dim=-1)


class SyncExpert(nn.Module):
    """Speech and mouth encoders plus the input scales learnt from the training split
    (buffers, shipped with the weights): audio_mean/std (A,), mouth_std (1,)."""

    def __init__(self, cfg: SyncExpertConfig):
        super().__init__()
        if cfg.window < 3 or cfg.window % 2 == 0:
            raise ValueError(f"window must be odd and >= 3, got {cfg.window}")
        self.cfg = cfg
        self.audio = AudioEncoder(cfg)
        self.mouth = MouthEncoder(cfg)
        self.register_buffer("audio_mean", torch.zeros(cfg.audio_dims))
        self.register_buffer("audio_std", torch.ones(cfg.audio_dims))
        self.register_buffer("mouth_std", torch.ones(1))

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 4W, A) rows from `audio_input` -> (B, E)."""
        return self.audio((audio - self.audio_mean) / self.audio_std)

    def embed_mouth(self, mouth: torch.Tensor) -> torch.Tensor:
        """(B, W, 20, 2) from `mouth_input` -> (B, E)."""
        return self.mouth(mouth / self.mouth_std)

    def forward(self, audio: torch.Tensor, mouth: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (B,) of paired windows."""
        return (self.embed_audio(audio) * self.embed_mouth(mouth)).sum(-1)


# --- inputs -------------------------------------------------------------------------------


def audio_input(mel: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """Clip log-mel (4T, 80) [+ extra per-frame features (T, k)] -> (4T, 80 + k) float32.

    The clip's mean log-mel per bin is removed (a fixed recording channel / microphone
    colour is a constant offset in log-mel). `extra` rows are repeated on their frame's 4
    mel rows; a front-end that adds features sets SyncExpertConfig.extra_dims = k."""
    mel = np.asarray(mel, np.float32)
    out = mel - mel.mean(axis=0, keepdims=True) if len(mel) else mel
    if extra is not None:
        extra = np.repeat(np.asarray(extra, np.float32), MEL_PER_FRAME, axis=0)[: len(mel)]
        out = np.concatenate([out, extra], axis=1)
    return np.ascontiguousarray(out, dtype=np.float32)


def mouth_input(canonical: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Canonical landmarks (T, 68, 2) (or mouth points (T, 20, 2)) -> (T, 20, 2) float32
    mouth motion: minus the clip's median mouth shape over valid finite frames, divided by
    its median mouth width (points 48-54). Frames that are not finite stay NaN."""
    pts = np.asarray(canonical, np.float64)
    mouth = pts[:, MOUTH_POINTS] if pts.shape[1] == 68 else pts
    ok = np.isfinite(mouth).all(axis=(1, 2))
    if valid is not None:
        ok &= np.asarray(valid, bool)[: len(mouth)]
    if not ok.any():
        return np.full(mouth.shape, np.nan, np.float32)
    ref = np.median(mouth[ok], axis=0)
    width = float(np.median(np.linalg.norm(mouth[ok, 6] - mouth[ok, 0], axis=-1)))
    out = (mouth - ref) / max(width, 1e-6)
    out[~ok] = np.nan
    return out.astype(np.float32)


def window_starts(num_frames: int, window: int) -> np.ndarray:
    """Centre frames t whose whole window [t - W//2, t + W//2] lies inside the clip."""
    half = window // 2
    return np.arange(half, num_frames - half)


def gather_audio(audio: np.ndarray, centres: np.ndarray, window: int) -> np.ndarray:
    """(4T, A) rows -> (N, 4W, A) windows centred on frames `centres` (all in range)."""
    half = window // 2
    rows = MEL_PER_FRAME * (np.asarray(centres)[:, None] - half) + np.arange(MEL_PER_FRAME * window)
    return audio[rows]


def gather_mouth(mouth: np.ndarray, centres: np.ndarray, window: int) -> np.ndarray:
    """(T, 20, 2) -> (N, W, 20, 2) windows centred on frames `centres` (all in range)."""
    half = window // 2
    return mouth[np.asarray(centres)[:, None] + np.arange(-half, half + 1)]


# --- weights ------------------------------------------------------------------------------


def build_expert(cfg: SyncExpertConfig | None = None) -> SyncExpert:
    return SyncExpert(cfg or SyncExpertConfig())


def save_expert(model: SyncExpert, path, extra: dict | None = None) -> Path:
    """Write path (.safetensors, config in its metadata) + path.json (sdmtalk weights format)."""
    extra = dict(extra or {})
    facts = {"step": int(extra.pop("step", 0)), "train_config": {}, **extra}
    return write_weights(model.state_dict(), to_dict(model.cfg), path, facts)  # training facts into the sidecar


def load_expert(path=None) -> SyncExpert:
    """The shipped sync expert (path None) or one written by save_expert, in eval mode."""
    tensors, cfg = read_tagged_weights(
        path or BUNDLED_SYNC_WEIGHTS, "sync_expert", SyncExpertConfig, "sync expert",
        "python -m sdmtalk.train.sync_expert --data CACHE --out RUN")
    model = SyncExpert(cfg)
    model.load_state_dict(tensors)
    return model.eval()
