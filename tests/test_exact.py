"""The exact and smoothed-score denoisers (mi_lib.exact) and the gap / segment metrics built for them."""

import math

import pytest
import torch

import mi_lib as mi
from mi_lib.exact import ExactDenoiser
from mi_lib.metrics import gap_mass, mode_segments, nearest_segment, true_gap_mass

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


def test_gap_mass_counts_points_by_gap():
    mix = mi.mixture_1d((1.0, 2.0, 4.0))  # sigma 0.05, k=4: gaps (1.2, 1.8) and (2.2, 3.8)
    x = torch.tensor([[1.1], [1.5], [1.79], [1.81], [3.0], [3.7], [4.5], [0.0]])
    torch.testing.assert_close(gap_mass(x, mix), torch.tensor([2 / 8, 2 / 8], dtype=torch.float64))
    with pytest.raises(ValueError, match="1D"):
        gap_mass(torch.zeros(3, 2), mi.grid_2d())


def test_true_gap_mass_is_the_normal_tail():
    mix = mi.mixture_1d()
    # each gap gets one upper tail of its left mode and one lower tail of its right mode, at 4 sigma
    one_tail = 0.5 * math.erfc(4 / math.sqrt(2))
    torch.testing.assert_close(true_gap_mass(mix), torch.full((2,), 2 * one_tail / 3, dtype=torch.float64))
    assert float(true_gap_mass(mix, k=2).sum()) > float(true_gap_mass(mix).sum())


def test_mode_segments_of_grid_and_diamond():
    grid = mode_segments(mi.grid_2d())
    assert int((grid.order == 1).sum()) == 40  # 5 rows x 4 + 5 columns x 4
    assert int((grid.order == 2).sum()) == 32  # diagonals
    assert set(grid.angle[grid.order == 1].round().tolist()) == {0.0, 90.0}
    diamond = mode_segments(mi.diamond_2d())
    assert set(diamond.angle[diamond.order == 1].round().tolist()) == {45.0, 135.0}
    assert set(diamond.angle[diamond.order == 2].round().tolist()) == {0.0, 90.0}  # axis-parallel: not nearest
    # segments through a third mode are excluded: no grid segment two steps long
    assert not torch.isclose(grid.length, 2 * grid.length.min()).any()


def test_nearest_segment_assignment():
    g = mi.grid_2d()
    segs = mode_segments(g)
    a, b = g.means[0], g.means[1]  # neighbours in one column of the grid (j = -2, -1)
    mid = ((a + b) / 2)[None].float()
    idx, dist = nearest_segment(mid, segs, g.means)
    assert set(segs.pairs[idx[0]].tolist()) == {0, 1} and float(dist[0]) < 1e-6
    centre = (g.means[0] + g.means[6]) / 2  # centre of a cell: on both diagonals, nearer no edge
    idx, _ = nearest_segment(centre[None], segs, g.means)
    assert int(segs.order[idx[0]]) == 2


def test_segment_of_uses_tubes_between_modes():
    g = mi.grid_2d()
    segs = mode_segments(g)
    s = float(g.sigma[0])
    a, b = g.means[0], g.means[1]
    on_edge = ((a + b) / 2 + torch.tensor([2 * s, 0.0], dtype=torch.float64))[None]  # 2 sigma off the midpoint
    off_tube = ((a + b) / 2 - torch.tensor([10 * s, 0.0], dtype=torch.float64))[None]  # outside the grid, beside an edge
    near_mode = (a + torch.tensor([0.0, 3 * s], dtype=torch.float64))[None]  # along the edge, within 4 sigma of mode 0
    tail = (a + torch.tensor([-5 * s, 0.0], dtype=torch.float64))[None]  # out of support, pointing away from the grid
    got = mi.metrics.segment_of(torch.cat([on_edge, off_tube, near_mode, tail]), g, segs)
    assert set(segs.pairs[got[0]].tolist()) == {0, 1}
    assert got[1].item() == -1  # beyond the 4-sigma tube of every segment
    assert got[2].item() == -1  # within 4 sigma of the segment's end: not between the modes yet
    assert got[3].item() == -1  # a tail sample off every segment


def test_segment_of_end_margin():
    g = mi.grid_2d()
    segs = mode_segments(g)
    a, b = g.means[0], g.means[1]
    at = lambda u: (a + u * (b - a))[None]  # noqa: E731
    x = torch.cat([at(0.2), at(0.3), at(0.5)])
    margin = 0.25 * float((b - a).norm())
    got = mi.metrics.segment_of(x, g, segs, end_margin=margin)
    assert got[0].item() == -1 and got[1].item() == got[2].item() >= 0
    assert (mi.metrics.segment_of(x, g, segs) >= 0).all()  # the default margin (k sigma) keeps all three


def test_mode_segments_up_to():
    segs = mode_segments(mi.grid_2d()).up_to(2)
    assert len(segs.pairs) == 72 and int(segs.order.max()) == 2
    with pytest.raises(ValueError, match="max_order"):
        segs.up_to(0)
