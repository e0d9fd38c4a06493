"""Schedule, samplers and step-predictor logic of shallow diffusion (no networks)."""

import math

import pytest
import torch

from sdmtalk.diffusion.samplers import (
    ddim_schedule,
    sample_ddim,
    sample_ddpm,
    sample_reverse,
    shallow_start,
)
from sdmtalk.diffusion.schedule import make_schedule, q_sample
from sdmtalk.diffusion.step_predictor import (
    meet_step_of_gap,
    meet_step_targets,
    rescale_meet_step,
    resolve_k,
    tau_for_step,
)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_invariants(kind):
    s = make_schedule(100, kind)
    abar = s.alphas_cumprod
    assert s.num_steps == 100 and abar.shape == (101,)
    assert abar[0] == 1.0 and s.betas[0] == 0.0
    assert (abar[1:] < abar[:-1]).all()  # noise variance 1 - abar grows with t
    assert ((s.betas[1:] > 0) & (s.betas[1:] < 1)).all()
    assert abar[-1] < (0.01 if kind == "cosine" else 0.05)  # step T is (almost) pure noise


def test_q_sample_identity_at_zero_and_variance_grows():
    s = make_schedule(100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4000, 3, generator=g)
    noise = torch.randn(4000, 3, generator=g)
    assert torch.equal(q_sample(s, x0, 0, noise), x0)
    # start from constant data: the spread is all noise and must grow with t
    stds = [q_sample(s, torch.ones(4000, 3), t, noise).std().item() for t in (1, 10, 30, 60, 100)]
    assert all(a < b for a, b in zip(stds, stds[1:], strict=False))
    assert stds[-1] == pytest.approx(1.0, abs=0.05)
    t = torch.tensor([0, 100] * 2000)  # per-sample steps
    y = q_sample(s, x0[:, :1].expand(-1, 3).contiguous(), t, noise)
    assert torch.equal(y[t == 0], x0[t == 0, :1].expand(-1, 3))


def test_ddpm_from_zero_is_identity_and_oracle_recovers_x0():
    s = make_schedule(100)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 16, 5, generator=g)
    coarse = x0 + 0.3 * torch.randn(2, 16, 5, generator=g)
    assert torch.equal(shallow_start(s, coarse, 0, g), coarse)
    assert torch.equal(sample_ddpm(lambda x, t: x * 0, coarse, 0, s, g), coarse)
    x_k = shallow_start(s, coarse, 40, g)
    assert not torch.allclose(x_k, coarse)
    seen = []
    out = sample_ddpm(lambda x, t: x0, x_k, 40, s, g, callback=lambda t, x: seen.append(t))
    assert seen == list(range(40, 0, -1))
    torch.testing.assert_close(out, x0)  # the last step is the denoiser's x0, no noise
    torch.testing.assert_close(sample_ddim(lambda x, t: x0, x_k, [40, 20, 5], s), x0)
    with pytest.raises(ValueError):
        sample_ddpm(lambda x, t: x0, x_k, 101, s)


def test_sample_reverse_is_ddpm_or_fewer_ddim_steps_over_the_same_range():
    s = make_schedule(100)
    x = torch.randn(1, 8, 3, generator=torch.Generator().manual_seed(0))
    den = lambda x, t: 0.9 * x  # noqa: E731
    for n in (0, None, 100, 200):  # no DDIM, or not fewer steps: DDPM, the same draws
        torch.testing.assert_close(sample_reverse(den, x, 60, s, torch.Generator().manual_seed(1), n),
                                   sample_ddpm(den, x, 60, s, torch.Generator().manual_seed(1)))
    assert ddim_schedule(100, 10)[0] == 100 and ddim_schedule(100, 10)[-1] == 1 and len(ddim_schedule(100, 10)) == 10
    seen = []
    sample_reverse(den, x, 100, s, torch.Generator().manual_seed(1), 10, callback=lambda t, x: seen.append(t))
    assert seen == ddim_schedule(100, 10)


def test_ddpm_seeded():
    s = make_schedule(50)
    x = torch.zeros(1, 8, 3)
    runs = [sample_ddpm(lambda x, t: 0.9 * x, x, 20, s, torch.Generator().manual_seed(k)) for k in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_meet_step_targets_monotone_and_clamped():
    s = make_schedule(100)
    target = torch.zeros(5, 10, 4)
    gaps = torch.tensor([0.0, 0.05, 0.3, 1.0, 30.0])
    coarse = gaps[:, None, None].expand(-1, 10, 4)
    k = meet_step_targets(s, coarse, target, torch.ones(5, 10), tau=0.1, k_max=60)
    assert k[0] == 1 and k[-1] == 60
    assert (k[1:] >= k[:-1]).all() and k[2] > k[1]
    # invalid frames do not count
    mask = torch.ones(5, 10)
    mask[:, 5:] = 0
    coarse2 = coarse.clone()
    coarse2[:, 5:] = 100.0
    assert torch.equal(meet_step_targets(s, coarse2, target, mask, 0.1, 60), k)


def test_rescale_meet_step_converts_one_tau_into_another():
    """A step found at the training tau, converted to another tau, brackets the meet-step
    target at that tau (the integer step k means a meeting point in (k - 1, k]), and the
    order of windows is kept."""
    s = make_schedule(100)
    gaps = torch.tensor([0.1, 0.5, 2.0])
    coarse, target = gaps[:, None, None].expand(-1, 10, 4), torch.zeros(3, 10, 4)
    mask = torch.ones(3, 10)
    at_3 = meet_step_targets(s, coarse, target, mask, tau=3.0, k_max=100)
    for ratio, tau in ((1.0, 3.0), (0.1, 0.3), (0.01, 0.03)):
        exact = meet_step_targets(s, coarse, target, mask, tau=tau, k_max=100)
        converted = [rescale_meet_step(s, float(k), ratio) for k in at_3]
        for k, e in zip(at_3, exact, strict=True):
            assert rescale_meet_step(s, float(k) - 1, ratio) - 1 <= float(e) <= rescale_meet_step(s, float(k), ratio) + 1
        assert converted == sorted(converted)
    assert rescale_meet_step(s, 10.0, 0.1) > 10.0 > rescale_meet_step(s, 10.0, 10.0) >= 1.0


def test_resolve_k_clamps_and_falls_back():
    assert resolve_k(None, 60, 40) == (40, True)
    assert resolve_k(math.nan, 60, 40) == (40, True)
    assert resolve_k(500.0, 60, 40) == (60, False)
    assert resolve_k(0.2, 60, 40) == (1, False)
    assert resolve_k(33.4, 60, 40) == (33, False)
    assert resolve_k(None, 60, 99) == (60, True)


def test_meet_step_of_a_gap_and_the_tau_that_puts_it_at_k():
    """A larger coarse-real gap meets later; tau_for_step(g, k) makes gap g meet exactly at k."""
    schedule = make_schedule(100, "cosine")
    gaps = torch.tensor([0.01, 0.1, 1.0, 10.0], dtype=torch.float64)
    steps = meet_step_of_gap(schedule, gaps, 0.1, 100)
    assert torch.all(steps[1:] >= steps[:-1]) and steps[-1] > steps[0]
    for k in (2, 3, 7):
        tau = tau_for_step(schedule, 0.5, k)
        assert int(meet_step_of_gap(schedule, torch.tensor([0.5], dtype=torch.float64), tau, 100)[0]) == k
    assert int(meet_step_of_gap(schedule, torch.tensor([1e6], dtype=torch.float64), 0.1, 40)[0]) == 40  # clamp
