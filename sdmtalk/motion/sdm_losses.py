"""The SDM's training losses (eq. 4-12, mouth amplitude, the sync expert's) and validation metrics."""

from __future__ import annotations

import numpy as np
import torch

from sdmtalk import MEL_PER_FRAME
from sdmtalk.diffusion.samplers import sample_ddpm, shallow_start
from sdmtalk.diffusion.schedule import q_sample
from sdmtalk.diffusion.step_predictor import meet_step_targets, resolve_k
from sdmtalk.face.align import LIP_PAIRS
from sdmtalk.motion.motion_autoencoder import masked_mean, regularization_loss
from sdmtalk.motion.rhythmic import independence_loss
from sdmtalk.motion.sdm_config import MOUTH_POINTS, POSE_DIM
from sdmtalk.sync.expert import MOUTH_POINTS as EXPERT_MOUTH_POINTS
from sdmtalk.sync.expert import load_expert

MOUTH_DIMS = torch.as_tensor(np.concatenate([POSE_DIM + 2 * MOUTH_POINTS, POSE_DIM + 2 * MOUTH_POINTS + 1]))


class SDMLossesMixin:
    """SDMModel's training side: ``training_losses`` for the trainer, ``validation_metrics``
    for its validation. Needs SDMModel's sub-networks, cfg, schedule and coarse paths."""

    def training_losses(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """L_total = w_reg L_reg + w_ind L_ind + w_rec L_rec + w_diff L_diff + beta KL + w_kpred L_k.

        batch: mel (B, 4W, 80), prosody (B, W, 4), pose (B, W, 4), delta (B, W, 68, 2),
        valid (B, W) (window-referenced, as MotionWindows gives them).
        """
        c = self.cfg
        mask = batch["valid"].float()
        x = self.normalize(batch["pose"], batch["delta"])
        mel, prosody = self.batch_speech(batch)
        content = self.content(mel)
        reg = regularization_loss(self.autoencoder, x, mask)  # eq. 4
        coarse, lat, emb, kl_dims = self._coarse_posterior(x, content, prosody, mask)
        ind = independence_loss(emb, lat, mask)  # eq. 5, as decorrelation
        rec = masked_mean((coarse - x).abs() * self._dim_weight(x), mask)  # eq. 10 on F*
        amp = mouth_amplitude_loss(coarse, x, mask) if c.w_amp > 0 else rec.new_zeros(())
        prior = None
        if c.denoiser_coarse == "prior" or c.kpred_target == "prior_lips":
            with torch.no_grad():  # the inference path's F*: z from the prior
                prior, _ = self._coarse_prior(content, self.rhythm(prosody)[1])
        cond = prior if c.denoiser_coarse == "prior" else coarse.detach()
        diff = self._diffusion_loss(x, cond, self._condition(content, emb), mask)  # eq. 9
        kpred = self._step_predictor_loss(x, coarse.detach(), content.detach(), mask, prior)
        beta = c.w_kl * min(1.0, step / max(c.kl_warmup, 1))
        sync = self._sync_loss(content, prosody, batch, mask) if c.w_sync > 0 else rec.new_zeros(())
        total = (c.w_reg * reg + c.w_ind * ind + c.w_rec * rec + c.w_diff * diff
                 + beta * self._kl_loss(kl_dims) + c.w_kpred * kpred + c.w_amp * amp + c.w_sync * sync)
        kl = sum(d.sum(-1) for d in kl_dims).mean()  # logged: the raw KL per window
        return {"total": total, "reg": reg, "ind": ind, "rec": rec, "diff": diff, "kl": kl,
                "kpred": kpred, "amp": amp, "sync": sync}

    def _kl_loss(self, kl_dims: list[torch.Tensor]) -> torch.Tensor:
        """The KL term of the loss from each segment's per-dim KL (B, Z): the mean KL per
        window, or with free bits the sum over segments and z dims of max(free_bits,
        batch-mean KL of the dim)."""
        if self.cfg.kl_free_bits <= 0:
            return sum(d.sum(-1) for d in kl_dims).mean()
        return sum(d.mean(0).clamp_min(self.cfg.kl_free_bits).sum() for d in kl_dims)

    def _sync_loss(self, content, prosody, batch, mask) -> torch.Tensor:
        """InfoNCE of the frozen sync expert between the mouth of the inference path's coarse
        motion (z from the prior, with gradients) and the speech, over sync_centres windows of
        each training window: the other windows of the batch are the negatives."""
        if "_sync_expert" not in self.__dict__:  # frozen, not a submodule: never saved
            self.__dict__["_sync_expert"] = load_expert().requires_grad_(False).to(content.device)
        expert = self.__dict__["_sync_expert"]
        prior, _ = self._coarse_prior(content, self.rhythm(prosody)[1])
        src = batch["source_canonical"][:, None]
        mouth = (src + self.denormalize(prior)[1])[:, :, EXPERT_MOUTH_POINTS]
        true = (src + batch["delta"])[:, :, EXPERT_MOUTH_POINTS]
        ref = true.median(dim=1).values[:, None]  # as mouth_input, from the real window
        width = (true[:, :, 6] - true[:, :, 0]).norm(dim=-1).median(dim=1).values[:, None, None, None]
        B, W = mask.shape
        half, n = expert.cfg.window // 2, self.cfg.sync_centres
        centres = torch.randint(half, W - half, (B, n), device=mask.device)
        frames = centres[..., None] + torch.arange(-half, half + 1, device=mask.device)  # (B, n, win)
        rows = (MEL_PER_FRAME * (centres[..., None] - half)
                + torch.arange(MEL_PER_FRAME * expert.cfg.window, device=mask.device))
        b = torch.arange(B, device=mask.device)[:, None, None]
        mouth_w = ((mouth - ref) / width.clamp_min(1e-6))[b, frames].flatten(0, 1)
        audio = batch["mel"] - batch["mel_mean"][:, None]
        audio_w = audio[b, rows].flatten(0, 1)
        keep = mask[b, frames].flatten(0, 1).min(-1).values  # windows with a face in every frame
        logits = expert.embed_mouth(mouth_w) @ expert.embed_audio(audio_w).T / expert.cfg.temperature
        ce = torch.nn.functional.cross_entropy(logits, torch.arange(len(logits), device=logits.device),
                                               reduction="none")
        return (ce * keep).sum() / keep.sum().clamp_min(1.0)

    def _diffusion_loss(self, x, coarse, content, mask):
        """|f_denoi(F^t, t | F*, c) - F^0|^2 for t ~ U[1, k_max] (U[1, T] for a share)."""
        B = x.shape[0]
        t = torch.randint(1, self.cfg.k_max + 1, (B,), device=x.device)
        full = torch.rand(B, device=x.device) < self.cfg.full_range_prob
        t = torch.where(full, torch.randint(1, self.cfg.diffusion_steps + 1, (B,), device=x.device), t)
        x_t = q_sample(self.schedule, x, t, torch.randn_like(x))
        err = (self._denoise(x_t, t, coarse, content) - x) ** 2
        return masked_mean(err * self._dim_weight(x), mask)

    def _dim_weight(self, x: torch.Tensor) -> torch.Tensor:
        """Per-dim loss weight (D,): head-pose dims get w_pose, landmark dims 1."""
        w = x.new_ones(x.shape[-1])
        w[:POSE_DIM] = self.cfg.w_pose
        return w

    def _step_predictor_loss(self, x, coarse, content, mask, prior=None):
        """L1 between the predicted and the target meeting step, both as k / T. prior: the
        inference path's F* (kpred_target "prior_lips")."""
        T = self.cfg.diffusion_steps
        if self.cfg.kpred_target == "prior_lips":  # as at inference: F* from the prior
            coarse = prior
            target = meet_step_targets(self.schedule, coarse[..., POSE_DIM:], x[..., POSE_DIM:], mask,
                                       self.cfg.k_tau, self.cfg.k_max)
        else:
            target = meet_step_targets(self.schedule, coarse, x, mask, self.cfg.k_tau, self.cfg.k_max)
        pred = self.k_predictor(content, coarse, mask)
        if self.training:  # the global fallback k follows the mean target
            self.k_ema.mul_(0.99).add_(0.01 * target.float().mean())
            self.kpred_steps.add_(1)
        return (pred - target.to(pred) / T).abs().mean()

    @torch.no_grad()
    def validation_metrics(self, batch: dict[str, torch.Tensor], k: int | None = None
                           ) -> dict[str, torch.Tensor]:
        """Lip sync and amplitude of the inference path (prior z, free-running G_c) on val
        windows: correlation of predicted and true inner-lip gap, and the amplitude ratio
        std(pred gap) / std(true gap) (regression over-smoothing shows as a ratio << 1),
        for the coarse motion and after shallow diffusion from step k (default: the
        global fallback k)."""
        mask = batch["valid"].float()
        mel, prosody = self.batch_speech(batch)
        content = self.content(mel)
        emb, f_tilde = self.rhythm(prosody)
        coarse, _ = self._coarse_prior(content, f_tilde)
        cond = self._condition(content, emb)
        k = resolve_k(None, self.cfg.k_max, self._fallback_k())[0] if k is None else k
        final = sample_ddpm(lambda x_t, t: self._denoise(x_t, t, coarse, cond),
                            shallow_start(self.schedule, coarse, k), k, self.schedule)
        true_gap = _lip_gap(batch["source_canonical"][:, None] + batch["delta"])
        # "clip": source_canonical is the clip's mean shape, so the gaps are clip-centred and
        # windows are compared on one scale (a wrong level per window counts as an error)
        by_window = self.cfg.delta_ref == "first"
        out = {}
        for name, x in (("coarse", coarse), ("final", final)):
            gap = _lip_gap(batch["source_canonical"][:, None] + self.denormalize(x)[1])
            corr, amp = _corr_and_ratio(gap, true_gap, mask, by_window)
            out[f"lip_corr_{name}"], out[f"lip_amp_{name}"] = corr, amp
            # head-pose amplitude: std of the predicted rotation over std of the true one
            angle = self.denormalize(x)[0][..., 1]
            out[f"pose_amp_{name}"] = angle.std() / batch["pose"][..., 1].std().clamp_min(1e-6)
        return out


def mouth_amplitude_loss(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |std over time of each mouth dim, predicted - true| per window: a regression
    loss alone shrinks the mouth towards its mean (amplitude ratio about 0.5); this term
    asks for the real range of opening without asking for a particular frame's value.
    pred, true (B, W, D) normalized; mask (B, W)."""
    m = mask[..., None]
    n = m.sum(1).clamp_min(1.0)

    def std(x):
        x = x[..., MOUTH_DIMS]
        mean = (x * m).sum(1) / n
        return (((x - mean[:, None]) ** 2 * m).sum(1) / n + 1e-6).sqrt()

    valid = (mask.sum(1) > 2).to(pred.dtype)[:, None]
    return ((std(pred) - std(true)).abs() * valid).sum() / (valid.sum() * len(MOUTH_DIMS)).clamp_min(1.0)


def _lip_gap(shapes: torch.Tensor) -> torch.Tensor:
    """Mean vertical inner-lip gap of canonical shapes (..., 68, 2) -> (...)."""
    up = shapes[..., [p[0] for p in LIP_PAIRS], 1]
    lo = shapes[..., [p[1] for p in LIP_PAIRS], 1]
    return (lo - up).mean(-1)


def _corr_and_ratio(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, by_window: bool = True):
    """Pearson correlation and std ratio of pred vs true (B, W) series, centred per window
    (by_window) or over all valid frames of the batch."""
    m = mask.float()
    dims = 1 if by_window else (0, 1)
    n = m.sum(dims, keepdim=True).clamp_min(1)
    p = (pred - (pred * m).sum(dims, keepdim=True) / n) * m
    t = (true - (true * m).sum(dims, keepdim=True) / n) * m
    corr = (p * t).sum() / ((p ** 2).sum().sqrt() * (t ** 2).sum().sqrt()).clamp_min(1e-8)
    return corr, (p ** 2).sum().sqrt() / (t ** 2).sum().sqrt().clamp_min(1e-8)

