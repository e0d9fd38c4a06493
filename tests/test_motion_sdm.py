"""The SDM motion model on synthetic speech-driven motion (tiny config, CPU, seconds)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from sdmtalk.audio import AudioFeatures
from sdmtalk.errors import InputError
from sdmtalk.face.align import lip_gap
from sdmtalk.face.template import CANONICAL_TEMPLATE
from sdmtalk.motion.energy import OPENING_PATTERN
from sdmtalk.motion.sdm import SDMModel, build_model
from sdmtalk.motion.sdm_config import MOTION_DIM, SDMConfig
from sdmtalk.motion.sdm_sampling import crossfade_weights, window_spans
from sdmtalk.motion.types import MOUTH, MotionControls, MotionModel

SRC = CANONICAL_TEMPLATE.astype(np.float32)
torch.set_num_threads(1)  # the test machines have 2 cores shared by several jobs
SHAPE_BASIS = 0.01 * np.random.default_rng(123).standard_normal((3, 68, 2))  # brows, yaw, ...
LOSS_TERMS = {"amp", "total", "reg", "ind", "rec", "diff", "kl", "kpred", "sync"}


def synth_clip(T: int, rng: np.random.Generator) -> dict:
    """Mouth opening follows a bursty loudness envelope that also shapes the mel and the
    energy channel; the head pose is a slow random walk unrelated to the audio."""
    env = np.convolve((rng.random(T) < 0.15).astype(float), np.hanning(9), mode="same").clip(0, 1)
    mel = -6 + 5 * np.repeat(env, 4)[:, None] * np.linspace(1.0, 0.2, 80)[None] \
        + 0.3 * rng.standard_normal((4 * T, 80))
    prosody = np.stack([np.zeros(T), (env > 0.3) * 1.0, env, np.abs(np.diff(env, prepend=0))], 1)
    expression = np.cumsum(rng.standard_normal((T, 3)) * 0.1, 0)  # slow non-rigid drift
    delta = 0.2 * env[:, None, None] * OPENING_PATTERN[None] \
        + np.einsum("tk,kpc->tpc", expression, SHAPE_BASIS) + 0.0005 * rng.standard_normal((T, 68, 2))
    walk = np.cumsum(rng.standard_normal((T, 4)) * [0.002, 0.004, 0.004, 0.003], 0)
    return {"mel": mel, "prosody": prosody, "pose": walk - walk[:1], "delta": delta - delta[:1],
            "energy": env}


def synth_batch(B: int, W: int, rng) -> dict:
    items = [synth_clip(W, rng) for _ in range(B)]
    out = {k: torch.tensor(np.stack([it[k] for it in items]), dtype=torch.float32)
           for k in ("mel", "prosody", "pose", "delta")}
    out["valid"] = torch.ones(B, W)
    out["source_canonical"] = torch.tensor(SRC).expand(B, 68, 2).clone()
    return out


def synth_stats(rng) -> dict:
    b = synth_batch(64, 32, rng)
    x = torch.cat([b["pose"], b["delta"].flatten(-2)], -1).reshape(-1, MOTION_DIM)
    mel, pros = b["mel"].reshape(-1, 80), b["prosody"].reshape(-1, 4)
    std = x.std(0)
    std[4:] = std[4:].clamp_min(0.25 * std[4:].median())  # as compute_motion_stats floors it
    return {"motion_mean": x.mean(0), "motion_std": std.clamp_min(1e-4),
            "mel_mean": mel.mean(0), "mel_std": mel.std(0), "prosody_mean": pros.mean(0),
            "prosody_std": pros.std(0).clamp_min(1e-3)}


def features_of(clip: dict) -> AudioFeatures:
    return AudioFeatures(mel=clip["mel"].astype(np.float32), prosody=clip["prosody"].astype(np.float32),
                         energy=clip["energy"].astype(np.float32))


def train(model: SDMModel, steps: int, rng, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr, betas=(0.5, 0.999))
    totals = []
    for step in range(steps):
        losses = model.training_losses(synth_batch(8, 32, rng), step)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        totals.append(float(losses["total"].detach()))
    return totals


@pytest.fixture(scope="module")
def trained() -> SDMModel:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(SDMConfig.tiny(), synth_stats(rng))
    train(model, 200, rng)
    return model.eval()


@pytest.fixture(scope="module")
def clip() -> dict:
    return synth_clip(200, np.random.default_rng(5))


def test_config_is_plain_and_roundtrips():
    for cfg in (SDMConfig.tiny(), SDMConfig.base()):
        d = json.loads(json.dumps(cfg.__dict__))
        assert SDMConfig.from_dict(d) == cfg
        assert build_model(d).cfg == cfg
    with pytest.raises(ValueError, match="unknown"):
        SDMConfig.from_dict({"no_such_field": 1})
    base = build_model(SDMConfig.base())
    assert sum(p.numel() for p in base.parameters()) < 3_000_000


def test_tiny_trains_and_loss_falls():
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    model = build_model(SDMConfig.tiny(), synth_stats(rng))
    losses = model.training_losses(synth_batch(2, 32, rng), 0)
    assert set(losses) == LOSS_TERMS and all(torch.isfinite(v) for v in losses.values())
    totals = train(model, 30, rng)
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5])


def test_stats_become_buffers_and_survive_state_dict(trained):
    clone = build_model(trained.cfg)
    clone.load_state_dict(trained.state_dict())
    assert torch.equal(clone.motion_std, trained.motion_std)
    assert int(clone.kpred_steps) == int(trained.kpred_steps) == 200


def test_learns_lips_from_audio(trained, clip):
    motion = trained.generate(features_of(clip), SRC, MotionControls(seed=0))
    assert isinstance(trained, MotionModel)
    assert motion.pose.shape == (200, 4) and motion.delta.shape == (200, 68, 2)
    pred, true = lip_gap(SRC + motion.delta), lip_gap(SRC + clip["delta"])
    assert np.corrcoef(pred, true)[0, 1] > 0.8
    assert 0.6 < pred.std() / true.std() < 1.6
    metrics = trained.validation_metrics(synth_batch(8, 32, np.random.default_rng(2)))
    assert metrics["lip_corr_coarse"] > 0.8 and metrics["lip_corr_final"] > 0.8


def test_same_seed_same_motion_other_seed_other_pose_same_lips(trained, clip):
    f = features_of(clip)
    a = trained.generate(f, SRC, MotionControls(seed=3))
    k_a = list(trained.last_k)
    b = trained.generate(f, SRC, MotionControls(seed=3))
    c = trained.generate(f, SRC, MotionControls(seed=4))
    assert np.array_equal(a.pose, b.pose) and np.array_equal(a.delta, b.delta) and k_a == trained.last_k
    assert np.abs(a.pose - c.pose).max() > 1e-3
    assert np.corrcoef(lip_gap(SRC + a.delta), lip_gap(SRC + c.delta))[0, 1] > 0.9


def test_depth_zero_is_the_coarse_motion(trained, clip):
    f = features_of(clip)
    k0 = trained.generate(f, SRC, MotionControls(seed=2, diffusion_steps=0))
    assert trained.last_k == []
    no_diff = trained.generate(f, SRC, MotionControls(seed=2, ablation="no_diffusion"))
    assert np.array_equal(k0.delta, no_diff.delta) and np.array_equal(k0.pose, no_diff.pose)
    coarse, _, _ = trained._coarse_sequence(f, MotionControls(seed=2))
    pose, delta = trained.denormalize(coarse)
    np.testing.assert_allclose(k0.pose, pose[0].detach().numpy(), atol=1e-6)
    shallow = trained.generate(f, SRC, MotionControls(seed=2, diffusion_steps=10))
    assert trained.last_k == [10] * len(window_spans(200, 32, 8))
    assert not np.allclose(shallow.delta, k0.delta)


def test_auto_depth_is_clamped_predicted_or_fallback(trained, clip):
    trained.generate(features_of(clip), SRC, MotionControls(seed=0))
    assert trained.last_k and all(1 <= k <= trained.cfg.k_max for k in trained.last_k)
    fresh = build_model(SDMConfig.tiny())  # predictor untrained: the global fallback k
    fresh.generate(features_of(clip), SRC, MotionControls(seed=0))
    assert set(fresh.last_k) == {fresh.cfg.k_fallback}


def test_ablations_and_controls(trained, clip):
    f = features_of(clip)

    def gen(**kw):
        return trained.generate(f, SRC, MotionControls(seed=1, **kw))

    coarse = gen(diffusion_steps=0)
    no_rhythm = gen(diffusion_steps=0, ablation="no_rhythm")
    assert not np.allclose(no_rhythm.pose, coarse.pose)
    zero_rhythm = gen(diffusion_steps=0, rhythm_scale=0.0)
    assert np.array_equal(zero_rhythm.pose, no_rhythm.pose)
    # without the pose-mode branch (and rhythm) the head does not move at all
    still_head = gen(diffusion_steps=0, ablation="no_pose", rhythm_scale=0.0)
    assert np.abs(still_head.pose).max() < 1e-5
    assert np.abs(still_head.delta[:, MOUTH]).max() > 0.02  # lips still move
    # ... and no stochastic head from anywhere: with diffusion, every seed gives one pose
    other_seed = trained.generate(f, SRC, MotionControls(seed=2, ablation="no_pose"))
    np.testing.assert_allclose(gen(ablation="no_pose").pose, other_seed.pose, atol=1e-6)
    full = gen(ablation="full_diffusion")
    assert trained.last_k == [trained.cfg.diffusion_steps] * len(window_spans(200, 32, 8))
    assert np.isfinite(full.delta).all() and not np.allclose(full.delta, gen().delta)
    base = gen()
    still = gen(still=True)
    assert not still.pose.any() and np.array_equal(still.delta, base.delta)
    np.testing.assert_allclose(gen(pose_scale=0.5).pose, 0.5 * base.pose, atol=1e-7)
    outer = slice(48, 60)  # outer lips: not touched by the lip-crossing guard
    np.testing.assert_allclose(gen(lip_scale=2.0).delta[:, outer], 2 * base.delta[:, outer], atol=1e-6)
    gaps = lip_gap(SRC + gen(lip_scale=0.0).delta)
    assert np.allclose(gaps, gaps[0], atol=1e-5)


def test_bad_controls_and_inputs(trained, clip):
    f = features_of(clip)
    with pytest.raises(InputError, match="diffusion_steps"):
        trained.generate(f, SRC, MotionControls(diffusion_steps=1000))
    with pytest.raises(ValueError, match="68, 2"):
        trained.generate(f, SRC[:10], MotionControls())
    bad = AudioFeatures(mel=f.mel[:-4], prosody=f.prosody, energy=f.energy)
    with pytest.raises(ValueError, match="mel"):
        trained.generate(bad, SRC, MotionControls())


def test_windows_and_crossfade():
    assert window_spans(20, 32, 8) == [(0, 20)]
    spans = window_spans(100, 32, 8)
    assert spans[0] == (0, 32) and spans[-1][1] == 100
    assert all(b[0] <= a[1] - 8 for a, b in zip(spans, spans[1:], strict=False))
    w = crossfade_weights(32, 8, True, True)
    assert w[0] < 0.1 and w[16] == 1 and w[-1] < 0.1


def test_long_audio_has_no_seams(trained):
    clip = synth_clip(1500, np.random.default_rng(9))  # 60 s
    motion = trained.generate(features_of(clip), SRC, MotionControls(seed=0))
    assert motion.delta.shape == (1500, 68, 2) and np.isfinite(motion.delta).all()
    x = np.concatenate([motion.pose, motion.delta.reshape(1500, -1)], 1)
    step = np.linalg.norm(np.diff(x, axis=0), axis=1)  # step[i]: frame i -> i + 1
    cfg = trained.cfg
    spans = window_spans(1500, cfg.infer_window, cfg.infer_overlap)
    edges = {s for s, _ in spans} | {e for _, e in spans} | set(range(0, 1500, cfg.chunk))
    edge_steps = sorted(i - 1 for i in edges if 0 < i < 1500)  # into and out of each boundary
    at_edges = step[edge_steps]
    elsewhere = np.delete(step, edge_steps)
    assert at_edges.max() <= 1.5 * np.percentile(elsewhere, 99)  # no jump beyond typical motion
    assert at_edges.mean() <= 1.5 * elsewhere.mean()
    assert np.abs(motion.pose).max() < 0.5  # no drift of the head over a minute


def test_lip_frontend_options_train_and_need_no_window_length():
    """content_norm="frame", mel_cmn, the direct shape path and the amplitude loss: the
    tiny model still learns the lips; the content of a chunk equals that of the whole clip
    (no dependence on input length, so chunked inference has no seams); the shape path
    starts at zero (training begins from G_c alone)."""
    import dataclasses

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = dataclasses.replace(SDMConfig.tiny(), content_norm="frame", mel_cmn=True, shape_head=16,
                              w_amp=0.5, content_skip=True)
    model = build_model(cfg, synth_stats(rng))
    assert float(model.shape_head(torch.randn(1, 10, cfg.content_dim)).abs().max()) == 0.0
    losses = model.training_losses(synth_batch(2, 32, rng), 0)
    assert set(losses) == LOSS_TERMS and float(losses["amp"]) > 0
    train(model, 200, rng)
    model.eval()
    clip = synth_clip(200, np.random.default_rng(5))
    motion = model.generate(features_of(clip), SRC, MotionControls(seed=0))
    pred, true = lip_gap(SRC + motion.delta), lip_gap(SRC + clip["delta"])
    assert np.corrcoef(pred, true)[0, 1] > 0.8
    mel = torch.randn(1, 4 * 60, 80)
    whole = model.content(mel)
    assert torch.allclose(model.content(mel[:, 40:200])[:, 10:30], whole[:, 20:40], atol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        build_model(dataclasses.replace(cfg, content_norm="batch"))


def test_generate_reports_progress_per_reverse_step(trained, clip):
    calls = []
    trained.generate(features_of(clip), SRC, MotionControls(seed=0, diffusion_steps=5),
                     progress=lambda done, total: calls.append((done, total)))
    total = calls[0][1]
    assert total == 1 + 5 + min(trained.cfg.pose_k, trained.cfg.diffusion_steps)
    assert calls == [(i, total) for i in range(1, total + 1)]
    calls.clear()
    trained.generate(features_of(clip), SRC, MotionControls(seed=0, diffusion_steps=0),
                     progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)]


def test_phoneme_input_is_read_and_required():
    """phoneme_dim > 0: f_con reads the posteriors (they change the motion) and a model that
    needs them says so when AudioFeatures carries none."""
    import dataclasses

    rng = np.random.default_rng(3)
    cfg = dataclasses.replace(SDMConfig.tiny(), phoneme_dim=6)
    model = build_model(cfg, synth_stats(rng))
    assert model.needs_phonemes and not build_model(SDMConfig.tiny()).needs_phonemes
    batch = synth_batch(2, 32, rng)
    batch["phonemes"] = torch.softmax(torch.randn(2, 32, 6), -1)
    assert all(torch.isfinite(v) for v in model.training_losses(batch, 0).values())
    clip = synth_clip(64, rng)
    feats = features_of(clip)
    with pytest.raises(ValueError, match="phonemes=True"):
        model.generate(feats, SRC, MotionControls(seed=0, diffusion_steps=0))
    model.eval()
    with torch.no_grad():
        for p in model.content.parameters():
            p.add_(0.1 * torch.randn_like(p))
    a, b = (model.generate(dataclasses.replace(feats, phonemes=np.eye(6, dtype=np.float32)[k]),
                           SRC, MotionControls(seed=0, diffusion_steps=0)) for k in
            (rng.integers(0, 6, 64), rng.integers(0, 6, 64)))
    assert not np.allclose(a.delta, b.delta)


def test_clip_references_rest_face_and_photo_pose():
    """delta_ref / pose_ref "clip": generate subtracts the resting face (stats delta_rest)
    and re-references the head to the sampled frame 0, so the first frame is the photo's
    head pose exactly; an unknown reference is refused."""
    import dataclasses

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stats = synth_stats(rng)
    stats["delta_rest"] = torch.full((136,), 0.01)
    cfg = dataclasses.replace(SDMConfig.tiny(), delta_ref="clip", pose_ref="clip", pose_k=0)
    model = build_model(cfg, stats).eval()
    clip = synth_clip(60, np.random.default_rng(5))
    ctl = MotionControls(seed=0, diffusion_steps=5)
    motion = model.generate(features_of(clip), SRC, ctl)
    np.testing.assert_allclose(motion.pose[0], 0.0, atol=1e-6)
    assert np.abs(motion.pose[1:]).max() > 0  # the head still moves after frame 0
    plain = build_model(dataclasses.replace(cfg, delta_ref="first", pose_ref="first"), stats).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not hasattr(plain, "delta_rest")
    other = plain.generate(features_of(clip), SRC, ctl)
    assert np.abs((other.delta - motion.delta)[:, :48] - 0.01).max() < 1e-4  # the rest face
    with pytest.raises(ValueError, match="pose_ref"):
        build_model(dataclasses.replace(cfg, pose_ref="photo"))


def test_pose_mode_latent_reads_pose_only_and_keeps_its_free_bits(trained, clip):
    """posterior_input="pose": q(z) reads the 4 head-pose dims (so z cannot carry the
    lips); kl_free_bits: a z dim whose KL is below the floor costs the floor (the latent is
    not pushed to collapse); k_tau_infer: a stricter meeting KL starts the reverse process
    no earlier."""
    import dataclasses

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = dataclasses.replace(SDMConfig.tiny(), posterior_input="pose", kl_free_bits=0.5)
    model = build_model(cfg, synth_stats(rng))
    first = model.pose_mode.posterior.conv[0]
    assert first.in_channels == 4 + cfg.content_dim
    losses = model.training_losses(synth_batch(2, 32, rng), 10_000)
    assert set(losses) == LOSS_TERMS and all(torch.isfinite(v) for v in losses.values())
    segments = 2  # 32 frames, tiny segment 16
    zero = [torch.zeros(2, cfg.z_dim) for _ in range(segments)]
    assert float(model._kl_loss(zero)) == pytest.approx(0.5 * cfg.z_dim * segments)
    above = [torch.full((2, cfg.z_dim), 2.0) for _ in range(segments)]
    assert float(model._kl_loss(above)) == pytest.approx(2.0 * cfg.z_dim * segments)
    with pytest.raises(ValueError, match="posterior_input"):
        build_model(dataclasses.replace(cfg, posterior_input="lips"))
    prior = build_model(dataclasses.replace(cfg, kpred_target="prior_lips", denoiser_coarse="prior"),
                        synth_stats(rng))
    kpred = prior.training_losses(synth_batch(2, 32, rng), 0)["kpred"]
    assert torch.isfinite(kpred) and kpred.requires_grad
    with pytest.raises(ValueError, match="denoiser_coarse"):
        build_model(dataclasses.replace(cfg, denoiser_coarse="truth"))
    with pytest.raises(ValueError, match="kpred_target"):
        build_model(dataclasses.replace(cfg, kpred_target="lips"))
    f = features_of(clip)
    trained.generate(f, SRC, MotionControls(seed=0))
    as_trained = trained.last_k[0]
    try:
        trained.cfg.k_tau_infer = trained.cfg.k_tau / 100
        trained.generate(f, SRC, MotionControls(seed=0))
        assert trained.last_k[0] >= as_trained
    finally:
        trained.cfg.k_tau_infer = 0.0


def test_lips_from_coarse_keep_the_deep_head(trained, clip):
    """lips_shallow=False: "auto" gives the lips no reverse pass (k = 0, G_c's lips) while
    the head still comes from its deep pass, so seeds still move it."""
    f = features_of(clip)
    coarse = trained.generate(f, SRC, MotionControls(seed=1, diffusion_steps=0))
    try:
        trained.cfg.lips_shallow = False
        auto = trained.generate(f, SRC, MotionControls(seed=1))
        assert set(trained.last_k) == {0}
        other = trained.generate(f, SRC, MotionControls(seed=2))
    finally:
        trained.cfg.lips_shallow = True
    np.testing.assert_allclose(auto.delta, coarse.delta, atol=1e-6)
    assert not np.allclose(auto.pose, coarse.pose) and np.abs(auto.pose - other.pose).max() > 1e-3


def test_pose_steps_sample_the_deep_head_with_fewer_ddim_steps(trained, clip):
    """pose_steps N: the deep head-pose pass takes N DDIM steps instead of pose_k DDPM
    steps; the lips (shallow k) are untouched, the head still moves with the seed."""
    f, controls = features_of(clip), MotionControls(seed=4)
    base = trained.generate(f, SRC, controls)
    fast = build_model(dataclasses.replace(trained.cfg, pose_steps=10), None)
    fast.load_state_dict(trained.state_dict())
    fast.eval()
    ticks = []
    out = fast.generate(f, SRC, controls, progress=lambda i, n: ticks.append(n))
    other = fast.generate(f, SRC, MotionControls(seed=5))
    np.testing.assert_array_equal(out.delta, base.delta)
    assert not np.allclose(out.pose, base.pose) and np.abs(out.pose - other.pose).max() > 1e-3
    assert ticks[-1] == 1 + fast.last_k[0] + 10
    with pytest.raises(ValueError, match="pose_steps"):
        build_model(dataclasses.replace(SDMConfig.tiny(), pose_steps=-1))


def test_running_mel_mean_of_a_window_is_the_whole_clips():
    """mel_cmn_prior: the running mean that a training window gets from the rows before it
    (make_window's mel_sum_before / mel_rows_before) is the one offline generate computes
    over the whole clip, row for row; early rows lean on the training-set mean."""
    from sdmtalk.data.windows import make_window

    rng = np.random.default_rng(11)
    stats = synth_stats(rng)
    model = build_model(dataclasses.replace(SDMConfig.tiny(), mel_cmn=True, mel_cmn_prior=5), stats).eval()
    T, start, W = 120, 37, 40
    mel = rng.standard_normal((4 * T, 80)).astype(np.float32) + 3.0
    clip = {"mel": mel, "prosody": np.zeros((T, 4), np.float32), "valid": np.ones(T, np.float32),
            "landmarks": np.tile(SRC[None], (T, 1, 1)).astype(np.float32)}
    whole, _ = model._speech(torch.as_tensor(mel)[None], torch.zeros(1, T, 4))
    item = make_window(clip, start, W)
    batch = {k: torch.as_tensor(v)[None] for k, v in item.items()}
    window, _ = model.batch_speech(batch)
    torch.testing.assert_close(window, whole[:, 4 * start:4 * (start + W)], atol=1e-4, rtol=1e-4)
    first = (torch.as_tensor(mel[0]) * 1 + model.mel_mean * 20) / 21  # row 0: 5 frames of prior
    torch.testing.assert_close(whole[0, 0], (torch.as_tensor(mel[0]) - first) / model.mel_std)


def test_pose_gain_scales_each_pose_dim_and_leaves_the_lips(trained, clip):
    """SDMConfig.pose_gain (calibrated per pose dim on the train split) multiplies the
    generated head pose [log scale, angle, tx, ty]; lips and the photo's rest are untouched."""
    f, controls = features_of(clip), MotionControls(seed=4)
    base = trained.generate(f, SRC, controls)
    gain = (1.0, 2.0, 1.5, 0.5)
    gained = build_model(dataclasses.replace(trained.cfg, pose_gain=gain), None)
    gained.load_state_dict(trained.state_dict())
    out = gained.eval().generate(f, SRC, controls)
    np.testing.assert_allclose(out.pose, base.pose * np.float32(gain), atol=1e-6)
    np.testing.assert_array_equal(out.delta, base.delta)
    for bad in ((1.0, 1.0, 1.0), (1.0, -1.0, 1.0, 1.0)):
        with pytest.raises(ValueError, match="pose_gain"):
            build_model(dataclasses.replace(SDMConfig.tiny(), pose_gain=bad))
    assert SDMConfig.from_dict({**dataclasses.asdict(SDMConfig.tiny()), "pose_gain": [1, 2, 3, 4]}).pose_gain \
        == (1, 2, 3, 4)


def test_sync_expert_loss_trains_the_inference_path_and_is_not_saved():
    """w_sync: the frozen expert's InfoNCE on the prior path's coarse mouth; gradients reach
    the pose-mode prior (the inference path), none reach the expert, and the expert stays
    out of the weights."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(dataclasses.replace(SDMConfig.tiny(), w_sync=0.5, sync_centres=4), synth_stats(rng))
    batch = synth_batch(4, 32, rng)
    batch["mel_mean"] = batch["mel"].mean(1)
    losses = model.training_losses(batch, 0)
    sync = losses["sync"].item()
    assert np.isfinite(sync) and 0.5 < sync < 10
    losses["total"].backward()
    prior_grads = [p.grad for n, p in model.named_parameters() if n.startswith("pose_mode.prior")]
    assert prior_grads and any(g is not None and g.abs().sum() > 0 for g in prior_grads)
    expert = model.__dict__["_sync_expert"]
    assert all(p.grad is None for p in expert.parameters())
    assert not any("sync" in k for k in model.state_dict())


def test_auto_depth_from_the_pose_mode_prior(trained, clip):
    """k_prior_fit: "auto" takes the meeting step of the gap the prior's sigma predicts,
    clamped; a larger predicted gap (a) starts the reverse process deeper."""
    import dataclasses

    f = features_of(clip)

    def auto_k(a: float) -> list[int]:
        model = build_model(dataclasses.replace(trained.cfg, k_prior_fit=(a, -2.0), k_tau_infer=50.0), None)
        model.load_state_dict(trained.state_dict())
        model.generate(f, SRC, MotionControls(seed=0))
        return model.last_k_windows

    shallow, deep = auto_k(-6.0), auto_k(0.0)
    assert all(1 <= k <= trained.cfg.k_max for k in shallow + deep)
    assert np.median(deep) > np.median(shallow)


@pytest.mark.parametrize("fit", [(1.0,), (1.0, float("nan"))])
def test_bad_prior_depth_fit_is_refused(fit):
    import dataclasses

    with pytest.raises(ValueError, match="k_prior_fit"):
        build_model(dataclasses.replace(SDMConfig.tiny(), k_prior_fit=fit))
