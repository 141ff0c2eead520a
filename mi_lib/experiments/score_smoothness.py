"""Chapter 4, *Score smoothness*: the paper's Fig. 4 measured, and a control it implies.

The true score of a 1D mixture jumps between modes; the learned one is smooth. :class:`Scores` gives both at
any timestep; :func:`error_map` and :func:`max_slopes` measure where and how much they differ. The control:
:func:`exact_score_samples` samples with the closed-form score smoothed by a Gaussian of width h, through the
same sampler; :func:`matching_width` finds the width whose gap mass matches the learned model's, and
:func:`matched_reading` checks where in the gaps that width puts its samples; :func:`score_fit` reads the width
a second way, from the learned score itself. :func:`claimed_numbers` gathers what
``results/04_score_smoothness.json`` records.
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
from ..diffusion.exact import ExactDenoiser
from ..diffusion.models import MixtureModelSpec
from ..diffusion.nets import shared_timestep
from ..diffusion.sampling import sample
from ..diffusion.schedule import NoiseSchedule
from ..diffusion.train import TrainConfig
from ..measure.metrics import DEFAULT_K, check_k, difference_interval, gap_lengths, gap_mass, gap_points, true_gap_mass, wilson_interval
from ..params import choice_parameter, number_parameter, sequence_parameter
from ..settings import Settings
from ..storage.cache import cached
from ..storage.results import format_number as fmt
from ..storage.results import say

__all__ = ["gap_midpoint_share", "within_mode_spread", "SCALES", "SLOPE_TIMES", "MIDPOINT_RADIUS", "Setup", "setup", "Scores", "plot_scores", "error_map", "max_slopes",
           "print_slopes", "exact_score_samples", "GapMasses", "gap_masses", "plot_gap_masses", "print_gap_masses",
           "matching_width", "MatchedReading",
           "matched_reading", "plot_score_at", "FIT_TIMES", "FIT_WIDTHS", "ScoreFit", "score_fit", "print_score_fit",
           "plot_score_fit", "claimed_numbers"]

SCALES: dict[str, dict[str, Any]] = {
    # CI: chapter 2's largest shipped checkpoint (scripts/make_checkpoints.py)
    "ci": dict(n_train=20_000, n_samples=10_000, train=TrainConfig(steps=5_000, batch_size=2_000)),
    # paper: the official training on N = 500,000 (shipped from the GPU campaign); a million samples per run
    "paper": dict(n_train=500_000, n_samples=1_000_000, train=TrainConfig()),
}
SLOPE_TIMES = (0, 1, 2, 5, 10, 20, 50, 100, 200)  # timesteps of the slope table
MIDPOINT_RADIUS = 0.15  # a gap sample this close to its gap's midpoint counts as "near the midpoint"


@dataclass(frozen=True)
class Setup:
    scale: str
    seed: int
    means: list[float]
    sigma: float
    k: float
    smoothing_widths: list[float]
    score_times: list[int]
    n_samples: int
    n_train: int
    train: TrainConfig

    @property
    def spec(self) -> MixtureModelSpec:
        """Chapter 2's model at the scale's largest N."""
        return MixtureModelSpec("1d", tuple(self.means), self.sigma, n_train=self.n_train, data_seed=self.seed,
                                train=self.train)


def setup(scale: str, seed: int, means: Sequence[float] | str, sigma: float, k: float,
          smoothing_widths: Sequence[float] | str, score_times: Sequence[int] | str, n_samples: int | None) -> Setup:
    """Check the notebook's parameters (lists as papermill passes them, -y lists or -p strings), or one clear error
    naming the parameter, before any work."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    means = list(sequence_parameter(means, "means"))
    smoothing_widths = list(sequence_parameter(smoothing_widths, "smoothing_widths"))
    score_times = list(sequence_parameter(score_times, "score_times", int))
    if len(set(means)) < 2:
        raise ValueError(f"means must hold at least two different modes (a gap lies between two), got {means!r}")
    sigma = number_parameter(sigma, "sigma", above=0)
    if min(smoothing_widths) < 0 or not all(0 <= t < 1000 for t in score_times):
        raise ValueError(f"smoothing_widths must be >= 0 and score_times steps in 0..999, got {smoothing_widths!r} "
                         f"and {score_times!r}")
    size = SCALES[scale]
    n_samples = size["n_samples"] if n_samples is None else n_samples
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2_500:
        raise ValueError(f"n_samples must be an int of at least 2,500, got {n_samples!r}: claim 2's bar needs about 30 "
                         "samples in the gaps, and the learned score puts about 1.8% of its samples there")
    if number_parameter(k, "k") < 3:
        raise ValueError(f"k must be at least 3, got {k!r}: closer in, the 'gap' is mostly the modes' own Gaussian "
                         "tails (the claims' bar, 10x the true gap mass, was set at k = 4)")
    if 0.0 not in smoothing_widths or max(smoothing_widths) < 0.1:
        raise ValueError(f"smoothing_widths must hold 0.0 (the exact score itself) and a width of at least 0.1 (claim "
                         f"3 compares the most smoothed score with the learned one), got {smoothing_widths!r}")
    return Setup(scale, seed, means, sigma, float(k), smoothing_widths, score_times, n_samples, size["n_train"],
                 size["train"])


# ---------------------------------------------------------------------------------------- the two scores
@dataclass(frozen=True)
class Scores:
    """The true and the learned score of the noised mixture at timestep t, on float64 CPU points (N, 1)."""

    model: torch.nn.Module
    mixture: GaussianMixture
    schedule: NoiseSchedule
    device: torch.device

    def alpha_bar(self, t: int) -> float:
        return float(self.schedule.alpha_bar_64[t])

    def learned(self, x: Tensor, t: int) -> Tensor:
        """-eps_theta(x, t) / sqrt(1 - alpha_bar_t)."""
        with torch.no_grad():
            eps = self.model(x.to(self.device, torch.float32), shared_timestep(t, len(x), self.device)).double().cpu()
        return -eps / (1 - self.alpha_bar(t)) ** 0.5

    def true(self, x: Tensor, t: int) -> Tensor:
        """The closed-form score of the mixture noised to step t."""
        return self.mixture.noised(self.alpha_bar(t)).score(x.double())


def plot_score_at(ax: Axes, scores: Scores, means: Sequence[float], t: int, smoothing: float | None = None) -> None:
    """Both scores against x_t at timestep t, the noised modes dotted; with ``smoothing`` = h, also the exact score
    smoothed by h (what :func:`exact_score_samples` samples with)."""
    ab = scores.alpha_bar(t)
    x = torch.linspace(ab**0.5 * min(means) - 0.4, ab**0.5 * max(means) + 0.4, 1201, dtype=torch.float64)[:, None]
    ax.plot(x[:, 0], scores.true(x, t)[:, 0], color="k", lw=1.0, label="true score")
    if smoothing is not None:
        smoothed = ExactDenoiser(scores.mixture, scores.schedule, smoothing).score(x, t)
        ax.plot(x[:, 0], smoothed[:, 0], color="C0", lw=1.4, ls="--", label=f"true score smoothed by h = {smoothing:g}")
    ax.plot(x[:, 0], scores.learned(x, t)[:, 0], color="C1", lw=1.4, label="learned score")
    for m in means:
        ax.axvline(ab**0.5 * m, color="grey", ls=":", lw=0.8)
    ax.set(title=f"t = {t}  ($\\bar\\alpha_t$ = {ab:.4g})", xlabel="$x_t$", ylabel="score")


def plot_scores(axes: np.ndarray, scores: Scores, means: Sequence[float], times: Sequence[int]) -> None:
    """One panel per timestep (:func:`plot_score_at`)."""
    for ax, t in zip(axes.flat, times):
        plot_score_at(ax, scores, means, t)
    axes.flat[0].legend()


def error_map(scores: Scores, x_data: Tensor, t_grid: np.ndarray) -> np.ndarray:
    """|eps_learned - eps_true| over data coordinates x (x_t / sqrt(alpha_bar_t)) and timesteps: (len(t), len(x))."""
    error = np.empty((len(t_grid), len(x_data)))
    for i, t in enumerate(t_grid):
        ab = scores.alpha_bar(int(t))
        xt = (ab**0.5 * x_data)[:, None]
        eps_true = -((1 - ab) ** 0.5) * scores.true(xt, int(t))
        eps_learned = -((1 - ab) ** 0.5) * scores.learned(xt, int(t))
        error[i] = (eps_learned - eps_true).abs()[:, 0].numpy()
    return error


def max_slopes(scores: Scores, means: Sequence[float], times: Sequence[int] = SLOPE_TIMES) -> dict[str, list[float]]:
    """The largest |d score / dx| between the outer modes per timestep, true and learned (finite differences on
    20,001 points), printed side by side."""
    slopes: dict[str, list[float]] = {"true": [], "learned": []}
    for t in times:
        ab = scores.alpha_bar(t)
        x = torch.linspace(ab**0.5 * min(means), ab**0.5 * max(means), 20001, dtype=torch.float64)[:, None]
        dx = float(x[1, 0] - x[0, 0])
        slopes["true"].append(float((scores.true(x, t)[:, 0].diff() / dx).abs().max()))
        slopes["learned"].append(float((scores.learned(x, t)[:, 0].diff() / dx).abs().max()))
    return slopes


def print_slopes(slopes: Mapping[str, Sequence[float]], times: Sequence[int] = SLOPE_TIMES) -> None:
    for t, s_true, s_learned in zip(times, slopes["true"], slopes["learned"]):
        print(f"t = {t:>3}: true {fmt(s_true):>9}, learned {fmt(s_learned):>9}, ratio {s_true / s_learned:8.1f}")


# ---------------------------------------------------------------------------------------- the control
def exact_score_samples(s: Setup, mixture: GaussianMixture, h: float, settings: Settings) -> Tensor:
    """``s.n_samples`` samples (cached) from the exact score smoothed by width h (0: the exact score), through
    the same sampler, seed and sample count as the learned model's run."""
    schedule = NoiseSchedule(s.spec.schedule)
    key = {"means": s.means, "sigma": s.sigma, "schedule": s.spec.schedule, "h": h, "n": s.n_samples,
           "seed": s.seed, "device": settings.device.type}
    denoiser = ExactDenoiser(mixture, schedule, smoothing=h, device=settings.device)
    draw = lambda: sample(denoiser, schedule, s.n_samples, seed=s.seed, chunk_size=1_000_000, progress=settings.progress).x0  # noqa: E731
    return cached("exact-score-samples", key, draw, root=settings.cache_dir, code=("diffusion/exact.py", "diffusion/sampling.py"))


@dataclass(frozen=True)
class GapMasses:
    true: float
    learned: float
    smoothed: dict[float, float]  # per smoothing width, 0.0 the exact score


def gap_masses(s: Setup, mixture: GaussianMixture, learned_x: Tensor, smoothed_x: Mapping[float, Tensor]) -> GapMasses:
    """The share of samples in the gaps of every run, beside the true mixture's."""
    return GapMasses(float(true_gap_mass(mixture, s.k).sum()), float(gap_mass(learned_x, mixture, s.k).sum()),
                     {h: float(gap_mass(x, mixture, s.k).sum()) for h, x in smoothed_x.items()})


def plot_gap_masses(ax: Axes, s: Setup, g: GapMasses) -> None:
    """Gap mass against smoothing width (log-log), beside the exact, learned and true levels; a run with no
    sample in the gaps is an open triangle at half the one-sample line."""
    floor = 1 / s.n_samples  # one sample: the smallest non-zero share we can see
    hs = [h for h in s.smoothing_widths if h > 0]
    seen, empty = [h for h in hs if g.smoothed[h] > 0], [h for h in hs if g.smoothed[h] == 0]
    ax.axhline(floor, color="grey", lw=5, alpha=0.3, label="one sample in the run")
    ax.plot(seen, [g.smoothed[h] for h in seen], "o-", color="C0", label="exact score smoothed by h")
    if empty:
        ax.plot(empty, [floor / 2] * len(empty), "v", mfc="none", color="C0", label="smoothed by h: no sample in the gaps")
    if 0.0 in g.smoothed:
        ax.axhline(max(g.smoothed[0.0], floor / 2), color="C2", ls="--", label="exact score (h = 0)")
    ax.axhline(g.learned, color="C1", lw=2, label="learned score")
    ax.axhline(g.true, color="k", ls=":", label="true mixture")
    ax.set(xscale="log", yscale="log", xlabel="smoothing width h", ylabel=f"share of samples in the gaps (k = {s.k:g})",
           title="Gap mass vs smoothness of the score")
    ax.set_xticks(hs, [f"{h:g}" for h in hs])
    ax.minorticks_off()
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: the levels cross it


def print_gap_masses(g: GapMasses) -> None:
    for h, m in g.smoothed.items():
        print(f"h = {h:<5g}: gap mass {fmt(m):>9} ({m / g.true:9.1f} × true)")
    print(f"learned  : gap mass {fmt(g.learned):>9} ({g.learned / g.true:9.1f} × true)")


def matching_width(widths: Sequence[float], masses: Sequence[float], target: float) -> float:
    """The smoothing width at which a measured curve of gap mass against width reaches ``target``, by
    interpolation on log-log axes between the first two neighbouring widths (in increasing order) whose masses
    bracket it; widths with zero mass are left out (no logarithm). NaN when no pair brackets ``target``."""
    if len(widths) != len(masses):
        raise ValueError(f"widths and masses must have the same length, got {len(widths)} and {len(masses)}")
    if not target > 0:
        raise ValueError(f"target must be a positive mass, got {target}")
    points = sorted((float(h), float(m)) for h, m in zip(widths, masses) if h > 0 and m > 0)
    for (h0, m0), (h1, m1) in zip(points, points[1:]):
        if min(m0, m1) <= target <= max(m0, m1) and m0 != m1:
            w = (math.log(target) - math.log(m0)) / (math.log(m1) - math.log(m0))
            return math.exp(math.log(h0) + w * (math.log(h1) - math.log(h0)))
        if m0 == m1 == target:
            return h0
    return math.nan


@dataclass(frozen=True)
class MatchedReading:
    effective_h: float  # the width whose gap mass matches the learned model's (log-log interpolation)
    h_star: float  # effective_h rounded to 3 decimals: the width of the matched run
    matched_name: str  # the matched run's name in ``where`` and ``spread``
    where: dict[str, tuple[int, int]]  # per run: (gap samples within MIDPOINT_RADIUS of a midpoint, gap samples)
    spread: dict[str, float]  # per run: the spread of its modes
    even: float  # the midpoint share an even spread over a gap gives
    difference: tuple[float, float]  # 95% interval of learned - matched midpoint share (NaN: a run without gap samples)


def matched_reading(s: Setup, mixture: GaussianMixture, g: GapMasses, learned_x: Tensor,
                    smoothed_x: Mapping[float, Tensor], settings: Settings) -> MatchedReading:
    """The matching width h*, a run of the exact score smoothed by it, and where each run's gap samples lie (near
    the midpoints or near the modes) and how wide its modes are, printed as a table."""
    effective_h = matching_width(list(g.smoothed), list(g.smoothed.values()), g.learned)
    print(f"the learned score behaves like the exact score smoothed by h ≈ {fmt(effective_h)}")
    h_star = round(effective_h, 3)
    matched_name = f"exact score smoothed by h* = {h_star:g}"
    matched_x = exact_score_samples(s, mixture, h_star, settings) if h_star > 0 else None
    runs = {"learned score": learned_x, matched_name: matched_x, "exact score (h = 0)": smoothed_x.get(0.0)}
    runs = {name: x for name, x in runs.items() if x is not None}
    gap_length = float(gap_lengths(mixture, s.k).mean())
    even = min(1.0, 2 * MIDPOINT_RADIUS / gap_length)  # the share an even spread over a gap puts near its midpoint
    where = {name: gap_midpoint_share(x, mixture, s.k) for name, x in runs.items()}
    spread = {name: within_mode_spread(x, mixture, s.k) for name, x in runs.items()}
    print(f"{'run':<34} | in gaps | within {MIDPOINT_RADIUS:g} of a midpoint | mode spread")
    for name in runs:
        near, total = where[name]
        low, high = wilson_interval(near, total) if total else (float("nan"), float("nan"))
        share = f"{near / total:6.1%} ({low:.1%} to {high:.1%})" if total else "     no gap samples"
        print(f"{name:<34} | {total:>7,} | {share:<25} | {spread[name]:>11.4f}")
    say(f"in gaps: samples in the gaps between modes; within {MIDPOINT_RADIUS:g} of a midpoint: their share, with its 95% "
        f"interval; mode spread: the standard deviation of the samples around their mode (true sigma {s.sigma:g})")
    print(f"an even spread over a gap puts {even:.0%} of its samples within {MIDPOINT_RADIUS:g} of the midpoint")
    difference = (float("nan"), float("nan"))
    if matched_name in where and min(where["learned score"][1], where[matched_name][1]) > 0:
        difference = difference_interval(*where["learned score"], *where[matched_name])
        (a, n_a), (b, n_b) = where["learned score"], where[matched_name]
        say(f"learned minus matched share: {a / n_a - b / n_b:+.1%} (95% interval {difference[0]:+.1%} to "
            f"{difference[1]:+.1%}; 0 inside: no difference beyond counting noise)")
    return MatchedReading(effective_h, h_star, matched_name, where, spread, even, difference)


FIT_TIMES = (0, 1, 2, 5, 10, 20, 50)  # timesteps of the score fit
FIT_WIDTHS = tuple(round(0.005 * i, 3) for i in range(61))  # widths h tried: 0 to 0.3


@dataclass(frozen=True)
class ScoreFit:
    """How far the learned score is from the exact score smoothed by each width, over the gaps, per timestep."""

    times: tuple[int, ...]
    widths: tuple[float, ...]
    rms: np.ndarray  # (times, widths): root mean square of learned - smoothed over the gap points

    def best(self) -> list[float]:
        """Per timestep, the width whose smoothed score lies closest to the learned one."""
        return [self.widths[int(i)] for i in self.rms.argmin(1)]


def score_fit(scores: Scores, s: Setup, times: Sequence[int] = FIT_TIMES,
              widths: Sequence[float] = FIT_WIDTHS) -> ScoreFit:
    """A second reading of the network's smoothing, from its score rather than its samples: for each t, the
    distance between the learned score and the exact score smoothed by each width h, over 2,001 data points
    between the outer modes that lie in the gaps (as :func:`mi_lib.measure.metrics.gap_mass` draws them), moved
    to x_t. The samples play no part, so nothing here was fitted to the gap masses of :func:`matching_width`."""
    grid = torch.linspace(min(s.means), max(s.means), 2001, dtype=torch.float64)[:, None]
    points, lo, hi = gap_points(grid, scores.mixture, s.k)
    points = points[((points > lo) & (points < hi)).any(1)]
    rms = np.empty((len(times), len(widths)))
    for i, t in enumerate(times):
        x = scores.alpha_bar(t) ** 0.5 * points
        learned = scores.learned(x, t)
        for j, h in enumerate(widths):
            smoothed = ExactDenoiser(scores.mixture, scores.schedule, h).score(x, t)
            rms[i, j] = float((learned - smoothed).square().mean().sqrt())
    return ScoreFit(tuple(times), tuple(widths), rms)


def print_score_fit(fit: ScoreFit, m: MatchedReading) -> None:
    """Per timestep: the best-fitting width, and the learned score's distance from the exact score and from the
    exact score smoothed by that width."""
    print(f"{'':>3} | {'':>14} | the learned score's RMS distance from")
    print(f"{'t':>3} | best-fitting h | the exact score | the smoothed one")
    for t, h, row in zip(fit.times, fit.best(), fit.rms):
        exact, smoothed = float(row[0]), float(row.min())
        print(f"{t:>3} | {h:>14.3f} | {fmt(exact):>15} | {fmt(smoothed):>7} ({exact / smoothed:.1f}× closer)")
    say(f"the width matched on the gap mass of the samples (above): h* = {fmt(m.effective_h)}")


def plot_score_fit(ax: Axes, fit: ScoreFit, m: MatchedReading) -> None:
    """The best-fitting width per timestep beside h*."""
    ax.plot(fit.times, fit.best(), "o-", color="C0", label="best fit to the learned score at t")
    ax.axhline(m.effective_h, color="C1", ls="--", label="h*: matches the learned gap mass")
    ax.set(xscale="symlog", xlabel="timestep t", ylabel="smoothing width h", ylim=(0, max(fit.widths)),
           xlim=(0, 1.3 * max(fit.times)), title="How smooth is the learned score?")
    ax.legend(fontsize=8)


def claimed_numbers(g: GapMasses, m: MatchedReading, slopes: Mapping[str, Sequence[float]],
                    fit: ScoreFit) -> dict[str, float]:
    """What ``results/04_score_smoothness.json`` records."""
    runs = {"learned": "learned score", "matched": m.matched_name, "exact": "exact score (h = 0)"}
    return {
        "true_gap_mass": g.true,
        "exact_gap_mass": g.smoothed.get(0.0, float("nan")),
        "learned_gap_mass": g.learned,
        **{f"smoothed_gap_mass_h{h:g}": mass for h, mass in g.smoothed.items() if h > 0},
        "effective_smoothing_width": m.effective_h,
        **{f"{key}_midpoint_share": m.where[name][0] / max(m.where[name][1], 1)
           for key, name in runs.items() if key != "exact" and name in m.where},
        "even_spread_midpoint_share": m.even,
        "midpoint_share_difference_low": m.difference[0],
        "midpoint_share_difference_high": m.difference[1],
        **{f"{key}_mode_spread": m.spread[name] for key, name in runs.items() if name in m.spread},
        "slope_ratio_true_over_learned_t0": slopes["true"][0] / slopes["learned"][0],
        **{f"score_fit_width_t{t}": h for t, h in zip(fit.times, fit.best())},
    }


def gap_midpoint_share(x: Tensor, mixture: GaussianMixture, k: float = DEFAULT_K, radius: float = MIDPOINT_RADIUS) -> tuple[int, int]:
    """Where a 1D sample's gap mass lies: (how many of the samples in the gaps of :func:`mi_lib.measure.metrics.gap_mass` lie within
    ``radius`` of their gap's midpoint, how many lie in the gaps). Samples spread evenly over a gap of length L
    give 2 radius / L of them there; a stretched tail of each mode gives fewer. x: (N, 1)."""
    v, lo, hi = gap_points(x, mixture, k)
    inside = (v > lo) & (v < hi)  # (N, K-1)
    near_mid = inside & ((v - (lo + hi) / 2).abs() <= radius)
    return int(near_mid.sum()), int(inside.sum())


def within_mode_spread(x: Tensor, mixture: GaussianMixture, k: float = DEFAULT_K) -> float:
    """The standard deviation of 1D samples about their nearest mode, over those within k sigma of it (a
    normal of the modes' sigma, cut at k sigma, gives sigma times 0.9989 at k = 4): how wide the generated modes are."""
    dist, mode = mixture.nearest_mode_distance(x.to(torch.float64).cpu())
    near = dist <= check_k(k)
    offset = x[:, 0].to(torch.float64).cpu()[near] - mixture.means[mode[near], 0]
    return float(offset.square().mean().sqrt())
