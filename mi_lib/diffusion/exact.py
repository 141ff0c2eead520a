"""Denoisers built from the true score: the control experiment of chapter 4.

A Gaussian mixture's noised marginal q_t has a closed-form score (:meth:`GaussianMixture.noised`), so the
ideal denoiser is known exactly: eps*(x_t, t) = -sqrt(1 - alpha_bar_t) * grad log q_t(x_t). Plugged into the
same sampler as a trained network, it separates what the *sampler* does from what the *learned score* does.

:class:`ExactDenoiser` can also return the exact score **smoothed** by a Gaussian of width ``smoothing``
(in x_t units): s_h(x) = E_{u ~ N(0, 1)}[s_t(x + h u)], a low-pass filter that keeps the score's shape where
it is already smooth and turns its jumps between modes into ramps -- to a first approximation what a
smooth network learns. For 1D mixtures it is computed by convolution on a grid fine enough to resolve the
jump (spacing sigma_t^2 / (10 * mode spacing), a tenth of the jump's width), and is the exact score
outside the grid, where the score is linear and smoothing leaves it unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..datasets.mixtures import GaussianMixture
from .schedule import NoiseSchedule

__all__ = ["ExactDenoiser"]


class ExactDenoiser:
    """``model(x, t) -> eps`` from the closed-form score of ``mixture`` under ``schedule``.

    Args:
        mixture: the data distribution (its noised marginals give the score at every t).
        schedule: the forward process; alpha_bar comes from its float64 table.
        smoothing: Gaussian smoothing width h >= 0 of the score, in x_t units (0: the exact score; 1D only).
        device: where :func:`mi_lib.sample` runs it (its ``device`` attribute; the score follows its input).

    x: (B, D) float32 or float64; t: (B,) long. The score is evaluated in float64 and eps is returned in
    x's dtype. ``sample_shape`` is (D,), so :func:`mi_lib.sample` needs no ``shape``."""

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule, smoothing: float = 0.0, device: torch.device | str = "cpu"):
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        smoothing = float(smoothing)
        if not (smoothing >= 0 and math.isfinite(smoothing)):
            raise ValueError(f"smoothing must be a finite width >= 0, got {smoothing}")
        self.mixture, self.schedule, self.smoothing = mixture, schedule, smoothing
        self.device = torch.device(device)
        self.sample_shape: tuple[int, ...] = (mixture.dim,)
        if smoothing > 0 and mixture.dim != 1:
            raise ValueError(f"smoothing is implemented for 1D mixtures, got D={mixture.dim}")
        self._noised: dict[int, GaussianMixture] = {}
        self._table: tuple[int, Tensor, float, float] | None = None  # (t, smoothed score on grid, x_min, dx)

    def __repr__(self) -> str:
        return f"ExactDenoiser({self.mixture.name!r}, smoothing={self.smoothing:g})"

    def _marginal(self, t: int) -> GaussianMixture:
        if t not in self._noised:
            self._noised[t] = self.mixture.noised(float(self.schedule.alpha_bar_64[t]))
        return self._noised[t]

    def score(self, x: Tensor, t: int) -> Tensor:
        """The (smoothed) score of q_t at x: (B, D) -> (B, D), float64."""
        q = self._marginal(t)
        x64 = x.to(torch.float64)
        if self.smoothing == 0.0:
            return q.score(x64)
        if self._table is None or self._table[0] != t or self._table[1].device != x.device:
            table, x_min, dx = self._smoothed_grid(q)
            self._table = (t, table.to(x.device), x_min, dx)  # on x's device: no copies in the sampling loop
        _, table, x_min, dx = self._table
        pos = (x64[:, 0] - x_min) / dx
        inside = (pos >= 0) & (pos <= len(table) - 1)
        out = torch.empty_like(pos)
        p = pos[inside]
        i0 = p.floor().long().clamp(max=len(table) - 2)
        frac = p - i0
        out[inside] = table[i0] * (1 - frac) + table[i0 + 1] * frac  # linear interpolation on the grid
        out[~inside] = q.score(x64[~inside])[:, 0]  # beyond the grid the score is linear: smoothing keeps it
        return out[:, None]

    def _smoothed_grid(self, q: GaussianMixture) -> tuple[Tensor, float, float]:
        """The smoothed score of q on a uniform grid covering every mode +- 8 sigma_t: (values, x_min, dx)."""
        mu, s, h = q.means[:, 0], q.sigma, self.smoothing
        spacing = float(mu.sort().values.diff().min()) if len(mu) > 1 else float(s.max())
        dx = min(float(s.min()) ** 2 / (10 * max(spacing, float(s.min()))), h / 10)
        lo, hi = float((mu - 8 * s).min()), float((mu + 8 * s).max())
        pad = 6 * h
        n_core, n_pad = int(math.ceil((hi - lo) / dx)) + 1, int(math.ceil(pad / dx))
        if n_core + 2 * n_pad > 4_000_000:
            raise ValueError(f"smoothing grid too large ({n_core + 2 * n_pad} points); use a larger smoothing width")
        x = lo - n_pad * dx + dx * torch.arange(n_core + 2 * n_pad, dtype=torch.float64)
        values = q.score(x[:, None])[:, 0]
        u = dx * torch.arange(-n_pad, n_pad + 1, dtype=torch.float64) / h
        kernel = torch.exp(-0.5 * u * u)
        kernel = kernel / kernel.sum()
        smoothed = _convolve_valid(values, kernel)  # (n_core,)
        return smoothed, lo, dx

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.mixture.dim:
            raise ValueError(f"x must have shape (B, {self.mixture.dim}), got {tuple(x.shape)}")
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        T = self.schedule.T
        if bool(((t < 0) | (t >= T)).any()):
            raise ValueError(f"t must lie in 0..{T - 1}")
        eps = torch.empty(x.shape, dtype=torch.float64, device=x.device)
        steps = [int(t[0])] if t.shape[0] and t.stride(0) == 0 else torch.unique(t).tolist()
        for s in steps:
            rows = slice(None) if len(steps) == 1 else (t == s)
            sqrt_one_minus_ab = math.sqrt(1.0 - float(self.schedule.alpha_bar_64[s]))
            eps[rows] = -sqrt_one_minus_ab * self.score(x[rows], s)
        return eps.to(x.dtype)


def _convolve_valid(values: Tensor, kernel: Tensor) -> Tensor:
    """'valid' convolution of a 1D signal with a symmetric kernel, by FFT (float64)."""
    n = values.numel() + kernel.numel() - 1
    size = 1 << (n - 1).bit_length()
    full = torch.fft.irfft(torch.fft.rfft(values, size) * torch.fft.rfft(kernel, size), size)[:n]
    k = kernel.numel() - 1
    return full[k : values.numel()]
