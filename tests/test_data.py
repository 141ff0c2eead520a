import math

import pytest
import torch

from mi_lib import GaussianMixture, NoiseSchedule, diamond_2d, grid_2d, make_dataset, mean_var_zscores, mixture_1d

MIXTURES = [mixture_1d(), mixture_1d((1, 2, 4, 5), 0.05), grid_2d(), diamond_2d(), GaussianMixture([[0, 0], [1, 2]], [0.3, 0.1], [0.2, 0.8])]


@pytest.mark.parametrize("mixture", MIXTURES, ids=lambda m: m.name)
@pytest.mark.parametrize("alpha_bar", [1.0, 0.98, 0.5, 0.01])
def test_score_matches_autograd(mixture, alpha_bar, gen):
    q = mixture.noised(alpha_bar)
    # points near and between the modes, where the score is steep
    x = (q.means[torch.randint(0, q.n_modes, (200,), generator=gen)] + 0.3 * torch.randn(200, q.dim, generator=gen, dtype=torch.float64)).requires_grad_(True)
    (auto,) = torch.autograd.grad(q.log_prob(x).sum(), x)
    closed = q.score(x.detach())
    assert torch.allclose(closed, auto, rtol=1e-8, atol=1e-8 * auto.abs().max().item())


def test_density_integrates_to_one():
    m = mixture_1d()
    x = torch.linspace(0, 4, 400_001, dtype=torch.float64)[:, None]
    assert torch.trapezoid(m.prob(x), x[:, 0]).item() == pytest.approx(1.0, abs=1e-9)


def test_log_prob_2d_matches_scipy():
    from scipy.stats import multivariate_normal

    m = GaussianMixture([[0.0, 0.0], [1.0, 2.0]], [0.3, 0.1], [0.2, 0.8])
    x = torch.tensor([[0.1, -0.2], [1.0, 1.9], [0.5, 1.0]], dtype=torch.float64)
    ref = 0.2 * multivariate_normal([0, 0], 0.09).pdf(x.numpy()) + 0.8 * multivariate_normal([1, 2], 0.01).pdf(x.numpy())
    assert torch.allclose(m.prob(x), torch.as_tensor(ref), rtol=1e-10)


def test_noised_is_the_forward_marginal():
    m = GaussianMixture([[1.0, 2.0], [3.0, -1.0], [2.0, 2.5]], 0.1, [0.5, 0.3, 0.2])  # non-zero mean
    ab = 0.3
    q = m.noised(ab)
    assert torch.allclose(q.mean(), math.sqrt(ab) * m.mean())
    assert torch.allclose(q.covariance(), ab * m.covariance() + (1 - ab) * torch.eye(2), atol=1e-12)
    # Monte Carlo: pushing data samples through q_sample matches the closed-form moments
    g = torch.Generator().manual_seed(1)
    x0, _ = m.sample(200_000, g)
    s = NoiseSchedule("official")
    t = int((s.alpha_bar_64 - ab).abs().argmin())
    xt = s.q_sample(x0, t, torch.randn(x0.shape, generator=g)).double()
    qt = m.noised(float(s.alpha_bar_64[t]))
    z_mean, z_var = mean_var_zscores(xt, qt.mean(), qt.covariance().diag())
    assert z_mean.abs().max() < 5 and z_var.abs().max() < 5


def test_official_layouts():
    grid, diamond = grid_2d(), diamond_2d()
    scale = math.sqrt(0.05**2 + 8)
    for m in (grid, diamond):
        assert m.n_modes == 25 and m.dim == 2
        assert m.sigma[0].item() == pytest.approx(0.05 / scale)
    d = torch.cdist(grid.means, grid.means) + 1e9 * torch.eye(25, dtype=torch.float64)
    assert d.min().item() == pytest.approx(2 / scale)  # ~0.707
    d = torch.cdist(diamond.means, diamond.means) + 1e9 * torch.eye(25, dtype=torch.float64)
    assert d.min().item() == pytest.approx(2 * math.sqrt(0.5) / scale)  # 1.414 raw
    # the official hand-placed list: includes (-2, 0), (-1.5, 0.5), (0, 0), (1, -1), (2, 0) (times 2 / scale)
    for raw in [(-2, 0), (-1.5, 0.5), (0, 0), (1, -1), (2, 0), (0.5, -1.5)]:
        target = torch.tensor(raw, dtype=torch.float64) * 2 / scale
        assert (diamond.means - target).norm(dim=1).min().item() < 1e-12
    # five modes on the x-axis, 2 raw units apart: not nearest neighbours
    on_axis = diamond.means[diamond.means[:, 1].abs() < 1e-12, 0].sort().values
    assert torch.allclose(on_axis.diff(), torch.full((4,), 2 / scale, dtype=torch.float64))


def test_sampling(gen):
    m = mixture_1d()
    x, comp = m.sample(3000, gen, stratified=True)
    assert x.shape == (3000, 1) and x.dtype == torch.float32
    assert torch.bincount(comp).tolist() == [1000, 1000, 1000]
    assert (x[:, 0] - m.means[comp, 0].float()).abs().max() < 6 * 0.05
    x2, comp2 = GaussianMixture([0.0, 10.0], 1.0, [0.9, 0.1]).sample(20_000, gen)
    assert comp2.float().mean().item() == pytest.approx(0.1, abs=0.01)


def test_nearest_mode_distance():
    m = mixture_1d()
    d, idx = m.nearest_mode_distance(torch.tensor([[1.0], [2.1], [2.5]]))
    assert idx.tolist() == [0, 1, 1] or idx.tolist() == [0, 1, 2]
    assert d[:2].tolist() == pytest.approx([0.0, 2.0], abs=1e-4)
    assert d[2].item() == pytest.approx(10.0)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: GaussianMixture([0.0, 1.0], 0.0), ValueError, "sigma"),
        (lambda: GaussianMixture([0.0, 1.0], -1.0), ValueError, "sigma"),
        (lambda: GaussianMixture([0.0, 1.0], [0.1, 0.1, 0.1]), ValueError, "sigma"),
        (lambda: GaussianMixture([0.0, 1.0], 0.1, [1.0]), ValueError, "weights"),
        (lambda: GaussianMixture([0.0, 1.0], 0.1, [-1.0, 2.0]), ValueError, "weights"),
        (lambda: GaussianMixture([[[0.0]]], 0.1), ValueError, "means"),
        (lambda: GaussianMixture("abc", 0.1), TypeError, "means"),
        (lambda: mixture_1d().log_prob(torch.zeros(5, 2)), ValueError, r"shape \(N, 1\)"),
        (lambda: mixture_1d().score(torch.zeros(5)), ValueError, r"shape \(N, 1\)"),
        (lambda: grid_2d().log_prob([[0.0, 0.0]]), TypeError, "torch.Tensor"),
        (lambda: mixture_1d().noised(0.0), ValueError, "alpha_bar"),
        (lambda: mixture_1d().sample(0), ValueError, "positive int"),
        (lambda: make_dataset("mnist"), ValueError, "unknown dataset"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
