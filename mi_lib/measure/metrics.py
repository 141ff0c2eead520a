"""Measurements: hallucination labels for mixtures, the true out-of-support mass, moment checks, the gaps
between 1D modes, the segments between 2D modes, counting statistics, and a sample set's report against the
modes' k-sigma balls (:func:`mixture_report`: hallucination share, modes covered, distances to the truth). (The Hal statistic itself is
:class:`mi_lib.diffusion.sampling.WindowVariance`: the sampler computes it while it samples.)

Hallucination labels here come from geometry alone (distance to the modes), never from the detector, so a
detector can be scored against them honestly.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
from scipy import stats
from torch import Tensor

from ..datasets.mixtures import GaussianMixture
from ..params import number_parameter, positive_int

__all__ = [
    "DEFAULT_K", "mixture_report", "true_cell_mass", "out_of_support", "out_of_support_mass", "mean_var_zscores",
    "gap_mass", "gap_lengths", "true_gap_mass", "gap_points", "ModeSegments", "mode_segments", "nearest_segment",
    "segment_of", "wilson_interval", "difference_interval", "DensityRatio", "density_ratio"
]

#: Default support radius in units of sigma: a point farther than 4 sigma from every mode is out of
#: support. A true 1D sample lands there with probability 6.3e-5, a true 2D sample with 3.4e-4
#: (:func:`out_of_support_mass` gives the exact figure for any mixture and k).
DEFAULT_K = 4.0


def check_k(k: float) -> float:
    """``k`` (a number of sigmas) as a float, or one clear error if it is not positive and finite."""
    k = float(k)
    if not (k > 0 and math.isfinite(k)):
        raise ValueError(f"k must be a positive number of sigmas, got {k}")
    return k


def out_of_support(x: Tensor, mixture: GaussianMixture, k: float = DEFAULT_K) -> Tensor:
    """Label each point: True when it is farther than ``k`` sigma from every mode. x: (N, D) -> (N,) bool."""
    distance, _ = mixture.nearest_mode_distance(x)
    return distance > check_k(k)


def out_of_support_mass(mixture: GaussianMixture, k: float = DEFAULT_K) -> float:
    """The true probability that a sample of ``mixture`` is out of support (farther than k sigma from every
    mode), computed exactly.

    P(inside) = sum_i w_i sum_j P(|X_i - mu_j| <= k sigma_j) with X_i ~ N(mu_i, sigma_i^2 I), each term a
    (non-central) chi-square CDF. Exact when the k-sigma balls are disjoint; overlapping balls raise
    ValueError (the modes then have no gap between them to measure)."""
    k = check_k(k)
    s, w, radius = mixture.sigma, mixture.weights, k * mixture.sigma
    dist = _disjoint_balls(mixture, k)
    D = mixture.dim
    outside = 0.0
    for i in range(mixture.n_modes):
        # P(outside every ball | component i) = P(outside its own ball) - P(inside another ball);
        # the survival function keeps full precision far in the tail.
        p = float(stats.chi2.sf(float((radius[i] / s[i]) ** 2), D))
        for j in range(mixture.n_modes):
            if j != i:
                p -= float(stats.ncx2.cdf(float((radius[j] / s[i]) ** 2), D, float((dist[i, j] / s[i]) ** 2)))
        outside += float(w[i]) * p
    return max(0.0, outside)


def mean_var_zscores(x: Tensor, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """How far a sample's per-dimension mean and variance are from expected values, in standard errors.

    x: (N, D); mean, var: (D,). The standard error of the variance uses the sample's own fourth central
    moment, so it holds for non-Gaussian data. Returns (z_mean (D,), z_var (D,))."""
    x = x.to(torch.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError("need at least 2 samples")
    m, v = x.mean(0), x.var(0)
    mu4 = ((x - m) ** 4).mean(0)
    z_mean = (m - mean.to(x)) / (v / n).sqrt()
    z_var = (v - var.to(x)) / ((mu4 - v**2) / n).sqrt()
    return z_mean, z_var


# ---------------------------------------------------------------------------------------- gaps (1D)
def _gap_bounds(mixture: GaussianMixture, k: float) -> tuple[Tensor, Tensor]:
    """Edges (lo, hi) of the K-1 gaps between neighbouring 1D modes, sorted: (mu_i + k s_i, mu_{i+1} - k s_{i+1})."""
    k = check_k(k)
    if mixture.dim != 1:
        raise ValueError(f"gaps are defined for 1D mixtures, got D={mixture.dim}")
    if mixture.n_modes < 2:
        raise ValueError("a mixture needs at least two modes to have a gap")
    order = torch.argsort(mixture.means[:, 0])
    mu, s = mixture.means[order, 0], mixture.sigma[order]
    lo, hi = mu[:-1] + k * s[:-1], mu[1:] - k * s[1:]
    if bool((hi <= lo).any()):
        raise ValueError(f"neighbouring {k:g}-sigma intervals overlap; choose a smaller k")
    return lo, hi


def gap_points(x: Tensor, mixture: GaussianMixture, k: float) -> tuple[Tensor, Tensor, Tensor]:
    """The gap edges (lo, hi) of :func:`_gap_bounds` and 1D points x (N, 1) as (N, 1) float64 on the CPU."""
    lo, hi = _gap_bounds(mixture, k)
    if x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"x must have shape (N, 1), got {tuple(x.shape)}")
    return x[:, 0].to(torch.float64).cpu()[:, None], lo, hi


def gap_mass(x: Tensor, mixture: GaussianMixture, k: float = DEFAULT_K) -> Tensor:
    """Share of samples in each gap between neighbouring modes of a 1D mixture (farther than k sigma from
    both; modes sorted by position). x: (N, 1) -> (K-1,) float64. Mass in the outer tails is not counted."""
    v, lo, hi = gap_points(x, mixture, k)
    return ((v > lo) & (v < hi)).to(torch.float64).mean(0)


def gap_lengths(mixture: GaussianMixture, k: float = DEFAULT_K) -> Tensor:
    """Length of each gap of :func:`gap_mass` (the stretch farther than k sigma from both neighbours):
    (K-1,) float64, modes sorted by position."""
    lo, hi = _gap_bounds(mixture, k)
    return (hi - lo).to(torch.float64)


def true_gap_mass(mixture: GaussianMixture, k: float = DEFAULT_K) -> Tensor:
    """The mixture's own probability of each gap of :func:`gap_mass`, exactly (normal CDFs): (K-1,) float64."""
    lo, hi = _gap_bounds(mixture, k)
    mu, s, w = mixture.means[:, 0].numpy(), mixture.sigma.numpy(), mixture.weights.numpy()
    out = [
        sum(float(wc) * (stats.norm.cdf(float(b), mc, sc) - stats.norm.cdf(float(a), mc, sc)) for mc, sc, wc in zip(mu, s, w))
        for a, b in zip(lo.tolist(), hi.tolist())
    ]
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------------------- segments (2D)
@dataclass(frozen=True)
class ModeSegments:
    """The straight segments between pairs of modes that pass no third mode (within ``clearance`` sigma).

    pairs: (M, 2) mode indices; length: (M,); order: (M,) rank of the length among the distinct lengths
    (1 = nearest neighbours, 2 = the next shortest, ...); angle: (M,) direction in degrees in [0, 180)."""

    pairs: Tensor
    length: Tensor
    order: Tensor
    angle: Tensor

    def up_to(self, max_order: int) -> ModeSegments:
        """Only the segments of order <= ``max_order`` (1: nearest neighbours only)."""
        keep = self.order <= number_parameter(max_order, "max_order", int, at_least=1)
        return ModeSegments(self.pairs[keep], self.length[keep], self.order[keep], self.angle[keep])


def mode_segments(mixture: GaussianMixture, clearance: float = DEFAULT_K, rtol: float = 1e-6) -> ModeSegments:
    """All 'visible' mode pairs of a mixture: the segment i-j passes farther than ``clearance`` sigma from
    every other mode (so a segment through a third mode, e.g. a grid row two steps long, is left out: its
    points belong to the two shorter segments). Lengths within ``rtol`` are one order."""
    mu = mixture.means
    K = mixture.n_modes
    if K < 2:
        raise ValueError("a mixture needs at least two modes to have segments")
    i, j = torch.triu_indices(K, K, offset=1)
    a, b = mu[i], mu[j]  # (M, D)
    dist = _point_segment_distance(mu, a, b)  # (K, M)
    radius = clearance * mixture.sigma[:, None]
    blocked = (dist < radius) & (torch.arange(K)[:, None] != i) & (torch.arange(K)[:, None] != j)
    keep = ~blocked.any(0)
    i, j = i[keep], j[keep]
    length = (mu[j] - mu[i]).norm(dim=1)
    distinct: list[float] = []
    for v in sorted(length.tolist()):
        if not distinct or v > distinct[-1] * (1 + rtol):
            distinct.append(v)
    order = torch.tensor([next(r for r, d in enumerate(distinct, 1) if v <= d * (1 + rtol)) for v in length.tolist()])
    d = mu[j] - mu[i]
    angle = torch.rad2deg(torch.atan2(d[:, 1], d[:, 0])) % 180.0 if mixture.dim == 2 else torch.zeros(len(i), dtype=torch.float64)
    return ModeSegments(torch.stack([i, j], 1), length, order, angle)


def _point_segment_distance(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distances (N, M) from points x (N, D) to segments a-b (M, D)."""
    ab = b - a  # (M, D)
    u = (((x[:, None, :] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1)).clamp(0.0, 1.0)  # position along
    closest = a[None] + u[..., None] * ab[None]
    return (x[:, None, :] - closest).norm(dim=-1)


def nearest_segment(x: Tensor, segments: ModeSegments, means: Tensor, chunk: int = 65_536) -> tuple[Tensor, Tensor]:
    """For each point, the segment it lies closest to (ties go to the shorter segment) and the distance.
    x: (N, D); means: the mixture's (K, D) means -> (index into segments (N,) long, distance (N,) float64)."""
    if x.dim() != 2 or x.shape[1] != means.shape[1]:
        raise ValueError(f"x must have shape (N, {means.shape[1]}), got {tuple(x.shape)}")
    a, b = means[segments.pairs[:, 0]], means[segments.pairs[:, 1]]
    # break exact ties (a point on the line through two segments) in favour of the shorter one
    bias = segments.length / segments.length.max() * 1e-12
    idx, dist = [], []
    for part in x.to(torch.float64).cpu().split(chunk):
        d = _point_segment_distance(part, a, b)
        best = (d + bias).argmin(1)
        idx.append(best)
        dist.append(d.gather(1, best[:, None])[:, 0])
    return torch.cat(idx), torch.cat(dist)


def segment_of(
    x: Tensor, mixture: GaussianMixture, segments: ModeSegments, k: float = DEFAULT_K, end_margin: float | None = None
) -> Tensor:
    """Which segment each point lies *on*, or -1: the nearest segment (see :func:`nearest_segment`) if the
    point is within k sigma of it (a tube of radius k sigma) and farther than ``end_margin`` (default k sigma,
    in x units) from both of its ends along it. Points near a mode, or off every tube, get -1.
    x: (N, D) -> (N,) long."""
    k = check_k(k)
    idx, dist = nearest_segment(x, segments, mixture.means)
    radius = k * float(mixture.sigma.max())
    margin = radius if end_margin is None else float(end_margin)
    a = mixture.means[segments.pairs[idx, 0]]
    along = ((x.to(torch.float64).cpu() - a) * (mixture.means[segments.pairs[idx, 1]] - a)).sum(1) / segments.length[idx]
    inside = (dist <= radius) & (along > margin) & (along < segments.length[idx] - margin)
    return torch.where(inside, idx, torch.full_like(idx, -1))


# ---------------------------------------------------------------------------------------- counting statistics
def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (z = 1.96: 95%). Unlike the normal approximation
    it stays inside [0, 1] and is not empty at k = 0 or k = n. Returns (low, high)."""
    positive_int(n, "n")
    number_parameter(k, "k", int, at_least=0, at_most=n)
    if not z > 0:
        raise ValueError(f"z must be positive, got {z}")
    phat, z2 = k / n, z * z
    centre = (phat + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(phat * (1 - phat) / n + z2 / (4 * n * n))
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def difference_interval(k_a: int, n_a: int, k_b: int, n_b: int, z: float = 1.96) -> tuple[float, float]:
    """Newcombe's interval (his method 10, from the two :func:`wilson_interval` s) for the difference of two
    independent proportions k_a / n_a - k_b / n_b (z = 1.96: 95%). Stricter than asking whether the two Wilson
    intervals overlap: they can overlap while this one excludes 0. Returns (low, high)."""
    (lo_a, hi_a), (lo_b, hi_b) = wilson_interval(k_a, n_a, z), wilson_interval(k_b, n_b, z)
    p_a, p_b = k_a / n_a, k_b / n_b
    return (p_a - p_b - math.hypot(p_a - lo_a, hi_b - p_b), p_a - p_b + math.hypot(hi_a - p_a, p_b - lo_b))


@dataclass(frozen=True)
class DensityRatio:
    """A ratio of two densities per unit length, (count_a / length_a) / (count_b / length_b), with its
    confidence interval [low, high] (high may be inf, low may be 0)."""

    ratio: float
    low: float
    high: float


def density_ratio(count_a: int, length_a: float, count_b: int, length_b: float, z: float = 1.96) -> DensityRatio:
    """How many times denser region a is than region b, per unit length, with a 95% interval (z = 1.96).

    Given the n = count_a + count_b samples that fell in either region, count_a is binomial with
    p = r L_a / (r L_a + L_b), where r is the true density ratio; the Wilson interval of p
    (:func:`wilson_interval`) maps to r = p / (1 - p) * L_b / L_a. "Same density" (r = 1) is what a model
    that spread these samples evenly would give; an interval that excludes 1 says the difference is more
    than counting noise."""
    count_a, count_b = operator.index(count_a), operator.index(count_b)  # whole counts only (a float count is an error)
    length_a, length_b = float(length_a), float(length_b)
    if not (length_a > 0 and length_b > 0 and math.isfinite(length_a) and math.isfinite(length_b)):
        raise ValueError(f"lengths must be positive and finite, got {length_a} and {length_b}")
    n = count_a + count_b
    if count_a < 0 or count_b < 0 or n < 1:
        raise ValueError(f"counts must be non-negative with a positive total, got {count_a} and {count_b}")

    def to_ratio(p: float) -> float:
        return math.inf if p >= 1.0 else p / (1.0 - p) * length_b / length_a

    lo, hi = wilson_interval(count_a, n, z)
    return DensityRatio(to_ratio(count_a / n), to_ratio(lo), to_ratio(hi))


# ---------------------------------------------------------------- a sample set against the mixture's modes
def _disjoint_balls(mixture: GaussianMixture, k: float) -> Tensor:
    """The distances between the modes, (K, K), or one clear error where their k-sigma balls overlap."""
    radius = k * mixture.sigma
    dist = torch.cdist(mixture.means, mixture.means)
    off_diag = ~torch.eye(mixture.n_modes, dtype=torch.bool)
    if bool((dist < radius[:, None] + radius[None, :])[off_diag].any()):
        raise ValueError(f"the {k:g}-sigma balls around the modes overlap; choose a smaller k")
    return dist


def true_cell_mass(mixture: GaussianMixture, k: float = DEFAULT_K) -> Tensor:
    """The exact probability that a sample of ``mixture`` lands in each mode's k-sigma ball, and outside all
    of them (the last entry): (K + 1,) float64, summing to 1. Ball j gets sum_i w_i P(|X_i - mu_j| <= k
    sigma_j), X_i ~ N(mu_i, sigma_i^2 I), each term a (non-central) chi-square CDF. Needs disjoint balls."""
    k = check_k(k)
    dist = _disjoint_balls(mixture, k)
    s, w = mixture.sigma, mixture.weights
    D, K = mixture.dim, mixture.n_modes
    cell = torch.zeros(K + 1, dtype=torch.float64)
    for i in range(K):
        for j in range(K):
            r2 = float((k * s[j] / s[i]) ** 2)
            p = stats.chi2.cdf(r2, D) if i == j else stats.ncx2.cdf(r2, D, float((dist[i, j] / s[i]) ** 2))
            cell[j] += float(w[i]) * float(p)
    cell[K] = max(0.0, 1.0 - float(cell[:K].sum()))
    return cell


def mixture_report(x: Tensor, mixture: GaussianMixture, k: float = DEFAULT_K, min_share: float = 0.1, true_cells: Tensor | None = None) -> dict[str, Any]:
    """Measurements of samples ``x`` (N, D) against ``mixture``, on the partition of space into the modes'
    k-sigma balls (disjoint) and the rest:

    - ``hallucination``: share of samples outside every ball (:func:`mi_lib.measure.metrics.out_of_support`);
    - ``mode_mass``: (K,) share of samples in each ball;
    - ``modes_covered``: how many modes hold at least ``min_share`` of their true ball mass;
    - ``mode_tv``: total variation between the in-support histogram (``mode_mass`` renormalised) and the true
      weights: how unevenly the modes are filled, whatever the hallucination share (0 = perfect; 1 when no
      sample is in support);
    - ``tv``: total variation between the (K + 1)-cell histogram and its exact truth (:func:`true_cell_mass`):
      a distance to the real distribution that is exact for this partition and, by the data-processing
      inequality, a lower bound on the total variation between the model's and the true distribution;
    - ``mean_distance``: mean distance to the nearest mode in sigma (sqrt(pi/2) = 1.2533 for true 2D data);
    - ``mode_spread``: root mean square distance of the in-support samples to their mode, in sigma per dimension
      (just under 1 for true data, whose balls cut off the tails beyond k sigma; below 1: narrowed modes).

    ``true_cells`` may pass a precomputed :func:`true_cell_mass` (it costs K^2 chi-square CDFs)."""
    k = check_k(k)
    min_share = number_parameter(min_share, "min_share", at_least=0, at_most=1)
    if x.dim() != 2 or x.shape[1] != mixture.dim or x.shape[0] < 1:
        raise ValueError(f"x must have shape (N, {mixture.dim}) with N >= 1, got {tuple(x.shape)}")
    truth = true_cell_mass(mixture, k) if true_cells is None else true_cells.to(torch.float64)
    K = mixture.n_modes
    distance, mode = mixture.nearest_mode_distance(x.detach().cpu())
    cell = torch.where(distance <= k, mode, torch.full_like(mode, K))  # ball index, or K for "outside"
    share = torch.bincount(cell, minlength=K + 1).to(torch.float64) / x.shape[0]
    mode_mass = share[:K]
    inside = float(mode_mass.sum())
    in_hist = mode_mass / inside if inside > 0 else torch.zeros(K, dtype=torch.float64)
    return {
        "n": int(x.shape[0]),
        "hallucination": float(share[K]),
        "modes_covered": int((mode_mass >= min_share * truth[:K]).sum()),
        "mode_tv": 0.5 * float((in_hist - mixture.weights).abs().sum()) if inside > 0 else 1.0,
        "tv": 0.5 * float((share - truth).abs().sum()),
        "mean_distance": float(distance.mean()),
        "mode_spread": float(distance[cell < K].square().mean().div(mixture.dim).sqrt()) if inside > 0 else float("nan"),
        "mode_mass": mode_mass,
    }
