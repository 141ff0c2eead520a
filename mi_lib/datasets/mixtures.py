"""Gaussian-mixture datasets with closed-form densities and scores, at t = 0 and under the forward process.

A mixture sum_k w_k N(mu_k, sigma_k^2 I) pushed through q(x_t | x_0) is again a mixture:
sum_k w_k N(sqrt(alpha_bar) mu_k, (alpha_bar sigma_k^2 + 1 - alpha_bar) I). So the density, log-density and
score of the noised marginal q_t are exact for every t (:meth:`GaussianMixture.noised`). All maths is in
float64; results come back in the dtype of the input.

Layouts follow the official code: 1D modes with sigma 0.05, not normalised; the 2D 5x5 grid (means 2(i, j),
i, j in -2..2) and the 25-mode diamond, both with sigma 0.05 and then divided by sqrt(0.05^2 + 8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..params import positive_int

__all__ = ["GaussianMixture", "mixture_1d", "grid_2d", "diamond_2d", "make_dataset", "DATASETS"]


def _as_float64(x: Tensor | Sequence[float] | Sequence[Sequence[float]], name: str) -> Tensor:
    try:
        return torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numeric, got {x!r}") from err


def _sq_dist(x: Tensor, mu: Tensor) -> Tensor:
    """Squared distances (N, K) in float64 without an (N, K, D) intermediate; differentiable in x."""
    return ((x * x).sum(1, keepdim=True) - 2 * x @ mu.T + (mu * mu).sum(1)).clamp_min(0.0)


class GaussianMixture:
    """An isotropic Gaussian mixture in D dimensions.

    Args:
        means: (K, D) mode locations (a 1-D sequence is read as K modes in 1D).
        sigma: one standard deviation for all modes, or one per mode, shape (K,); all > 0.
        weights: (K,) non-negative mixing weights (normalised here); equal if omitted.
        name: label used in plots and results.
    """

    def __init__(
        self,
        means: Tensor | Sequence,
        sigma: float | Tensor | Sequence[float],
        weights: Tensor | Sequence[float] | None = None,
        name: str = "mixture",
    ):
        mu = _as_float64(means, "means")
        if mu.dim() == 1:
            mu = mu[:, None]
        if mu.dim() != 2 or mu.shape[0] < 1:
            raise ValueError(f"means must have shape (K,) or (K, D) with K >= 1, got {tuple(mu.shape)}")
        K = mu.shape[0]
        s = _as_float64(sigma, "sigma")
        s = s.expand(K).clone() if s.dim() == 0 else s
        if s.shape != (K,):
            raise ValueError(f"sigma must be a scalar or have shape ({K},), got {tuple(s.shape)}")
        if not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
            raise ValueError(f"sigma must be > 0 and finite, got {s.tolist()}")
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else _as_float64(weights, "weights")
        if w.shape != (K,):
            raise ValueError(f"weights must have shape ({K},), got {tuple(w.shape)}")
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
        self.means, self.sigma, self.weights, self.name = mu, s, w / w.sum(), name

    # ------------------------------------------------------------------ basics
    @property
    def dim(self) -> int:
        """Data dimension D."""
        return self.means.shape[1]

    @property
    def n_modes(self) -> int:
        """Number of components K."""
        return self.means.shape[0]

    def __repr__(self) -> str:
        return f"GaussianMixture({self.name!r}, K={self.n_modes}, D={self.dim}, sigma={self.sigma.min().item():g})"

    def mean(self) -> Tensor:
        """Mixture mean, shape (D,)."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance, shape (D, D): sum_k w_k (sigma_k^2 I + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = (self.weights[:, None, None] * self.means[:, :, None] * self.means[:, None, :]).sum(0)
        return torch.eye(self.dim, dtype=torch.float64) * (self.weights @ self.sigma**2) + second - torch.outer(m, m)

    def noised(self, alpha_bar: float | Tensor) -> GaussianMixture:
        """The marginal q_t of x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps, itself a mixture."""
        ab = float(alpha_bar)
        if not 0.0 < ab <= 1.0:
            raise ValueError(f"alpha_bar must be in (0, 1], got {ab}")
        sigma_t = (ab * self.sigma**2 + (1 - ab)).sqrt()
        return GaussianMixture(math.sqrt(ab) * self.means, sigma_t, self.weights, f"{self.name}@ab={ab:.3g}")

    # ------------------------------------------------------------------ sampling
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, stratified: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` points. Returns (x, component) with x: (n, D) float32 and component: (n,) long.

        ``stratified=True`` assigns components cyclically (sample i from mode i mod K), as the official
        code does, instead of drawing them from the weights (requires equal weights)."""
        n = positive_int(n, "n")
        device = generator.device if generator is not None else torch.device("cpu")
        if stratified:
            if not torch.allclose(self.weights, self.weights[:1].expand_as(self.weights)):
                raise ValueError("stratified sampling needs equal weights")
            comp = torch.arange(n, device=device) % self.n_modes
        else:
            comp = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        x = self.means.to(device)[comp] + self.sigma.to(device)[comp, None] * noise
        return x.to(torch.float32), comp

    # ------------------------------------------------------------------ density and score
    def _check_x(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (N, {self.dim}), got {tuple(x.shape)}")
        return x.to(torch.float64)

    def _component_log_probs(self, x64: Tensor) -> Tensor:  # (N, K): log w_k + log N(x; mu_k, sigma_k^2 I)
        mu, s, w = (a.to(x64.device) for a in (self.means, self.sigma, self.weights))
        sq = _sq_dist(x64, mu)
        return w.log() - 0.5 * sq / s**2 - self.dim * (s.log() + 0.5 * math.log(2 * math.pi))

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x), shape (N,). Differentiable (autograd) in x."""
        return torch.logsumexp(self._component_log_probs(self._check_x(x)), dim=1).to(x.dtype)

    def prob(self, x: Tensor) -> Tensor:
        """p(x), shape (N,)."""
        return self.log_prob(x).exp()

    def score(self, x: Tensor) -> Tensor:
        """grad_x log p(x) in closed form: sum_k r_k(x) (mu_k - x) / sigma_k^2, shape (N, D)."""
        x64 = self._check_x(x)
        r = torch.softmax(self._component_log_probs(x64), dim=1)  # (N, K) responsibilities
        mu, s = self.means.to(x64.device), self.sigma.to(x64.device)
        return ((r / s**2) @ mu - (r / s**2).sum(1, keepdim=True) * x64).to(x.dtype)

    def nearest_mode_distance(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """For each point, the smallest distance to a mode in units of that mode's sigma, and which mode.
        Returns (distance (N,) float64, mode index (N,) long)."""
        d = _sq_dist(self._check_x(x), self.means.to(x.device)).sqrt() / self.sigma.to(x.device)
        return d.min(dim=1)


def mixture_1d(means: Sequence[float] = (1.0, 2.0, 3.0), sigma: float = 0.05, weights: Sequence[float] | None = None) -> GaussianMixture:
    """The paper's 1D mixture (Fig. 2): modes at 1, 2, 3 with sigma 0.05, equal weights, not normalised."""
    return GaussianMixture(list(means), sigma, weights, name="1d")


_OFFICIAL_SCALE = math.sqrt(0.05**2 + 8.0)  # the official code divides 2D data by this (~2.83)


def grid_2d(sigma: float = 0.05) -> GaussianMixture:
    """The 5x5 grid of the official code: means 2(i, j), i, j in -2..2, sigma 0.05, all / sqrt(0.05^2 + 8)."""
    ij = torch.tensor([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=torch.float64)
    return GaussianMixture(2 * ij / _OFFICIAL_SCALE, sigma / _OFFICIAL_SCALE, name="grid")


def diamond_2d(sigma: float = 0.05) -> GaussianMixture:
    """The official 25-mode 'rotated' layout: mode (r, c), r, c in 0..4, at 2(-2 + (r + c)/2, (c - r)/2),
    i.e. a diamond with nearest spacing sqrt(2) (raw units) whose x-axis carries modes 2 apart that are not
    nearest neighbours; sigma 0.05, all / sqrt(0.05^2 + 8) like the grid."""
    rc = torch.tensor([(r, c) for r in range(5) for c in range(5)], dtype=torch.float64)
    raw = torch.stack([-2 + (rc[:, 0] + rc[:, 1]) / 2, (rc[:, 1] - rc[:, 0]) / 2], dim=1)
    return GaussianMixture(2 * raw / _OFFICIAL_SCALE, sigma / _OFFICIAL_SCALE, name="diamond")


DATASETS = {"1d": mixture_1d, "grid": grid_2d, "diamond": diamond_2d}


def make_dataset(name: str, **kwargs) -> GaussianMixture:
    """A named mixture: ``"1d"`` (kwargs: means, sigma, weights), ``"grid"`` or ``"diamond"`` (kwargs: sigma)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](**kwargs)
