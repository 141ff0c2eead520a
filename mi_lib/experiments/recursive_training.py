"""Chapter 7, *Recursive training*: do hallucinations compound, and does filtering by Hal slow the drift?

The 5x5 grid's model (generation 0, trained on real data; at CI scale the shipped checkpoint) starts one
recursion per filter (:func:`mi_lib.experiments.recursion.recursive_training`): each generation draws candidates with Hal,
the filter ("none", "random", "hal", or "real" data as a control) keeps ``n_keep`` of them, and the next
generation trains on those. Everything here measures the runs (:func:`generation_table`, :func:`plot_measures`,
:func:`claimed_numbers`) or reads the committed seed sweeps (``results/seeds/``, written by
``scripts/grid_recursion_seeds.py``) that set the CI bar (:func:`print_seed_sweep`, :func:`keep_ratio_summary`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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
from ..measure.metrics import mixture_report, out_of_support
from ..params import choice_parameter, number_parameter, sequence_parameter
from ..settings import Settings
from ..storage.results import say
from .recursion import FILTERS, RecursionConfig, RecursionResult, recursive_training

__all__ = ["SCALES", "Setup", "setup", "run_filters", "real_report", "generation_table", "plot_measures",
           "scatter_generation", "print_seed_sweep", "claimed_numbers", "keep_ratio_summary", "plot_keep_ratio_sweeps"]

#: Per scale: the recursion, generation 0's training, and the claims' margin (after the last generation, Hal's
#: out-of-support share lies below no filter's and the random filter's by at least this). ``paper``: the official 2D
#: experiment (RecursionConfig's defaults), trained from scratch. ``ci``: generation 0 the shipped 2D grid
#: checkpoint, each later generation fine-tuned from the previous one for 1,000 steps at lr 1e-4 (lr 1e-3 wrecks the
#: model within 1,000 steps), 5,000 samples kept of 6,250 (the paper keeps 100,000 of 102,500; at that ratio 5,000
#: samples cannot separate the filters from run-to-run noise; the chapter's sweep shows both ratios).
SCALES: dict[str, dict[str, Any]] = {
    "ci": dict(recursion=RecursionConfig(generations=3, n_keep=5_000, oversample=1.25, warm_start=True,
                                         train=TrainConfig(steps=1_000, batch_size=500, lr=1e-4)),
               n_train=20_000, train_0=TrainConfig(steps=30_000, batch_size=2_000), margin=0.01),
    "paper": dict(recursion=RecursionConfig(), n_train=100_000, train_0=TrainConfig(steps=100_000), margin=0.0),
}


@dataclass(frozen=True)
class Setup:
    """The chapter's parameters, checked: the recursion's config, generation 0's spec, the filters compared."""

    scale: str
    seed: int
    k: float
    filters: tuple[str, ...]
    config: RecursionConfig
    spec: MixtureModelSpec
    margin: float

    @property
    def mixture(self) -> GaussianMixture:
        return self.spec.mixture()

    @property
    def last(self) -> int:
        return self.config.generations - 1


def setup(scale: str, seed: int, filters: Sequence[str] | str, k: float, generations: int | None,
          n_keep: int | None, oversample: float | None) -> Setup:
    """Check the notebook's parameters (one clear error, before hours of GPU time at paper scale)."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    size = SCALES[scale]
    filters = sequence_parameter(filters, "filters", str)  # a list, or a -p string ("none,random,hal"), from papermill
    filters = tuple(choice_parameter(f, "filters", FILTERS) for f in filters)
    if not {"none", "random", "hal"} <= set(filters):
        raise ValueError(f"the claims compare all three filters: filters must include 'none', 'random' and 'hal', got {filters}")
    k = number_parameter(k, "k", above=0)
    preset = size["recursion"]
    config = preset.replace(
        seed=seed,
        generations=preset.generations if generations is None else number_parameter(generations, "generations", int, at_least=1),
        n_keep=preset.n_keep if n_keep is None else number_parameter(n_keep, "n_keep", int, at_least=1),
        oversample=preset.oversample if oversample is None else number_parameter(oversample, "oversample", at_least=1),
    )
    spec = MixtureModelSpec("grid", n_train=size["n_train"], model=MLPConfig(data_dim=2), train=size["train_0"])
    return Setup(scale, seed, k, filters, config, spec, size["margin"])


def describe(s: Setup) -> None:
    c = s.config
    say(f"scale = {s.scale}: generation 0 trained on {s.spec.n_train:,} real points ({s.spec.train.steps:,} steps at batch "
        f"{s.spec.train.batch_size:,}); generations 0..{s.last}")
    say(f"each generation draws {c.n_candidates:,} candidates, the filter keeps {c.n_keep:,}; later generations "
        f"{'fine-tuned from the previous one' if c.warm_start else 'trained from scratch'}: {c.train.steps:,} steps at batch "
        f"{c.train.batch_size:,}, lr {c.train.lr:g}; Hal over t = {c.hal_window[1]}..{c.hal_window[0]}; k = {s.k:g}")


def run_filters(s: Setup, settings: Settings) -> dict[str, RecursionResult]:
    """One recursion per filter, on the same seeds (cached); prints where each generation came from and its cost."""
    runs = {f: recursive_training(s.spec, s.config.replace(filter=f), settings, k=s.k) for f in s.filters}
    for f, run in runs.items():
        say(f"{f:>6}: " + ", ".join(
            f"gen {g.generation}: " + (f"shipped (trained in {g.train_wall_time_s:.0f} s when made)" if g.source == "shipped"
                                     else f"{g.source}, {g.train_wall_time_s:.0f} s train")
            + f", {g.sample_wall_time_s:.0f} s sample" for g in run.generations))
    return runs


def real_report(s: Setup) -> dict[str, Any]:
    """The same measures on ``n_keep`` samples of the true mixture: the sampling noise at this sample size."""
    return mixture_report(s.mixture.sample(s.config.n_keep, torch.Generator().manual_seed(s.seed + 1))[0], s.mixture, s.k)


def generation_table(s: Setup, rows: Mapping[str, list[dict[str, Any]]], real: Mapping[str, Any]) -> None:
    """One line per filter and generation: the model's measures and the kept set's out-of-support share."""
    header = (f"{'filter':>8} | {'gen':>3} | {'hallucination':>13} | {'modes covered':>13} | {'tv':>6} | {'mode tv':>7} | "
              f"{'kept set':>8}")
    print(header)
    print("-" * len(header))
    print(f"{'real':>8} | {'':>3} | {real['hallucination']:13.2%} | {real['modes_covered']:13d} | {real['tv']:6.3f} | "
          f"{real['mode_tv']:7.3f} |")
    for f in s.filters:
        for r in rows[f]:
            print(f"{f:>8} | {r['generation']:>3} | {r['hallucination']:13.2%} | {r['modes_covered']:13d} | {r['tv']:6.3f} | "
                  f"{r['mode_tv']:7.3f} | {r['kept_hallucination']:8.2%}")
    say("hallucination: the share of a generation's samples out of support; kept set: the same share among the "
        "samples its filter passed on to the next generation")


def plot_measures(axes: Sequence[Axes], s: Setup, rows: Mapping[str, list[dict[str, Any]]], real: Mapping[str, Any]) -> None:
    """Fig. 8: four measures against the generation, one line per filter; dotted, the kept sets' share."""
    colors, labels = plotting.FILTER_COLORS, plotting.FILTER_LABELS
    panels = [("hallucination", "samples out of support (%)", 100.0), ("modes_covered", "modes covered (of 25)", 1.0),
              ("tv", "tv to the real distribution (26 cells)", 1.0), ("mode_tv", "mode tv (in-support samples)", 1.0)]
    gens = np.arange(s.config.generations)
    for ax, (key, ylabel, factor) in zip(axes, panels):
        for f in s.filters:
            ax.plot(gens, [factor * r[key] for r in rows[f]], marker="o", ms=4, color=colors.get(f), label=labels.get(f, f))
            if key == "hallucination" and f != "none":
                ax.plot(gens, [factor * r["kept_hallucination"] for r in rows[f]], ls=":", marker=".", color=colors.get(f), lw=1.0)
        ax.axhline(factor * real[key], color="grey", ls="--", lw=0.8, label="real data")
        ax.set(title=ylabel.split(" (")[0], xlabel="generation", ylabel=ylabel, xticks=gens)
        ax.set_ylim(bottom=0)
    axes[1].set_ylim(0, s.mixture.n_modes + 1)
    axes[0].plot([], [], ls=":", marker=".", color="grey", lw=1.0, label="dotted: kept set (next training set)")
    axes[0].legend(fontsize=7, loc="lower left")


def scatter_generation(ax: Axes, s: Setup, x: Tensor, title: str) -> None:
    """Samples in blue, the out-of-support ones drawn again on top, larger, in red."""
    out = out_of_support(x, s.mixture, s.k)
    plotting.scatter_vs_modes(ax, x[~out], s.mixture, lim=1.75,
                              title=f"{title}\n{int(out.sum()):,} of {len(x):,} out of support ({float(out.double().mean()):.1%})")
    ax.scatter(x[out, 0].numpy(), x[out, 1].numpy(), s=3, c="red", linewidths=0)


def print_seed_sweep(sweep: Mapping[str, Any] | None, margin: float) -> list[float] | None:
    """The committed seed sweep behind the CI bar: each seed's last-generation shares and Hal's leads; returns
    the leads (None, said, where the sweep is not at hand)."""
    if sweep is None:
        say("no seed sweep at hand (results/seeds/ comes with the repository; scripts/grid_recursion_seeds.py writes it)")
        return None
    say(f"seed sweep: `{sweep['command']}` on {sweep['torch_threads']} threads, commit {sweep['commit']}, {sweep['date']}")
    say("out of support after the last generation, per arm, and the gaps between the arms (points):")
    print(f"{'seed':>4} | {'none':>6} | random | {'Hal':>6} | Hal's lead over none | over random | none - random")
    leads, blind = [], []
    for seed, entry in sorted(sweep["seeds"].items(), key=lambda kv: int(kv[0])):
        h = entry["hallucination_last"]
        leads += [h["none"] - h["hal"], h["random"] - h["hal"]]
        blind.append(h["none"] - h["random"])
        print(f"{seed:>4} | {h['none']:6.2%} | {h['random']:6.2%} | {h['hal']:6.2%} | {100 * (h['none'] - h['hal']):+20.1f} | "
              f"{100 * (h['random'] - h['hal']):+11.1f} | {100 * blind[-1]:+13.1f}")
    rms = float(np.sqrt(np.mean(np.square(blind))))
    say(f"the blind arms' gap: root mean square {100 * rms:.1f} points, so one arm moves by about {100 * rms / np.sqrt(2):.1f} "
        f"points from draw to draw; smallest lead of Hal {100 * min(leads):.1f} points (the CI bar: {100 * margin:g})")
    return leads


def claimed_numbers(s: Setup, rows: Mapping[str, list[dict[str, Any]]], real: Mapping[str, Any]) -> dict[str, float]:
    """What ``results/07_recursive_training.json`` records."""
    numbers = {f"{key}_g0": rows[s.filters[0]][0][key] for key in ("hallucination", "modes_covered", "tv", "mode_tv")}
    for f in s.filters:
        for r in rows[f][1:]:
            numbers[f"hallucination_{f}_g{r['generation']}"] = r["hallucination"]
        for key in ("hallucination", "kept_hallucination", "modes_covered", "tv", "mode_tv"):
            numbers[f"{key}_{f}_last"] = rows[f][s.last][key]
    numbers["hal_gain_over_none_last"] = numbers["hallucination_none_last"] - numbers["hallucination_hal_last"]
    numbers["compounding_none"] = numbers["hallucination_none_last"] - numbers["hallucination_g0"]
    numbers["hallucination_real"] = real["hallucination"]
    numbers["tv_real"] = real["tv"]
    return numbers


def _oversample(sweep: Mapping[str, Any]) -> float:
    """Candidates per kept sample of a sweep's configuration (its recorded repr)."""
    match = re.search(r"oversample=([0-9.]+)", sweep["config"])
    if match is None:
        raise ValueError(f"no oversample in the sweep's config: {sweep['config'][:200]}")
    return float(match.group(1))


def keep_ratio_summary(sweeps: Mapping[str, Mapping[str, Any]]) -> None:
    """Per sweep: on how many seeds Hal ends lowest, its leads, and for generation 0 the kept set's share against
    a perfect filter's bound max(0, p r - (r - 1)) and the share of Hal's drops that were out of support."""
    for name, sw in sweeps.items():
        r = _oversample(sw)
        seeds = sorted(sw["seeds"], key=int)
        last_shares = [sw["seeds"][seed]["hallucination_last"] for seed in seeds]
        hal_lowest = sum(h["hal"] < min(h["none"], h["random"]) for h in last_shares)
        leads_none = [100 * (h["none"] - h["hal"]) for h in last_shares]
        leads_random = [100 * (h["random"] - h["hal"]) for h in last_shares]
        g0 = [sw["seeds"][seed]["generations"]["hal"][0] for seed in seeds]  # generation 0: the same model for every filter
        p = np.mean([g["hallucination"] for g in g0])
        kept = np.mean([g["kept_hallucination"] for g in g0])
        bound = max(0.0, p * r - (r - 1))
        precision = (p * r - kept) / (r - 1)  # out-of-support share of the dropped candidates
        say(f"{name} ({r:g} candidates per kept sample, {', '.join(seeds)}): Hal lowest after the last generation on {hal_lowest} of "
            f"{len(seeds)} seeds; its lead over none {np.mean(leads_none):+.1f} points on average (from {min(leads_none):+.1f} to "
            f"{max(leads_none):+.1f}), over random {np.mean(leads_random):+.1f} (from {min(leads_random):+.1f} to {max(leads_random):+.1f})")
        say(f"    generation 0, mean over the {len(seeds)} seeds: out of support {p:.2%}; Hal's kept set {kept:.2%}, a perfect filter's {bound:.2%}; "
            f"{precision:.0%} of Hal's drops were out of support (a blind drop: {p:.0%})")


def plot_keep_ratio_sweeps(axes: Sequence[Axes], sweeps: Mapping[str, Mapping[str, Any]]) -> None:
    """Per sweep two panels (the models' samples, the kept sets): thin lines one seed each, thick their mean."""
    colors, labels = plotting.FILTER_COLORS, plotting.FILTER_LABELS
    for i, (name, sw) in enumerate(sweeps.items()):
        for ax, key, what in ((axes[2 * i], "hallucination", "model's samples"), (axes[2 * i + 1], "kept_hallucination", "kept set")):
            for f in ("none", "random", "hal"):
                per_seed = np.array([[100 * g[key] for g in sw["seeds"][seed]["generations"][f]] for seed in sw["seeds"]])
                gens = np.arange(per_seed.shape[1])
                for line in per_seed:
                    ax.plot(gens, line, color=colors.get(f), lw=0.6, alpha=0.35)
                ax.plot(gens, per_seed.mean(0), color=colors.get(f), marker="o", ms=4, label=labels.get(f, f))
            ax.set(title=f"{name}: {what}", xlabel="generation", xticks=gens)
    for ax in axes[::2]:  # each sweep's first panel
        ax.set(ylabel="out of support (%)", ylim=(0, None))
    axes[0].legend(fontsize=7, loc="lower left")
