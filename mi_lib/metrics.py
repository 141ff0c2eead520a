"""Measurements: hallucination labels for mixtures, the true out-of-support mass, the streaming Hal
statistic, and moment checks.

Hallucination labels here come from geometry alone (distance to the modes), never from the detector, so a
detector can be scored against them honestly.
"""

from __future__ import annotations

import math

import torch
from scipy import stats
from torch import Tensor

from .data import GaussianMixture
from .schedule import NoiseSchedule

__all__ = [
    "DEFAULT_K",
    "out_of_support",
    "out_of_support_mass",
    "WindowVariance",
    "mean_var_zscores",
    "tv_to_noise",
    "first_pure_noise_step",
]

#: Default support radius in units of sigma: a point farther than 4 sigma from every mode is out of
#: support. A true 1D sample lands there with probability 6.3e-5, a true 2D sample with 3.4e-4
#: (:func:`out_of_support_mass` gives the exact figure for any mixture and k).
DEFAULT_K = 4.0


def _check_k(k: float) -> float:
    k = float(k)
    if not (k > 0 and math.isfinite(k)):
        raise ValueError(f"k must be a positive number of sigmas, got {k}")
    return k


def out_of_support(x: Tensor, mixture: GaussianMixture, k: float = DEFAULT_K) -> Tensor:
    """Label each point: True when it is farther than ``k`` sigma from every mode. x: (N, D) -> (N,) bool."""
    distance, _ = mixture.nearest_mode_distance(x)
    return distance > _check_k(k)


def out_of_support_mass(mixture: GaussianMixture, k: float = DEFAULT_K) -> float:
    """The true probability that a sample of ``mixture`` is out of support (farther than k sigma from every
    mode), computed exactly.

    P(inside) = sum_i w_i sum_j P(|X_i - mu_j| <= k sigma_j) with X_i ~ N(mu_i, sigma_i^2 I), each term a
    (non-central) chi-square CDF. Exact when the k-sigma balls are disjoint; overlapping balls raise
    ValueError (the modes then have no gap between them to measure)."""
    k = _check_k(k)
    mu, s, w = mixture.means, mixture.sigma, mixture.weights
    dist = torch.cdist(mu, mu)
    radius = k * s
    off_diag = ~torch.eye(mixture.n_modes, dtype=torch.bool)
    if bool((dist < radius[:, None] + radius[None, :])[off_diag].any()):
        raise ValueError(f"the {k:g}-sigma balls around the modes overlap; choose a smaller k")
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


class WindowVariance:
    """Streaming per-sample variance of a quantity over the reverse steps t in [t_lo, t_hi] (inclusive).

    Feed every step with :meth:`update`; steps outside the window are ignored, so memory is O(batch) and
    no trajectory is stored. :meth:`result` gives the population variance over the window's steps (Welford),
    averaged over all non-batch dimensions -- the paper's Hal (Eq. 4) when fed x0_hat. Shape (B,).
    """

    def __init__(self, t_lo: int, t_hi: int):
        if t_lo < 0 or t_hi < t_lo:
            raise ValueError(f"window needs 0 <= t_lo <= t_hi, got ({t_lo}, {t_hi})")
        self.t_lo, self.t_hi = int(t_lo), int(t_hi)
        self.count = 0
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, t: int, value: Tensor) -> None:
        """Add the batch's value at step ``t`` (value: (B, ...)) if ``t`` lies in the window."""
        if not self.t_lo <= t <= self.t_hi:
            return
        v = value.to(torch.float32 if value.dtype in (torch.float16, torch.bfloat16) else value.dtype)
        self.count += 1
        if self._mean is None:
            self._mean, self._m2 = v.clone(), torch.zeros_like(v)
            return
        delta = v - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (v - self._mean)

    def result(self) -> Tensor:
        """Population variance over the window's steps, averaged over non-batch dims: (B,)."""
        if self._m2 is None:
            raise ValueError(f"no step fell in the window [{self.t_lo}, {self.t_hi}]")
        return (self._m2 / self.count).flatten(1).mean(1)


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


def tv_to_noise(mixture: GaussianMixture, alpha_bar: float, half_width: float = 8.0, points: int | None = None) -> float:
    """Total-variation distance between the noised marginal q_t (at ``alpha_bar``) and the prior N(0, I),
    by quadrature on a regular grid over [-half_width, half_width]^D (D = 1 or 2) with ``points`` per axis
    (default 2001 in 1D, 401 in 2D).

    TV = 1/2 integral |q_t - N(0, I)|: the best possible advantage, over chance, of telling x_t from pure
    noise. A value below 0.01 means the step carries essentially no information about the data."""
    if mixture.dim not in (1, 2):
        raise ValueError(f"tv_to_noise integrates on a grid in 1 or 2 dimensions, got D={mixture.dim}")
    points = points if points is not None else (2001 if mixture.dim == 1 else 401)
    if points < 3:
        raise ValueError(f"points must be >= 3, got {points}")
    axis = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    cell = float(axis[1] - axis[0]) ** mixture.dim
    x = axis[:, None] if mixture.dim == 1 else torch.cartesian_prod(axis, axis)
    q = mixture.noised(alpha_bar).prob(x)
    prior = torch.exp(-0.5 * (x * x).sum(1)) / (2 * math.pi) ** (mixture.dim / 2)
    return 0.5 * float((q - prior).abs().sum()) * cell


def first_pure_noise_step(mixture: GaussianMixture, schedule: NoiseSchedule, tol: float = 0.01, **quadrature) -> int:
    """The first timestep t whose marginal q_t is within total variation ``tol`` of N(0, I), found by
    bisection (TV to the stationary law never increases along the forward chain). Returns T if none is.
    Steps t..T-1 are then 'pure noise' for this data."""
    ab = schedule.alpha_bar_64
    if tv_to_noise(mixture, float(ab[-1]), **quadrature) >= tol:
        return schedule.T
    lo, hi = -1, schedule.T - 1  # invariant: TV(lo) >= tol (or lo = -1), TV(hi) < tol
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tv_to_noise(mixture, float(ab[mid]), **quadrature) < tol:
            hi = mid
        else:
            lo = mid
    return hi
