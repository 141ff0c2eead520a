import math

import pytest
import torch

from mi_lib import COSINE, OFFICIAL, STANDARD, NoiseSchedule, ScheduleConfig, broadcast_to


@pytest.mark.parametrize("config", [OFFICIAL, STANDARD, COSINE])
def test_identities(config):
    s = NoiseSchedule(config)
    beta = s.beta_64
    assert torch.allclose(s.alpha_bar_64, torch.cumprod(1 - beta, 0), rtol=0, atol=1e-15)
    assert torch.all(s.alpha_bar_64[1:] < s.alpha_bar_64[:-1])  # strictly decreasing
    # posterior variance: beta tilde_t = beta_t (1 - ab_{t-1}) / (1 - ab_t), zero at t = 0
    assert s.posterior_variance[0].item() == 0.0
    t = 500
    expected = beta[t] * (1 - s.alpha_bar_64[t - 1]) / (1 - s.alpha_bar_64[t])
    assert s.posterior_variance[t].item() == pytest.approx(expected.item(), rel=1e-6)
    # q(x_{t-1} | x_t, x_0) mean coefficients: at t = 0 the posterior is x_0 itself
    assert s.posterior_mean_coef_x0[0].item() == pytest.approx(1.0)
    assert s.posterior_mean_coef_xt[0].item() == pytest.approx(0.0, abs=1e-7)


def test_official_alpha_bar_matches_reference():
    ab = NoiseSchedule(OFFICIAL).alpha_bar_64
    # REFERENCE.md: ~0.98 at t=9, 0.74 at 49, 0.34 at 99, 0.015 at 199, 8e-5 at 299
    for t, value, rel in [(9, 0.98, 0.01), (49, 0.74, 0.01), (99, 0.335, 0.01), (199, 0.0147, 0.01), (299, 8.05e-5, 0.01)]:
        assert ab[t].item() == pytest.approx(value, rel=rel)


def test_linear_endpoints_and_cosine_shape():
    s = NoiseSchedule(STANDARD)
    assert s.beta_64[0].item() == pytest.approx(1e-4) and s.beta_64[-1].item() == pytest.approx(0.02)
    c = NoiseSchedule(COSINE)
    assert c.beta_64.max().item() <= 0.999
    # cosine: alpha_bar(t) = f(t)/f(0) with f = cos^2(((t+1)/T + s)/(1+s) pi/2)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    assert c.alpha_bar_64[499].item() == pytest.approx(f(500 / 1000) / f(0), rel=1e-9)


def test_forward_inverses():
    s = NoiseSchedule(OFFICIAL)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, generator=g)
    eps = torch.randn(64, 2, generator=g)
    t_small = torch.randint(0, 100, (64,), generator=g)  # well-conditioned range for float32 inversion
    xs = s.q_sample(x0, t_small, eps)
    assert torch.allclose(s.x0_from_eps(xs, t_small, eps), x0, atol=1e-4)
    # q_sample with an int t
    assert torch.allclose(s.q_sample(x0, 5, eps), s.sqrt_alpha_bar[5] * x0 + s.sqrt_one_minus_alpha_bar[5] * eps)


def test_broadcast_any_rank():
    coef = torch.tensor([1.0, 2.0])
    for shape in [(2, 1), (2, 2), (2, 1, 4, 4)]:
        x = torch.ones(shape)
        out = broadcast_to(coef, x) * x
        assert out.shape == shape
        assert out[1].unique().item() == 2.0


def test_one_copy_per_device():
    s = NoiseSchedule("official")
    assert s.to("cpu") is s
    assert s.to(torch.device("cpu")) is s


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(T=0), ValueError),
        (dict(T=-5), ValueError),
        (dict(T=10.0), TypeError),
        (dict(kind="quadratic"), ValueError),
        (dict(beta_start=0.3, beta_end=0.2), ValueError),
        (dict(beta_end=1.5), ValueError),
    ],
)
def test_bad_config(kwargs, error):
    # the message names the offending field (T, kind, or the beta it takes: beta_start <= beta_end)
    with pytest.raises(error, match="T must|kind must" if {"T", "kind"} & set(kwargs) else "beta_start <= beta_end"):
        ScheduleConfig(**kwargs)


def test_bad_preset_and_t():
    with pytest.raises(ValueError, match="unknown schedule"):
        NoiseSchedule("fast")
    with pytest.raises(ValueError, match="t must be in"):
        NoiseSchedule(OFFICIAL).q_sample(torch.zeros(1, 1), 1000, torch.zeros(1, 1))
