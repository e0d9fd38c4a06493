"""SDMConfig: every size and weight of the SDM model, its presets and checks; the motion layout."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

N_POINTS = 68
POSE_DIM = 4
MOTION_DIM = POSE_DIM + 2 * N_POINTS  # [log scale, angle, tx, ty] + delta (68, 2) flattened
MOUTH_POINTS = np.arange(48, 68)  # outer + inner lips: what lip_scale scales


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
    #   fast band). The sampled head moves less than real ones; calibrate/calibrate_pose_gain.py
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
    #   calibrate/calibrate_pose_gain.py, standardized): empty = none
    head_activity_gain: float = 0.0  # the fast pose band is scaled by exp(this x readout):
    #   heads move in speech and rest in pauses, as the rhythmic branch says (0 = off)
    beat_snap: float = 0.0  # the finished head slows at the speech's accents, its speed there
    #   (1 - 0.75 x this) of its own, so its beats fall on them (motion/beat_snap.py; fitted by
    #   calibrate/calibrate_beat_snap.py to the real heads' beat alignment): 0 = off
    beat_snap_gap: int = 4  # least frames between two accents
    beat_snap_threshold: float = 0.3  # least onset strength (0..1 of the clip's peak) of an accent
    ridge_mix: float = 0.0  # share of the bundled ridge baseline's mouth motion in the lips, an
    #   ensemble of two lip predictors (motion/lip_ensemble.py; fitted on dev by
    #   calibrate/calibrate_ridge_mix.py): 0 = the SDM's lips alone
    ridge_gain: float = 1.0  # the ridge's mouth motion is scaled by this to the SDM's amplitude
    stream_pose_style: tuple[float, ...] = ()  # (2 x 4) multipliers of pose_gain_slow and pose_gain
    #   in a stream: its per-span sampling gives the head less slow wander and more jitter than
    #   offline's 100-frame windows; fitted by calibrate/calibrate_stream_pose.py so that the
    #   streamed head's band stats match offline's (empty = none)
    k_auto_max: int = 0  # clamp of the "auto" depth at inference (0 = k_max; training and
    #   validation keep k_max). Chosen on the dev k curve (docs/RESULTS.md, Lips)
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
    #   step of dev windows (Spearman 0.02, calibrate/calibrate_depth.py)
    denoiser_coarse: str = "posterior"  # the F* f_denoi is conditioned on in training:
    #   "posterior" (z from the true segment, as the paper trains) or "prior" (z from the
    #   prior, what it sees at inference: with an informative pose-mode latent the two
    #   differ, and the denoiser learnt to trust a coarse motion it never gets)
    lips_shallow: bool = True  # "auto" depth gives the lips a shallow reverse pass (k from
    #   the step predictor); False: the lips are G_c's coarse ones (k = 0) and only the head
    #   is diffused (its deep pass). For models whose denoiser costs lip sync (docs/RESULTS.md, Head motion)
    k_tau_infer: float = 0.0  # meeting KL at inference (0 = k_tau): the predicted step is
    #   converted exactly, since the meet KL scales with abar/(1-abar) (step_predictor.py)
    k_prior_fit: tuple[float, ...] = ()  # (a, b): "auto" depth from the pose-mode prior's own
    #   uncertainty instead of the step predictor network: the window's expected squared gap
    #   between coarse and real motion is exp(a + b log sigma), sigma the prior's mean std
    #   over the window's segments, and k its meeting step at k_tau_infer. The network's k
    #   did not track the windows' meeting step (Spearman -0.03); this one does (0.3-0.37 on
    #   dev, docs/RESULTS.md, Lips). Fitted by calibrate/calibrate_depth.py --fit-prior; empty = off
    kl_warmup: int = 500  # steps over which beta ramps from 0
    w_kpred: float = 0.1
    infer_window: int = 100  # frames per diffusion window at inference (4 s)
    infer_overlap: int = 20  # cross-faded frames between neighbouring windows
    chunk: int = 250  # frames per f_con / f_rhy chunk at inference (bounded memory)
    infer_batch: int = 8  # diffusion windows denoised together
    # ---- lip-sync front-end; defaults keep the first shipped model's behaviour
    content_norm: str = "window"  # f_con normalisation: "window" (GroupNorm over the input,
    #   length-dependent) or "frame" (LayerNorm per frame: same c_i at any chunk length)
    mel_cmn: bool = False  # subtract each input's mean log-mel per bin (channel / gain
    #   normalisation: webcams, rooms and microphones shift whole bands)
    mel_cmn_prior: int = 0  # with mel_cmn: 0 = the whole clip's mean; N > 0 = the causal
    #   running mean up to each row, started from the training-set mean weighted as N frames.
    #   A stream knows only the speech so far: a model trained on the running mean gets the
    #   same input offline and streaming (docs/RESULTS.md, Streaming: the clip mean cost the stream 0.010)
    shape_head: int = 0  # hidden width of the direct content -> shape path (0 = none)
    w_amp: float = 0.0  # weight of the mouth-amplitude loss: |std_t(F* mouth) - std_t(F mouth)|
    w_sync: float = 0.0  # weight of the lip-sync expert's InfoNCE on the inference path's coarse
    #   mouth (z from the prior), the shipped sync_expert frozen (Wav2Lip's expert loss in
    #   landmark space)
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
        """The shipped model: the lip-sync front-end on top of the first model."""
        return cls(content_norm="frame", mel_cmn=True, shape_head=64, w_amp=1.0, phoneme_dim=191,
                   delta_ref="clip", content_skip=True, k_auto_max=5)

    @classmethod
    def from_dict(cls, data: dict) -> SDMConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SDMConfig keys: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def check_config(c: SDMConfig) -> None:
    """Raise ValueError for an SDMConfig that SDMModel cannot be built from."""
    if c.denoiser_coarse not in ("posterior", "prior"):
        raise ValueError(f"denoiser_coarse must be 'posterior' or 'prior', got {c.denoiser_coarse!r}")
    if c.kpred_target not in ("posterior", "prior_lips"):
        raise ValueError(f"kpred_target must be 'posterior' or 'prior_lips', got {c.kpred_target!r}")
    if c.posterior_input not in ("motion", "pose"):
        raise ValueError(f"posterior_input must be 'motion' or 'pose', got {c.posterior_input!r}")
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
