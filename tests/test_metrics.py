import math

import numpy as np
import pytest
import torch

from mi_lib import GaussianMixture, WindowVariance, grid_2d, mean_var_zscores, mixture_1d, out_of_support, out_of_support_mass


def test_out_of_support_labels():
    m = mixture_1d()  # modes 1, 2, 3, sigma 0.05
    x = torch.tensor([[1.0], [1.19], [1.21], [1.5], [2.9], [3.6], [-5.0]])
    assert out_of_support(x, m, k=4).tolist() == [False, False, True, True, False, True, True]
    assert out_of_support(x, m, k=9).tolist() == [False, False, False, True, False, True, True]


def test_out_of_support_mass_exact():
    # one mode: P(|Z| > k) = erfc(k / sqrt 2) in 1D, exp(-k^2/2) in 2D
    assert out_of_support_mass(GaussianMixture([0.0], 1.0), 2.0) == pytest.approx(math.erfc(2 / math.sqrt(2)), rel=1e-9)
    assert out_of_support_mass(GaussianMixture([[0.0, 0.0]], 0.5), 3.0) == pytest.approx(math.exp(-4.5), rel=1e-9)
    # far in the tail the survival function keeps precision
    assert out_of_support_mass(GaussianMixture([0.0], 1.0), 8.0) == pytest.approx(math.erfc(8 / math.sqrt(2)), rel=1e-6)
    # three far-apart 1D modes: same as one
    assert out_of_support_mass(mixture_1d(), 4.0) == pytest.approx(math.erfc(4 / math.sqrt(2)), rel=1e-9)


def test_out_of_support_mass_matches_monte_carlo():
    # close modes (sigma 1 vs spacing 8 raw scaled): neighbours leak into each other's balls
    m = GaussianMixture([[0.0, 0.0], [7.0, 0.0], [0.0, 7.5]], [1.0, 1.5, 0.8], [0.5, 0.3, 0.2])
    k = 2.5
    x, _ = m.sample(1_000_000, torch.Generator().manual_seed(0))
    mc = out_of_support(x, m, k).double().mean().item()
    exact = out_of_support_mass(m, k)
    assert abs(mc - exact) < 4 * math.sqrt(exact * (1 - exact) / 1_000_000)


def test_out_of_support_mass_rejects_overlap_and_bad_k():
    with pytest.raises(ValueError, match="overlap"):
        out_of_support_mass(GaussianMixture([0.0, 1.0], 0.2), 4.0)
    with pytest.raises(ValueError, match="k must be"):
        out_of_support(torch.zeros(1, 1), mixture_1d(), k=0)


def test_window_variance_on_hand_built_trajectory():
    # trajectory over t = 9..0 (reverse order) for 3 samples of dim 2; window = last 5 steps (t = 4..0)
    rng = np.random.default_rng(0)
    traj = {t: rng.normal(size=(3, 2)) for t in range(9, -1, -1)}
    acc = WindowVariance(0, 4)
    for t in range(9, -1, -1):
        acc.update(t, torch.tensor(traj[t]))
    window = np.stack([traj[t] for t in range(4, -1, -1)])  # (5, 3, 2)
    expected = window.var(axis=0).mean(axis=1)  # population variance over steps, averaged over dims
    assert acc.count == 5
    assert np.allclose(acc.result().numpy(), expected, rtol=1e-12)


def test_window_variance_constant_is_zero_and_errors():
    acc = WindowVariance(0, 2)
    for t in (2, 1, 0):
        acc.update(t, torch.ones(4, 3))
    assert acc.result().tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="no step fell"):
        WindowVariance(5, 6).result()
    with pytest.raises(ValueError, match="window"):
        WindowVariance(3, 1)


def test_mean_var_zscores():
    g = torch.Generator().manual_seed(0)
    x = 2.0 + 3.0 * torch.randn(100_000, 2, generator=g, dtype=torch.float64)
    zm, zv = mean_var_zscores(x, torch.tensor([2.0, 2.0]), torch.tensor([9.0, 9.0]))
    assert zm.abs().max() < 5 and zv.abs().max() < 5
    zm, zv = mean_var_zscores(x, torch.tensor([2.1, 2.0]), torch.tensor([9.0, 9.5]))
    assert zm[0].abs() > 5 and zv[1].abs() > 5
