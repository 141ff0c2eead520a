"""Chapter 3, *Mode interpolation in 2D*: the paper's Fig. 3 measured.

On a 5x5 grid and a diamond of Gaussians, the out-of-support samples a DDPM generates lie *between nearest
neighbours*. :func:`segment_shares` assigns each such sample to the segment between two modes it lies on (from
geometry alone), and compares nearest-neighbour segments with second-nearest ones per unit length against two
nulls: an even spread along the segments (:func:`tube_lengths`) and an isotropic blur of the same samples
(:func:`rotated_about_nearest_mode`); :func:`nearest_neighbour_alignment` tests the samples' direction.
:func:`claimed_numbers` gathers what ``results/03_mode_interpolation_2d.json`` records.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from .. import plotting
from ..datasets.mixtures import GaussianMixture
from ..diffusion.models import MixtureModelSpec
from ..diffusion.nets import MLPConfig
from ..diffusion.train import TrainConfig
from ..measure.metrics import DEFAULT_K, DensityRatio, ModeSegments, density_ratio, mode_segments, out_of_support, out_of_support_mass, segment_of, wilson_interval
from ..params import choice_parameter, number_parameter
from ..storage.results import format_number as fmt

__all__ = ["SCALES", "LAYOUTS", "SHELL", "HALF_ANGLE", "Setup", "setup", "segment_order", "tube_lengths",
           "rotated_about_nearest_mode", "nearest_neighbour_alignment", "segment_shares", "print_shares",
           "print_nearest_shares", "plot_generated", "plot_segments", "claimed_numbers"]

SCALES: dict[str, dict[str, Any]] = {
    # CI: the specs of the checkpoints shipped in data/checkpoints (scripts/make_checkpoints.py)
    "ci": dict(n_train=20_000, n_samples=10_000, train=TrainConfig(steps=30_000, batch_size=2_000)),
    # paper: the official 2D training (100k points, 100k steps at batch 10k); a million samples
    "paper": dict(n_train=100_000, n_samples=1_000_000, train=TrainConfig(steps=100_000)),
}
LAYOUTS = ("grid", "diamond")


@dataclass(frozen=True)
class Setup:
    scale: str
    seed: int
    k: float
    between: float
    max_order: int
    n_null: int
    n_train: int
    n_samples: int
    train: TrainConfig

    @property
    def specs(self) -> dict[str, MixtureModelSpec]:
        """One model per layout, the official 3-block MLP."""
        return {name: MixtureModelSpec(name, n_train=self.n_train, data_seed=self.seed, model=MLPConfig(data_dim=2),
                                       train=self.train) for name in LAYOUTS}

    @property
    def mixtures(self) -> dict[str, GaussianMixture]:
        return {name: spec.mixture() for name, spec in self.specs.items()}


def setup(scale: str, seed: int, k: float, between: float, max_order: int, n_null: int, n_train: int | None,
          n_samples: int | None) -> Setup:
    """Check the notebook's parameters, or one clear error naming the parameter, before any work."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    size = SCALES[scale]
    n_train = size["n_train"] if n_train is None else number_parameter(n_train, "n_train", int, at_least=1)
    n_samples = size["n_samples"] if n_samples is None else number_parameter(n_samples, "n_samples", int, at_least=1)
    k = number_parameter(k, "k", above=0)
    max_order = number_parameter(max_order, "max_order", int, at_least=2)  # nearest against second-nearest
    n_null = number_parameter(n_null, "n_null", int, at_least=10)
    if number_parameter(between, "between") < 0 or between >= 0.5:
        raise ValueError(f"between must lie in [0, 0.5): a margin of half the spacing at both ends leaves nothing of "
                         f"a nearest-neighbour segment, got {between!r}")
    return Setup(scale, seed, k, float(between), max_order, n_null, n_train, n_samples, size["train"])


# ---------------------------------------------------------------------------------------- geometry and nulls
def segment_order(x: Tensor, mixture: GaussianMixture, segments: ModeSegments, k: float = DEFAULT_K,
                  end_margin: float | None = None) -> Tensor:
    """The order (1 = nearest neighbours, ...) of the segment each point lies on (:func:`mi_lib.measure.metrics.segment_of`,
    same arguments), 0 for a point on none. x: (N, D) -> (N,) long."""
    on = segment_of(x, mixture, segments, k, end_margin)
    return torch.where(on >= 0, segments.order[on.clamp(min=0)], torch.zeros_like(on))


def tube_lengths(segments: ModeSegments, mixture: GaussianMixture, k: float = DEFAULT_K, end_margin: float | None = None, *,
                 n_points: int = 500_000, seed: int = 0) -> Tensor:
    """The effective length of each segment's tube (:func:`mi_lib.measure.metrics.segment_of`, same ``k`` and
    ``end_margin``) in a 2D mixture: the area of the plane that ``segment_of`` assigns to the segment, divided by
    the tube's width 2 k sigma. A model that spread its between-mode samples evenly over the plane near the
    segments would put them in proportion to these lengths, so they are the baseline for comparing segments of
    different length. Where no other tube overlaps, this is the segment less ``end_margin`` at both ends; where
    tubes overlap (diagonals crossing at a cell's centre, tubes meeting near a mode) each shared patch counts
    once, for the segment ``segment_of`` gives it. Measured with ``n_points`` uniform points (seeded) in the box
    the tubes lie in: a relative error of about 1/sqrt(points in a tube). (M,) float64."""
    if mixture.dim != 2:
        raise ValueError(f"tube lengths are measured for 2D mixtures, got D={mixture.dim}")
    n_points = number_parameter(n_points, "n_points", int, at_least=1)
    radius = number_parameter(k, "k", above=0) * float(mixture.sigma.max())
    lo, hi = mixture.means.min(0).values - radius, mixture.means.max(0).values + radius  # every tube lies inside
    x = lo + (hi - lo) * torch.rand(n_points, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    on = segment_of(x, mixture, segments, k, end_margin)
    share = torch.bincount(on[on >= 0], minlength=len(segments.pairs)).to(torch.float64) / n_points
    return share * float((hi - lo).prod()) / (2 * radius)


def rotated_about_nearest_mode(x: Tensor, mixture: GaussianMixture, generator: torch.Generator) -> Tensor:
    """The isotropic-blur null of a 2D sample: each point turned about its nearest mode by an angle drawn
    uniformly (``generator``), keeping its distance to that mode. A model that only blurred its modes, in no
    preferred direction, would put its out-of-support samples where these land. x: (N, 2) -> (N, 2) float64."""
    if mixture.dim != 2 or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"rotated_about_nearest_mode needs 2D points and a 2D mixture, got x {tuple(x.shape)}, "
                         f"D = {mixture.dim}")
    x64 = x.to(torch.float64).cpu()
    _, mode = mixture.nearest_mode_distance(x64)
    centre = mixture.means[mode]
    theta = torch.rand(len(x64), generator=generator, dtype=torch.float64) * (2 * math.pi)
    r = x64 - centre
    c, s_ = torch.cos(theta), torch.sin(theta)
    return centre + torch.stack([c * r[:, 0] - s_ * r[:, 1], s_ * r[:, 0] + c * r[:, 1]], dim=1)


SHELL, HALF_ANGLE = (10.0, 20.0), 22.5  # the samples SHELL sigma from their mode; the cone about each direction


def nearest_neighbour_alignment(x: Tensor, mixture: GaussianMixture, shell: tuple[float, float] = SHELL,
                                half_angle: float = HALF_ANGLE) -> tuple[int, int, float]:
    """How many 2D points at ``shell`` sigma from their nearest mode lie within ``half_angle`` degrees of a
    direction from that mode to one of *its* nearest neighbours, of how many in the shell, and the share an
    isotropic spread would give (each point's mode's arcs, a union of 2 x half_angle per neighbour direction,
    over 360 degrees, averaged over the points). Returns (aligned, in_shell, expected share)."""
    if mixture.dim != 2:
        raise ValueError(f"nearest_neighbour_alignment needs a 2D mixture, got D = {mixture.dim}")
    x64 = x.to(torch.float64).cpu()
    dist, mode = mixture.nearest_mode_distance(x64)
    sel = (dist >= shell[0]) & (dist <= shell[1])
    x64, mode = x64[sel], mode[sel]
    mu = mixture.means
    gaps = torch.cdist(mu, mu)
    gaps.fill_diagonal_(float("inf"))
    nearest = gaps.min(1).values
    grid = torch.arange(0.0, 360.0, 0.1, dtype=torch.float64)  # for each mode, the share of directions its arcs cover
    covered, directions = [], []
    for i in range(len(mu)):
        nbr = (gaps[i] <= nearest[i] * (1 + 1e-6)).nonzero()[:, 0]
        d = torch.rad2deg(torch.atan2(mu[nbr, 1] - mu[i, 1], mu[nbr, 0] - mu[i, 0]))
        directions.append(d)
        diff = (grid[:, None] - d[None, :] + 180.0) % 360.0 - 180.0
        covered.append(float((diff.abs() <= half_angle).any(1).double().mean()))
    angle = torch.rad2deg(torch.atan2(x64[:, 1] - mu[mode, 1], x64[:, 0] - mu[mode, 0]))
    aligned = sum(bool((((a - directions[m] + 180.0) % 360.0 - 180.0).abs() <= half_angle).any())
                  for a, m in zip(angle.tolist(), mode.tolist()))
    expected = float(np.mean([covered[m] for m in mode.tolist()])) if len(mode) else float("nan")
    return aligned, int(sel.sum()), expected


# ---------------------------------------------------------------------------------------- the chapter's reading
def segment_shares(s: Setup, mixture: GaussianMixture, samples: Tensor) -> dict[str, float]:
    """One layout's reading: the out-of-support samples between two modes, their split between nearest and
    second-nearest segments against an even spread and the isotropic blur (``s.n_null`` turned copies), their
    direction, and for a layout with horizontal non-neighbour segments (the diamond) the density there."""
    x = samples[out_of_support(samples, mixture, s.k)]
    segs = mode_segments(mixture, clearance=s.k).up_to(s.max_order)
    margin = s.between * float(segs.length.min())
    flat = torch.minimum(segs.angle, 180 - segs.angle) < 1e-6
    horizontal_segs = (segs.order > 1) & flat  # the non-neighbour segments along the x-axis

    def counts(points: Tensor) -> tuple[int, int, int, int]:  # on nearest, second-nearest, horizontal; between
        on = segment_of(points, mixture, segs, s.k, end_margin=margin)  # the segment each sample lies on, or -1
        order = torch.where(on >= 0, segs.order[on.clamp(min=0)], torch.zeros_like(on))
        on_horizontal = (on >= 0) & horizontal_segs[on.clamp(min=0)]
        return int((order == 1).sum()), int((order == 2).sum()), int(on_horizontal.sum()), int((order > 0).sum())

    tube = tube_lengths(segs, mixture, s.k, end_margin=margin)
    l1, l2, lh = (float(tube[sel].sum()) for sel in (segs.order == 1, segs.order == 2, horizontal_segs))
    n1, n2, nh, n_between = counts(x)
    turn = torch.Generator().manual_seed(s.seed + 2)  # the isotropic-blur null: mean counts over n_null turned copies
    null = np.mean([counts(rotated_about_nearest_mode(x, mixture, turn)) for _ in range(s.n_null)], axis=0)
    aligned, in_shell, isotropic = nearest_neighbour_alignment(x, mixture)
    nan = DensityRatio(math.nan, math.nan, math.nan)
    near_vs_second = density_ratio(n1, l1, n2, l2) if n1 + n2 and l1 > 0 and l2 > 0 else nan  # NaN: nothing to compare
    n = len(samples)
    out = {
        "out_of_support": len(x) / n,
        "true_out_of_support": out_of_support_mass(mixture, s.k),
        "between_modes": n_between / n,
        "nearest_neighbour": n1 / max(n_between, 1),
        "nearest_neighbour_even_spread": l1 / (l1 + l2),
        "second_nearest": n2 / max(n_between, 1),
        "n_between": n_between,
        "density_ratio_nearest_vs_second": near_vs_second.ratio,
        "density_ratio_nearest_vs_second_low": near_vs_second.low,
        "nearest_neighbour_mass": n1 / n,
        "null_density_ratio_nearest_vs_second": (null[0] / l1) / (null[1] / l2) if null[1] > 0 else math.inf,
        "aligned_share": aligned / max(in_shell, 1),
        "aligned_share_low": wilson_interval(aligned, in_shell)[0] if in_shell else math.nan,
        "aligned_share_isotropic": isotropic,
        "n_in_shell": in_shell,
        "nearest_spacing": float(segs.length.min()),
    }
    if lh > 0:  # a layout with horizontal non-neighbour segments (the diamond)
        horizontal_vs_near = density_ratio(nh, lh, n1, l1) if nh + n1 and l1 > 0 else nan
        out |= {"horizontal_non_neighbour_mass": nh / n,
                "density_ratio_horizontal_vs_nearest": horizontal_vs_near.ratio,
                "density_ratio_horizontal_vs_nearest_high": horizontal_vs_near.high,
                "null_density_ratio_horizontal_vs_nearest": (null[2] / lh) / (null[0] / l1) if null[0] > 0 else math.nan}
    return out


def print_shares(shares: Mapping[str, Mapping[str, float]]) -> None:
    """The table of shares (of the samples between two modes: the share on nearest-neighbour segments, beside an
    even spread's, and on second-nearest ones), then per layout the density ratio and the alignment, then the diamond's horizontal
    segments, each beside its nulls (lines wrapped at 88 characters, the book's column)."""
    print(f"{'layout':>8} | out of support (true) | between modes (n) | nearest (even) | 2nd-nearest")
    for name, s in shares.items():
        print(f"{name:>8} | {fmt(s['out_of_support']):>6} ({fmt(s['true_out_of_support']):>8})     | "
              f"{fmt(s['between_modes']):>10} ({s['n_between']:>4}) | "
              f"{s['nearest_neighbour']:>6.1%} ({s['nearest_neighbour_even_spread']:.1%}) | "
              f"{s['second_nearest']:>11.1%}")
    lines = []
    for name, s in shares.items():
        lines.append(f"{name}: samples per unit tube length, nearest-neighbour / second-nearest segments: "
                     f"{fmt(s['density_ratio_nearest_vs_second'])} (95% interval from "
                     f"{fmt(s['density_ratio_nearest_vs_second_low'])}; an even spread: 1; an isotropic blur: "
                     f"{fmt(s['null_density_ratio_nearest_vs_second'])})")
    for name, s in shares.items():
        lines.append(f"{name}: nearest-neighbour spacing {s['nearest_spacing']:.3f}; of the {s['n_in_shell']} "
                     f"samples {SHELL[0]:g}-{SHELL[1]:g} sigma from their mode, {s['aligned_share']:.1%} lie within {HALF_ANGLE:g} degrees of a "
                     f"nearest-neighbour direction (95% interval from {s['aligned_share_low']:.1%}; an isotropic "
                     f"spread: {s['aligned_share_isotropic']:.1%})")
    d = shares.get("diamond", {})
    if "density_ratio_horizontal_vs_nearest" in d:  # the diamond's horizontal non-neighbour segments
        lines.append(f"diamond: horizontal (non-neighbour) segments / nearest-neighbour segments, per unit length: "
                     f"{fmt(d['density_ratio_horizontal_vs_nearest'])} (95% interval up to "
                     f"{fmt(d['density_ratio_horizontal_vs_nearest_high'])}; an isotropic blur: "
                     f"{fmt(d['null_density_ratio_horizontal_vs_nearest'])}); share of all samples on them: "
                     f"{fmt(d['horizontal_non_neighbour_mass'])} against {fmt(d['nearest_neighbour_mass'])} on "
                     f"nearest-neighbour segments")
    for line in lines:
        print(textwrap.fill(line, width=88, subsequent_indent="    "))


def print_nearest_shares(shares: Mapping[str, Mapping[str, float]]) -> None:
    """The share of between-mode samples on nearest-neighbour segments (recorded, not asserted) beside what an
    even spread and the isotropic blur give: the blur alone already puts more than half there."""
    for name, s in shares.items():
        even, blur_ratio = s["nearest_neighbour_even_spread"], s["null_density_ratio_nearest_vs_second"]
        print(textwrap.fill(f"{name}: between-mode samples on nearest-neighbour segments {s['nearest_neighbour']:.1%}; "
                            f"an even spread along the segments gives {even:.1%}, the isotropic blur "
                            f"{blur_ratio * even / (blur_ratio * even + 1 - even):.1%}", width=88,
                            subsequent_indent="    "))


# ---------------------------------------------------------------------------------------- figures
def plot_generated(axes: Any, s: Setup, real: Mapping[str, Tensor], samples: Mapping[str, Tensor]) -> None:
    """Fig. 3: per layout (rows), real samples (left) and generated ones (right) with every out-of-support one
    drawn in red."""
    for row, (name, mixture) in enumerate(s.mixtures.items()):
        plotting.scatter_vs_modes(axes[row, 0], real[name], mixture, title=f"{name}: real", lim=1.75)
        x = samples[name]
        out = out_of_support(x, mixture, s.k)
        n_in = int((~out).sum())
        shown = min(20_000, n_in)  # scatter_vs_modes draws at most 20,000 points
        title = f"{name}: generated, {int(out.sum()):,} of {s.n_samples:,} out of support (red)"
        if shown < n_in:
            title += f"\n{shown:,} of the {n_in:,} in support drawn"
        plotting.scatter_vs_modes(axes[row, 1], x[~out], mixture, lim=1.75, title=title)
        axes[row, 1].scatter(x[out, 0].numpy(), x[out, 1].numpy(), s=1.5, c="red", linewidths=0)


def plot_segments(ax: Axes, s: Setup, layout: str, x: Tensor, k: float) -> None:
    """The explorer's panel: segments coloured by order, out-of-support samples by the order they lie on (orange:
    on none, near a mode or elsewhere)."""
    mixture = s.mixtures[layout]
    segs = mode_segments(mixture, clearance=k).up_to(s.max_order)
    out = out_of_support(x, mixture, k)
    order = segment_order(x[out], mixture, segs, k, end_margin=s.between * float(segs.length.min())).numpy()
    for (i, j), o in zip(segs.pairs.tolist(), segs.order.tolist()):
        if o <= 2:
            a, b = mixture.means[i].numpy(), mixture.means[j].numpy()
            ax.plot([a[0], b[0]], [a[1], b[1]], color="C2" if o == 1 else "C4", lw=0.6, alpha=0.6)
    ax.plot([], [], color="C2", lw=0.6, label="segment, nearest neighbours (order 1)")
    ax.plot([], [], color="C4", lw=0.6, label="segment, second-nearest (order 2)")
    plotting.scatter_vs_modes(ax, x[~out], mixture, color="lightgrey", lim=1.75)
    pts = x[out].numpy()
    for o, color, label in [(1, "C2", "between nearest neighbours"), (2, "C4", "between second-nearest"),
                            (0, "C1", "near a mode / elsewhere")]:
        sel = order == o
        ax.scatter(pts[sel, 0], pts[sel, 1], s=4, c=color, label=f"{label}: {int(sel.sum())}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    ax.set_title(f"{layout}, k = {k:g}")


def claimed_numbers(shares: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """What ``results/03_mode_interpolation_2d.json`` records: every layout's reading, keyed <layout>_<key>."""
    return {f"{name}_{key}": value for name, s in shares.items() for key, value in s.items()}
