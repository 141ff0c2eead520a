"""Chapter 2, *Mode interpolation in 1D*: the paper's Fig. 2 measured.

A DDPM trained on three narrow Gaussians puts far more samples *between* neighbouring modes than the data has.
:func:`gap_table` measures the mass in each gap (farther than k sigma from both neighbours) against its exact
value, per training-set size; :func:`moved_reading` moves one mode away and compares the gaps in all (against a
symmetric blur of each mode, which fills both alike) and per unit length (against an even smear);
:func:`tail_reading` counts which side of each mode its tail samples fall on. :func:`claimed_numbers` gathers
what ``results/02_mode_interpolation_1d.json`` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.axes import Axes
from torch import Tensor

from .. import plotting
from ..datasets.mixtures import GaussianMixture, mixture_1d
from ..diffusion.models import MixtureModelSpec
from ..diffusion.train import TrainConfig
from ..measure.metrics import DEFAULT_K, DensityRatio, density_ratio, gap_lengths, gap_mass, true_gap_mass, wilson_interval
from ..params import choice_parameter, number_parameter, sequence_parameter
from ..storage.results import format_number as fmt
from ..storage.results import say

__all__ = ["side_tails", "SCALES", "Setup", "setup", "gap_names", "gap_table", "moved_reading", "tail_reading", "plot_zoom",
           "claimed_numbers"]

SCALES: dict[str, dict[str, Any]] = {
    # CI: the specs of the checkpoints shipped in data/checkpoints (scripts/make_checkpoints.py)
    "ci": dict(n_train_list=[2_000, 20_000], n_samples=10_000, train=TrainConfig(steps=5_000, batch_size=2_000)),
    # paper: the official code's training (20k steps, batch 10k); Fig. 2 draws 100M samples, we draw 10M
    "paper": dict(n_train_list=[25_000, 50_000, 100_000, 500_000], n_samples=10_000_000, train=TrainConfig()),
}


@dataclass(frozen=True)
class Setup:
    scale: str
    seed: int
    means: list[float]
    moved_means: list[float]
    sigma: float
    k: float
    n_train_list: list[int]
    n_samples: int
    train: TrainConfig

    @property
    def mixture(self) -> GaussianMixture:
        return mixture_1d(self.means, self.sigma)

    @property
    def moved(self) -> GaussianMixture:
        return mixture_1d(self.moved_means, self.sigma)

    @property
    def specs(self) -> dict[int, MixtureModelSpec]:
        """One model per training-set size."""
        return {n: MixtureModelSpec("1d", tuple(self.means), self.sigma, n_train=n, data_seed=self.seed, train=self.train)
                for n in self.n_train_list}

    @property
    def moved_spec(self) -> MixtureModelSpec:
        """The moved mixture at the largest training-set size."""
        return MixtureModelSpec("1d", tuple(self.moved_means), self.sigma, n_train=max(self.n_train_list), data_seed=self.seed,
                                train=self.train)


def setup(scale: str, seed: int, means: Sequence[float] | str, moved_means: Sequence[float] | str, sigma: float, k: float,
          n_train_list: Sequence[int] | int | str | None, n_samples: int | None) -> Setup:
    """Check the notebook's parameters (lists as papermill passes them, -y lists or -p strings), or one clear error
    naming the parameter, before any work."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    means, moved_means = list(sequence_parameter(means, "means")), list(sequence_parameter(moved_means, "moved_means"))
    for name, values in (("means", means), ("moved_means", moved_means)):
        if len(set(values)) < 2:
            raise ValueError(f"{name} must hold at least two different modes (a gap lies between two), got {values!r}")
    sigma = number_parameter(sigma, "sigma", above=0)
    size = SCALES[scale]
    n_train_list = sorted(set(sequence_parameter(size["n_train_list"] if n_train_list is None else n_train_list, "n_train_list", int)))
    if n_train_list[0] < 1:
        raise ValueError(f"n_train_list must hold positive training-set sizes, got {n_train_list}")
    n_samples = size["n_samples"] if n_samples is None else number_parameter(n_samples, "n_samples", int, at_least=1)
    if scale == "paper" and len(n_train_list) < 2:
        raise ValueError(f"at paper scale the chapter asserts a trend in N: n_train_list needs at least two sizes, got {n_train_list}")
    if number_parameter(k, "k") < 3:
        raise ValueError(f"k must be at least 3, got {k!r}: closer in, the 'gap' is mostly the modes' own Gaussian tails "
                         "(the claims' bar, 10x the true gap mass, was set at k = 4)")
    return Setup(scale, seed, means, moved_means, sigma, k, n_train_list, n_samples, size["train"])


def gap_names(means: Sequence[float]) -> list[str]:
    """"a-b" for each pair of neighbouring modes."""
    mu = sorted(means)
    return [f"{a:g}-{b:g}" for a, b in zip(mu[:-1], mu[1:])]


def gap_table(s: Setup, samples: Mapping[int, Tensor], true_gaps: Tensor) -> dict[int, Tensor]:
    """The generated mass in each gap per training-set size, beside the true mass (printed); returns it."""
    names = gap_names(s.means)
    gaps = {n: gap_mass(x, s.mixture, s.k) for n, x in samples.items()}
    print(f"{'N':>9} | " + " | ".join(f"gap {g}: generated (samples)   ×true" for g in names))
    for n, g in gaps.items():
        print(f"{n:>9,} | " + " | ".join(f"{fmt(float(v)):>9} ({round(float(v) * s.n_samples):>7,}) {float(v / t):7.0f}"
                                         for v, t in zip(g, true_gaps)))
    print(f"{'true':>9} | " + " | ".join(f"{fmt(float(t)):>9} ({float(t) * s.n_samples:>7.1f})        " for t in true_gaps))
    total = {n: float(g.sum()) for n, g in gaps.items()}
    trend = all(total[a] > total[b] for a, b in zip(s.n_train_list, s.n_train_list[1:]))
    print(f"total gap mass shrinks as N grows: {'yes' if trend else 'no'} "
          f"({', '.join(f'N={n:,}: {fmt(v)}' for n, v in total.items())})")
    return gaps


@dataclass
class MovedReading:
    gaps: Tensor  # generated mass per gap of the moved mixture
    mass: DensityRatio  # mass in the wide gap / in the narrow one, with a 95% interval (a symmetric blur: about 1)
    density: DensityRatio  # per unit length, wide / narrow, with a 95% interval (an even smear: 1)
    comparable: bool  # gaps of different lengths, with samples in them


def moved_reading(s: Setup, moved_samples: Tensor, gaps: Mapping[int, Tensor]) -> MovedReading:
    """The moved mixture's gaps: mass and length; the wide gap's mass against the narrow one's (a symmetric blur of
    each mode puts the same two tails into either gap: about 1) and its density per unit length (an even smear along
    the line: 1), each with a 95% interval; printed."""
    names, moved = gap_names(s.moved_means), s.moved
    moved_gaps = gap_mass(moved_samples, moved, s.k)
    lengths = gap_lengths(moved, s.k)
    counts = [round(float(v) * s.n_samples) for v in moved_gaps]
    for name, v, c, length, t in zip(names, moved_gaps, counts, lengths, true_gap_mass(moved, s.k)):
        print(f"gap {name}: length {float(length):.2f}, generated {fmt(float(v))} ({c} samples), true {fmt(float(t))}")
    wide, narrow = int(lengths.argmax()), int(lengths.argmin())
    comparable = wide != narrow and counts[wide] + counts[narrow] > 0
    nan = DensityRatio(float("nan"), float("nan"), float("nan"))
    mass = density_ratio(counts[wide], 1.0, counts[narrow], 1.0) if comparable else nan
    density = density_ratio(counts[wide], float(lengths[wide]), counts[narrow], float(lengths[narrow])) if comparable else nan
    say(f"mass in the wide gap {names[wide]} / mass in the narrow gap {names[narrow]}: {fmt(mass.ratio)} (95% interval "
        f"{fmt(mass.low)} to {fmt(mass.high)}; a symmetric blur of each mode: about 1)")
    say(f"density per unit length, wide / narrow: {fmt(density.ratio)} (95% interval {fmt(density.low)} to "
          f"{fmt(density.high)}; an even smear: 1)")
    first = gap_names(s.means)[0]
    if names[0] == first and s.moved_spec.n_train in gaps:
        n_first = round(float(gaps[s.moved_spec.n_train][0]) * s.n_samples)
        print(f"gap {first}: {counts[0]} samples here, {n_first} in the N = {s.moved_spec.n_train:,} model of means {s.means}")
    return MovedReading(moved_gaps, mass, density, comparable)


@dataclass
class TailReading:
    inner: int  # the end modes' tail samples on the side facing a neighbour
    outer: int
    inner_low: float  # lower end of the inner share's 95% interval
    near: int  # the moved mixture's middle modes: tail samples on the side facing the nearer neighbour
    far: int
    near_low: float


def tail_reading(s: Setup, x: Tensor, moved_samples: Tensor) -> TailReading:
    """Samples k to k + 2 sigma from each mode, left and right: a blurred mode is symmetric, interpolation leans
    towards the neighbours (printed)."""
    tails = side_tails(x, s.mixture, s.k, s.k + 2)  # (modes, [left, right]), modes sorted
    inner, outer = int(tails[0, 1] + tails[-1, 0]), int(tails[0, 0] + tails[-1, 1])
    inner_low, _ = wilson_interval(inner, inner + outer)
    say(f"means {s.means}, N = {max(s.n_train_list):,}: samples {s.k:g}-{s.k + 2:g} sigma from each mode, left / right: "
          + ", ".join(f"{m:g}: {int(l)}/{int(r)}" for m, (l, r) in zip(sorted(s.means), tails.tolist())))
    say(f"end modes: {inner} on the inner sides, {outer} on the outer; inner share {inner / max(inner + outer, 1):.1%} "
          f"(95% interval from {inner_low:.1%}; a symmetric blur: 50%)")
    moved_tails = side_tails(moved_samples, s.moved, s.k, s.k + 2)
    mu = sorted(s.moved_means)
    near = far = 0  # interior modes whose neighbours sit at different distances: the side facing the nearer one
    for j in range(1, len(mu) - 1):
        left_gap, right_gap = mu[j] - mu[j - 1], mu[j + 1] - mu[j]
        if left_gap != right_gap:
            side = 0 if left_gap < right_gap else 1
            near, far = near + int(moved_tails[j, side]), far + int(moved_tails[j, 1 - side])
    near_low = wilson_interval(near, near + far)[0] if near + far else float("nan")
    say(f"means {s.moved_means}: left / right " + ", ".join(f"{m:g}: {int(l)}/{int(r)}" for m, (l, r) in zip(mu, moved_tails.tolist()))
          + f"; middle modes, side facing the nearer neighbour: {near}, the farther: {far} (share {near / max(near + far, 1):.1%}, "
          f"95% interval from {near_low:.1%})")
    return TailReading(inner, outer, inner_low, near, far, near_low)


def plot_zoom(ax: Axes, s: Setup, x: Tensor, mix: GaussianMixture, title: str, zoom: str, bins: int) -> None:
    """The histogram against the true density over all modes or one gap (the widget), the gaps shaded."""
    mu = sorted(mix.means[:, 0].tolist())
    spans = {"all": (mu[0] - 0.5, mu[-1] + 0.5), **{f"gap {a:g}-{b:g}": (a, b) for a, b in zip(mu[:-1], mu[1:])}}
    lo, hi = spans.get(zoom, spans["all"])
    title = title if zoom in spans else f"{title} (it has no {zoom}: all shown)"
    plotting.hist_vs_density(ax, x, mix, bins=bins, x_range=(lo, hi), log=True, title=title)
    for a, b in zip(mu[:-1], mu[1:]):
        ax.axvspan(a + s.k * s.sigma, b - s.k * s.sigma, color="C3", alpha=0.08)
    ax.set_ylim(1e-4, 20)


def claimed_numbers(s: Setup, gaps: Mapping[int, Tensor], true_gaps: Tensor, moved: MovedReading,
                    tails: TailReading) -> dict[str, float]:
    """What ``results/02_mode_interpolation_1d.json`` records."""
    names = gap_names(s.means)
    return {
        **{f"gap_mass_{g}_N{n}": float(v) for n, gv in gaps.items() for g, v in zip(names, gv)},
        **{f"true_gap_mass_{g}": float(t) for g, t in zip(names, true_gaps)},
        "min_excess_largest_N": float((gaps[max(s.n_train_list)] / true_gaps).min()),
        **{f"moved_gap_mass_{g}": float(v) for g, v in zip(gap_names(s.moved_means), moved.gaps)},
        "moved_wide_over_narrow": moved.mass.ratio,
        "moved_mass_ratio_high": moved.mass.high,
        "moved_density_ratio": moved.density.ratio,
        "moved_density_ratio_high": moved.density.high,
        "tails_inner": tails.inner,
        "tails_outer": tails.outer,
        "tails_inner_share_low": tails.inner_low,
        "moved_tail_near": tails.near,
        "moved_tail_far": tails.far,
        "moved_tail_near_share_low": tails.near_low,
    }


def side_tails(x: Tensor, mixture: GaussianMixture, lo: float = DEFAULT_K, hi: float = DEFAULT_K + 2.0) -> Tensor:
    """Samples lo..hi sigma from each mode of a 1D mixture, on its left and on its right: (K, 2) long, modes
    sorted by position. A mode blurred symmetrically has as many on either side; one pulled towards a
    neighbour has more on that side. x: (N, 1)."""
    if mixture.dim != 1 or x.dim() != 2 or x.shape[1] != 1:
        raise ValueError(f"side_tails needs 1D points (N, 1) and a 1D mixture, got x {tuple(x.shape)}, D = {mixture.dim}")
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= lo < hi, got {lo}, {hi}")
    order = torch.argsort(mixture.means[:, 0])
    mu, s = mixture.means[order, 0], mixture.sigma[order]
    d = (x[:, 0].to(torch.float64).cpu()[:, None] - mu[None, :]) / s[None, :]  # (N, K), in sigma
    left = ((d <= -lo) & (d >= -hi)).sum(0)
    right = ((d >= lo) & (d <= hi)).sum(0)
    return torch.stack([left, right], dim=1)
