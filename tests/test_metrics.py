import math

import numpy as np
import pytest
import torch

import mi_lib as mi
from mi_lib.experiments.mode_interpolation_1d import side_tails
from mi_lib.experiments.score_smoothness import within_mode_spread
from mi_lib import GaussianMixture, WindowVariance, grid_2d, mean_var_zscores, mixture_1d, out_of_support, out_of_support_mass
from mi_lib.experiments import mode_interpolation_2d as ch3, score_smoothness as ch4
from mi_lib.measure.metrics import difference_interval, gap_mass, mode_segments, nearest_segment, true_gap_mass, wilson_interval


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


def test_mean_var_zscores_are_standard_normal_under_the_null():
    """The z-scores four test files check marginals with: over many samples from the stated distribution they are
    N(0, 1), so "|z| < 5" means what it says (a z scaled by a half or by two would fail here)."""
    x = torch.randn(2_000, 500, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # 2,000 draws of 500
    z = torch.stack([torch.cat(mean_var_zscores(draw, torch.zeros(1), torch.ones(1))) for draw in x])  # (2000, 2)
    assert torch.allclose(z.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.15)  # the variance's z is skewed
    assert bool(((z.std(0) > 0.93) & (z.std(0) < 1.07)).all()), z.std(0)


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
    got = mi.measure.metrics.segment_of(torch.cat([on_edge, off_tube, near_mode, tail]), g, segs)
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
    got = mi.measure.metrics.segment_of(x, g, segs, end_margin=margin)
    assert got[0].item() == -1 and got[1].item() == got[2].item() >= 0
    assert (mi.measure.metrics.segment_of(x, g, segs) >= 0).all()  # the default margin (k sigma) keeps all three


def test_mode_segments_up_to():
    segs = mode_segments(mi.grid_2d()).up_to(2)
    assert len(segs.pairs) == 72 and int(segs.order.max()) == 2
    with pytest.raises(ValueError, match="max_order"):
        segs.up_to(0)


def test_gap_lengths_by_hand():
    # modes 1, 2, 4 with sigma 0.05, k = 4: gaps (1.2, 1.8) and (2.2, 3.8)
    assert mi.gap_lengths(mixture_1d([1.0, 2.0, 4.0], 0.05), 4.0).tolist() == pytest.approx([0.6, 1.6])
    assert mi.gap_lengths(mixture_1d([4.0, 1.0, 2.0], 0.05), 2.0).tolist() == pytest.approx([0.8, 1.8])  # sorted by position
    with pytest.raises(ValueError, match="overlap"):
        mi.gap_lengths(mixture_1d([1.0, 1.3], 0.05), 4.0)


def test_segment_order_and_tube_lengths():
    g = grid_2d()
    segs = mode_segments(g).up_to(2)
    a, b, c = g.means[0], g.means[1], g.means[6]  # (0, 0)-(0, 1) nearest neighbours; (0, 0)-(1, 1) a diagonal
    mid = lambda p, q: ((p + q) / 2)[None]  # noqa: E731
    x = torch.cat([mid(a, b), mid(a, c), a[None]])
    assert ch3.segment_order(x, g, segs).tolist() == [1, 2, 0]
    spacing, s = float((b - a).norm()), float(g.sigma[0])
    r, margin = 4 * s, spacing / 4
    lengths = ch3.tube_lengths(segs, g, end_margin=margin)
    near, diagonal = lengths[segs.order == 1], lengths[segs.order == 2]
    # nearest-neighbour tubes overlap nothing between their end margins: the segment less both margins
    assert float(near.sum()) == pytest.approx(40 * (spacing - 2 * margin), rel=0.01)
    assert float(near.min()) > 0.93 * (spacing - 2 * margin)
    # two diagonals cross at each cell's centre and share a (2r x 2r) square there, which goes to one of them:
    # on average each diagonal loses half of it, i.e. a length of r
    assert float(diagonal.sum()) == pytest.approx(32 * (spacing * math.sqrt(2) - 2 * margin - r), rel=0.02)
    # the measurement is seeded, and a margin of half the spacing leaves nothing of a nearest-neighbour tube
    assert torch.equal(lengths, ch3.tube_lengths(segs, g, end_margin=margin))
    assert (ch3.tube_lengths(segs, g, end_margin=spacing / 2, n_points=100_000)[segs.order == 1] == 0).all()
    with pytest.raises(ValueError, match="2D"):
        ch3.tube_lengths(segs, mixture_1d())


def test_density_ratio_by_hand():
    r = mi.density_ratio(30, 1.0, 10, 1.0)
    lo, hi = mi.wilson_interval(30, 40)
    assert (r.ratio, r.low, r.high) == pytest.approx((3.0, lo / (1 - lo), hi / (1 - hi)))
    assert mi.density_ratio(30, 2.0, 10, 1.0).ratio == pytest.approx(1.5)  # twice the length: half the density
    even = mi.density_ratio(20, 1.0, 20, 1.0)
    assert even.ratio == pytest.approx(1.0) and even.low < 1 < even.high
    assert mi.density_ratio(22, 1.6, 27, 0.6).high < 1  # chapter 2's CI-scale counts: the wide gap is sparser
    for n in range(1, 40):  # the interval's ends are exact where all or none of the samples fall in region a
        assert mi.density_ratio(n, 1.0, 0, 1.0).high == math.inf and mi.density_ratio(0, 1.0, n, 1.0).low == 0.0
        assert mi.wilson_interval(0, n)[0] == 0.0 and mi.wilson_interval(n, n)[1] == 1.0
    assert mi.density_ratio(torch.tensor(3), torch.tensor(1.0), 1, 1.0).ratio == pytest.approx(3.0)  # plain floats out
    assert isinstance(mi.density_ratio(torch.tensor(3), torch.tensor(1.0), 1, 1.0).ratio, float)
    for bad, match in [((0, 1.0, 0, 1.0), "counts must"), ((-1, 1.0, 3, 1.0), "counts must"),
                       ((1, 0.0, 3, 1.0), "lengths must"), ((1, 1.0, 3, math.inf), "lengths must")]:
        with pytest.raises(ValueError, match=match):
            mi.density_ratio(*bad)
    with pytest.raises(TypeError, match="integer"):
        mi.density_ratio(2.9, 1.0, 3, 1.0)  # a count is a whole number


def test_density_ratio_interval_covers_the_truth():
    # two regions of lengths 1 and 3 with equal density: the 95% interval holds r = 1 about 95% of the time
    rng = np.random.default_rng(0)
    counts = rng.binomial(200, 0.25, size=2000)
    covered = [(lambda r: r.low <= 1.0 <= r.high)(mi.density_ratio(int(k), 1.0, 200 - int(k), 3.0)) for k in counts]
    assert 0.93 < np.mean(covered) < 0.975


def test_matching_width_interpolates_on_log_log_axes():
    match = ch4.matching_width
    assert match([0.1, 0.2], [1e-3, 1e-1], 1e-2) == pytest.approx(math.sqrt(0.1 * 0.2))  # half-way in log mass
    assert match([0.1, 0.2], [1e-3, 1e-1], 1e-3) == pytest.approx(0.1)
    # unsorted input and zero masses (no logarithm) are handled; the first bracketing pair wins
    assert match([0.3, 0.05, 0.1, 0.2], [0.3, 0.0, 0.0027, 0.07], 0.0182) == pytest.approx(
        math.exp(math.log(0.1) + math.log(0.0182 / 0.0027) / math.log(0.07 / 0.0027) * math.log(2)))
    assert math.isnan(match([0.1, 0.2], [1e-3, 1e-2], 1.0)) and math.isnan(match([0.1], [1e-3], 1e-3))
    with pytest.raises(ValueError, match="same length"):
        match([0.1, 0.2], [1e-3], 1e-2)
    with pytest.raises(ValueError, match="target"):
        match([0.1, 0.2], [1e-3, 1e-2], 0.0)


def test_rotation_null_keeps_each_point_at_its_distance_from_its_mode():
    grid = mi.grid_2d()
    x = grid.means[[0, 12, 24]] + torch.tensor([[0.1, 0.0], [0.0, -0.15], [0.05, 0.05]], dtype=torch.float64)
    turned = ch3.rotated_about_nearest_mode(x, grid, torch.Generator().manual_seed(0))
    d0, m0 = grid.nearest_mode_distance(x)
    d1, m1 = grid.nearest_mode_distance(turned)
    torch.testing.assert_close(d1, d0)
    assert torch.equal(m0, m1) and not torch.allclose(turned, x)
    with pytest.raises(ValueError, match="2D"):
        ch3.rotated_about_nearest_mode(torch.zeros(3, 1), mi.mixture_1d(), torch.Generator())


def test_alignment_counts_points_along_neighbour_directions_against_the_isotropic_share():
    """The grid's centre mode has four nearest neighbours (0, 90, 180, 270 degrees): four arcs of 45 degrees
    cover half the circle. Points along those directions are aligned; points on the diagonals are not."""
    grid = mi.grid_2d()
    centre, spacing, sigma = grid.means[12], 0.7071, float(grid.sigma[0])
    r = 15 * sigma
    along = centre + r * torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.1], [0.1, -1.0]], dtype=torch.float64)
    diagonal = centre + r * torch.tensor([[0.7071, 0.7071], [-0.7071, 0.7071]], dtype=torch.float64)
    far = centre + torch.tensor([[0.5 * spacing, 0.5 * spacing]], dtype=torch.float64)  # a cell's centre, 28 sigma from every mode: outside
    aligned, n, expected = ch3.nearest_neighbour_alignment(torch.cat([along, diagonal, far]), grid)
    assert (aligned, n) == (4, 6)
    assert abs(expected - 0.5) < 0.01
    corner = grid.means[0] + r * torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # a corner mode: two neighbours, a quarter
    assert abs(ch3.nearest_neighbour_alignment(corner, grid)[2] - 0.25) < 0.01


def test_gap_midpoint_share_and_within_mode_spread_by_hand():
    m = mi.mixture_1d()  # modes 1, 2, 3, sigma 0.05: gaps (1.2, 1.8) and (2.2, 2.8), midpoints 1.5 and 2.5
    x = torch.tensor([[1.5], [1.64], [1.66], [1.21], [2.5], [2.0], [0.5]])
    assert ch4.gap_midpoint_share(x, m) == (3, 5)  # 1.5, 1.64, 2.5 near a midpoint; 1.66, 1.21 farther; the rest outside
    on_modes = torch.tensor([[1.0 + 0.03], [1.0 - 0.03], [2.0 + 0.03], [3.0 - 0.03], [1.5]])  # 1.5 is 10 sigma out: left out
    assert abs(within_mode_spread(on_modes, m) - 0.03) < 1e-6  # float32 inputs


def test_side_tails_by_hand():
    m = mi.mixture_1d((3.0, 1.0, 2.0))  # unsorted on purpose: rows follow the sorted modes 1, 2, 3
    x = torch.tensor([[1.25], [0.75], [0.72], [1.1], [2.21], [2.79], [3.29]])
    # mode 1: left 0.75 (5 sigma), 0.72 (5.6); right 1.25 (5); 1.1 is 2 sigma: not a tail. mode 2: right 2.21 (4.2).
    # mode 3: left 2.79 (4.2), right 3.29 (5.8)
    assert side_tails(x, m).tolist() == [[2, 1], [0, 1], [1, 1]]
    with pytest.raises(ValueError, match="1D"):
        side_tails(torch.zeros(2, 2), mi.grid_2d())


@pytest.mark.parametrize("counts, expected", [
    ((56, 70, 48, 80), (0.0524, 0.3339)),  # Newcombe (1998), Stat. Med. 17:873, Table II, method 10
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
])
def test_difference_interval_matches_newcombes_published_values(counts, expected):
    low, high = difference_interval(*counts)
    assert low == pytest.approx(expected[0], abs=1e-4) and high == pytest.approx(expected[1], abs=1e-4)


def test_difference_interval_can_exclude_zero_where_the_wilson_intervals_overlap():
    a, b = wilson_interval(60, 100), wilson_interval(45, 100)
    assert a[0] < b[1]  # the two 95% intervals overlap ...
    assert difference_interval(60, 100, 45, 100)[0] > 0  # ... yet the difference is beyond counting noise
