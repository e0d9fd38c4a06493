"""SDM: the Shallow Diffusion Motion model (paper 3), config + the module tying the parts.

    mel ──f_con──► c ──┐
                       ├─ G_c(M_{i-1}, c_i, z) ─f_dec─► F_bar ─┐
    z ~ p(z | c) ──────┘                                       ├─► F* = F_bar + F~ (eq. 1)
    prosody ──f_rhy──► M~ ─────────────────────────────► F~ ───┘
    F* ──q_sample to step k──► k reverse steps of f_denoi(. | F*, c) ──► F (eq. 12)

All motion is in normalized units: per-dimension (mean, std) of [pose (4), delta (136)]
over training windows, stored in the model as buffers so a checkpoint is self-contained.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import nn

from sdmtalk import MEL_PER_FRAME
from sdmtalk.audio.features import PROSODY_ONSET
from sdmtalk.diffusion.samplers import (
    ddim_schedule,
    sample_ddpm,
    sample_reverse,
    shallow_start,
    uses_ddim,
)
from sdmtalk.diffusion.schedule import make_schedule, q_sample
from sdmtalk.diffusion.step_predictor import (
    meet_step_of_gap,
    meet_step_targets,
    rescale_meet_step,
    resolve_k,
)
from sdmtalk.errors import InputError
from sdmtalk.face.align import sim_compose, sim_inverse
from sdmtalk.motion.beat_snap import BeatSnap, accent_frames, snap_pose
from sdmtalk.motion.content_encoder import ContentEncoder
from sdmtalk.motion.denoiser import MotionDenoiser, StepPredictorNet
from sdmtalk.motion.head_activity import head_activity
from sdmtalk.motion.lip_ensemble import mix_ridge_lips, ridge_for
from sdmtalk.motion.motion_autoencoder import MotionAutoencoder, masked_mean, regularization_loss
from sdmtalk.motion.pose_gain import PoseGainState, apply_pose_gain, reference_style
from sdmtalk.motion.pose_mode import PoseModeBranch, gaussian_kl
from sdmtalk.motion.rhythmic import RhythmicBranch, independence_loss
from sdmtalk.motion.shape_head import ShapeHead

N_POINTS = 68
POSE_DIM = 4
MOTION_DIM = POSE_DIM + 2 * N_POINTS  # [log scale, angle, tx, ty] + delta (68, 2) flattened
PHONEME_FLOOR = 1e-4  # log(p + floor): the recogniser's near-zero posteriors stay finite
MOUTH_POINTS = np.arange(48, 68)  # outer + inner lips: what lip_scale scales
ABLATIONS = (None, "no_pose", "no_rhythm", "no_diffusion", "full_diffusion")


@dataclass
class SDMConfig:
    """Every size and weight of the SDM model (plain types: serialized to JSON by the trainer)."""

    n_mels: int = 80
    prosody_dim: int = 4
    content_dim: int = 128  # f_con channels = c_i size
    content_kernel: int = 5
    latent_dim: int = 48  # motion latent M (f_enc / f_dec)
    ae_hidden: int = 192
    gru_hidden: int = 192  # G_c state
    z_dim: int = 8  # pose-mode latent per segment
    posterior_hidden: int = 64
    segment: int = 25  # frames per pose-mode segment (one z each): 1 s, so a 2 s training
    #                    window holds two and G_c learns to carry its state across a new z
    teacher_prob: float = 0.0  # share of teacher-forced G_c inputs. method.md says teacher
    #   forcing; measured on dev after 500 steps, teacher_prob=1 gave free-running (inference)
    #   lip corr 0.16 and an unused z (KL 0.003) against 0.30 for free running (0)
    rhythm_hidden: int = 64
    rhythm_dim: int = 16  # rhythmic embedding M~
    denoiser_hidden: int = 96  # 128 x 6 layers overfit the train speakers (val lip corr
    denoiser_layers: int = 4  # after diffusion 0.13 vs 0.27 at 500 steps, docs in report)
    dropout: float = 0.2
    diffusion_steps: int = 100  # T
    schedule: str = "cosine"
    k_max: int = 40  # the denoiser trains on t in [1, k_max] (shallow); "auto" k is clamped
    #                  here: on dev, lip sync after diffusion fell as k grew (corr 0.29 at
    #                  k=15, 0.26 at 30, 0.24 at 45, 0.22 at 56; coarse 0.33)
    full_range_prob: float = 0.1  # share of denoiser samples on t in [1, T] (the head pose
    #   is sampled from k = T, pose_k). 0.5 was measured too (dev, 28 clips, 3 seeds): head
    #   roll std 2.7 vs 1.7 deg (real 3.3) but the lips moved in silence (lip-gap std in
    #   silence 0.014-0.036 vs 0.008-0.012 at 0.1, speech 0.022): 0.1 kept
    pose_k: int = 100  # reverse steps for the head-pose dims (T = from pure noise), apart
    #   from the shallow k of the lips: on dev (28 clips, 3 seeds) pose from k=40 had roll
    #   std 0.63 deg and seed diversity 0.30 deg against 3.29 deg real; from k=T 2.89 deg,
    #   diversity 1.62 deg, head speed 27.6 px/s (real 26.7), lip numbers unchanged
    pose_steps: int = 0  # sampler of that deep head-pose pass: 0 = ancestral DDPM, one step
    #   per t; N = N stochastic DDIM steps over the same range (cheaper; sdm_base: 20)
    pose_limit: float = 3.0  # soft limit of the deep-sampled pose, in training stds
    pose_smooth: float = 1.0  # Gaussian sigma (frames) on the generated head pose: removes
    #   sampling jitter (translation acceleration 0.0092 -> 0.0035 canonical units/frame^2,
    #   real clips 0.0044) and leaves the amplitude (std -2 %)
    pose_gain: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # per-dim gain on the
    #   generated head pose [log scale, angle, tx, ty] (1 = as sampled; with pose_band, of the
    #   fast band). The sampled head moves less than real ones; benchmarks/calibrate_pose_gain.py
    #   measures real / generated per dim on held-out speakers and writes it
    pose_band: float = 0.0  # > 0: pose_gain is the gain of the fast band only and the slow
    #   band (causal moving average, this time constant in frames) takes pose_gain_slow: the
    #   sampled head lacks the slow wander of real heads (motion/pose_gain.py)
    pose_gain_slow: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    pose_bias: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # mean offset of the
    #   sampled pose [log scale, angle rad, tx, ty], taken off before the gain: the deep pass
    #   tilts every head the same way (+1 deg on train clips, real ones 0)
    pose_ease: float = 0.0  # > 0: the first frame's offset from the photo's pose decays with
    #   this time constant (frames), so the video starts at the photo (motion/pose_gain.py)
    pose_target: tuple[float, ...] = ()  # the real heads' band stats the gains were fitted to
    #   (slow std x 4, fast step x 4): a --pose-reference video's stats over these scale the gains
    pose_range: tuple[float, ...] = ()  # soft limit of the gained pose per dim (the largest
    #   |pose| of the real clips the gains were fitted on; empty = none): on 5 minutes of TTS
    #   speech the gained head reached 36 deg of roll once, real clips 26-31 deg at most
    head_activity: tuple[float, ...] = ()  # readout of the rhythmic embedding M~ and the
    #   prosody that predicts when a real head moves (motion/head_activity.py; fitted by
    #   benchmarks/calibrate_pose_gain.py, standardized): empty = none
    head_activity_gain: float = 0.0  # the fast pose band is scaled by exp(this x readout):
    #   heads move in speech and rest in pauses, as the rhythmic branch says (0 = off)
    beat_snap: float = 0.0  # the finished head slows at the speech's accents, its speed there
    #   (1 - 0.75 x this) of its own, so its beats fall on them (motion/beat_snap.py; fitted by
    #   benchmarks/calibrate_beat_snap.py to the real heads' beat alignment): 0 = off
    beat_snap_gap: int = 4  # least frames between two accents
    beat_snap_threshold: float = 0.3  # least onset strength (0..1 of the clip's peak) of an accent
    ridge_mix: float = 0.0  # share of the bundled ridge baseline's mouth motion in the lips, an
    #   ensemble of two lip predictors (motion/lip_ensemble.py; fitted on dev by
    #   benchmarks/calibrate_ridge_mix.py): 0 = the SDM's lips alone
    ridge_gain: float = 1.0  # the ridge's mouth motion is scaled by this to the SDM's amplitude
    stream_pose_style: tuple[float, ...] = ()  # (2 x 4) multipliers of pose_gain_slow and pose_gain
    #   in a stream: its per-span sampling gives the head less slow wander and more jitter than
    #   offline's 100-frame windows; fitted by benchmarks/calibrate_stream_pose.py so that the
    #   streamed head's band stats match offline's (empty = none)
    k_auto_max: int = 0  # clamp of the "auto" depth at inference (0 = k_max; training and
    #   validation keep k_max). Chosen on the dev k curve (docs/RESULTS.md §13)
    k_fallback: int = 25  # k used until the step predictor has trained kpred_min_steps
    k_tau: float = 0.1  # per-dim KL at which the noised coarse and true motion "meet"
    kpred_min_steps: int = 300
    w_reg: float = 5.0  # lambda_1, eq. 11
    w_ind: float = 2.0  # lambda_2
    w_rec: float = 1.0  # lambda_3
    w_diff: float = 1.0
    w_pose: float = 10.0  # weight of each head-pose dim in L_rec and L_diff: with equal
    #   weights the 4 pose dims are 3% of the 140 and the CVAE latent stopped carrying pose
    #   (generated head angle std 0.004 rad against 0.12 on dev)
    w_kl: float = 0.02  # beta of the pose-mode KL (per window, summed over z)
    kl_free_bits: float = 0.0  # per z dim and segment: KL below this costs nothing (free
    #   bits, Kingma et al. 2016). Without it the pose-mode latent collapsed (train KL 0.13
    #   nats per window, coarse head amplitude 0.12 of the true one): G_c regressed the mean
    #   pose and seeds could differ only through a separate deep diffusion of the head
    posterior_input: str = "motion"  # what q(z | ., content) reads of the true segment:
    #   "motion" (all 140 dims) or "pose" (the 4 head-pose dims: z can then only carry the
    #   head's pose mode, never the lips, which must come from speech alone)
    rhythm_to_denoiser: bool = False  # f_denoi also reads the rhythmic embedding M~ (prosody):
    #   head motion has no sign that prosody predicts (a nod goes up or down), so the additive
    #   F~ of eq. 1, trained by regression, stays near zero; as a condition of the stochastic
    #   denoiser M~ can set when and how fast the head moves. no_rhythm zeroes it
    kpred_target: str = "posterior"  # what the step predictor learns the meeting step of:
    #   "posterior" (the training path's F*, all dims) or "prior_lips" (the inference path's
    #   F*, z from the prior, landmark dims only: what the predictor sees at inference, and
    #   the dims whose start k it sets). With "posterior" its k did not track the meeting
    #   step of dev windows (Spearman 0.02, benchmarks/bench_depth.py)
    denoiser_coarse: str = "posterior"  # the F* f_denoi is conditioned on in training:
    #   "posterior" (z from the true segment, as the paper trains) or "prior" (z from the
    #   prior, what it sees at inference: with an informative pose-mode latent the two
    #   differ, and the denoiser learnt to trust a coarse motion it never gets)
    lips_shallow: bool = True  # "auto" depth gives the lips a shallow reverse pass (k from
    #   the step predictor); False: the lips are G_c's coarse ones (k = 0) and only the head
    #   is diffused (its deep pass). For models whose denoiser costs lip sync (RESULTS §14)
    k_tau_infer: float = 0.0  # meeting KL at inference (0 = k_tau): the predicted step is
    #   converted exactly, since the meet KL scales with abar/(1-abar) (step_predictor.py)
    k_prior_fit: tuple[float, ...] = ()  # (a, b): "auto" depth from the pose-mode prior's own
    #   uncertainty instead of the step predictor network: the window's expected squared gap
    #   between coarse and real motion is exp(a + b log sigma), sigma the prior's mean std
    #   over the window's segments, and k its meeting step at k_tau_infer. The network's k
    #   did not track the windows' meeting step (Spearman -0.03); this one does (0.3-0.37 on
    #   dev, docs/RESULTS.md §19). Fitted by benchmarks/bench_depth.py --fit-prior; empty = off
    kl_warmup: int = 500  # steps over which beta ramps from 0
    w_kpred: float = 0.1
    infer_window: int = 100  # frames per diffusion window at inference (4 s)
    infer_overlap: int = 20  # cross-faded frames between neighbouring windows
    chunk: int = 250  # frames per f_con / f_rhy chunk at inference (bounded memory)
    infer_batch: int = 8  # diffusion windows denoised together
    # ---- lip-sync front-end (issue 10); defaults keep the first shipped model's behaviour
    content_norm: str = "window"  # f_con normalisation: "window" (GroupNorm over the input,
    #   length-dependent) or "frame" (LayerNorm per frame: same c_i at any chunk length)
    mel_cmn: bool = False  # subtract each input's mean log-mel per bin (channel / gain
    #   normalisation: webcams, rooms and microphones shift whole bands)
    mel_cmn_prior: int = 0  # with mel_cmn: 0 = the whole clip's mean; N > 0 = the causal
    #   running mean up to each row, started from the training-set mean weighted as N frames.
    #   A stream knows only the speech so far: a model trained on the running mean gets the
    #   same input offline and streaming (RESULTS §15: the clip mean cost the stream 0.010)
    shape_head: int = 0  # hidden width of the direct content -> shape path (0 = none)
    w_amp: float = 0.0  # weight of the mouth-amplitude loss: |std_t(F* mouth) - std_t(F mouth)|
    w_sync: float = 0.0  # weight of the lip-sync expert's InfoNCE on the inference path's coarse
    #   mouth (z from the prior), the shipped sync_expert frozen (Wav2Lip's expert loss in
    #   landmark space; issue 10 item 3b)
    sync_centres: int = 8  # expert windows per training window for w_sync
    phoneme_dim: int = 0  # > 0: f_con also reads phoneme posteriors (V = 191 for hama 1.7.0)
    delta_ref: str = "first"  # what the landmark motion is relative to in training: "first"
    #   (each window's first frame) or "clip" (the clip's mean shape; generate subtracts the
    #   resting face, stats delta_rest). With "first" the target carries the mouth state of
    #   an arbitrary frame, which speech cannot predict: the model learned a random level per
    #   window (dev, 2 s moving average of the lip gap: r 0.19 coarse, 0.04 after diffusion,
    #   against 0.45 for the clip-centred ridge baseline)
    content_skip: bool = False  # f_con adds a linear map of each frame's input (level kept)
    pose_ref: str = "first"  # what the head pose is relative to in training: "first" (each
    #   window's first frame) or "clip" (the clip's mean pose: G_c and its pose-mode latent
    #   then learn where a head is, not only how it moves within 2 s; generate re-references
    #   the sampled pose to its frame 0, the photo's pose)

    @classmethod
    def tiny(cls) -> SDMConfig:
        """A few thousand parameters per part: trains and samples in seconds on CPU."""
        return cls(content_dim=24, latent_dim=12, ae_hidden=32, gru_hidden=32, z_dim=4,
                   posterior_hidden=16, segment=16, rhythm_hidden=16, rhythm_dim=8,
                   denoiser_hidden=32, denoiser_layers=3, k_max=30, k_fallback=20,
                   kl_warmup=20, kpred_min_steps=20, infer_window=32, infer_overlap=8, chunk=64)

    @classmethod
    def base(cls) -> SDMConfig:
        """The shipped model: the lip-sync front-end of issue 10 on top of the first model."""
        return cls(content_norm="frame", mel_cmn=True, shape_head=64, w_amp=1.0, phoneme_dim=191,
                   delta_ref="clip", content_skip=True, k_auto_max=5)

    @classmethod
    def from_dict(cls, data: dict) -> SDMConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SDMConfig keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


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


class SDMModel(nn.Module):
    """The SDM motion model. ``training_losses`` for the trainer, ``generate`` for inference.

    stats: normalization dict from ``sdmtalk.data.windows.compute_motion_stats`` (None =
    identity, for tests). Buffers hold it, so checkpoints carry it.
    """

    def __init__(self, cfg: SDMConfig, stats: dict | None = None):
        super().__init__()
        self.cfg = cfg
        c = cfg
        self.content = ContentEncoder(c.n_mels + c.phoneme_dim, c.content_dim, c.content_kernel,
                                      c.dropout, norm=c.content_norm, skip=c.content_skip)
        self.shape_head = ShapeHead(c.content_dim, c.shape_head, MOTION_DIM - POSE_DIM, c.dropout) \
            if c.shape_head > 0 else None
        self.autoencoder = MotionAutoencoder(MOTION_DIM, c.ae_hidden, c.latent_dim)
        if c.denoiser_coarse not in ("posterior", "prior"):
            raise ValueError(f"denoiser_coarse must be 'posterior' or 'prior', got {c.denoiser_coarse!r}")
        if c.kpred_target not in ("posterior", "prior_lips"):
            raise ValueError(f"kpred_target must be 'posterior' or 'prior_lips', got {c.kpred_target!r}")
        if c.posterior_input not in ("motion", "pose"):
            raise ValueError(f"posterior_input must be 'motion' or 'pose', got {c.posterior_input!r}")
        seen = POSE_DIM if c.posterior_input == "pose" else MOTION_DIM
        self.pose_mode = PoseModeBranch(seen, c.latent_dim, c.content_dim, c.z_dim,
                                        c.gru_hidden, c.posterior_hidden, c.dropout)
        self.rhythm = RhythmicBranch(c.prosody_dim, c.rhythm_hidden, c.rhythm_dim, MOTION_DIM,
                                     dropout=c.dropout)
        condition = c.content_dim + (c.rhythm_dim if c.rhythm_to_denoiser else 0)
        self.denoiser = MotionDenoiser(MOTION_DIM, condition, c.denoiser_hidden, c.denoiser_layers,
                                       dropout=c.dropout)
        self.k_predictor = StepPredictorNet(MOTION_DIM, c.content_dim)
        self.schedule = make_schedule(c.diffusion_steps, c.schedule)
        if not 1 <= c.k_max <= c.diffusion_steps:
            raise ValueError(f"k_max must be in [1, {c.diffusion_steps}], got {c.k_max}")
        if not 0 <= c.k_auto_max <= c.k_max:
            raise ValueError(f"k_auto_max must be in [0, k_max = {c.k_max}], got {c.k_auto_max}")
        for name in ("pose_gain", "pose_gain_slow"):
            gain = getattr(c, name)
            if len(gain) != POSE_DIM or not all(0.0 <= float(g) <= 5.0 for g in gain):
                raise ValueError(f"{name} must be {POSE_DIM} gains in [0, 5], got {gain}")
        if len(c.pose_target) not in (0, 2 * POSE_DIM) or not all(float(v) > 0 for v in c.pose_target):
            raise ValueError(f"pose_target must be empty or {2 * POSE_DIM} positive stats, got {c.pose_target}")
        if len(c.pose_range) not in (0, POSE_DIM) or not all(float(v) > 0 for v in c.pose_range):
            raise ValueError(f"pose_range must be empty or {POSE_DIM} positive limits, got {c.pose_range}")
        if len(c.pose_bias) != POSE_DIM or not all(abs(float(b)) <= 0.5 for b in c.pose_bias):
            raise ValueError(f"pose_bias must be {POSE_DIM} offsets within +-0.5, got {c.pose_bias}")
        if c.pose_band < 0 or c.pose_ease < 0:
            raise ValueError(f"pose_band and pose_ease must be >= 0 frames (0 = off), got {c.pose_band} "
                             f"and {c.pose_ease}")
        if c.pose_steps < 0:
            raise ValueError(f"pose_steps must be >= 0 (0 = DDPM), got {c.pose_steps}")
        if len(c.k_prior_fit) not in (0, 2) or not all(math.isfinite(float(v)) for v in c.k_prior_fit):
            raise ValueError(f"k_prior_fit must be empty or 2 finite numbers (a, b), got {c.k_prior_fit}")
        if not 0.0 <= c.ridge_mix <= 1.0 or not 0.0 < c.ridge_gain <= 10.0:
            raise ValueError(f"ridge_mix must be in [0, 1] and ridge_gain in (0, 10], got {c.ridge_mix} "
                             f"and {c.ridge_gain}")
        if len(c.stream_pose_style) not in (0, 8):
            raise ValueError(f"stream_pose_style must be empty or 8 multipliers, got {len(c.stream_pose_style)}")
        if len(c.head_activity) not in (0, c.rhythm_dim + c.prosody_dim + 1):
            raise ValueError(f"head_activity must be empty or {c.rhythm_dim + c.prosody_dim + 1} weights "
                             f"(rhythm_dim + prosody_dim + bias), got {len(c.head_activity)}")
        if c.delta_ref not in ("first", "clip") or c.pose_ref not in ("first", "clip"):
            raise ValueError(f"delta_ref and pose_ref must be 'first' or 'clip', got "
                             f"{c.delta_ref!r} and {c.pose_ref!r}")
        self._register_stats(stats or {})
        self.register_buffer("k_ema", torch.tensor(float(c.k_fallback)))
        self.register_buffer("kpred_steps", torch.tensor(0, dtype=torch.long))
        self.last_k: list[int] = []
        self.last_k_windows: list[int] = []

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

    def _kl_loss(self, kl_dims: list[torch.Tensor]) -> torch.Tensor:
        """The KL term of the loss from each segment's per-dim KL (B, Z): the mean KL per
        window, or with free bits the sum over segments and z dims of max(free_bits,
        batch-mean KL of the dim)."""
        if self.cfg.kl_free_bits <= 0:
            return sum(d.sum(-1) for d in kl_dims).mean()
        return sum(d.mean(0).clamp_min(self.cfg.kl_free_bits).sum() for d in kl_dims)

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

    # ---- training ------------------------------------------------------------------------
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

    def _sync_loss(self, content, prosody, batch, mask) -> torch.Tensor:
        """InfoNCE of the frozen sync expert between the mouth of the inference path's coarse
        motion (z from the prior, with gradients) and the speech, over sync_centres windows of
        each training window: the other windows of the batch are the negatives."""
        from sdmtalk.sync.expert import MOUTH_POINTS, load_expert

        if "_sync_expert" not in self.__dict__:  # frozen, not a submodule: never saved
            self.__dict__["_sync_expert"] = load_expert().requires_grad_(False).to(content.device)
        expert = self.__dict__["_sync_expert"]
        prior, _ = self._coarse_prior(content, self.rhythm(prosody)[1])
        src = batch["source_canonical"][:, None]
        mouth = (src + self.denormalize(prior)[1])[:, :, MOUTH_POINTS]
        true = (src + batch["delta"])[:, :, MOUTH_POINTS]
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

    def _condition(self, content: torch.Tensor, emb: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """What f_denoi is conditioned on: content (B, W, C), plus the rhythmic embedding
        (B, W, E) times `scale` with rhythm_to_denoiser."""
        return torch.cat([content, scale * emb], -1) if self.cfg.rhythm_to_denoiser else content

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

    def _fallback_k(self) -> int:
        return int(round(float(self.k_ema))) if int(self.kpred_steps) > 0 else self.cfg.k_fallback

    # ---- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, features, source_canonical: np.ndarray, controls=None, progress=None):
        """AudioFeatures (T frames) + source canonical shape (68, 2) -> Motion (pose (T, 4),
        delta (T, 68, 2)), reproducible for a given controls.seed. progress(done, total), if
        given, is called after the coarse motion and after each reverse diffusion step.

        G_c runs over the whole clip with its state carried from segment to segment; shallow
        diffusion runs on windows of cfg.infer_window frames cross-faded over
        cfg.infer_overlap frames, so long audio has no seams and bounded memory.
        """
        from sdmtalk.motion.types import MotionControls

        controls = MotionControls() if controls is None else controls
        _check_controls(controls, self.cfg.diffusion_steps)
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

    def ridge_lips(self, features) -> np.ndarray | None:
        """The ridge's shape (T, 68, 2) that the lips mix in (lip_ensemble), None when not
        mixed. Offline only: a stream does not mix it (lip_ensemble's docstring says why)."""
        ridge = ridge_for(self)
        return None if ridge is None else ridge.predict_shape(features)

    def finish_motion(self, final: torch.Tensor, source: np.ndarray, controls, smooth: float = 0.0,
                      origin: np.ndarray | None = None, band_start: int = 0,
                      gain_state: PoseGainState | None = None, with_state: bool = False,
                      sampled: bool = True, activity: np.ndarray | None = None,
                      accents: np.ndarray | None = None, gain_style: np.ndarray | None = None,
                      ridge: np.ndarray | None = None):
        """Normalized motion (T, D) -> the user's Motion: relative to the photo's face (minus
        the resting face with delta_ref "clip"; with pose_ref "clip" the pose re-referenced
        to `origin`, the model's pose (4,) of the photo's frame, default this span's frame 0),
        pose smoothed with Gaussian sigma `smooth` frames, the calibrated pose gain, then the
        user controls (lip/pose scale, still) and no crossing lips. generate's last stage; a
        streaming caller runs it on each finished span, passing the denormalized pose of the
        stream's frame 0 and, for its new frames from `band_start` on, the pose gain's state
        after its last emitted frame (with_state: returns (Motion, the low band (T, 4), frame 0's
        gained pose, the gained pose (T, 4) before the beat snap), from which the stream makes
        the next state). sampled: the pose comes from a
        reverse diffusion (False: no diffusion ran), so the sampler's pose_bias comes off.
        activity (T,): the rhythmic branch's head-activity envelope (head_activity.py). accents
        (K,): frames (from final's frame 0) of the speech's accents, where the head's speed dips
        (beat_snap.py; off with the rhythmic branch). gain_style (2, 4): further multipliers of
        the slow and fast pose gains (a stream's cfg.stream_pose_style). ridge (T, 68, 2): the
        ridge's shape of final's frames, mixed into the lips (ridge_lips, lip_ensemble)."""
        from sdmtalk.motion.types import Motion

        pose, delta = (v.cpu().numpy().astype(np.float32) for v in self.denormalize(final))
        delta = mix_ridge_lips(delta, ridge, self.cfg.ridge_mix, self.cfg.ridge_gain)
        if self.cfg.delta_ref == "clip":  # relative to the resting face = the photo's face
            delta = delta - self.delta_rest.cpu().numpy().reshape(N_POINTS, 2)
        if smooth > 0:
            pose = gaussian_filter1d(pose, smooth, axis=0, mode="nearest")
        if self.cfg.pose_ref == "clip":
            origin = pose[0] if origin is None else np.asarray(origin, np.float64)
            pose = sim_compose(sim_inverse(origin), pose).astype(np.float32)
        sampled = sampled and controls.ablation != "no_pose"  # else the pose is G_c's
        reference = controls.pose_reference
        style = None if reference is None or controls.still else reference_style(self.cfg, reference)
        if gain_style is not None:
            style = np.asarray(gain_style, np.float64).reshape(2, 4) * (1.0 if style is None else style)
        gained, low, first = apply_pose_gain(pose, self.cfg, band_start, gain_state, sampled, style, activity)
        pose = snap_pose(gained, accents, self.beat_snap(controls))
        pose, delta = _apply_controls(pose, delta, np.asarray(source, np.float32), controls)
        motion = Motion(pose=pose, delta=delta)
        return (motion, low, first, gained) if with_state else motion

    def beat_snap(self, controls) -> BeatSnap | None:
        """The accents' pull on the head at these controls' rhythm scale (None: off)."""
        return BeatSnap.of(self.cfg, rhythm_weight(controls.ablation, controls.rhythm_scale))

    def accents(self, features, controls) -> np.ndarray | None:
        """The speech's accent frames (beat_snap.accent_frames), None when the snap is off."""
        snap = self.beat_snap(controls)
        return None if snap is None else accent_frames(np.asarray(features.prosody)[:, PROSODY_ONSET], snap)

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
        """prior_depth from the prior's sigma (B,) (benchmarks/bench_depth.py reads it)."""
        a, b = (float(v) for v in self.cfg.k_prior_fit)
        gap = torch.exp(a + b * torch.log(torch.as_tensor(sigma).double()))
        tau = self.cfg.k_tau_infer or self.cfg.k_tau
        return meet_step_of_gap(self.schedule, gap, tau, self.cfg.diffusion_steps)


def rhythm_weight(ablation, rhythm_scale: float) -> float:
    """How much of the rhythmic branch a generation uses: the user's rhythm_scale, 0 for
    the no_rhythm ablation (its F~ and, with rhythm_to_denoiser, its embedding)."""
    return 0.0 if ablation == "no_rhythm" else rhythm_scale


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


MOUTH_DIMS = torch.as_tensor(np.concatenate([POSE_DIM + 2 * MOUTH_POINTS, POSE_DIM + 2 * MOUTH_POINTS + 1]))


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


INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points


def _lip_gap(shapes: torch.Tensor) -> torch.Tensor:
    """Mean vertical inner-lip gap of canonical shapes (..., 68, 2) -> (...)."""
    up = shapes[..., [p[0] for p in INNER_LIP_PAIRS], 1]
    lo = shapes[..., [p[1] for p in INNER_LIP_PAIRS], 1]
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


def _check_controls(controls, max_steps: int) -> None:
    if controls.ablation not in ABLATIONS:
        raise InputError(f"unknown ablation {controls.ablation!r}: use one of "
                         f"{', '.join(str(a) for a in ABLATIONS)}")
    k = controls.diffusion_steps
    if k != "auto" and not (isinstance(k, int | np.integer) and 0 <= k <= max_steps):
        raise InputError(f"diffusion_steps={k!r}: use 'auto' or an integer from 0 to {max_steps}")


def _apply_controls(pose, delta, source, controls):
    """User controls on denormalized motion: pose (T, 4), delta (T, 68, 2)."""
    pose = np.zeros_like(pose) if controls.still else pose * float(controls.pose_scale)
    delta = delta.copy()
    delta[:, MOUTH_POINTS] *= float(controls.lip_scale)
    return pose, _no_lip_crossing(delta, source)


def _no_lip_crossing(delta: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Keep each lower inner-lip point below its upper partner on the source face (a
    scaled or noisy delta could push the lips through each other)."""
    shapes = source[None] + delta
    for up, lo in INNER_LIP_PAIRS:
        overlap = np.minimum(shapes[:, lo, 1] - shapes[:, up, 1], 0.0)
        delta[:, up, 1] += overlap / 2
        delta[:, lo, 1] -= overlap / 2
    return delta


def build_model(cfg: SDMConfig | dict, stats: dict | None = None) -> SDMModel:
    """The one builder: an SDMConfig or its dict (e.g. from a checkpoint's JSON)."""
    if isinstance(cfg, dict):
        cfg = SDMConfig.from_dict(cfg)
    return SDMModel(cfg, stats)
