"""Chapter 1, *The forward process*: the closed forms the rest of the book builds on, checked by simulation.

:func:`moment_check` holds the closed-form marginal q(x_t | x_0) of a Gaussian mixture against simulated noising
(z-scores of mean and variance); :func:`score_check` holds the closed-form score against autograd's gradient of
the closed-form log-density; :func:`pure_noise_table` finds, per schedule, the first step at which the noised
data is within a total-variation tolerance of N(0, I). :func:`claimed_numbers` gathers what
``results/01_forward_process.json`` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from ..data import GaussianMixture
from ..metrics import first_pure_noise_step, mean_var_zscores, tv_to_noise
from ..params import choice_parameter, number_parameter
from ..schedule import NoiseSchedule

__all__ = ["SCALES", "SCHEDULES", "CHECK_T", "Setup", "setup", "moment_check", "print_moments", "score_check",
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
