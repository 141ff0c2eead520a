"""Chapter 1, *The forward process*: the closed forms the rest of the book builds on, checked by simulation.

:func:`moment_check` holds the closed-form marginal q(x_t | x_0) of a Gaussian mixture against simulated noising
(z-scores of mean and variance); :func:`score_check` holds the closed-form score against autograd's gradient of
the closed-form log-density; :func:`pure_noise_table` finds, per schedule, the first step at which the noised
data is within a total-variation tolerance of N(0, I). :func:`claimed_numbers` gathers what
``results/01_forward_process.json`` records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from ..datasets.mixtures import GaussianMixture
from ..diffusion.schedule import NoiseSchedule
from ..measure.metrics import mean_var_zscores
from ..params import choice_parameter, number_parameter

__all__ = ["schedule_curves", "first_pure_noise_step", "tv_to_noise", "SCALES", "SCHEDULES", "CHECK_T", "Setup", "setup", "moment_check", "print_moments", "score_check",
           "plot_tv", "pure_noise_table", "claimed_numbers"]

SCALES: dict[str, dict[str, Any]] = {"ci": dict(n_samples=100_000), "paper": dict(n_samples=10_000_000)}
SCHEDULES = ("official", "standard", "cosine")
CHECK_T = (0, 9, 49, 99, 199, 299, 999)  # the steps of the moment and score checks


@dataclass(frozen=True)
class Setup:
    scale: str
    seed: int
    schedule_name: str
    pure_noise_tv: float
    n_samples: int


def setup(scale: str, seed: int, schedule_name: str, pure_noise_tv: float) -> Setup:
    """Check the notebook's parameters, or one clear error naming the parameter, before any work."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    schedule_name = choice_parameter(schedule_name, "schedule_name", SCHEDULES)
    pure_noise_tv = number_parameter(pure_noise_tv, "pure_noise_tv", above=0, below=1)  # a total-variation distance
    return Setup(scale, seed, schedule_name, pure_noise_tv, SCALES[scale]["n_samples"])


def moment_check(schedule: NoiseSchedule, data: Mapping[str, tuple[GaussianMixture, Tensor]],
                 generator: torch.Generator, times: Sequence[int] = CHECK_T) -> list[tuple[int, str, float, float]]:
    """Noise each data set's samples to every step in ``times`` and compare the mean and variance with q_t's
    closed form: rows (t, data set, max |z| of the means, max |z| of the variances)."""
    rows = []
    for t in times:
        ab = float(schedule.alpha_bar_64[t])
        for name, (mixture, x0) in data.items():
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
            xt = schedule.q_sample(x0, t, noise).cpu()
            qt = mixture.noised(ab)
            z_mean, z_var = mean_var_zscores(xt, qt.mean(), qt.covariance().diag())
            rows.append((t, name, z_mean.abs().max().item(), z_var.abs().max().item()))
    return rows


def print_moments(rows: Sequence[tuple[int, str, float, float]]) -> float:
    """The moment check's table; returns the largest |z|."""
    print(f"{'t':>5} {'data':>5} {'max|z| mean':>12} {'max|z| var':>11}")
    for t, name, zm, zv in rows:
        print(f"{t:>5} {name:>5} {zm:>12.2f} {zv:>11.2f}")
    max_z = max(max(zm, zv) for _, _, zm, zv in rows)
    print(f"largest |z| over {2 * len(rows)} comparisons: {max_z:.2f}")
    return max_z


def score_check(schedule: NoiseSchedule, data: Mapping[str, tuple[GaussianMixture, Tensor]],
                generator: torch.Generator, times: Sequence[int] = CHECK_T, n: int = 2000) -> float:
    """The largest relative difference between q_t's closed-form score and autograd's gradient of its
    closed-form log-density, at ``n`` noised samples of each data set per step, printed and returned."""
    errors = []
    for t in times:
        ab = float(schedule.alpha_bar_64[t])
        for mixture, x0 in data.values():
            qt = mixture.noised(ab)
            noise = torch.randn((n, mixture.dim), generator=generator, device=x0.device)
            x = schedule.q_sample(x0[:n], t, noise).cpu().double()
            x.requires_grad_(True)
            (auto,) = torch.autograd.grad(qt.log_prob(x).sum(), x)
            closed = qt.score(x.detach())
            errors.append(((closed - auto).abs().max() / auto.abs().max()).item())
    max_error = max(errors)
    print(f"largest relative difference, closed-form score vs autograd: {max_error:.1e}")
    return max_error


def plot_tv(ax: Axes, schedules: Mapping[str, NoiseSchedule], mixture: GaussianMixture, tol: float) -> None:
    """TV(q_t, N(0, 1)) of the 1D mixture per schedule over the steps (log scale), the tolerance dashed."""
    t_axis = np.arange(0, 1000, 5)
    for name, s in schedules.items():
        tv = np.asarray([tv_to_noise(mixture, float(s.alpha_bar_64[t])) for t in t_axis])
        ax.semilogy(t_axis, np.where(tv >= 1e-6, tv, np.nan), label=name)  # below 1e-6: quadrature round-off
    ax.axhline(tol, ls="--", c="k", lw=0.8, label=f"TV = {tol}")
    ax.set(xlabel="timestep t", ylabel="TV(q_t, N(0, 1))", title="How far the noised 1D mixture still is from pure noise",
           ylim=(1e-6, 2))
    ax.legend()


def pure_noise_table(schedules: Mapping[str, NoiseSchedule], data: Mapping[str, GaussianMixture],
                     tol: float) -> dict[tuple[str, str], float]:
    """Per (schedule, data set): the share of the steps at which the noised data is within ``tol`` of pure
    noise (from the first such step on), printed as a table."""
    shares = {}
    print(f"{'schedule':>9} {'data':>5} {'first pure-noise t':>19} {'share of the 1000 steps':>24}")
    for name, s in schedules.items():
        for data_name, mixture in data.items():
            t_star = first_pure_noise_step(mixture, s, tol=tol)
            shares[(name, data_name)] = (s.T - t_star) / s.T
            print(f"{name:>9} {data_name:>5} {t_star:>19} {shares[(name, data_name)]:>24.1%}")
    return shares


def claimed_numbers(max_z: float, max_score_error: float, pure_noise: Mapping[tuple[str, str], float]
                    ) -> dict[str, float]:
    """What ``results/01_forward_process.json`` records."""
    return {"max_abs_z_moments": max_z, "max_rel_score_error": max_score_error,
            **{f"pure_noise_share_{name}_{data}": share for (name, data), share in pure_noise.items()}}


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


def schedule_curves(axes: tuple[Axes, Axes], schedules: Mapping[str, NoiseSchedule]) -> tuple[Axes, Axes]:
    """alpha_bar_t (left) and log10 SNR_t (right) against t for several schedules."""
    left, right = axes
    for name, s in schedules.items():
        t = np.arange(s.T)
        left.plot(t, s.alpha_bar_64.numpy(), label=name)
        right.plot(t, np.log10(s.snr_64().numpy()), label=name)
    left.set(xlabel="timestep t", ylabel=r"$\bar\alpha_t$", title=r"signal kept: $\bar\alpha_t$")
    right.set(xlabel="timestep t", ylabel=r"$\log_{10}$ SNR$_t$", title=r"signal-to-noise ratio $\bar\alpha_t/(1-\bar\alpha_t)$")
    left.legend()
    return axes
