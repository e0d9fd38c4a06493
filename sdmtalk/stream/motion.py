"""SDM run incrementally: speech features of a few new frames in, the motion of a span out.

Each step commits `span` frames [a, a + span) once `lookahead` more frames of speech are
known. Per step (paper symbols as in sdmtalk/motion/sdm.py):

    cached features of committed frames ++ new frames ─► f_con, shape path, f_rhy (window)
    G_c from its carried state over the new frames (z: one per global segment, as offline)
    shallow diffusion of [a - context, new end): the context frames are the emitted motion,
        put back at their noised value before every reverse step (inpainting), so the new
        span continues them without a seam
    SDMModel.finish_motion over [a - 4, new end) ─► Motion of [a, a + span)

Only the last `context` + MARGIN frames of anything are kept: memory is flat at any length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from sdmtalk import MEL_PER_FRAME
from sdmtalk.audio import AudioFeatures
from sdmtalk.audio.features import PROSODY_ONSET
from sdmtalk.diffusion.samplers import sample_reverse, shallow_start
from sdmtalk.diffusion.schedule import q_sample
from sdmtalk.errors import InputError
from sdmtalk.motion.beat_snap import CATCH_UP, PEAK_HALF, accent_frames
from sdmtalk.motion.filters import gaussian_filter1d
from sdmtalk.motion.finish import check_controls, rhythm_weight
from sdmtalk.motion.head_activity import head_activity
from sdmtalk.motion.pose_gain import PoseGainState
from sdmtalk.motion.sdm import running_mel_mean
from sdmtalk.motion.sdm_config import POSE_DIM
from sdmtalk.motion.types import Motion, MotionControls

MARGIN = 16  # feature frames before the window: beyond f_con + shape path's reach (SDMModel._chunked)
SMOOTH_MARGIN = 8  # emitted frames before a span that pose smoothing and the beat snap's delay see
ACCENT_MEMORY = CATCH_UP[1] + SMOOTH_MARGIN + 1  # frames an accent still shifts the clock after it


@dataclass
class StreamConfig:
    """span: frames committed per step (4 = 160 ms). lookahead: frames of speech after a span
    before it is committed. context: emitted frames the diffusion window holds fixed (8: a
    longer held past shrinks the sampled head, roll std 0.89 deg at 40 against 1.30 at 8 and
    2.10 offline, with the same lips and no larger steps at span edges; docs/RESULTS.md, Streaming).
    lip_steps / pose_steps: DDIM steps of the shallow (lips, from k) and the deep (head pose,
    from pose_k) reverse processes (None = offline's k and pose_k DDPM steps: 40 + 100
    denoiser calls per span do not fit in real time on a CPU; 10 + 20 do, and 20 pose steps
    are the offline sampler of sdm_base, so its calibrated pose gain fits the stream too:
    stream roll std 1.77 deg against offline 1.99, 1.55 with 10, docs/RESULTS.md, Streaming). feature_context_s: audio
    window for log-mel and prosody (their per-clip normalisations see this much);
    phoneme_context_s: audio before a span that the phoneme recogniser hears.
    cmn_prior_frames: weight, in frames, of the training-set mean log-mel in the running
    mean that replaces the clip mean (mel_cmn) until enough speech has arrived.
    max_latency_s: FaceStream's latency budget: once the oldest frame waiting to be rendered
    had its audio pushed longer ago than this, has waited half of it, and a newer frame waits
    too, the waiting frames but the newest are skipped (stream/pacing.py). 0.5 s: the span
    and its look-ahead alone make 0.16-0.32 s, and an idle 2-core machine stays under 0.4 s
    (p95 0.37 s at 256 px: nothing to skip); None: never skip (every frame, however late:
    audio pushed faster than real time).
    catch_up_frames: most frames one step of FaceStream commits once its motion has fallen
    behind the audio (two spans or more are ready: all that are, up to this). A step costs
    about the same at 4 or 24 frames (the phoneme recogniser and the diffusion run once per
    step: process CPU 1.2 / 0.48 / 0.24 s per second of speech at 4 / 12 / 24 frames a step
    on a loaded 2-core machine), so a busy machine catches up instead of falling further
    behind; a backlog that large is already that late. span or less: never (stream_motion
    never catches up: its steps do not depend on timing)."""

    span: int = 4
    lookahead: int = 4
    context: int = 8
    lip_steps: int | None = 10
    pose_steps: int | None = 20
    feature_context_s: float = 2.0
    phoneme_context_s: float = 0.32
    cmn_prior_frames: int = 25
    max_latency_s: float | None = 0.5
    catch_up_frames: int = 24

    def __post_init__(self) -> None:
        for name in ("span", "context"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"stream {name} {getattr(self, name)} must be at least 1 frame")
        if int(self.lookahead) < 0:
            raise InputError(f"stream lookahead {self.lookahead} must be 0 or more frames")
        for name in ("lip_steps", "pose_steps"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise InputError(f"stream {name} {getattr(self, name)} must be at least 1 (or None)")
        if self.max_latency_s is not None and not float(self.max_latency_s) > 0:
            raise InputError(f"stream max_latency_s {self.max_latency_s} must be above 0 s (or None: never skip)")

    @property
    def longest_step(self) -> int:
        """Most frames a catching-up step commits (whole spans)."""
        return max(self.span, int(self.catch_up_frames) // self.span * self.span)

    @property
    def latency_frames(self) -> int:
        """Frames of audio after a span's first frame before that frame can be made."""
        return self.span + self.lookahead


class MotionStream:
    """Incremental SDM for one stream. step(features of frames [a, b), commit) -> Motion of
    frames [a, a + commit); `done` frames are committed so far. Reproducible for a seed."""

    def __init__(self, model, source_canonical: np.ndarray, controls: MotionControls | None = None,
                 config: StreamConfig | None = None):
        self.model, self.cfg = model, model.cfg
        self.config = config or StreamConfig()
        self.controls = controls or MotionControls()
        check_controls(self.controls, self.cfg.diffusion_steps)
        if model.training:
            raise ValueError("MotionStream needs the model in eval mode (model.eval())")
        self.source = np.asarray(source_canonical, np.float32)
        if self.source.shape != (68, 2):
            raise ValueError(f"source_canonical must be (68, 2), got {self.source.shape}")
        self.done = 0
        self._features: AudioFeatures | None = None  # committed frames, the last context + MARGIN
        self._coarse = self._final = None  # (1, n, D) committed, the last `context` frames
        self._state = None  # G_c (prev latent, hidden) after the last committed frame
        self._eps: dict[int, torch.Tensor] = {}  # pose-mode noise of each segment, drawn in order
        self._z: dict[int, torch.Tensor] = {}  # z of segments with committed frames
        gen = model._generator
        self._g_modes, self._g_lips, self._g_pose = (gen(self.controls, i) for i in range(3))
        self._ks: deque[int] = deque(maxlen=50)
        self._mel_sum, self._mel_rows = torch.zeros(model.cfg.n_mels, dtype=torch.float64), 0  # committed rows
        self._origin: np.ndarray | None = None  # model pose of frame 0 (pose_ref "clip")
        self._gain_state: PoseGainState | None = None  # the pose gain after the last emitted frame
        self._lookahead_pose: torch.Tensor | None = None  # last step's pose of the next frames
        self._k_used: int | None = None
        self._activity: np.ndarray | None = None  # head-activity envelope of the feature window
        self._snap = model.beat_snap(self.controls)
        style = model.cfg.stream_pose_style  # the stream's own gains relative to offline's
        self._gain_style = np.asarray(style, np.float64).reshape(2, 4) if len(style) else None
        self._accents: list[int] = []  # recent accent frames (beat_snap), stream indices
        self._accents_to = 0  # frames before this one are judged for accents

    @property
    def last_k(self) -> int | None:
        """The shallow diffusion depth of the last step (None: no diffusion)."""
        return self._k_used

    # ---- one step ---------------------------------------------------------------------
    @torch.no_grad()
    def step(self, new: AudioFeatures, commit: int) -> Motion:
        """new: features of frames [done, done + n) (n >= commit >= 1) -> Motion (commit frames)."""
        n = new.num_frames
        if not 1 <= commit <= n:
            raise ValueError(f"commit must be in [1, {n}], got {commit}")
        feats = _concat(self._features, new)
        held = feats.num_frames - n  # cached frames before the new ones
        content, f_tilde, shape, cond = self._speech_paths(feats, new)
        self._find_accents(feats, held, ended=commit == n)
        c = min(self.config.context, 0 if self._final is None else self._final.shape[1])
        coarse_new, state = self._coarse_motion(content[:, held:], f_tilde[:, held:],
                                                None if shape is None else shape[:, held:], commit)
        known = None if c == 0 else self._final[:, -c:]
        coarse_w = coarse_new if c == 0 else torch.cat([self._coarse[:, -c:], coarse_new], 1)
        final_w = self._diffuse(coarse_w, cond[:, held - c:], known)
        self._crossfade_pose(final_w, c, commit)
        activity = None if self._activity is None else self._activity[held - c:]
        motion = self._finish(final_w, c, commit, activity)
        self._commit(new, coarse_new[:, :commit], final_w[:, c:c + commit], state, commit)
        return motion

    # ---- speech -> f_con, shape path, f_rhy ----------------------------------------------
    def _speech_paths(self, feats: AudioFeatures, new: AudioFeatures):
        """-> content (1, W, C), rhythmic motion F~ (1, W, D), shape offsets (1, W, 136) or
        None, the denoiser's condition (content, plus the rhythmic embedding if the model
        reads it: SDMModel._condition); the window's head-activity envelope goes to _activity."""
        m = self.model
        mel = torch.as_tensor(feats.mel, dtype=torch.float32)[None]
        pros = torch.as_tensor(feats.prosody, dtype=torch.float32)[None]
        post = None if feats.phonemes is None else torch.as_tensor(feats.phonemes, dtype=torch.float32)[None]
        if self.cfg.phoneme_dim and post is None:
            raise ValueError(f"this model needs phoneme posteriors (T, {self.cfg.phoneme_dim}): "
                             "AudioWindow(phonemes=True)")
        clip_mean = before = None
        if self.cfg.mel_cmn and self.cfg.mel_cmn_prior:  # the model's own running mean: as offline
            before = self._mel_before(feats.num_frames - new.num_frames, mel)
        elif self.cfg.mel_cmn:
            clip_mean = self._running_mel_mean(np.asarray(new.mel))
        mel_in, pros_in = m._speech(mel, pros, post, clip_mean, before)
        content = m.content(mel_in)
        shape = None if m.shape_head is None else m.shape_head(content)
        emb, f_tilde = m.rhythm(pros_in)
        scale = rhythm_weight(self.controls.ablation, self.controls.rhythm_scale)
        self._activity = head_activity(self.cfg, emb[0].numpy(), pros_in[0].numpy(), scale)
        return content, f_tilde, shape, m._condition(content, emb, scale)

    def _find_accents(self, feats: AudioFeatures, held: int, ended: bool) -> None:
        """Accents (beat_snap.accent_frames) of the frames whose onset neighbours have all
        arrived (all of them once no look-ahead is left: the audio has ended), judged once and
        kept as offline judges them from the clip's start."""
        if self._snap is None:
            return
        first = self.done - held  # stream index of feats' frame 0
        end = first + feats.num_frames - (0 if ended else PEAK_HALF)
        if end <= self._accents_to:
            return
        last = self._accents[-1] - first if self._accents else -10**9
        found = accent_frames(feats.prosody[:, PROSODY_ONSET], self._snap, after=last,
                              start=self._accents_to - first) + first
        self._accents = [a for a in self._accents if a >= self.done - ACCENT_MEMORY] + \
            [int(a) for a in found if a < end]
        self._accents_to = end

    def _mel_before(self, held: int, mel: torch.Tensor) -> tuple:
        """mel_cmn_prior: (sum (1, 80), rows (1,)) of the committed log-mel rows before the
        feature window, whose first `held` frames are committed ones."""
        rows = MEL_PER_FRAME * held
        return (self._mel_sum - mel[0, :rows].double().sum(0))[None], torch.tensor([float(self._mel_rows - rows)])

    def _running_mel_mean(self, new_mel) -> torch.Tensor:
        """mel_cmn: offline, SDMModel._speech subtracts the clip's mean log-mel. A stream has
        no clip: the running mean of all speech so far (weighted towards the training-set
        mean at the start) stands in for it -> (1, 80)."""
        new_mel = torch.as_tensor(np.asarray(new_mel))[None]
        committed = self._mel_sum[None], torch.tensor([float(self._mel_rows)])
        prior_rows = MEL_PER_FRAME * self.config.cmn_prior_frames
        return running_mel_mean(new_mel, self.model.mel_mean, prior_rows, committed)[:, -1].float()

    # ---- G_c (eq. 2) --------------------------------------------------------------------
    def _coarse_motion(self, content, f_tilde, shape, commit: int):
        """Coarse motion F* (1, n, D) of the new frames: G_c from the carried state, in pieces
        that never cross a pose-mode segment; -> (F*, the G_c state after `commit` frames)."""
        m, parts, state, committed = self.model, [], self._state, None
        for s, e in self._pieces(content.shape[1], commit):
            z = self._segment_z(self.done + s, content, s, committed=s < commit)
            prev, h = state if state is not None else (None, None)
            lat, state = m._pose_latents(content[:, s:e], lambda *_, z=z: z, prev, h)
            parts.append(m._content_motion(lat, content[:, s:e], None if shape is None else shape[:, s:e]))
            if e == commit:
                committed = state
        f_bar = torch.cat(parts, 1)
        ablation = self.controls.ablation
        if ablation == "no_pose":  # as SDMModel._coarse_prior: no head motion from G_c
            f_bar[..., :POSE_DIM] = m._zero_motion()[:POSE_DIM]
        scale = rhythm_weight(ablation, self.controls.rhythm_scale)
        return f_bar + scale * f_tilde, committed

    def _pieces(self, n: int, commit: int) -> list[tuple[int, int]]:
        """[s, e) pieces of the n new frames, cut at segment starts and after `commit`."""
        seg = self.cfg.segment
        cuts = {0, n, commit} | {g - self.done for g in range(self.done, self.done + n) if g % seg == 0}
        cuts = sorted(c for c in cuts if 0 <= c <= n)
        return list(zip(cuts[:-1], cuts[1:], strict=False))

    def _segment_z(self, frame: int, content, s: int, committed: bool) -> torch.Tensor:
        """z of the segment holding global `frame`: prior over its frames heard so far plus the
        seeded noise drawn in segment order (offline draws the same sequence)."""
        index = frame // self.cfg.segment
        if index in self._z:
            return self._z[index]
        if index not in self._eps:
            self._eps[index] = torch.randn((1, self.model.pose_mode.z_dim), generator=self._g_modes)
        end = min(content.shape[1], s + self.cfg.segment - frame % self.cfg.segment)
        part = content[:, s:end]
        mu, lv = self.model.pose_mode.prior(part, part.new_ones(part.shape[:2]))
        z = mu if self.controls.ablation == "no_pose" else mu + self._eps[index] * (0.5 * lv).exp()
        if committed:
            self._z[index] = z
            self._eps.pop(index)
        return z

    # ---- shallow diffusion (3.3) with the emitted frames held --------------------------
    def _diffuse(self, coarse, content, known):
        """Final motion (1, W, D) of a window whose first frames are `known` (1, c, D) or None."""
        ctl, cfg = self.controls, self.cfg
        if ctl.ablation == "no_diffusion" or ctl.diffusion_steps == 0:
            self._k_used = None
            return _hold(coarse.clone(), known)
        full = ctl.ablation == "full_diffusion"
        k = cfg.diffusion_steps if full else self._depth(coarse, content)
        self._k_used = k
        final = self._reverse(coarse, content, known, k, full, self._g_lips, self.config.lip_steps)
        pose_k = min(cfg.pose_k, cfg.diffusion_steps)
        if not full and pose_k > k and ctl.ablation != "no_pose":  # the head pose from a deeper process
            deep = self._reverse(coarse, content, known, pose_k, pose_k == cfg.diffusion_steps,
                                 self._g_pose, self.config.pose_steps)
            final[..., :POSE_DIM] = self.model._limit_pose(deep[..., :POSE_DIM])
        if ctl.ablation == "no_pose":  # as generate: no stochastic head motion from anywhere
            final[..., :POSE_DIM] = coarse[..., :POSE_DIM]
        return _hold(final, known)

    def _depth(self, coarse, content) -> int:
        """k: the user's, or the median of the step predictor's picks so far ('auto')."""
        steps = self.controls.diffusion_steps
        if steps != "auto":
            return int(steps)
        self._ks.append(self.model._choose_k("auto", coarse, content))
        return int(np.median(self._ks))

    def _reverse(self, coarse, content, known, k: int, full: bool, g, ddim_steps: int | None):
        """k reverse steps (DDPM, or `ddim_steps` DDIM steps) from F^k (noise when `full`)."""
        m, schedule = self.model, self.model.schedule

        def denoise(x_t, t):
            if known is not None:  # inpainting: the emitted frames at this step's noise level
                x_t = x_t.clone()
                noise = torch.randn(known.shape, generator=g).to(known)
                x_t[:, :known.shape[1]] = q_sample(schedule, known, t, noise)
            return _hold(m._denoise(x_t, t, coarse, content), known)

        x = torch.randn(coarse.shape, generator=g).to(coarse) if full else shallow_start(schedule, coarse, k, g)
        return sample_reverse(denoise, x, k, schedule, g, ddim_steps)

    def _crossfade_pose(self, final, c: int, commit: int) -> None:
        """Head pose of the new span: faded in from the previous step's sample of the same
        frames (its look-ahead), as offline cross-fades its windows. The deep pose process
        of each span draws a fresh sample; held frames alone left steps at span edges twice
        the typical step (bench_stream seams)."""
        prev, self._lookahead_pose = self._lookahead_pose, final[:, c + commit:, :POSE_DIM].clone()
        if prev is None or self.controls.ablation == "no_pose":
            return
        m = min(prev.shape[1], commit)
        w = torch.arange(m, 0, -1, dtype=final.dtype)[None, :, None] / (m + 1)  # 0.8 ... 0.2 for m = 4
        final[:, c:c + m, :POSE_DIM] = w * prev[:, :m] + (1 - w) * final[:, c:c + m, :POSE_DIM]

    # ---- finish and commit ------------------------------------------------------------
    def _finish(self, final, c: int, commit: int, activity: np.ndarray | None = None) -> Motion:
        """SDMModel.finish_motion over [a - SMOOTH_MARGIN, end) (smoothing and the beat snap see
        real neighbours) -> span.
        activity: the head-activity envelope of final's frames."""
        lo = c - min(c, SMOOTH_MARGIN)
        smooth = self.cfg.pose_smooth if self._k_used is not None else 0.0
        extra = {}
        if getattr(self.cfg, "pose_ref", "first") == "clip":  # poses relative to the stream's frame 0
            if self._origin is None:
                self._origin = _smoothed_pose(self.model, final[0], smooth)[0]
            extra["origin"] = self._origin
        i = c - lo  # the band filter is causal: it runs on from the last emitted frame's state
        start = self.done - i  # stream index of final[0, lo]
        accents = None if self._snap is None else np.asarray(self._accents, int) - start
        motion, low, first, gained = self.model.finish_motion(final[0, lo:], self.source, self.controls, smooth,
                                                      band_start=i, gain_state=self._gain_state,
                                                      with_state=True, sampled=self._k_used is not None,
                                                      activity=None if activity is None else activity[lo:],
                                                      accents=accents, gain_style=self._gain_style, **extra)
        recent = gained[:i + commit][-SMOOTH_MARGIN:]  # context frames already hold what was emitted
        self._gain_state = PoseGainState(low[i + commit - 1], first, self.done + commit, recent)
        return Motion(motion.pose[i:i + commit], motion.delta[i:i + commit])

    def _commit(self, new: AudioFeatures, coarse, final, state, commit: int) -> None:
        keep = self.config.context
        self._features = _tail(_concat(self._features, _rows(new, 0, commit)), keep + MARGIN)
        self._coarse = coarse if self._coarse is None else torch.cat([self._coarse, coarse], 1)[:, -keep:]
        self._final = final if self._final is None else torch.cat([self._final, final], 1)[:, -keep:]
        self._state = state
        rows = torch.as_tensor(np.asarray(new.mel[:MEL_PER_FRAME * commit])).double()
        self._mel_sum = self._mel_sum + rows.sum(0)
        self._mel_rows += len(rows)
        self.done += commit
        for index in [i for i in self._z if i < self.done // self.cfg.segment]:  # flat memory
            del self._z[index]


def _smoothed_pose(model, final: torch.Tensor, smooth: float) -> np.ndarray:
    """The denormalized pose (T, 4) as finish_motion smooths it (its frame 0 is the origin)."""
    pose = model.denormalize(final)[0].cpu().numpy().astype(np.float64)
    return gaussian_filter1d(pose, smooth, axis=0, mode="nearest") if smooth > 0 else pose


def _hold(x: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
    """x (1, W, D) with its first frames replaced by `known` (1, c, D)."""
    if known is not None:
        x[:, :known.shape[1]] = known
    return x


def _rows(f: AudioFeatures, start: int, end: int) -> AudioFeatures:
    """Frames [start, end) of AudioFeatures."""
    return AudioFeatures(mel=f.mel[MEL_PER_FRAME * start:MEL_PER_FRAME * end], prosody=f.prosody[start:end],
                         energy=f.energy[start:end], phonemes=None if f.phonemes is None else f.phonemes[start:end])


def _tail(f: AudioFeatures, n: int) -> AudioFeatures:
    return _rows(f, max(0, f.num_frames - n), f.num_frames)


def _concat(a: AudioFeatures | None, b: AudioFeatures) -> AudioFeatures:
    """Frames of a, then those of b."""
    if a is None:
        return b
    phon = None if b.phonemes is None else np.concatenate([a.phonemes, b.phonemes])
    return AudioFeatures(mel=np.concatenate([a.mel, b.mel]), prosody=np.concatenate([a.prosody, b.prosody]),
                         energy=np.concatenate([a.energy, b.energy]), phonemes=phon)
