"""Chapter 5, *Shapes and hands: hallucinations you can count*: chapter 5's counters, checked on the training data,
then run on the images of two small UNets (Simple Shapes, synthetic hands).

:func:`check_counters` shows the counters exact on the training images (and on hands drawn with 3 to 7 fingers);
:func:`shapes_census` and :func:`hands_census` count the generated images, :func:`blob_reading` reads the
shapes' blobs against the stencils and against the training images' blob counts, :func:`hal_aurocs` scores Hal
against the counters' labels, and :func:`claimed_numbers` gathers what ``results/05_shapes_hands.json`` records.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from .. import plotting
from ..datasets import hands, shapes
from ..measure import detection
from ..measure.metrics import wilson_interval
from ..params import choice_parameter, number_parameter, sequence_parameter
from ..storage.results import say

__all__ = ["SCALES", "LABEL_COLORS", "COLUMN_DIVIDERS", "KIND_COLORS", "Setup", "setup", "TrainingImages", "check_counters",
           "outline", "plot_made_up", "plot_hallucinated",
           "made_up_examples", "ShapesCensus", "shapes_census", "BlobReading", "blob_reading", "HandsCensus",
           "hands_census", "finger_color", "hal_aurocs", "claimed_numbers", "plot_losses", "hallucinated_picks",
           "print_components", "plot_blobs", "plot_fingers", "browse_options"]

SCALES: dict[str, dict[str, Any]] = {"ci": dict(n_samples=128), "paper": dict(n_samples=10_000)}  # models: IMAGE_SCALES
LABEL_COLORS = {"valid": "#2ca02c", "misplaced": "#ff7f0e", "duplicated": "#d62728", "malformed": "#8c564b"}
#: Where a Simple Shapes image's three columns meet (x in pixels): the dotted dividers of the chapter's mosaics.
COLUMN_DIVIDERS = (shapes.COLUMN_WIDTH, 2 * shapes.COLUMN_WIDTH)
KIND_COLORS = {"triangle": "#1f77b4", "square": "#9467bd", "pentagon": "#e377c2", "unrecognised": "#ffbf00"}
FINGER_COLORS = {"5 fingers": "#2ca02c", "more": "#d62728", "fewer": "#ff7f0e"}


@dataclass(frozen=True)
class Setup:
    scale: str
    seed: int
    n_samples: int
    hal_window: tuple[int, int]
    n_show: int
    hands_root: str | Path | None
    download_11k: bool


def setup(scale: str, seed: int, n_samples: int | None, hal_window: Sequence[int], n_show: int,
          hands_root: str | Path | None, download_11k: bool) -> Setup:
    """Check the notebook's parameters (one clear error, before any work)."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    seed = number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1)
    n_samples = SCALES[scale]["n_samples"] if n_samples is None else number_parameter(n_samples, "n_samples", int, at_least=1)
    n_show = number_parameter(n_show, "n_show", int, at_least=1)
    download_11k = choice_parameter(download_11k, "download_11k", (False, True))
    if not (hands_root is None or isinstance(hands_root, (str, Path))):
        raise ValueError(f"hands_root must be None or a folder (a str or a Path), got {hands_root!r}")
    hal_window = sequence_parameter(hal_window, "hal_window", int, length=2)  # a list, or a -p string, from papermill
    if not 0 <= hal_window[0] < hal_window[1]:
        raise ValueError("hal_window must be two step indices (t_lo, t_hi) with 0 <= t_lo < t_hi (a variance needs two "
                         f"steps), got {hal_window!r}")
    return Setup(scale, seed, n_samples, tuple(hal_window), n_show, hands_root, download_11k)


@dataclass
class TrainingImages:
    """The training images and what the counters make of them."""

    shapes: shapes.ShapesDataset
    hands: hands.HandsDataset
    shape_reports: list
    shape_rate: float
    shapes_exact: bool
    repeated: int  # training images with a crowded column
    hands_exact: bool
    not_five: int  # training hands not counted five


def check_counters(seed: int, n: int = 5_000) -> TrainingImages:
    """Run both counters on ``n`` training images of each data set (and on 1,000 hands drawn with 3 to 7 fingers),
    printing what they find: the chapter asserts they are exact."""
    real_shapes, real_hands = shapes.make_shapes(n, seed), hands.make_hands(n, seed, n_fingers=5)
    shape_rate, shape_counts = shapes.invalid_rate(real_shapes.images)
    reports = shapes.count_shapes(real_shapes.images)
    found = torch.tensor([[c > 0 for c in r.counts] for r in reports])
    shapes_exact = shape_counts["valid"] == len(real_shapes) and bool((found == real_shapes.present).all())
    repeated = int(shapes.repeated_shapes(reports).sum())  # columns with two shape-sized blobs: none expected
    say(f"Simple Shapes, {len(real_shapes):,} training images: labels {shape_counts}; "
        f"shapes found = shapes drawn in every image: {shapes_exact}; with a crowded column: {repeated}")
    fingers = hands.count_fingers(real_hands.images)
    other = hands.make_hands(1_000, seed + 1, n_fingers={3, 4, 5, 6, 7})
    other_counts = hands.count_fingers(other.images)
    hands_exact = bool((fingers == 5).all()) and bool((other_counts == other.n_fingers).all())
    say(f"hands, {len(real_hands):,} training images: finger counts {hands.finger_histogram(fingers)}")
    say(f"hands drawn with 3-7 fingers, {len(other):,} images: counted right {int((other_counts == other.n_fingers).sum()):,} "
        f"of {len(other):,}")
    return TrainingImages(real_shapes, real_hands, reports, shape_rate, shapes_exact, repeated, hands_exact,
                          int((fingers != 5).sum()))


def outline(ax: Axes, image: Tensor, report: Any, title: str) -> None:
    """One image with a box around every component the shape counter found (coloured by the kind it read)."""
    ax.imshow(image.squeeze(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    for c in report.components:
        x0, y0, x1, y1 = c.bbox
        ax.add_patch(Rectangle((x0 - 1, y0 - 1), x1 - x0 + 2, y1 - y0 + 2, fill=False, lw=1.2, edgecolor=KIND_COLORS[c.kind]))
    for x in COLUMN_DIVIDERS:
        ax.axvline(x - 0.5, color="white", lw=0.4, ls=":")
    ax.set(title=title, xticks=[], yticks=[])
    ax.grid(False)


def add_outline_key(fig: Figure) -> None:
    """The key of :func:`outline`'s colours, in one row under the figure (which keeps the figure's width)."""
    fig.legend(handles=[Rectangle((0, 0), 1, 1, fill=False, edgecolor=c, label=k) for k, c in KIND_COLORS.items()],
               title="outline: the component read as", loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8)


def _paste(image: Tensor, kind: str, x: int, y: int) -> Tensor:
    out = image.clone()
    stencil = shapes.shape_stencil(kind)
    h, w = stencil.shape
    out[0, y : y + h, x : x + w] = torch.maximum(out[0, y : y + h, x : x + w], stencil)
    return out


def made_up_examples(real: shapes.ShapesDataset) -> tuple[Tensor, dict[str, Tensor]]:
    """A training image with all three shapes, and four images edited to break a rule each (the counter's labels
    on known cases)."""
    present = real.present
    base = real.images[int(torch.nonzero(present.all(1))[0])]
    one_square = real.images[int(torch.nonzero(present[:, 1] & ~present[:, 0] & ~present[:, 2])[0])]
    no_square = real.images[int(torch.nonzero(~present[:, 1] & ~present[:, 2])[0])]
    beside = 2 if int(one_square[0, :, 21:42].amax(1).nonzero()[0]) > 14 else 52  # beside its square
    grid = torch.stack(torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij"), -1).view(-1, 2)
    disc = (torch.cdist(grid, torch.tensor([[50.0, 50.0]])).view(1, 64, 64) < 6).float()
    return base, {
        "a second square": _paste(one_square, "square", 27, beside),
        "a pentagon in the square's column": _paste(no_square, "pentagon", 27, 10),
        "two shapes merged": _paste(_paste(one_square, "triangle", 2, 4), "triangle", 6, 8),
        "a blob": torch.maximum(base, disc),
    }


def plot_made_up(base: Tensor, made: Mapping[str, Tensor]) -> None:
    """:func:`made_up_examples` in rows of three, each image outlined by the counter and titled with its label; the
    key of the outlines' colours under them."""
    fig, axes = plotting.panels(1 + len(made), 3, 3.6)
    outline(axes[0], base, shapes.count_shapes(base[None])[0], "training image:\n" + shapes.classify_images(base[None])[0])
    for ax, (name, image) in zip(axes[1:], made.items()):
        report = shapes.count_shapes(image[None])[0]
        outline(ax, image, report, f"{name}:\n{shapes.classify_image(report)}")
    plt.tight_layout()
    add_outline_key(fig)


@dataclass
class ShapesCensus:
    images: Tensor  # in [0, 1]
    reports: list
    labels: list[str]
    counts: dict[str, int]
    rate: float  # not valid
    repeated: Tensor  # a crowded column
    k_rep: int


def shapes_census(s: Setup, x0: Tensor, training: TrainingImages) -> ShapesCensus:
    """Label the generated shapes (valid / duplicated / misplaced / malformed) and find the crowded columns, printing
    both with Wilson 95% intervals beside the training data's."""
    images = shapes.from_model_range(x0)
    reports = shapes.count_shapes(images)
    labels = shapes.classify_images(reports)
    counts = {label: labels.count(label) for label in shapes.LABELS}
    n = s.n_samples
    rate = 1 - counts["valid"] / n
    print(f"{'label':>12} | {'images':>6} | {'share':>6} | 95% interval")
    for label in ("valid", "duplicated", "misplaced", "malformed"):
        k = counts[label]
        lo, hi = wilson_interval(k, n)
        print(f"{label:>12} | {k:6d} | {k / n:6.1%} | {lo:.1%} - {hi:.1%}")
    lo, hi = wilson_interval(n - counts["valid"], n)
    say(f"hallucination rate (not valid): {rate:.1%} (95% interval {lo:.1%} - {hi:.1%}); in the training data: "
        f"{training.shape_rate:.1%}")
    repeated = shapes.repeated_shapes(reports)  # some column holds two or more shape-sized blobs
    k_rep = int(repeated.sum())
    lo, hi = wilson_interval(k_rep, n)
    say(f"a column with two or more shape-sized blobs (>= {shapes.SHAPE_SIZED} px): {k_rep} of {n:,} images, "
        f"{k_rep / n:.1%} (95% interval {lo:.1%} - {hi:.1%}); in the training data: {training.repeated} of "
        f"{len(training.shapes):,}")
    return ShapesCensus(images, reports, labels, counts, rate, repeated, k_rep)


@dataclass
class BlobReading:
    mismatch: np.ndarray  # per shape-sized blob: pixels that differ from the nearest stencil
    nearest_own: np.ndarray  # per shape-sized blob: is the nearest stencil its own column's?
    blobs_per_image: list[int]
    real_blobs: list[int]  # the training images, read the same way
    k_same: int  # crowded columns whose two blobs are nearest the same stencil
    k_few: int  # crowded columns among images with no more blobs than a training image
    n_few: int
    lo_few: float


def blob_reading(census: ShapesCensus, training: TrainingImages) -> BlobReading:
    blobs = [c for r in census.reports for c in r.components if c.area >= shapes.SHAPE_SIZED]
    blobs_per_image = [sum(shapes.blobs_per_column(r)) for r in census.reports]
    real_blobs = [sum(shapes.blobs_per_column(r)) for r in training.shape_reports]
    few = torch.tensor([b <= max(real_blobs) for b in blobs_per_image])
    k_few, n_few = int((census.repeated & few).sum()), int(few.sum())
    return BlobReading(
        np.array([c.mismatch for c in blobs]), np.array([c.nearest == shapes.SHAPES[c.column] for c in blobs]),
        blobs_per_image, real_blobs, int(torch.tensor([shapes.repeated_same_shape(r) for r in census.reports]).sum()),
        k_few, n_few, wilson_interval(k_few, n_few)[0] if n_few else float("nan"),
    )


def print_blob_reading(census: ShapesCensus, b: BlobReading) -> None:
    """How close the shape-sized blobs are to a stencil, how many an image holds, and which crowded columns repeat
    one shape; how the count moves with the counter's pixel threshold."""
    q1, q2, q3 = np.percentile(b.mismatch, [25, 50, 75]) if len(b.mismatch) else (np.nan,) * 3
    areas = np.array([c.area for r in census.reports for c in r.components if c.area >= shapes.SHAPE_SIZED])
    say(f"{len(b.mismatch):,} shape-sized blobs; within 4 px of a stencil: {(b.mismatch <= 4).mean():.1%}; distance "
        f"quartiles {q1:.0f} / {q2:.0f} / {q3:.0f} px; nearest stencil is the one of the blob's own column: "
        f"{b.nearest_own.mean():.1%}")
    say(f"their median area: {np.median(areas) if len(areas) else np.nan:.0f} px (stencils: 64-70 px)")
    say(f"shape-sized blobs per image: {dict(sorted(collections.Counter(b.blobs_per_image).items()))}")
    say(f"of the {census.k_rep} images with a crowded column: {b.k_same} hold two blobs nearest the same stencil (a "
        f"repeated shape), {census.k_rep - b.k_same} two different shapes (one strayed into its neighbour's column)")
    by_threshold = {th: census.k_rep if th == 0.5 else
                    int(shapes.repeated_shapes(shapes.count_shapes(census.images, threshold=th)).sum()) for th in (0.4, 0.5, 0.6, 0.7)}
    say(f"images with a crowded column when pixels above t count as on: {by_threshold} (the counter's t: 0.5)")


def plot_blobs_per_image(ax: Axes, b: BlobReading) -> None:
    most = max(b.real_blobs)  # three columns, one shape each at most
    xs = np.arange(0, max(b.blobs_per_image + b.real_blobs) + 1)
    for j, (name, counts) in enumerate({"training images": b.real_blobs, "generated images": b.blobs_per_image}.items()):
        tally = collections.Counter(counts)
        ax.bar(xs + (j - 0.5) * 0.4, [tally.get(int(x), 0) / len(counts) for x in xs], width=0.4, label=name)
    ax.axvline(most + 0.5, color="k", ls=":", lw=1, label="more blobs than columns: a column is crowded")
    ax.set(title="shape-sized blobs per image", xlabel=f"blobs of at least {shapes.SHAPE_SIZED} px", ylabel="share of images",
           xticks=xs)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, not over them


def print_crowding(s: Setup, census: ShapesCensus, b: BlobReading) -> None:
    most, n = max(b.real_blobs), s.n_samples
    hi_few = wilson_interval(b.k_few, b.n_few)[1] if b.n_few else float("nan")
    say(f"blobs per image: training mean {np.mean(b.real_blobs):.2f} (at most {most}); generated mean "
        f"{np.mean(b.blobs_per_image):.2f}, {n - b.n_few} of {n:,} images with more than {most}")
    say(f"crowded column among generated images with at most {most} blobs: {b.k_few} of {b.n_few} "
        f"({b.k_few / max(b.n_few, 1):.1%}, 95% interval {b.lo_few:.1%} - {hi_few:.1%}); among the others: "
        f"{census.k_rep - b.k_few} of {n - b.n_few} (all, by counting)")


@dataclass
class HandsCensus:
    images: Tensor
    fingers: Tensor
    histogram: dict[int, int]
    rate: float
    k_hal: int

    @property
    def colors(self) -> list[str]:
        return [finger_color(int(c)) for c in self.fingers]


def hands_census(s: Setup, x0: Tensor, training: TrainingImages) -> HandsCensus:
    """Count the generated hands' fingers, printing the histogram and the share not counted five."""
    images = shapes.from_model_range(x0)
    fingers = hands.count_fingers(images)
    histogram = hands.finger_histogram(fingers)
    rate = hands.miscount_rate(fingers)
    k_hal = int((fingers != 5).sum())
    lo, hi = wilson_interval(k_hal, s.n_samples)
    say(f"finger counts of {s.n_samples:,} generated hands: {histogram}")
    say(f"hallucination rate (count != 5): {rate:.1%} (95% interval {lo:.1%} - {hi:.1%}); more than five: "
        f"{int((fingers > 5).sum())}, fewer: {int((fingers < 5).sum())}; in the training data: {training.not_five} of "
        f"{len(training.hands):,}")
    return HandsCensus(images, fingers, histogram, rate, k_hal)


def hal_aurocs(axes: Sequence[Axes], s: Setup, hal: Mapping[str, Tensor], labels: Mapping[str, Tensor]) -> dict[str, float]:
    """Hal of the two kinds of images per data set (one panel each) and its AUROC (NaN with one kind only)."""
    class_names = {"shapes": ("no crowded column", "crowded column"), "hands": ("five fingers", "not five")}
    aurocs = {}
    for ax, (dataset, y) in zip(axes, labels.items()):
        n_pos = int(y.sum())
        aurocs[dataset] = detection.auroc(hal[dataset], y) if 0 < n_pos < len(y) else float("nan")
        lh = hal[dataset].clamp(min=1e-12).log10().numpy()
        bins = np.linspace(lh.min(), lh.max(), 30)
        ax.hist(lh[~y.numpy()], bins=bins, alpha=0.6, color="C0", label=f"{class_names[dataset][0]} ({len(y) - n_pos})")
        ax.hist(lh[y.numpy()], bins=bins, alpha=0.6, color="C3", label=f"{class_names[dataset][1]} ({n_pos})")
        ax.set(title=f"{dataset}: AUROC of Hal {aurocs[dataset]:.3f}", xlabel=r"$\log_{10}$ Hal (t = %d..%d)" % s.hal_window,
               ylabel="images")
        ax.legend(fontsize=8)
    return aurocs


def claimed_numbers(s: Setup, training: TrainingImages, sc: ShapesCensus, b: BlobReading, hc: HandsCensus,
                    aurocs: Mapping[str, float]) -> dict[str, Any]:
    """What ``results/05_shapes_hands.json`` records."""
    n = s.n_samples
    return {
        "counter_exact_shapes": training.shapes_exact,
        "counter_exact_hands": training.hands_exact,
        "shapes_valid": sc.counts["valid"] / n,
        "shapes_repeated": sc.k_rep / n,
        "shapes_repeated_same_kind": b.k_same / n,
        "shapes_blobs_mean": float(np.mean(b.blobs_per_image)),
        "shapes_overpopulated": (n - b.n_few) / n,
        "shapes_repeated_among_few_blobs": b.k_few / max(b.n_few, 1),
        "shapes_duplicated": sc.counts["duplicated"] / n,
        "shapes_misplaced": sc.counts["misplaced"] / n,
        "shapes_malformed": sc.counts["malformed"] / n,
        "shapes_hallucination_rate": sc.rate,
        "hands_five_fingers": float((hc.fingers == 5).double().mean()),
        "hands_more_fingers": float((hc.fingers > 5).double().mean()),
        "hands_fewer_fingers": float((hc.fingers < 5).double().mean()),
        "hands_hallucination_rate": hc.rate,
        "shapes_blobs_near_own_stencil": float(b.nearest_own.mean()),
        "shapes_blobs_within_tolerance": float((b.mismatch <= 4).mean()),
        "auroc_hal_shapes": aurocs["shapes"],
        "auroc_hal_hands": aurocs["hands"],
        "n_samples": n,
    }


def finger_color(fingers: int) -> str:
    """Green for five, red for more, orange for fewer."""
    return FINGER_COLORS["5 fingers" if fingers == 5 else ("more" if fingers > 5 else "fewer")]


# ---------------------------------------------------------------------------------------- figures and tables
def plot_losses(ax: Axes, models: Mapping[str, Any]) -> None:
    """Each model's training loss (moving average over a hundredth of the run), and a line per model printed:
    where it came from, its size, its steps, its final loss."""
    for dataset, trained in models.items():
        losses = trained.losses.numpy()
        window = max(1, len(losses) // 100)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window, smooth, label=dataset)
        n_params = sum(p.numel() for p in trained.model.parameters())
        say(f"{dataset:>6}: {trained.source} ({trained.origin}), {n_params:,} parameters, {len(losses):,} steps, "
            f"trained in {trained.wall_time_s / 60:.0f} min; final loss {losses[-len(losses) // 20:].mean():.4f}")
    ax.set(title="training loss (moving average)", xlabel="optimizer step", ylabel=r"$\epsilon$-prediction MSE",
           yscale="log")
    ax.legend()


def hallucinated_picks(census: ShapesCensus, per_label: int = 4) -> list[int]:
    """The first ``per_label`` images the strict counter calls duplicated, misplaced and malformed."""
    return [i for label in ("duplicated", "misplaced", "malformed")
            for i in [j for j, lab in enumerate(census.labels) if lab == label][:per_label]]


def plot_hallucinated(census: ShapesCensus) -> None:
    """The images of :func:`hallucinated_picks`, each outlined by the counter, in rows of five (or a line saying
    there are none)."""
    picks = hallucinated_picks(census)
    if not picks:
        print("no hallucinated shapes image in this batch")
        return
    fig, axes = plotting.panels(len(picks), 5, 2.6, width=1.9 * min(len(picks), 5))
    for ax, i in zip(axes, picks):
        outline(ax, census.images[i], census.reports[i], f"image {i}: {census.labels[i]}")
    plt.tight_layout()
    add_outline_key(fig)


def print_components(census: ShapesCensus) -> None:
    kind_counts = {kind: sum(c.kind == kind for r in census.reports for c in r.components) for kind in KIND_COLORS}
    say(f"components found in {len(census.reports):,} generated images: {kind_counts}")


def plot_blobs(ax0: Axes, ax1: Axes, s: Setup, census: ShapesCensus, b: BlobReading) -> None:
    """Each shape-sized blob's distance to the nearest stencil (``ax0``); the images with a crowded column, their
    columns' boundaries dotted (``ax1``)."""
    ax0.hist(np.minimum(b.mismatch, 40), bins=np.arange(0, 42) - 0.5, color="C0")
    ax0.axvline(4.5, color="C3", ls="--", label="strict counter's tolerance (4 px)")
    ax0.set(title="shape-sized blobs: distance to the nearest stencil", ylabel="blobs",
            xlabel="pixels that differ (40: 40 or more)")
    ax0.legend(fontsize=8)
    flagged = torch.nonzero(census.repeated).flatten()[:s.n_show]
    if len(flagged):
        plotting.image_mosaic(ax1, census.images[flagged], ncols=12, dividers=COLUMN_DIVIDERS)
        ax1.set_title(f"generated images with a crowded column (first {len(flagged)} of {census.k_rep})")
    else:
        ax1.set_axis_off()


def plot_fingers(ax0: Axes, ax1: Axes, hc: HandsCensus, show: int) -> None:
    """Left: the share of generated hands per finger count; right: the first ``show`` hands, framed by it."""
    n = len(hc.fingers)
    xs = np.arange(0, max(8, int(hc.fingers.max()) + 1) + 1)
    ax0.bar(xs, [hc.histogram.get(int(x), 0) / n for x in xs], color=[finger_color(x) for x in xs])
    ax0.set(title="fingers per generated hand", xlabel="fingers counted", ylabel="share of generated hands", xticks=xs)
    plotting.image_mosaic(ax1, hc.images[:show], hc.colors[:show], ncols=12, legend=FINGER_COLORS)
    ax1.set_title(f"generated hands (first {show}), framed by finger count")


def browse_options(census: ShapesCensus, hc: HandsCensus) -> dict[str, tuple[Tensor, list[int]]]:
    """The explorer's choices: a label -> (the images, the indices of those it picks out)."""
    options = {}
    for label in sorted(shapes.LABELS, key=lambda lab: lab != "duplicated"):  # the paper's repeated shapes first: the page's
        if census.counts[label]:                                              # static view (the first choice)
            options[f"shapes: {label}"] = (census.images, [i for i, lab in enumerate(census.labels) if lab == label])
    if census.k_rep > 0:  # shown above already (the blob reading's mosaic)
        options["shapes: crowded column"] = (census.images, torch.nonzero(census.repeated).flatten().tolist())
    fingers = hc.fingers.tolist()
    for c in sorted(hc.histogram):
        options[f"hands: {c} fingers"] = (hc.images, [i for i, f in enumerate(fingers) if f == c])
    return options
