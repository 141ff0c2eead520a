"""Chapter 7b, *Recursive training on real digits*: the recursion of chapter 7 on handwritten digits, judged by a
digit classifier's FID-like score (:mod:`mi_lib.digits`).

At CI scale the 1,797 shipped 8x8 UCI digits go through the official MLP (64 values a digit); at paper scale
28x28 MNIST through a UNet. Every filter ("none", "random", "hal", and "real": each generation fine-tuned on real
digits instead, the control for the extra training) runs on the same seeds. :func:`measure` scores every
generation against held-out digits, beside a floor (real training digits) and two null models that know
nothing about handwriting; :func:`print_seed_sweep` reads the committed sweep (``scripts/digits_recursion.py``)
behind the drift bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor, nn

from .. import digits, plotting
from ..models import IMAGE_CLIP_X0, IMAGE_SCALES
from ..nets import MLPConfig
from ..params import choice_parameter, number_parameter, sequence_parameter
from ..results import say
from ..recursion import FILTERS, RecursionConfig, RecursionResult, recursive_training
from ..schedule import OFFICIAL, STANDARD
from ..shapes import from_model_range, to_model_range
from ..train import TrainConfig
from ..unet import UNetConfig
from ..settings import Settings

__all__ = ["DIGIT_RUNS", "Setup", "Digits", "Measures", "setup", "load", "run", "measure", "print_measures",
           "plot_fid_and_classes", "digit_mosaic", "print_seed_sweep", "claimed_numbers"]

#: Per data set: the held-out digits, the sanity bar on generation 0's score, the drift bar (no filter's last
#: score above the control's by more than this), the recursion, and per scale the generations and the seeds
#: (offsets from the chapter's ``seed``); MNIST at CI scale is a smoke run of its pipeline (a tiny UNet).
DIGIT_RUNS: dict[str, dict[str, Any]] = {
    "8x8": dict(
        n_test=497, fid_bar=60.0, drift_margin=2.0,  # the drift bar: below the smallest gap of the seed sweep
        config=RecursionConfig(n_keep=1_000, oversample=1.25, model=MLPConfig(data_dim=64, width=128), schedule=OFFICIAL,
                               train=TrainConfig(steps=2_000, batch_size=128, lr=1e-3), warm_start=True),
        ci=dict(generations=3, seed_offsets=(0,)), paper=dict(generations=5, seed_offsets=(0, 1, 2)),
    ),
    "mnist": dict(
        n_test=1_500, fid_bar=None, drift_margin=0.0,  # no absolute bar, and only "worse", until a paper-scale run
        config=RecursionConfig(
            n_keep=5_000, oversample=1.25, model=UNetConfig(image_size=28, base_channels=32, channel_mults=(1, 2, 2), blocks_per_level=2),
            schedule=STANDARD, train_0=TrainConfig(steps=10_000, batch_size=128, lr=2e-4, ema_decay=0.9995),
            train=TrainConfig(steps=2_000, batch_size=128, lr=1e-4, ema_decay=0.999), warm_start=True, clip_x0=IMAGE_CLIP_X0),
        paper=dict(generations=5, seed_offsets=(0,)),
        # a smoke run of the MNIST pipeline on a CPU (-p digits_data mnist at CI scale): a tiny UNet, 200 + 30 steps,
        # 40 candidates; its digits are noise, so nothing about them is asserted
        ci=dict(generations=2, seed_offsets=(0,), smoke=dict(
            n_keep=32, model=UNetConfig(image_size=28, base_channels=16, channel_mults=(1, 2), blocks_per_level=1, patch=2),
            schedule=IMAGE_SCALES["ci"]["schedule"], train_0=TrainConfig(steps=200, batch_size=32, lr=5e-4),
            train=TrainConfig(steps=30, batch_size=32, lr=1e-4))),
    ),
}
NULLS = {"Gaussian fit": digits.gaussian_null, "midpoints of two real digits": digits.midpoint_null}


@dataclass(frozen=True)
class Setup:
    """The section's parameters, checked: which digits, the recursion's config, the seeds and filters."""

    scale: str
    seed: int
    kind: str  # "8x8" or "mnist"
    filters: tuple[str, ...]
    seeds: tuple[int, ...]
    generations: int
    config: RecursionConfig
    smoke: bool

    @property
    def spec(self) -> dict[str, Any]:
        return DIGIT_RUNS[self.kind]


def setup(scale: str, seed: int, filters: Sequence[str] | str, digits_data: str | None,
          digits_generations: int | None, digits_seeds: Sequence[int] | None) -> Setup:
    """Check the notebook's parameters (one clear error, before hours of GPU time at paper scale)."""
    scale = choice_parameter(scale, "scale", ("ci", "paper"))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    kind = choice_parameter(digits_data, "digits_data", (None, "8x8", "mnist")) or {"ci": "8x8", "paper": "mnist"}[scale]
    filters = tuple(choice_parameter(f, "filters", FILTERS) for f in sequence_parameter(filters, "filters", str))
    if digits_seeds is not None:
        digits_seeds = tuple(number_parameter(s, "digits_seeds", int, at_least=0, at_most=2**32 - 1)
                             for s in sequence_parameter(digits_seeds, "digits_seeds", int))
    if digits_generations is not None:  # the claims compare the last generation with generation 0
        digits_generations = number_parameter(digits_generations, "digits_generations", int, at_least=2)
    per_scale = DIGIT_RUNS[kind][scale]
    smoke = "smoke" in per_scale
    if not smoke and not {"none", "real"} <= set(filters):
        raise ValueError("the drift claim compares no filter with the real-data control: filters must include 'none' and "
                         f"'real', got {filters}")
    generations = digits_generations or per_scale["generations"]
    seeds = tuple(digits_seeds or (seed + offset for offset in per_scale["seed_offsets"]))
    config = DIGIT_RUNS[kind]["config"].replace(generations=generations, **per_scale.get("smoke", {}))
    return Setup(scale, seed, kind, filters, seeds, generations, config, smoke)


@dataclass
class Digits:
    """The real digits, split once (split seed 0), and the classifier that judges generated ones."""

    source: str
    images: Tensor
    labels: Tensor
    train_idx: Tensor
    test_idx: Tensor
    classifier: nn.Module
    accuracy: float
    reference: Tensor  # the classifier's features of the held-out digits
    data: Tensor  # the training digits in [-1, 1], shaped as the model samples them


def load(s: Setup) -> Digits:
    """Load the digits (the shipped copies; MNIST downloads only where ``data/mnist`` is missing, as in Colab) and
    fit the classifier on the training split."""
    if s.kind == "mnist":
        source = "data/mnist (shipped)" if digits.MNIST_FILE.is_file() else "torchvision MNIST, first 10,000 training digits"
        images, labels = digits.load_mnist_10k(root=Path.home() / ".cache" / "mnist", download=True)
    else:
        source = "data/digits (shipped)" if digits.DIGITS_FILE.is_file() else "scikit-learn's copy"
        images, labels = digits.load_digits_8x8()
    train_idx, test_idx = digits.split_indices(len(images), s.spec["n_test"], seed=0)
    classifier = digits.train_classifier(images[train_idx], labels[train_idx], digits.CLASSIFIER_PRESETS[s.kind], seed=0)
    accuracy = digits.accuracy(classifier, images[test_idx], labels[test_idx])
    reference = digits.classifier_features(classifier, images[test_idx])
    data = to_model_range(images[train_idx]).reshape(len(train_idx), *s.config.sample_shape)
    return Digits(source, images, labels, train_idx, test_idx, classifier, accuracy, reference, data)


def run(s: Setup, d: Digits, settings: Settings) -> dict[tuple[int, str], RecursionResult]:
    """One recursion per (seed, filter), cached."""
    return {(seed, f): recursive_training(d.data, s.config.replace(seed=seed, filter=f), settings, chunk_size=4_096)
            for seed in s.seeds for f in s.filters}


@dataclass
class Measures:
    floor: dict[str, Any]  # n_keep real training digits
    nulls: dict[str, dict[str, Any]]  # models that know nothing about handwriting
    rows: dict[tuple[int, str], list[dict[str, Any]]]  # per (seed, filter), per generation


def measure(s: Setup, d: Digits, runs: Mapping[tuple[int, str], RecursionResult]) -> Measures:
    """Every generation's FID-like score, classes present, confidence and class shares, beside the floor and the
    nulls: the digits' Gaussian fit, and midpoints of two real digits (pure interpolations)."""
    floor_idx = torch.randperm(len(d.data), generator=torch.Generator().manual_seed(s.seed))[:s.config.n_keep]
    floor = digits.digits_report(d.data[floor_idx], d.classifier, d.reference)
    nulls = {name: digits.digits_report(make(d.data, s.config.n_keep, seed=s.seed), d.classifier, d.reference)
             for name, make in NULLS.items()}
    rows = {key: [digits.digits_report(g.samples, d.classifier, d.reference) for g in r.generations] for key, r in runs.items()}
    return Measures(floor, nulls, rows)


def print_measures(s: Setup, d: Digits, m: Measures) -> None:
    say(f"{s.kind} digits from {d.source}: {len(d.train_idx):,} training, {len(d.test_idx):,} held out; generations "
        f"0..{s.generations - 1}{' (a smoke run: tiny model, nothing asserted)' if s.smoke else ''}")
    say(f"digit classifier: held-out accuracy {d.accuracy:.3f} on {len(d.test_idx)} digits")
    say(f"floor: {s.config.n_keep:,} real training digits vs the held-out ones: FID {m.floor['fid']:.2f}, "
        f"{m.floor['classes_present']} classes, confidence {m.floor['confidence']:.3f}")
    for name, r in m.nulls.items():
        say(f"null, {name}: FID {r['fid']:.2f}, {r['classes_present']} classes, confidence {r['confidence']:.3f}")
    print(f"{'seed':>4} | {'filter':>6} | {'gen':>3} | {'FID':>6} | classes | confidence | share per digit 0-9 (%)")
    for (seed, f), rows in m.rows.items():
        for g, r in enumerate(rows):
            hist = " ".join(f"{100 * v:2.0f}" for v in r["histogram"].tolist())
            print(f"{seed:4d} | {f:>6} | {g:3d} | {r['fid']:6.2f} | {r['classes_present']:7d} | {r['confidence']:10.3f} | {hist}")


def plot_fid_and_classes(ax0: Axes, ax1: Axes, s: Setup, d: Digits, m: Measures) -> None:
    """Left: each generation's score per filter (the first seed bold), the floor and the nulls. Right: the class
    shares of the last generation of each filter (first seed) beside the held-out digits'."""
    colors, labels = plotting.FILTER_COLORS, plotting.FILTER_LABELS
    first = s.seeds[0]
    for (seed, f), rows in m.rows.items():
        ax0.plot(range(len(rows)), [r["fid"] for r in rows], "o-", color=colors.get(f), alpha=0.9 if seed == first else 0.4,
                 label=labels.get(f, f) if seed == first else None)
    ax0.axhline(m.floor["fid"], color="k", ls=":", lw=1, label="real digits (floor)")
    for (name, r), ls in zip(m.nulls.items(), ("--", "-.")):
        ax0.axhline(r["fid"], color="0.5", ls=ls, lw=1, label=f"null: {name}")
    ax0.set(title=f"FID-like score of each generation's digits ({s.kind})", xlabel="generation",
            ylabel="Fréchet distance (classifier features)", xticks=range(s.generations))
    ax0.legend(fontsize=8)
    width = 0.8 / (len(s.filters) + 1)
    real_hist = digits.label_histogram(d.labels[d.test_idx])
    ax1.bar(np.arange(10) - 0.4 + width / 2, 100 * real_hist.numpy(), width, color="0.6", label="held-out real")
    for j, f in enumerate(s.filters):
        h = m.rows[(first, f)][-1]["histogram"]
        ax1.bar(np.arange(10) - 0.4 + width * (j + 1.5), 100 * h.numpy(), width, color=colors.get(f),
                label=f"{f}, gen {s.generations - 1}")
    ax1.set(title=f"digits the classifier sees (seed {first})", xlabel="digit", ylabel="share of samples (%)", xticks=range(10))
    ax1.legend(fontsize=7, ncol=2)


def digit_mosaic(ax: Axes, s: Setup, x: Tensor, title: str, n: int = 48) -> None:
    """The first ``n`` digits of ``x`` (flattened 8x8 or 28x28 images in [-1, 1]), twelve a row."""
    shape = s.config.sample_shape
    side = shape[-1] if len(shape) == 3 else int(round(shape[0] ** 0.5))
    plotting.image_mosaic(ax, from_model_range(x[:n].reshape(-1, 1, side, side)), ncols=12, pad=1)
    ax.set_title(title)


def print_seed_sweep(sweep: Mapping[str, Any] | None) -> list[float] | None:
    """The committed 8x8 sweep behind the drift bar: per seed, generation 0's and every arm's last score, and no
    filter's gap to the control and rise over generation 0; returns the gaps (None, said, where it is not at hand)."""
    if sweep is None:
        say("no seed sweep at hand (results/seeds/ comes with the repository; scripts/digits_recursion.py --json writes it)")
        return None
    say(f"seed sweep on the 8x8 digits: `{sweep['command']}` on {sweep['torch_threads']} threads, commit {sweep['commit']}, "
        f"{sweep['date']}")
    arms = [f for f in ("none", "random", "hal", "real") if f in next(iter(sweep["seeds"].values()))["fid_last"]]
    say("FID of generation 0 and of each arm's last generation; no filter's gap to the control (real) and its rise "
        "over generation 0:")
    print(f"{'seed':>4} | {'gen 0':>6} | " + " | ".join(f"{a:>6}" for a in arms) + " | none - real | none - gen 0")
    gaps, rises = [], []
    for seed, entry in sorted(sweep["seeds"].items(), key=lambda kv: int(kv[0])):
        last = entry["fid_last"]
        gaps.append(last["none"] - last["real"])
        rises.append(last["none"] - entry["fid_generation_0"])
        print(f"{seed:>4} | {entry['fid_generation_0']:6.2f} | " + " | ".join(f"{last[a]:6.2f}" for a in arms)
              + f" | {gaps[-1]:11.2f} | {rises[-1]:11.2f}")
    say(f"smallest gap between no filter and the control: {min(gaps):.2f} (the 8x8 bar: {DIGIT_RUNS['8x8']['drift_margin']:g}); "
        f"no filter worse than its generation 0 on {sum(r > 0 for r in rises)} of {len(rises)} seeds")
    return gaps


def claimed_numbers(s: Setup, d: Digits, m: Measures) -> dict[str, float]:
    """What ``results/07b_recursive_digits.json`` records: generation 0 (one model per seed, the same for every
    filter) and the last generation of every filter, each over the seeds."""
    numbers = {"digits_classifier_accuracy": d.accuracy, "digits_fid_floor": m.floor["fid"],
               "digits_fid_null_gaussian": m.nulls["Gaussian fit"]["fid"],
               "digits_fid_null_midpoints": m.nulls["midpoints of two real digits"]["fid"]}
    numbers["digits_fid_g0"] = float(np.mean([m.rows[(seed, s.filters[0])][0]["fid"] for seed in s.seeds]))
    numbers["digits_classes_g0"] = min(m.rows[(seed, s.filters[0])][0]["classes_present"] for seed in s.seeds)
    for f in s.filters:
        numbers[f"digits_fid_{f}_last"] = float(np.mean([m.rows[(seed, f)][-1]["fid"] for seed in s.seeds]))
        numbers[f"digits_classes_{f}_last"] = min(m.rows[(seed, f)][-1]["classes_present"] for seed in s.seeds)
    if "none" in s.filters:
        numbers["digits_fid_none_rise"] = numbers["digits_fid_none_last"] - numbers["digits_fid_g0"]
    return numbers
