"""Chapter 7c, *Recursive training on Simple Shapes*: chapter 7's recursion on chapter 5's images.

Generation 0 is chapter 5's shapes UNet (data seed 0); every later generation is fine-tuned on the images the
one before it generated and a filter kept ("none", "random" or "hal"). :func:`run` runs each filter on the same
seeds; :func:`measure` counts, per generation, the images with a crowded column (the rule-based counter of
:mod:`mi_lib.datasets.shapes`, independent of Hal) among the generated and the kept images. At CI scale the run is a
smoke test of the pipeline (2 generations of 32 images), recorded, not asserted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from .. import plotting
from ..datasets import shapes
from ..diffusion.models import IMAGE_CLIP_X0, ImageModelSpec, image_model_spec
from ..diffusion.train import TrainConfig
from ..params import choice_parameter, number_parameter, sequence_parameter
from ..plotting import FILTER_COLORS, FILTER_LABELS
from ..settings import Settings
from ..storage.results import say
from .shapes_hands import COLUMN_DIVIDERS
from .recursion import FILTERS, RecursionConfig, RecursionResult, recursive_training

__all__ = ["SCALES", "Setup", "setup", "run", "shapes_report", "measure", "print_rows", "plot_runs",
           "claimed_numbers"]

SCALES: dict[str, dict[str, Any]] = {
    # CI: a smoke run on chapter 5's shipped small UNet
    "ci": dict(generations=2, n_keep=32, train=TrainConfig(steps=30, batch_size=32, lr=1e-4)),
    # paper: 1.5M-parameter UNets, 4 generations of 5,000 images
    "paper": dict(generations=4, n_keep=5_000, train=TrainConfig(steps=4_000, batch_size=128, lr=1e-4, ema_decay=0.999)),
}


@dataclass(frozen=True)
class Setup:
    scale: str
    seed: int
    filters: tuple[str, ...]
    shapes_generations: int
    shapes_n_keep: int

    @property
    def spec(self) -> ImageModelSpec:
        """Generation 0: chapter 5's model (data seed 0)."""
        return image_model_spec("shapes", self.scale, n_train=5_000, data_seed=0)

    @property
    def config(self) -> RecursionConfig:
        spec = self.spec
        return RecursionConfig(generations=self.shapes_generations, n_keep=self.shapes_n_keep, oversample=1.25,
                               model=spec.model, schedule=spec.schedule, train=SCALES[self.scale]["train"],
                               warm_start=True, clip_x0=IMAGE_CLIP_X0, seed=self.seed)

    @property
    def last(self) -> int:
        return self.shapes_generations - 1


def setup(scale: str, seed: int, filters: Sequence[str] | str, shapes_generations: int | None,
          shapes_n_keep: int | None) -> Setup:
    """Check the notebook's parameters (``filters`` as papermill passes it: a list, or a -p string such as
    "none,hal"), or one clear error naming the parameter, before any run."""
    scale = choice_parameter(scale, "scale", ("ci", "paper"))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    if shapes_generations is not None:  # None: from scale
        shapes_generations = number_parameter(shapes_generations, "shapes_generations", int, at_least=1)
    if shapes_n_keep is not None:
        shapes_n_keep = number_parameter(shapes_n_keep, "shapes_n_keep", int, at_least=1)
    filters = tuple(choice_parameter(f, "filters", FILTERS) for f in sequence_parameter(filters, "filters", str))
    size = SCALES[scale]
    return Setup(scale, seed, filters, shapes_generations or size["generations"], shapes_n_keep or size["n_keep"])


def run(s: Setup, settings: Settings) -> dict[str, RecursionResult]:
    """One recursion per filter, on the same seeds."""
    return {f: recursive_training(s.spec, s.config.replace(filter=f), settings, chunk_size=512) for f in s.filters}


def shapes_report(x: Tensor) -> dict[str, float]:
    """Images in the model's range -> the share with a crowded column (and its count), and the share not valid
    under the strict rule."""
    reports = shapes.count_shapes(shapes.from_model_range(x))
    strict = shapes.classify_images(reports)
    crowded = int(shapes.repeated_shapes(reports).sum())
    return {"crowded": crowded / len(reports), "n_crowded": crowded, "n": len(reports),
            "not_valid": 1 - strict.count("valid") / len(strict)}


def measure(runs: Mapping[str, RecursionResult]) -> dict[str, list[dict[str, float]]]:
    """Per filter, per generation: :func:`shapes_report` of the generated images, and the kept set's crowded share."""
    return {f: [{**shapes_report(g.samples), "kept_crowded": shapes_report(g.kept_x0)["crowded"]}
                for g in run.generations] for f, run in runs.items()}


def print_rows(s: Setup, rows: Mapping[str, Sequence[Mapping[str, float]]]) -> None:
    c = s.config
    say(f"each generation draws {c.n_candidates:,} images and passes on {c.n_keep:,}; later generations fine-tuned "
        f"{c.train.steps:,} steps at batch {c.train.batch_size}, lr {c.train.lr:g}")
    print(f"{'filter':>8} | {'gen':>3} | {'crowded':>8} | {'not valid':>9} | kept set: crowded")
    for f, rows_ in rows.items():
        for g, r in enumerate(rows_):
            print(f"{f:>8} | {g:3d} | {r['crowded']:8.1%} | {r['not_valid']:9.1%} | {r['kept_crowded']:.1%}")


def plot_runs(fig: Figure, s: Setup, runs: Mapping[str, RecursionResult],
              rows: Mapping[str, Sequence[Mapping[str, float]]]) -> None:
    """The crowded share per generation (generated, and dotted: kept), above the last generation's images
    without a filter and with the Hal filter, those with a crowded column framed in red."""
    ax = fig.add_subplot(2, 2, (1, 2))
    markers = {"none": "o", "random": "s", "hal": "^", "real": "D"}
    for j, (f, rows_) in enumerate(rows.items()):
        gens = np.arange(len(rows_)) + 0.04 * (j - (len(rows) - 1) / 2)  # a small offset per filter: equal shares stay visible
        ax.plot(gens, [100 * r["crowded"] for r in rows_], marker=markers.get(f, "o"), ms=5, color=FILTER_COLORS.get(f),
                label=FILTER_LABELS.get(f, f))
        ax.plot(gens, [100 * r["kept_crowded"] for r in rows_], ":", color=FILTER_COLORS.get(f))
    ax.plot([], [], ":", color="grey", label="dotted: kept set (next training set)")
    ax.set(title="Simple Shapes: images with a crowded column", xlabel="generation", ylabel="share of images (%)",
           xticks=range(s.shapes_generations))
    ax.legend(fontsize=7)  # lines that coincide hide each other: the table has every value
    for j, f in enumerate([f for f in ("none", "hal") if f in runs]):
        ax = fig.add_subplot(2, 2, 3 + j)
        x = shapes.from_model_range(runs[f].generations[s.last].samples[:12])
        frames = ["red" if crowded else None for crowded in shapes.repeated_shapes(x).tolist()]
        plotting.image_mosaic(ax, x, frames, ncols=4, dividers=COLUMN_DIVIDERS)
        ax.set_title(f"{FILTER_LABELS.get(f, f)}, generation {s.last}\n(red frame: a crowded column)")


def claimed_numbers(s: Setup, rows: Mapping[str, Sequence[Mapping[str, float]]]) -> dict[str, float]:
    """What ``results/07c_recursive_shapes.json`` records: generation 0's crowded share, and each filter's last."""
    numbers = {"shapes_crowded_g0": rows[s.filters[0]][0]["crowded"]}
    for f in s.filters:
        numbers[f"shapes_crowded_{f}_last"] = rows[f][s.last]["crowded"]
        numbers[f"shapes_not_valid_{f}_last"] = rows[f][s.last]["not_valid"]
        numbers[f"shapes_kept_crowded_{f}_last"] = rows[f][s.last]["kept_crowded"]
    return numbers
