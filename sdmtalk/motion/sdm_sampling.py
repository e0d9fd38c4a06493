"""The SDM's inference: generate, G_c over a whole clip, windowed shallow diffusion and its depth k."""

from __future__ import annotations

import numpy as np
import torch

from sdmtalk.diffusion.samplers import ddim_schedule, sample_reverse, shallow_start, uses_ddim
from sdmtalk.diffusion.step_predictor import meet_step_of_gap, rescale_meet_step, resolve_k
from sdmtalk.motion.finish import check_controls, rhythm_weight
from sdmtalk.motion.head_activity import head_activity
from sdmtalk.motion.sdm_config import N_POINTS, POSE_DIM
from sdmtalk.motion.types import MotionControls


class SDMSamplingMixin:
    """SDMModel's inference side: ``generate`` and the stages a stream reuses (_generator,
    _chunked, _limit_pose, _choose_k). Needs SDMModel's sub-networks, cfg, schedule, coarse
    prior path, _denoise and finish_motion."""

    @torch.no_grad()
    def generate(self, features, source_canonical: np.ndarray, controls=None, progress=None):
        """AudioFeatures (T frames) + source canonical shape (68, 2) -> Motion (pose (T, 4),
        delta (T, 68, 2)), reproducible for a given controls.seed. progress(done, total), if
        given, is called after the coarse motion and after each reverse diffusion step.

        G_c runs over the whole clip with its state carried from segment to segment; shallow
        diffusion runs on windows of cfg.infer_window frames cross-faded over
        cfg.infer_overlap frames, so long audio has no seams and bounded memory.
        """
        controls = MotionControls() if controls is None else controls
        check_controls(controls, self.cfg.diffusion_steps)
        source = np.asarray(source_canonical, dtype=np.float32)
        if source.shape != (N_POINTS, 2):
            raise ValueError(f"source_canonical must be (68, 2), got {source.shape}")
        was_training = self.training
        self.eval()
        try:
            coarse, content, activity = self._coarse_sequence(features, controls)
            final = self._diffuse_sequence(coarse, content, controls, progress)
        finally:
            self.train(was_training)
        smooth = self.cfg.pose_smooth if self.last_k else 0.0  # only diffusion samples jitter
        return self.finish_motion(final[0], source, controls, smooth, sampled=bool(self.last_k),
                                  activity=activity, accents=self.accents(features, controls),
                                  ridge=self.ridge_lips(features))

    def _generator(self, controls, stream: int) -> torch.Generator:
        """Independent seeded random streams (pose modes, diffusion) for one seed."""
        return torch.Generator().manual_seed(int(controls.seed) * 2 + stream)

    def _coarse_sequence(self, features, controls):
        """-> (coarse (1, T, D), the denoiser's condition (1, T, C or C + E), the head-activity
        envelope (T,) or None): f_con / f_rhy in chunks, G_c carried."""
        dev = self.motion_mean.device
        mel = torch.as_tensor(np.asarray(features.mel), dtype=torch.float32, device=dev)[None]
        pros = torch.as_tensor(np.asarray(features.prosody), dtype=torch.float32, device=dev)[None]
        T = pros.shape[1]
        if T == 0 or mel.shape[1] != 4 * T:
            raise ValueError(f"features need mel (4T, 80) and prosody (T, 4) with T > 0, got "
                             f"{tuple(mel.shape[1:])} and {tuple(pros.shape[1:])}")
        post = None if getattr(features, "phonemes", None) is None else \
            torch.as_tensor(np.asarray(features.phonemes), dtype=torch.float32, device=dev)[None, :T]
        mel, pros = self._speech(mel, pros, post)
        content = self._chunked(self.content, mel, 4, T)
        rhythm = self._chunked(lambda p: torch.cat(self.rhythm(p), -1), pros, 1, T)
        emb, f_tilde = rhythm[..., :self.cfg.rhythm_dim], rhythm[..., self.cfg.rhythm_dim:]
        shape = None if self.shape_head is None else self._chunked(self.shape_head, content, 1, T)
        parts, state = [], None
        g = self._generator(controls, 0)
        step = self.cfg.chunk - self.cfg.chunk % self.cfg.segment or self.cfg.segment
        for s in range(0, T, step):  # chunk boundaries on segment boundaries
            e = min(s + step, T)
            coarse, state = self._coarse_prior(content[:, s:e], f_tilde[:, s:e], g, controls.ablation,
                                               controls.rhythm_scale, state,
                                               None if shape is None else shape[:, s:e])
            parts.append(coarse)
        coarse = torch.cat(parts, 1)
        scale = rhythm_weight(controls.ablation, controls.rhythm_scale)
        activity = head_activity(self.cfg, emb[0].detach().cpu().numpy(), pros[0].detach().cpu().numpy(), scale)
        return coarse, self._condition(content, emb, scale), activity

    def _chunked(self, fn, x, rate: int, T: int, margin: int = 16):
        """fn over frames [s - margin, s + chunk + margin) of x (1, rate T, F), cropped: the same
        result as fn over the whole sequence (margin > receptive field), bounded memory."""
        outs, n = [], self.cfg.chunk
        for s in range(0, T, n):
            a, b = max(0, s - margin), min(T, s + n + margin)
            outs.append(fn(x[:, rate * a:rate * b])[:, s - a:s - a + min(n, T - s)])
        return torch.cat(outs, 1)

    def _diffuse_sequence(self, coarse, content, controls, progress=None):
        """Shallow diffusion of coarse (1, T, D); sets self.last_k (the k of each window).

        The lips come from the shallow start k; the head-pose dims from a deeper reverse
        process of their own (cfg.pose_k steps, stochastic pose modes)."""
        T = coarse.shape[1]
        self.last_k, self.last_k_windows = [], []  # the k used; each window's own choice
        if controls.ablation == "no_diffusion" or controls.diffusion_steps == 0:
            if progress is not None:
                progress(1, 1)
            return coarse
        spans = window_spans(T, self.cfg.infer_window, self.cfg.infer_overlap)
        full = controls.ablation == "full_diffusion"
        if full:
            k = self.cfg.diffusion_steps
        else:  # one k for the clip (the median window's), so all windows step together
            self.last_k_windows = [self._choose_k(controls.diffusion_steps, coarse[:, s:e], content[:, s:e])
                                   for s, e in spans]
            k = int(np.median(self.last_k_windows))
        self.last_k = [k] * len(spans)
        pose_k = min(self.cfg.pose_k, self.cfg.diffusion_steps)
        deep_steps = pose_k if not full and pose_k > k and controls.ablation != "no_pose" else 0
        if deep_steps and uses_ddim(pose_k, self.cfg.pose_steps):
            deep_steps = len(ddim_schedule(pose_k, self.cfg.pose_steps))
        tick = _step_counter(progress, 1 + k + deep_steps)
        tick()  # the coarse motion is done
        final = self._diffuse_spans(coarse, content, spans, k, full, self._generator(controls, 1), tick)
        if deep_steps:
            deep = self._diffuse_spans(coarse, content, spans, pose_k,
                                       pose_k == self.cfg.diffusion_steps, self._generator(controls, 2),
                                       tick, ddim_steps=self.cfg.pose_steps)
            final[..., :POSE_DIM] = self._limit_pose(deep[..., :POSE_DIM])
        if controls.ablation == "no_pose":  # no stochastic head from anywhere: the diffusion
            final[..., :POSE_DIM] = coarse[..., :POSE_DIM]  # noise must not move it either
        return final

    def _limit_pose(self, pose: torch.Tensor) -> torch.Tensor:
        """Soft-limit normalized pose dims (..., 4) to +-cfg.pose_limit training stds around
        the reference frame: the deep reverse process rarely but visibly threw the head
        (40 deg rolls on 60 s clips); real head motion stays well inside the limit."""
        ref = self._zero_motion()[:POSE_DIM]
        lim = self.cfg.pose_limit
        return ref + lim * torch.tanh((pose - ref) / lim)

    def _diffuse_spans(self, coarse, content, spans, k: int, full: bool, g, tick=None,
                       ddim_steps: int = 0):
        """k reverse steps (or ddim_steps DDIM steps over them) over the whole sequence
        (1, T, D) from F^k (pure noise when `full`). At every step each window of `spans`
        is denoised and the x0 estimates are cross-faded where windows overlap, so
        neighbours agree all along the reverse process: no seam at window edges, and memory
        grows only with T x D."""
        T = coarse.shape[1]
        weights = [crossfade_weights(e - s, self.cfg.infer_overlap, s > 0, e < T).to(coarse)
                   for s, e in spans]
        wsum = coarse.new_zeros(1, T, 1)
        for (s, e), w in zip(spans, weights, strict=True):
            wsum[0, s:e] += w[:, None]

        def denoise(x_t, t):
            acc = torch.zeros_like(x_t)
            for i in range(0, len(spans), self.cfg.infer_batch):
                group = spans[i:i + self.cfg.infer_batch]  # window_spans: all one length
                x0 = self._denoise(torch.cat([x_t[:, s:e] for s, e in group]), t,
                                   torch.cat([coarse[:, s:e] for s, e in group]),
                                   torch.cat([content[:, s:e] for s, e in group]))
                for j, ((s, e), x) in enumerate(zip(group, x0, strict=True)):
                    acc[0, s:e] += weights[i + j][:, None] * x
            return acc / wsum

        x = torch.randn(coarse.shape, generator=g).to(coarse) if full else shallow_start(self.schedule, coarse, k, g)
        return sample_reverse(denoise, x, k, self.schedule, g, ddim_steps,
                              callback=None if tick is None else lambda t, x: tick())

    def _choose_k(self, steps, coarse, content) -> int:
        """"auto": the step predictor's k (k_prior_fit's estimate when set) clamped to [1,
        k_auto_max or k_max], or the global fallback k while the predictor is untrained; an
        int: that k."""
        if steps != "auto":
            return int(steps)
        if not self.cfg.lips_shallow:
            return 0
        pred = None
        content = content[..., :self.cfg.content_dim]  # not the rhythm part of a condition
        if self.cfg.k_prior_fit:
            pred = float(self.prior_depth(content)[0])
        elif int(self.kpred_steps) >= self.cfg.kpred_min_steps:
            mask = coarse.new_ones(coarse.shape[:2])
            pred = float(self.k_predictor(content, coarse, mask)[0]) * self.cfg.diffusion_steps
            if self.cfg.k_tau_infer > 0:
                pred = float(rescale_meet_step(self.schedule, pred, self.cfg.k_tau_infer / self.cfg.k_tau))
        return resolve_k(pred, self.cfg.k_auto_max or self.cfg.k_max, self._fallback_k())[0]

    def prior_sigma(self, content: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pose-mode prior's mean std (over z dims, then over the window's segments) of
        content (B, W, C) -> (B,): how unsure the speech-conditioned prior is about the window."""
        mask = content.new_ones(content.shape[:2]) if mask is None else mask
        sig = [(0.5 * self.pose_mode.prior(content[:, s:e], mask[:, s:e])[1]).exp().mean(1)
               for s, e in self._segments(content.shape[1])]
        return torch.stack(sig, 1).mean(1)

    def prior_depth(self, content: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """k_prior_fit's depth (B,) long, unclamped above (<= T): the meeting step, at
        k_tau_infer (or k_tau), of the squared gap exp(a + b log sigma) the prior predicts."""
        return self.prior_depth_of_sigma(self.prior_sigma(content, mask))

    def prior_depth_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """prior_depth from the prior's sigma (B,) (calibrate/calibrate_depth.py reads it)."""
        a, b = (float(v) for v in self.cfg.k_prior_fit)
        gap = torch.exp(a + b * torch.log(torch.as_tensor(sigma).double()))
        tau = self.cfg.k_tau_infer or self.cfg.k_tau
        return meet_step_of_gap(self.schedule, gap, tau, self.cfg.diffusion_steps)


def _step_counter(progress, total: int):
    """A no-argument callable that reports progress(done, total), one more step per call."""
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)
    return tick


def window_spans(T: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) windows of `window` frames covering [0, T), neighbours sharing at least
    `overlap` frames (the last one is moved back to end at T)."""
    if T <= window:
        return [(0, T)]
    hop = window - overlap
    starts = list(range(0, T - window + 1, hop))
    if starts[-1] + window < T:
        starts.append(T - window)
    return [(s, s + window) for s in starts]


def crossfade_weights(n: int, overlap: int, ramp_in: bool, ramp_out: bool) -> torch.Tensor:
    """(n,) weights: linear ramps over `overlap` frames at the edges shared with neighbours."""
    w = torch.ones(n)
    r = min(overlap, n)
    ramp = (torch.arange(r, dtype=torch.float32) + 0.5) / r
    if ramp_in and r:
        w[:r] = torch.minimum(w[:r], ramp)
    if ramp_out and r:
        w[n - r:] = torch.minimum(w[n - r:], ramp.flip(0))
    return w
