"""The exact and smoothed-score denoisers (mi_lib.diffusion.exact)."""

import math

import pytest
import torch

import mi_lib as mi
from mi_lib.diffusion.exact import ExactDenoiser
from mi_lib.measure.metrics import gap_mass

SCHED = mi.NoiseSchedule("official")


def test_exact_eps_is_the_scaled_true_score():
    mix = mi.mixture_1d()
    den = ExactDenoiser(mix, SCHED)
    x = torch.linspace(0, 4, 101, dtype=torch.float64)[:, None]
    for t in (0, 5, 50, 300, 999):
        ab = float(SCHED.alpha_bar_64[t])
        expected = -math.sqrt(1 - ab) * mix.noised(ab).score(x)
        torch.testing.assert_close(den(x, mi.shared_timestep(t, len(x), "cpu")), expected)


def test_per_sample_timesteps_match_shared_ones():
    den = ExactDenoiser(mi.grid_2d(), SCHED)
    x = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 3, 3, 10, 0, 999, 3, 10, 0, 50, 50, 3])
    got = den(x, t)
    for i in range(len(t)):
        torch.testing.assert_close(got[i : i + 1], den(x[i : i + 1], mi.shared_timestep(int(t[i]), 1, "cpu")))


def test_smoothing_leaves_a_linear_score_unchanged():
    # one Gaussian: the score is linear in x, and a Gaussian average of a linear function is itself
    single = mi.GaussianMixture([[0.5]], 0.3)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    t = mi.shared_timestep(2, len(x), "cpu")
    torch.testing.assert_close(ExactDenoiser(single, SCHED, smoothing=0.4)(x, t), ExactDenoiser(single, SCHED)(x, t))


def test_smoothed_score_matches_monte_carlo():
    mix = mi.mixture_1d()
    h, t = 0.1, 2
    den = ExactDenoiser(mix, SCHED, smoothing=h)
    q = mix.noised(float(SCHED.alpha_bar_64[t]))
    x = torch.tensor([[1.2], [1.5], [1.62], [2.5]], dtype=torch.float64)
    u = torch.randn(400_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for xi, got in zip(x, den.score(x, t)):
        mc = q.score((xi + h * u)[:, None]).mean()
        assert abs(float(got) - float(mc)) < 0.3  # Monte Carlo standard error ~0.08
    # smoothing flattens the jump between modes: the slope at the midpoint is far gentler
    mid = torch.tensor([[1.49], [1.51]], dtype=torch.float64)
    steep = (ExactDenoiser(mix, SCHED).score(mid, t).diff(dim=0)).abs().item()
    gentle = (den.score(mid, t).diff(dim=0)).abs().item()
    assert gentle < steep / 10


def test_bad_input():
    with pytest.raises(ValueError, match="smoothing"):
        ExactDenoiser(mi.mixture_1d(), SCHED, smoothing=-1)
    with pytest.raises(ValueError, match="1D"):
        ExactDenoiser(mi.grid_2d(), SCHED, smoothing=0.1)
    den = ExactDenoiser(mi.mixture_1d(), SCHED)
    with pytest.raises(ValueError, match=r"shape \(B, 1\)"):
        den(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="t must lie"):
        den(torch.zeros(3, 1), torch.full((3,), 1000))


def test_exact_score_sampling_puts_true_mass_in_the_gaps():
    """The control: with the exact score the sampler reproduces the mixture, gaps included."""
    mix = mi.mixture_1d()
    x = mi.sample(ExactDenoiser(mix, SCHED), SCHED, 4000, seed=3, progress=False).x0
    assert gap_mass(x, mix).sum() <= 3 / 4000  # true mass 4.2e-5: ~0.17 expected points
    z_mean, z_var = mi.mean_var_zscores(x.double(), mix.mean(), mix.covariance().diagonal())
    assert z_mean.abs().max() < 4 and z_var.abs().max() < 4
