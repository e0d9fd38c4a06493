"""SDM: the Shallow Diffusion Motion model (paper 3): the module tying the parts together.

    mel ──f_con──► c ──┐
                       ├─ G_c(M_{i-1}, c_i, z) ─f_dec─► F_bar ─┐
    z ~ p(z | c) ──────┘                                       ├─► F* = F_bar + F~ (eq. 1)
    prosody ──f_rhy──► M~ ─────────────────────────────► F~ ───┘
    F* ──q_sample to step k──► k reverse steps of f_denoi(. | F*, c) ──► F (eq. 12)

All motion is in normalized units: per-dimension (mean, std) of [pose (4), delta (136)]
over training windows, stored in the model as buffers so a checkpoint is self-contained.
SDMModel keeps the networks and the coarse path here; its training losses, inference and
post-sampling stages live in sdm_losses.py, sdm_sampling.py and finish.py (mixins), its
config in sdm_config.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sdmtalk import MEL_PER_FRAME
from sdmtalk.diffusion.schedule import make_schedule
from sdmtalk.motion.content_encoder import ContentEncoder
from sdmtalk.motion.denoiser import MotionDenoiser, StepPredictorNet
from sdmtalk.motion.finish import SDMFinishMixin, rhythm_weight
from sdmtalk.motion.motion_autoencoder import MotionAutoencoder
from sdmtalk.motion.pose_mode import PoseModeBranch, gaussian_kl
from sdmtalk.motion.rhythmic import RhythmicBranch
from sdmtalk.motion.sdm_config import MOTION_DIM, N_POINTS, POSE_DIM, SDMConfig, check_config
from sdmtalk.motion.sdm_losses import SDMLossesMixin
from sdmtalk.motion.sdm_sampling import SDMSamplingMixin
from sdmtalk.motion.shape_head import ShapeHead

PHONEME_FLOOR = 1e-4  # log(p + floor): the recogniser's near-zero posteriors stay finite


def running_mel_mean(mel: torch.Tensor, prior: torch.Tensor, prior_rows: int,
                     before: tuple | None = None) -> torch.Tensor:
    """Causal running mean of log-mel rows mel (B, R, 80): row r's mean over the rows up to
    and including it, the `before` rows (sum (B, 80), count (B,)) and `prior_rows` rows of
    the training-set mean `prior` (80,) -> (B, R, 80)."""
    total = torch.cumsum(mel.double(), 1) + prior.double() * prior_rows
    rows = torch.arange(1, mel.shape[1] + 1, dtype=torch.float64, device=mel.device)[None, :, None] + prior_rows
    if before is not None:
        total = total + torch.as_tensor(before[0], dtype=torch.float64, device=mel.device)[:, None]
        rows = rows + torch.as_tensor(before[1], dtype=torch.float64, device=mel.device).reshape(-1, 1, 1)
    return (total / rows).to(mel.dtype)


class SDMModel(SDMLossesMixin, SDMSamplingMixin, SDMFinishMixin, nn.Module):
    """The SDM motion model. ``training_losses`` for the trainer, ``generate`` for inference.

    stats: normalization dict from ``sdmtalk.data.windows.compute_motion_stats`` (None =
    identity, for tests). Buffers hold it, so checkpoints carry it.
    """

    def __init__(self, cfg: SDMConfig, stats: dict | None = None):
        super().__init__()
        check_config(cfg)
        self.cfg = cfg
        self._build_networks(cfg)
        self.schedule = make_schedule(cfg.diffusion_steps, cfg.schedule)
        self._register_stats(stats or {})
        self.register_buffer("k_ema", torch.tensor(float(cfg.k_fallback)))
        self.register_buffer("kpred_steps", torch.tensor(0, dtype=torch.long))
        self.last_k: list[int] = []
        self.last_k_windows: list[int] = []

    def _build_networks(self, c: SDMConfig) -> None:
        """The sub-networks, in the order (and with the names) of the state dict."""
        self.content = ContentEncoder(c.n_mels + c.phoneme_dim, c.content_dim, c.content_kernel,
                                      c.dropout, norm=c.content_norm, skip=c.content_skip)
        self.shape_head = ShapeHead(c.content_dim, c.shape_head, MOTION_DIM - POSE_DIM, c.dropout) \
            if c.shape_head > 0 else None
        self.autoencoder = MotionAutoencoder(MOTION_DIM, c.ae_hidden, c.latent_dim)
        seen = POSE_DIM if c.posterior_input == "pose" else MOTION_DIM
        self.pose_mode = PoseModeBranch(seen, c.latent_dim, c.content_dim, c.z_dim,
                                        c.gru_hidden, c.posterior_hidden, c.dropout)
        self.rhythm = RhythmicBranch(c.prosody_dim, c.rhythm_hidden, c.rhythm_dim, MOTION_DIM,
                                     dropout=c.dropout)
        condition = c.content_dim + (c.rhythm_dim if c.rhythm_to_denoiser else 0)
        self.denoiser = MotionDenoiser(MOTION_DIM, condition, c.denoiser_hidden, c.denoiser_layers,
                                       dropout=c.dropout)
        self.k_predictor = StepPredictorNet(MOTION_DIM, c.content_dim)

    def _register_stats(self, stats: dict) -> None:
        sizes = {"motion": MOTION_DIM, "mel": self.cfg.n_mels, "prosody": self.cfg.prosody_dim}
        if self.cfg.delta_ref == "clip":  # the resting face, relative to the clip's mean shape
            rest = stats.get("delta_rest", np.zeros(MOTION_DIM - POSE_DIM))
            self.register_buffer("delta_rest", torch.as_tensor(np.asarray(rest), dtype=torch.float32).clone())
        for name, size in sizes.items():
            for kind, default in (("mean", 0.0), ("std", 1.0)):
                key = f"{name}_{kind}"
                val = torch.as_tensor(np.asarray(stats[key]), dtype=torch.float32) if key in stats \
                    else torch.full((size,), default)
                if val.shape != (size,):
                    raise ValueError(f"stats[{key!r}] must have shape ({size},), got {tuple(val.shape)}")
                self.register_buffer(key, val.clone())

    @property
    def needs_phonemes(self) -> bool:
        """Whether generate() needs AudioFeatures.phonemes (compute_features(phonemes=True))."""
        return self.cfg.phoneme_dim > 0

    # ---- normalization -------------------------------------------------------------
    def normalize(self, pose: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """pose (..., 4), delta (..., 68, 2) -> normalized motion (..., D)."""
        x = torch.cat([pose, delta.flatten(-2)], -1)
        return (x - self.motion_mean) / self.motion_std

    def denormalize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """normalized motion (..., D) -> (pose (..., 4), delta (..., 68, 2))."""
        raw = x * self.motion_std + self.motion_mean
        return raw[..., :POSE_DIM], raw[..., POSE_DIM:].unflatten(-1, (N_POINTS, 2))

    def _zero_motion(self) -> torch.Tensor:
        """The reference frame (pose 0, delta 0) in normalized units: (D,)."""
        return -self.motion_mean / self.motion_std

    def _speech(self, mel: torch.Tensor, prosody: torch.Tensor, phonemes: torch.Tensor | None = None,
                clip_mel_mean: torch.Tensor | None = None, before: tuple | None = None):
        """mel (B, 4W, 80), prosody (B, W, 4)[, phonemes (B, W, V)] -> (f_con input (B, 4W,
        80 [+ V]), prosody), normalized; with mel_cmn the clip's mean log-mel (B, 80)
        (default: the mean over the input's own frames, so call it on a whole clip) replaces
        the training-set mean; with mel_cmn_prior the running mean, `before` = (sum (B, 80),
        rows (B,)) of the log-mel rows before the input (default: none, the clip's start).
        Phoneme posteriors enter as log p mapped to about [-0.5, 0.5], each row repeated for
        the 4 mel rows."""
        if not self.cfg.mel_cmn:
            mel_mean = self.mel_mean
        elif self.cfg.mel_cmn_prior:
            mel_mean = running_mel_mean(mel, self.mel_mean, MEL_PER_FRAME * self.cfg.mel_cmn_prior, before)
        else:
            mel_mean = mel.mean(1, keepdim=True) if clip_mel_mean is None else clip_mel_mean[:, None]
        mel = (mel - mel_mean) / self.mel_std
        if self.cfg.phoneme_dim:
            if phonemes is None or phonemes.shape[-1] != self.cfg.phoneme_dim:
                raise ValueError(f"this model needs phoneme posteriors (T, {self.cfg.phoneme_dim}): "
                                 "compute_features(wav, phonemes=True)")
            log_p = torch.log(phonemes + PHONEME_FLOOR) / -math.log(PHONEME_FLOOR) + 0.5
            mel = torch.cat([mel, log_p.repeat_interleave(MEL_PER_FRAME, 1)], -1)
        return mel, self.normalize_prosody(prosody)

    def normalize_prosody(self, prosody: torch.Tensor) -> torch.Tensor:
        """Raw prosody (..., P) -> what f_rhy reads (the training set's mean and std)."""
        return (prosody - self.prosody_mean) / self.prosody_std

    def batch_speech(self, batch: dict[str, torch.Tensor]):
        """_speech of a training window batch (MotionWindows' keys)."""
        before = batch.get("mel_sum_before"), batch.get("mel_rows_before")
        return self._speech(batch["mel"], batch["prosody"], batch.get("phonemes"), batch.get("mel_mean"),
                            None if before[0] is None else before)

    def _content_motion(self, latents: torch.Tensor, content: torch.Tensor,
                        shape: torch.Tensor | None = None) -> torch.Tensor:
        """F_bar = f_dec(G_c latents) (+ the direct shape path on the landmark dims; pass
        `shape` when it was computed over a longer span than `content`, as at inference)."""
        f_bar = self.autoencoder.decode(latents)
        if self.shape_head is None:
            return f_bar
        shape = self.shape_head(content) if shape is None else shape
        return torch.cat([f_bar[..., :POSE_DIM], f_bar[..., POSE_DIM:] + shape], -1)

    # ---- coarse motion F* (eq. 1-2) --------------------------------------------------
    def _segments(self, length: int):
        return [(s, min(s + self.cfg.segment, length)) for s in range(0, length, self.cfg.segment)]

    def _pose_latents(self, content, z_of_segment, prev=None, h=None, teacher=None):
        """Run G_c over content (B, W, C) with one z per segment. z_of_segment(s, e) -> (B, Z).

        Returns (latents (B, W, L), (prev, h)) to carry across calls.
        """
        gen = self.pose_mode.generator
        if prev is None:
            prev = self.autoencoder.encode(self._zero_motion()).expand(content.shape[0], -1)
        outs = []
        for s, e in self._segments(content.shape[1]):
            z = z_of_segment(s, e)
            if h is None:
                h = gen.initial_state(z, content[:, 0])
            tf = None if teacher is None else teacher[:, s:e]
            lat, prev, h = gen.rollout(content[:, s:e], z[:, None].expand(-1, e - s, -1), prev, h,
                                       teacher=tf, teacher_prob=self.cfg.teacher_prob if self.training else 0.0)
            outs.append(lat)
        return torch.cat(outs, 1), (prev, h)

    def _coarse_posterior(self, x, content, prosody, mask):
        """Training path: z from the posterior of each true segment (CVAE).

        x: (B, W, D) true normalized motion -> (coarse (B, W, D), latents (B, W, L),
        rhythm embedding (B, W, E), per segment the KL of each z dim [(B, Z)]).
        """
        seen = x[..., :POSE_DIM] if self.cfg.posterior_input == "pose" else x
        kl_dims = []  # per segment: (B, Z) KL of each z dim

        def z_of_segment(s, e):
            m = mask[:, s:e]
            mu_q, lv_q = self.pose_mode.posterior(torch.cat([seen[:, s:e], content[:, s:e]], -1), m)
            mu_p, lv_p = self.pose_mode.prior(content[:, s:e], m)
            kl_dims.append(gaussian_kl(mu_q, lv_q, mu_p, lv_p, per_dim=True) * (m.sum(1) > 0).to(x.dtype)[:, None])
            return mu_q + torch.randn_like(mu_q) * (0.5 * lv_q).exp()

        true_lat = self.autoencoder.encode(x)
        teacher = torch.cat([self.autoencoder.encode(self._zero_motion()).expand(x.shape[0], 1, -1),
                             true_lat[:, :-1]], 1)  # M_{i-1}: the input of frame i
        lat, _ = self._pose_latents(content, z_of_segment, teacher=teacher)
        emb, f_tilde = self.rhythm(prosody)
        return self._content_motion(lat, content) + f_tilde, lat, emb, kl_dims

    def _coarse_prior(self, content, f_tilde, generator=None, ablation=None, rhythm_scale=1.0,
                      state=None, shape=None):
        """Inference path: z from the speech-conditioned prior. content (B, W, C), rhythmic
        motion F~ (B, W, D) -> (coarse (B, W, D), carried G_c state)."""
        ones = content.new_ones(content.shape[:2])

        def z_of_segment(s, e):
            mu, lv = self.pose_mode.prior(content[:, s:e], ones[:, s:e])
            if ablation == "no_pose":
                return mu  # no sampled pose mode
            eps = torch.randn(mu.shape, generator=generator).to(mu)
            return mu + eps * (0.5 * lv).exp()

        prev, h = state if state is not None else (None, None)
        lat, state = self._pose_latents(content, z_of_segment, prev, h)
        f_bar = self._content_motion(lat, content, shape)
        if ablation == "no_pose":  # the pose-mode branch moves no head: its pose dims -> 0
            f_bar = torch.cat([self._zero_motion()[:POSE_DIM].expand_as(f_bar[..., :POSE_DIM]),
                               f_bar[..., POSE_DIM:]], -1)
        scale = rhythm_weight(ablation, rhythm_scale)
        return f_bar + scale * f_tilde, state

    # ---- shallow diffusion (3.3) --------------------------------------------------------
    def _denoise(self, x_t, t, coarse, content):
        """f_denoi with the pose re-referenced to the window's mean coarse pose, so a window
        late in a long clip looks like a training window. t: int or (B,) -> x0 (B, W, D)."""
        t = torch.as_tensor(t, device=x_t.device).long().expand(x_t.shape[0])
        off = torch.zeros_like(coarse[:, :1])
        off[..., :POSE_DIM] = coarse[..., :POSE_DIM].mean(1, keepdim=True)
        abar = self.schedule.alphas_cumprod[t.cpu()].to(x_t)[:, None, None]
        return self.denoiser(x_t - abar.sqrt() * off, t, coarse - off, content) + off

    def _condition(self, content: torch.Tensor, emb: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """What f_denoi is conditioned on: content (B, W, C), plus the rhythmic embedding
        (B, W, E) times `scale` with rhythm_to_denoiser."""
        return torch.cat([content, scale * emb], -1) if self.cfg.rhythm_to_denoiser else content

    def _fallback_k(self) -> int:
        return int(round(float(self.k_ema))) if int(self.kpred_steps) > 0 else self.cfg.k_fallback


def build_model(cfg: SDMConfig | dict, stats: dict | None = None) -> SDMModel:
    """The one builder: an SDMConfig or its dict (e.g. from a checkpoint's JSON)."""
    if isinstance(cfg, dict):
        cfg = SDMConfig.from_dict(cfg)
    return SDMModel(cfg, stats)
