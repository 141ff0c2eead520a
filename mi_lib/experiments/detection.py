"""Chapter 6, *Diffusion models know when they hallucinate*: the Hal metric as a detector, measured.

Each model of the chapter (the 1D mixture under the official and the standard beta schedule, the 5x5 grid, and
chapter 5's two image models) becomes a :class:`Measured`: a test batch (and, for the mixtures, a calibration
batch drawn with the next seed), its labels from geometry or from chapter 5's counters alone, and four scores
per sample (:func:`detection_scores`: Hal, the variance of x_t over the same window, the norm
of the predicted noise at the last step, a random score). The rest are measurements on those: AUROCs, a
threshold fitted on the calibration batch and applied to the test batch (:func:`threshold_rates`), the grid's
hallucinations split by where they lie (:func:`grid_split`), and AUROC over a grid of windows
(:class:`WindowSweeps`). :func:`claimed_numbers` gathers what ``results/06_detection.json`` records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor, nn

from ..datasets import hands, shapes
from ..diffusion.models import MixtureModelSpec, image_model, image_model_spec, image_samples, mixture_model, mixture_samples
from ..diffusion.nets import MLPConfig, shared_timestep
from ..diffusion.sampling import SampleResult
from ..diffusion.schedule import OFFICIAL, STANDARD, NoiseSchedule
from ..diffusion.train import TrainConfig
from ..measure import detection as det
from ..measure.metrics import mode_segments, out_of_support, segment_of
from ..params import choice_parameter, number_parameter, sequence_parameter
from ..settings import Settings
from ..storage.results import say

__all__ = [
    "detection_scores", "auroc_standard_error", "roc_curve", "FilterRates", "filter_rates", "threshold_keeping",
    "youden_threshold", "window_auroc_grid",
    "SCALES", "IMAGE_NAMES", "Setup", "Measured", "setup", "mixture_specs", "sample_mixtures", "measure_mixtures",
    "measure_images", "score_images",
    "auroc_vs_radius", "threshold_rates", "grid_split", "claimed_numbers", "plot_hal_histograms",
    "plot_rocs", "plot_threshold", "print_auroc_table", "print_rates", "print_summary",
    "radius_reading", "plot_auroc_vs_radius", "print_auroc_vs_radius", "WindowSweeps", "mixture_window_sweeps",
    "print_schedule_reading", "print_image_aurocs", "print_image_sweeps", "matched_windows",
]

#: Per scale: test and calibration samples per mixture model, images per image model (one batch: calibration
#: and test halves), and how the mixture models are trained (at CI scale: the checkpoints that ship).
SCALES: dict[str, dict[str, Any]] = {
    "ci": dict(n_samples=10_000, n_calibration=5_000, n_images=128,
               train_1d=TrainConfig(steps=5_000, batch_size=2_000), n_train_1d=20_000,
               train_2d=TrainConfig(steps=30_000, batch_size=2_000), n_train_2d=20_000),
    "paper": dict(n_samples=100_000, n_calibration=100_000, n_images=2_000,
                  train_1d=TrainConfig(steps=20_000), n_train_1d=20_000,
                  train_2d=TrainConfig(steps=100_000), n_train_2d=100_000),
}
OFFICIAL_1D, STANDARD_1D, GRID = "1D, official schedule", "1D, standard schedule", "2D grid"
IMAGE_NAMES = {"shapes": "Simple Shapes", "hands": "synthetic hands"}
#: What the two classes are called, per model: (hallucinated, the others).
CLASS_NAMES = {"Simple Shapes": ("crowded column", "no crowded column"),
               "synthetic hands": ("not five fingers", "five fingers")}
MIN_PER_CLASS = 5  # fewer images of one kind than this in either half: nothing to measure a detector on


# ---------------------------------------------------------------- scores, and how they are judged
def detection_scores(model: Callable[[Tensor, Tensor], Tensor], records: det.Records, schedule: NoiseSchedule,
                     window: tuple[int, int] = (0, 9), *, seed: int = 0) -> dict[str, Tensor]:
    """Hal and three baselines for the samples whose steps were recorded, each (N,) float64, larger = more
    suspicious:

    - ``"Hal"``: variance of x0_hat over ``window`` (the paper's Eq. 4, averaged over dimensions);
    - ``"x_t variance"``: the same variance of x_t instead of x0_hat;
    - ``"|eps_hat| at t=0"``: the norm of ``model``'s predicted noise at the last step (re-evaluated on the
      recorded x_0 input: recovering it from x0_hat would divide a float32 difference by sqrt(1 - alpha_bar_0));
    - ``"random"``: uniform noise from ``seed`` (a detector that knows nothing: AUROC 0.5 in expectation)."""
    det.check_window(records, window)
    if 0 not in records:
        raise ValueError("the |eps_hat| baseline needs step t=0 recorded")
    xt = records[0][0]
    device = next((p.device for p in model.parameters()), torch.device("cpu")) if isinstance(model, nn.Module) else xt.device
    with torch.inference_mode():
        eps_hat = torch.cat([model(part.to(device), shared_timestep(0, len(part), device)).cpu() for part in xt.split(65_536)])
    return {
        "Hal": det.hal_from_records(records, window).double(),
        "x_t variance": det.hal_from_records(records, window, of="xt").double(),
        "|eps_hat| at t=0": eps_hat.double().flatten(1).norm(dim=1),
        "random": torch.rand(xt.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64),
    }


def auroc_standard_error(auroc: float, n_pos: int, n_neg: int) -> float:
    """The standard error of an AUROC measured on ``n_pos`` hallucinated and ``n_neg`` other samples (Hanley &
    McNeil 1982, exponential approximation): how far sampling alone moves it. A difference from 0.5 (chance)
    of under two standard errors is not evidence of a detector."""
    if not 0.0 <= auroc <= 1.0:
        raise ValueError(f"auroc must be in [0, 1], got {auroc}")
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"need at least one sample of each kind, got {n_pos} and {n_neg}")
    q1, q2 = auroc / (2 - auroc), 2 * auroc**2 / (1 + auroc)
    var = (auroc * (1 - auroc) + (n_pos - 1) * (q1 - auroc**2) + (n_neg - 1) * (q2 - auroc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def roc_curve(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The ROC curve of "flag the samples scoring above a threshold", one point per distinct score.

    Returns (false-positive rate, true-positive rate, thresholds), each (M + 1,) float64, from (0, 0)
    (threshold +inf: flag nothing) to (1, 1). At ``thresholds[i]`` the flagged samples are those with
    score >= thresholds[i]. scores, labels: (N,)."""
    scores, labels, n_pos, n_neg = det.check_scores(scores, labels)
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], labels[order].double()
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last member of each group of tied scores
    zero = torch.zeros(1, dtype=torch.float64)
    fpr = torch.cat([zero, fp[last] / n_neg])
    tpr = torch.cat([zero, tp[last] / n_pos])
    thresholds = torch.cat([torch.full((1,), float("inf"), dtype=torch.float64), s[last]])
    return fpr, tpr, thresholds


@dataclass(frozen=True)
class FilterRates:
    """What removing every sample whose score exceeds ``threshold`` does: ``removed`` is the share of
    hallucinated samples removed, ``kept`` the share of in-support samples kept, out of ``n_hallucinated``
    and ``n_in_support``."""

    threshold: float
    removed: float
    kept: float
    n_hallucinated: int
    n_in_support: int


def filter_rates(scores: Tensor, labels: Tensor, threshold: float) -> FilterRates:
    """Remove the samples with score > ``threshold``; report the shares removed/kept. scores, labels: (N,)."""
    scores, labels, n_pos, n_neg = det.check_scores(scores, labels)
    flagged = scores > threshold
    return FilterRates(float(threshold), float(flagged[labels].sum()) / n_pos, float((~flagged[~labels]).sum()) / n_neg, n_pos, n_neg)


def threshold_keeping(scores: Tensor, labels: Tensor, kept: float = 0.96) -> float:
    """The smallest threshold that keeps at least a share ``kept`` of the in-support samples (label False):
    the ceil(kept * n)-th smallest in-support score. Fit it on a calibration batch, apply it with
    :func:`filter_rates` to another."""
    scores, labels, _, _ = det.check_scores(scores, labels, both=False)
    kept = number_parameter(kept, "kept", above=0, at_most=1)
    in_support = scores[~labels]
    if len(in_support) == 0:
        raise ValueError("no in-support samples to calibrate on")
    rank = max(1, math.ceil(kept * len(in_support) - 1e-9))
    return float(torch.sort(in_support).values[rank - 1])


def youden_threshold(scores: Tensor, labels: Tensor) -> float:
    """The threshold maximising removed + kept - 1 (Youden's J) on these samples; fit it on a calibration
    batch. Ties between thresholds go to the largest (the one that removes least)."""
    fpr, tpr, thresholds = roc_curve(scores, labels)
    j = tpr - fpr
    best = int(torch.nonzero(j == j.max())[0])
    if best == 0:  # flagging nothing is best: no score exceeds the largest one
        return float(thresholds[1])
    # flagging score >= thresholds[best] is removing score > anything between it and the next lower score
    below = thresholds[best + 1] if best + 1 < len(thresholds) else thresholds[best] - 1.0
    return float((thresholds[best] + below) / 2)


def window_auroc_grid(records: det.Records, labels: Tensor, t_los: Sequence[int], t_his: Sequence[int]) -> Tensor:
    """AUROC of Hal for every window (t_lo, t_hi) with t_lo < t_hi; NaN elsewhere (a window of one step has no
    variance: every sample's Hal is 0). Returns (len(t_los), len(t_his)) float64."""
    grid = torch.full((len(t_los), len(t_his)), float("nan"), dtype=torch.float64)
    for i, t_lo in enumerate(t_los):
        for j, t_hi in enumerate(t_his):
            if t_lo < t_hi:
                grid[i, j] = det.auroc(det.hal_from_records(records, (t_lo, t_hi)), labels)
    return grid


@dataclass(frozen=True)
class Setup:
    """The chapter's parameters, checked, with the sizes its scale gives where a parameter is None."""

    scale: str
    seed: int
    k: float
    window: tuple[int, int]
    kept_target: float
    n_samples: int
    n_calibration: int
    n_images: int

    @property
    def keep_rule(self) -> str:
        return f"keep {self.kept_target:.0%} (calibration)"


def setup(scale: str, seed: int, k: float, window: Sequence[int], kept_target: float, n_samples: int | None,
          n_calibration: int | None, n_images: int | None) -> Setup:
    """Check the notebook's parameters (one clear error, before any work) and fill in the sizes of ``scale``."""
    scale = choice_parameter(scale, "scale", tuple(SCALES))
    size = SCALES[scale]
    window = sequence_parameter(window, "window", int, length=2)  # a list, or a -p string, from papermill
    if not 0 <= window[0] < window[1] < 1000:
        raise ValueError("window must be two step indices (t_lo, t_hi) with 0 <= t_lo < t_hi < 1000 "
                         f"(a variance needs two steps), got {window!r}")

    def size_of(value: int | None, name: str, at_least: int) -> int:
        return size[name] if value is None else number_parameter(value, name, int, at_least=at_least)

    if n_images == 1:
        raise ValueError("n_images must be 0 (the image models left out) or at least 2 (calibration and test halves), got 1")
    return Setup(
        scale, number_parameter(seed, "seed", int, at_least=0, at_most=2**32 - 1), number_parameter(k, "k", above=0),
        tuple(window), number_parameter(kept_target, "kept_target", above=0, below=1),
        size_of(n_samples, "n_samples", 1), size_of(n_calibration, "n_calibration", 1),
        size_of(n_images, "n_images", 0),
    )


def mixture_specs(s: Setup) -> dict[str, MixtureModelSpec]:
    """The three mixture models: the 1D mixture at 1, 2, 3 under the official and the standard schedule, the grid."""
    size = SCALES[s.scale]
    one_d = MixtureModelSpec("1d", (1.0, 2.0, 3.0), n_train=size["n_train_1d"], data_seed=s.seed, train=size["train_1d"])
    return {
        OFFICIAL_1D: one_d,
        STANDARD_1D: one_d.replace(schedule=STANDARD),
        GRID: MixtureModelSpec("grid", n_train=size["n_train_2d"], data_seed=s.seed, model=MLPConfig(data_dim=2),
                               train=size["train_2d"]),
    }


@dataclass
class Measured:
    """One model's test batch (the image models: the whole batch), its labels and scores, and their AUROCs; the
    mixtures also carry a calibration batch (seed + 1)."""

    name: str
    schedule: NoiseSchedule
    test: SampleResult
    labels: Tensor
    scores: dict[str, Tensor] = field(default_factory=dict)
    calibration: SampleResult | None = None
    labels_cal: Tensor | None = None
    scores_cal: dict[str, Tensor] | None = None
    model: nn.Module | None = None

    @property
    def aurocs(self) -> dict[str, float]:
        return {score: det.auroc(s, self.labels) for score, s in self.scores.items()}


def record_up_to(spec: MixtureModelSpec, window: tuple[int, int]) -> int:
    """How many last steps to record: the window sweep needs x_t and x0_hat at every step it may use, deeper
    for the gentler standard schedule."""
    return max(300 if spec.schedule == STANDARD else 100, window[1] + 1)


def sample_mixtures(s: Setup, specs: Mapping[str, MixtureModelSpec], settings: Settings) -> dict[str, tuple[SampleResult, SampleResult]]:
    """Each model's test (seed) and calibration (seed + 1) batches, recording the last steps (cached on disk)."""
    out = {}
    for name, spec in specs.items():
        steps = range(record_up_to(spec, s.window))
        out[name] = tuple(mixture_samples(spec, n, settings, seed=seed, record_steps=steps)
                          for n, seed in ((s.n_samples, s.seed), (s.n_calibration, s.seed + 1)))
    return out


def measure_mixtures(s: Setup, specs: Mapping[str, MixtureModelSpec], samples: Mapping[str, tuple[SampleResult, SampleResult]],
                     settings: Settings) -> dict[str, Measured]:
    """Label both batches of each model (farther than k sigma from every mode) and score them. Raises if a batch
    holds one kind only."""
    runs = {}
    for name, spec in specs.items():
        model, schedule = mixture_model(spec, settings).model, NoiseSchedule(spec.schedule)
        batches = samples[name]
        labels = [out_of_support(b.x0, spec.mixture(), s.k) for b in batches]
        scores = [detection_scores(model, b.records, schedule, s.window, seed=s.seed) for b in batches]
        runs[name] = Measured(name, schedule, batches[0], labels[0], scores[0], batches[1], labels[1], scores[1], model)
    print(f"{'hallucinated':>22} | {'test batch':>23} | {'calibration batch':>17}")
    for name, r in runs.items():
        test = f"{int(r.labels.sum())} of {s.n_samples:,} ({r.labels.float().mean():.2%})"
        print(f"{name:>22} | {test:>23} | {f'{int(r.labels_cal.sum())} of {s.n_calibration:,}':>17}")
    for name, r in runs.items():  # an AUROC and a fitted threshold need samples of both kinds in both batches
        fewest = min(int(y.sum()) for y in (r.labels, r.labels_cal))
        if fewest == 0 or min(int((~y).sum()) for y in (r.labels, r.labels_cal)) == 0:
            raise ValueError(f"{name}: a batch holds samples of one kind only at k = {s.k:g} (nothing to measure a detector on); "
                             "use a smaller k or larger n_samples / n_calibration")
        if fewest < 5:
            print(f"{name}: only {fewest} hallucinated samples in a batch; read this model's figures as noise")
    return runs


def image_labels(dataset: str, x0: Tensor) -> Tensor:
    """Chapter 5's counters, which never see Hal: a crowded column (shapes), not five fingers (hands)."""
    images = shapes.from_model_range(x0)
    return shapes.repeated_shapes(images) if dataset == "shapes" else hands.count_fingers(images) != 5


def matched_window_end(schedule: NoiseSchedule, window: tuple[int, int]) -> int:
    """The rule found on the mixtures, which needs no labels: a window carries over in alpha_bar, not in steps.
    The matched window ends at the last step whose alpha_bar is at least the official schedule's at the end of
    ``window``."""
    official = float(NoiseSchedule(OFFICIAL).alpha_bar_64[window[1]])
    return max(window[0] + 1, int((schedule.alpha_bar_64 >= official).nonzero().max()))


def measure_images(s: Setup, settings: Settings) -> dict[str, Measured]:
    """Chapter 5's image models: one batch of ``n_images`` each (the same cached batch as chapter 5's at CI scale),
    recording the last steps the windows below need; labelled by the counters. A model with fewer than
    :data:`MIN_PER_CLASS` images of one kind in either half gets no scores (said in the output). ``n_images = 0``
    leaves them out: GPU window 2 runs the mixtures before the paper-scale UNets are trained."""
    if s.n_images == 0:
        say("n_images = 0: chapter 5's image models are left out")
        return {}
    specs = {dataset: image_model_spec(dataset, s.scale, n_train=5_000, data_seed=s.seed) for dataset in IMAGE_NAMES}
    schedules = {dataset: NoiseSchedule(spec.schedule) for dataset, spec in specs.items()}
    up_to = max(20, s.window[1] + 1, *(matched_window_end(sch, s.window) + 1 for sch in schedules.values()))
    runs = {}
    for dataset, name in IMAGE_NAMES.items():
        model = image_model(specs[dataset], settings).model
        batch = image_samples(specs[dataset], s.n_images, settings, seed=s.seed, chunk_size=512, hal_window=s.window,
                              record_steps=range(up_to))
        runs[dataset] = Measured(name, schedules[dataset], batch, image_labels(dataset, batch.x0), model=model)
    return runs


def score_images(s: Setup, runs: Mapping[str, Measured]) -> None:
    """Score the image batches that hold enough of both kinds (in place), printing the counts."""
    for r in runs.values():
        print(f"{r.name:>22}: {int(r.labels.sum()):>5} of {s.n_images:,} images hallucinated ({r.labels.float().mean():.1%})")
        if min(min(int(h.sum()), int((~h).sum())) for h in (r.labels[0::2], r.labels[1::2])) < MIN_PER_CLASS:
            say(f"{r.name}: too few of one kind in a half to measure a detector: its detection figures are recorded as NaN")
            continue
        r.scores = detection_scores(r.model, r.test.records, r.schedule, s.window, seed=s.seed)
        # the records reproduce the sampler's own streaming Hal (to float rounding: on a GPU the sampler reduced there)
        torch.testing.assert_close(det.hal_from_records(r.test.records, s.window), r.test.hal, rtol=1e-4, atol=1e-12)


def print_auroc_table(runs: Sequence[Measured]) -> None:
    """The AUROC of every score per model, and which score is best."""
    aurocs = {r.name: r.aurocs for r in runs}
    widths = [max(len(score), 5) for score in runs[0].scores]
    print(f"{'AUROC':>22} | " + " | ".join(f"{score:>{w}}" for score, w in zip(runs[0].scores, widths)))
    for name, a in aurocs.items():
        print(f"{name:>22} | " + " | ".join(f"{v:{w}.3f}" for v, w in zip(a.values(), widths)))
    say("best score: " + "; ".join(f"{name}: {max(a, key=a.get)}" for name, a in aurocs.items()))


def hal_standard_error(r: Measured) -> float:
    """Hanley-McNeil's standard error of Hal's AUROC: chance alone moves an AUROC about this much."""
    return auroc_standard_error(r.aurocs["Hal"], int(r.labels.sum()), int((~r.labels).sum()))


def auroc_vs_radius(spec: MixtureModelSpec, r: Measured, k_values: Sequence[float]) -> dict[float, float]:
    """Hal's AUROC with the labelling radius moved (the scores never move): radii leaving 5 or more samples
    of each kind."""
    distance = spec.mixture().nearest_mode_distance(r.test.x0)[0]  # in units of sigma
    hal = r.scores["Hal"]
    return {float(kk): det.auroc(hal, distance > kk) for kk in k_values if 5 <= int((distance > kk).sum()) < len(hal)}


def threshold_rates(s: Setup, scores: Tensor, labels: Tensor, scores_cal: Tensor, labels_cal: Tensor) -> dict[str, FilterRates]:
    """Removed and kept on the test scores at the thresholds two rules fit on the calibration scores: keep
    ``kept_target`` of the in-support ones, or maximise removed + kept (Youden's J)."""
    rules: dict[str, Callable[[Tensor, Tensor], float]] = {
        s.keep_rule: lambda x, y: threshold_keeping(x, y, s.kept_target),
        "Youden (calibration)": youden_threshold,
    }
    return {rule: filter_rates(scores, labels, fit(scores_cal, labels_cal)) for rule, fit in rules.items()}


def print_rates(rates: Mapping[str, Mapping[str, FilterRates]], batch: str, others: str) -> None:
    """Per model and threshold rule: the threshold, the share of hallucinations it removes and of ``others`` it keeps
    on the ``batch``; the paper's figures last."""
    print(f"{batch:>22} | {'threshold rule':>22} | threshold | removed | {others:>15}")
    for name, by_rule in rates.items():
        for rule, r in by_rule.items():
            print(f"{name:>22} | {rule:>22} | {r.threshold:9.2e} | {r.removed:7.1%} | {r.kept:15.1%}")
    print(f"{'paper (synthetic data)':>22} | {'not published':>22} | {'':>9} | {'> 95%':>7} | {'96%':>15}")
    say(f"removed: the share of the hallucinated samples above the threshold; {others}: the share of the rest below it")


def grid_split(s: Setup, spec: MixtureModelSpec, r: Measured, keep_threshold: float) -> tuple[dict[str, dict[str, float]], float]:
    """The grid's hallucinations split by where they lie: on a segment between two neighbouring modes, or near a
    mode / elsewhere; each group's AUROC against the in-support samples, for every score and, for Hal, among
    the samples at least 8 sigma from every mode. Also the share of between-mode samples the threshold removes."""
    grid = spec.mixture()
    segs = mode_segments(grid, clearance=s.k).up_to(2)
    on_segment = segment_of(r.test.x0, grid, segs, s.k, end_margin=0.25 * float(segs.length.min())) >= 0
    groups = {"between two modes": r.labels & on_segment, "near a mode / elsewhere": r.labels & ~on_segment}
    split = {}
    widths = [max(len(score), 5) for score in r.scores]
    print(f"{'AUROC vs in support':>23} | samples | " + " | ".join(f"{x:>{w}}" for x, w in zip(r.scores, widths)))
    for group, mask in groups.items():
        keep = mask | ~r.labels
        split[group] = {score: det.auroc(x[keep], mask[keep]) for score, x in r.scores.items()}
        print(f"{group:>23} | {int(mask.sum()):>7} | " + " | ".join(f"{a:{w}.3f}" for a, w in zip(split[group].values(), widths)))
    far = grid.nearest_mode_distance(r.test.x0)[0] >= 8  # in units of sigma
    for group, mask in groups.items():
        m = mask & far
        keep = m | ~r.labels
        a = det.auroc(r.scores["Hal"][keep], m[keep]) if m.any() else float("nan")
        split[group]["Hal, at least 8 sigma out"] = a
        se = auroc_standard_error(a, int(m.sum()), int((~r.labels).sum())) if m.any() else float("nan")
        say(f"{group}, at least 8 sigma from every mode ({int(m.sum())} samples): Hal {a:.3f} (standard error {se:.3f})")
    removed_between = float((r.scores["Hal"][groups["between two modes"]] > keep_threshold).double().mean())
    return split, removed_between


def plot_hal_histograms(axes: Sequence[Axes], runs: Sequence[Measured], window: tuple[int, int], bins: int = 60) -> None:
    """log10 Hal of the two kinds of samples, each normalised to its own area (a kind of fewer than 50 samples: one
    tick per sample), one panel per model."""
    for ax, r in zip(axes, runs):
        hal, y = r.scores["Hal"].clamp(min=1e-12).log10().numpy(), r.labels.numpy()
        edges = np.linspace(hal.min(), hal.max(), bins)
        bad, good = CLASS_NAMES.get(r.name, ("hallucinated", "in support"))
        ax.hist(hal[~y], bins=edges, density=True, alpha=0.6, color="C0", label=f"{good} ({(~y).sum():,})")
        label = f"{bad + ': hallucinated' if r.name in CLASS_NAMES else bad} ({y.sum():,})"
        if y.sum() < 50:  # too few for a density: one tick per sample along the bottom
            ax.plot(hal[y], np.zeros(int(y.sum())), "|", color="C3", ms=14, mew=1.5, transform=ax.get_xaxis_transform(),
                    label=label + ", one tick each")
        else:
            ax.hist(hal[y], bins=edges, density=True, alpha=0.6, color="C3", label=label)
        ax.set(title=r.name, xlabel=r"$\log_{10}$ Hal (variance of $\hat x_0$, t = %d..%d)" % window, ylabel="density")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # headroom: the legend sits above the bars, not on them
        ax.legend(fontsize=8, loc="upper right")


def plot_rocs(axes: Sequence[Axes], runs: Sequence[Measured]) -> None:
    """Every score's ROC curve, one panel per model, its AUROC in the legend."""
    for ax, r in zip(axes, runs):
        bad, good = CLASS_NAMES.get(r.name, ("hallucinations", "in-support samples"))
        for score, (s, a) in {x: (r.scores[x], v) for x, v in r.aurocs.items()}.items():
            fpr, tpr, _ = roc_curve(s, r.labels)
            style = dict(color="grey", ls="--") if score == "random" else {}  # chance, beside the diagonal
            ax.plot(fpr, tpr, label=f"{score} ({a:.3f})", lw=1.5 if score == "Hal" else 1.0, **style)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
        ax.set(title=r.name, xlabel=f"{good}: share removed (false-positive rate)",
               ylabel=f"{bad}: share removed\n(true-positive rate)")
        ax.legend(fontsize=8, loc="lower right", title="score (AUROC)", title_fontsize=8)


def claimed_numbers(s: Setup, mixtures: Mapping[str, Measured], images: Mapping[str, Measured],
                    rates: Mapping[str, Mapping[str, FilterRates]], best_window: Mapping[str, tuple[int, int, float]],
                    split: Mapping[str, Mapping[str, float]], removed_between: float, auroc_vs_k: Mapping[str, Mapping[float, float]],
                    matched: Mapping[str, tuple[int, float]]) -> dict[str, float]:
    """What ``results/06_detection.json`` records (NaN for an image model with too few of one kind to measure)."""
    a = {name: r.aurocs for name, r in (*mixtures.items(), *((r.name, r) for r in images.values()))}
    keep, youden = s.keep_rule, "Youden (calibration)"
    share = {name: float(r.labels.float().mean()) for name, r in mixtures.items()}
    grid_far = max(auroc_vs_k[GRID])
    numbers = {
        "hallucinated_1d": share[OFFICIAL_1D], "hallucinated_1d_standard": share[STANDARD_1D],
        "auroc_hal_1d": a[OFFICIAL_1D]["Hal"], "auroc_random_1d": a[OFFICIAL_1D]["random"],
        "auroc_eps_norm_1d": a[OFFICIAL_1D]["|eps_hat| at t=0"], "auroc_xt_var_1d": a[OFFICIAL_1D]["x_t variance"],
        "auroc_hal_1d_standard": a[STANDARD_1D]["Hal"], "auroc_hal_grid": a[GRID]["Hal"],
        "auroc_eps_norm_grid": a[GRID]["|eps_hat| at t=0"], "auroc_random_grid": a[GRID]["random"],
        "auroc_hal_grid_between_modes": split["between two modes"]["Hal"],
        "auroc_hal_grid_near_mode": split["near a mode / elsewhere"]["Hal"],
        "auroc_hal_grid_near_mode_8sigma": split["near a mode / elsewhere"]["Hal, at least 8 sigma out"],
        "grid_k_far": float(grid_far), "auroc_hal_grid_k_far": auroc_vs_k[GRID][grid_far],
        "removed_grid_between_modes": removed_between,
    }
    for suffix, name in (("1d", OFFICIAL_1D), ("1d_standard", STANDARD_1D), ("grid", GRID)):
        numbers[f"removed_{suffix}"], numbers[f"kept_{suffix}"] = rates[name][keep].removed, rates[name][keep].kept
    for suffix, name in (("1d", OFFICIAL_1D), ("grid", GRID)):
        numbers[f"removed_{suffix}_youden"], numbers[f"kept_{suffix}_youden"] = rates[name][youden].removed, rates[name][youden].kept
    for suffix, name in (("1d", OFFICIAL_1D), ("1d_standard", STANDARD_1D), ("grid", GRID)):
        numbers[f"best_window_auroc_{suffix}"] = best_window[name][2]
    numbers["n_hallucinated_1d"], numbers["n_hallucinated_grid"] = int(mixtures[OFFICIAL_1D].labels.sum()), int(mixtures[GRID].labels.sum())
    for dataset, r in images.items():
        numbers[f"n_hallucinated_{dataset}"] = int(r.labels.sum())
        if not r.scores:  # too few of one kind to measure (said above): NaN, not a number that means nothing
            for key in ("auroc_hal", "auroc_xt_var", "auroc_eps_norm", "auroc_random", "removed", "kept", "best_window_auroc"):
                numbers[f"{key}_{dataset}"] = float("nan")
            numbers[f"removed_{dataset}_youden"] = numbers[f"kept_{dataset}_youden"] = float("nan")
            continue
        for score, key in (("Hal", "hal"), ("x_t variance", "xt_var"), ("|eps_hat| at t=0", "eps_norm"), ("random", "random")):
            numbers[f"auroc_{key}_{dataset}"] = a[r.name][score]
        numbers[f"removed_{dataset}"], numbers[f"kept_{dataset}"] = rates[r.name][keep].removed, rates[r.name][keep].kept
        numbers[f"removed_{dataset}_youden"] = rates[r.name][youden].removed
        numbers[f"kept_{dataset}_youden"] = rates[r.name][youden].kept
        numbers[f"best_window_auroc_{dataset}"] = best_window[r.name][2]
    numbers["n_images"] = s.n_images
    for dataset in images:  # the window matched in alpha_bar (no labels), beside the fixed one
        t2, auroc = matched.get(dataset, (matched_window_end(images[dataset].schedule, s.window), float("nan")))
        numbers[f"auroc_hal_{dataset}_matched_window"] = auroc
        numbers[f"matched_window_t2_{dataset}"] = t2
    return numbers


def print_summary(s: Setup, runs: Sequence[Measured], rates: Mapping[str, Mapping[str, FilterRates]]) -> None:
    """One line per measured model: its hallucinations, Hal's AUROC, the best baseline's, and removed / kept at the
    calibrated "keep" threshold; the paper's figures last."""
    print(f"{'data set':>21} | hallucinated | {'Hal':>5} | {'best baseline':>22} | removed | {'kept':>6}")
    for r in runs:
        a = r.aurocs
        best = max((x for x in a if x != "Hal"), key=a.get)
        kept = rates[r.name][s.keep_rule]
        print(f"{r.name:>21} | {f'{int(r.labels.sum())}/{len(r.labels):,}':>12} | {a['Hal']:5.3f} | "
              f"{best + f' {a[best]:.3f}':>22} | {kept.removed:7.1%} | {kept.kept:6.1%}")
    print(f"{'paper, synthetic data':>21} | {'':>12} | {'—':>5} | {'—':>22} | {'> 95%':>7} | {'96%':>6}")
    say(f"Hal, best baseline: AUROC on the test batch; removed, kept: the keep-{s.kept_target:.0%} threshold's shares")


def plot_threshold(ax: Axes, r: Measured, log10_threshold: float) -> None:
    """The two kinds' log10 Hal and one threshold, with what it removes and keeps in the title (the widget)."""
    hal, y = r.scores["Hal"], r.labels
    rates = filter_rates(hal, y, 10.0**log10_threshold)
    lh, y = hal.clamp(min=1e-12).log10().numpy(), y.numpy()
    edges = np.linspace(lh.min(), lh.max(), 60)
    bad, good = CLASS_NAMES.get(r.name, ("hallucinated", "in support"))
    ax.hist(lh[~y], bins=edges, density=True, alpha=0.6, color="C0", label=good)
    ax.hist(lh[y], bins=edges, density=True, alpha=0.6, color="C3", label=bad)
    ax.axvline(log10_threshold, color="black", lw=1, label="threshold")
    ax.set(title=f"{r.name}: removed {rates.removed:.1%} of '{bad}', kept {rates.kept:.1%} of '{good}'",
           xlabel=r"$\log_{10}$ Hal", ylabel="density")
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------- the chapter's readings
def radius_reading(s: Setup, specs: Mapping[str, MixtureModelSpec], mixtures: Mapping[str, Measured]
                   ) -> dict[str, dict[float, float]]:
    """Hal's AUROC per mixture over labelling radii from 3 to beyond ``s.k`` (every half sigma)."""
    k_values = np.arange(3.0, max(8.0, s.k + 4.0) + 0.01, 0.5)
    return {name: auroc_vs_radius(specs[name], r, k_values) for name, r in mixtures.items()}


def plot_auroc_vs_radius(ax: Axes, s: Setup, auroc_vs_k: Mapping[str, Mapping[float, float]]) -> None:
    """The radius reading's curves (the chapter's k dotted), and its values at k = 3, 4, 6, 8 printed."""
    for name, curve in auroc_vs_k.items():
        ax.plot(list(curve), list(curve.values()), marker="o", ms=3, label=name)
    ax.axvline(s.k, color="grey", lw=0.5, ls=":")
    ax.set(title="AUROC of Hal vs the labelling radius", ylabel="AUROC of Hal", ylim=(0.5, 1.0),
           xlabel=r"labelling radius $k$ (hallucinated: beyond $k\sigma$ of every mode)")
    ax.legend(fontsize=8)


def print_auroc_vs_radius(auroc_vs_k: Mapping[str, Mapping[float, float]]) -> None:
    for name, curve in auroc_vs_k.items():
        shown = [(kk, a) for kk, a in curve.items() if kk in (3.0, 4.0, 6.0, 8.0)]
        print(f"{name:>22}: " + ", ".join(f"k={kk:g}: {a:.3f}" for kk, a in shown))


@dataclass
class WindowSweeps:
    """Hal's AUROC over grids of windows [T1, T2], per model (NaN where T1 >= T2), and the best cell of each
    (chosen on the test labels: an upper bound, not a result)."""

    t_los: dict[str, list[int]] = field(default_factory=dict)
    t_his: dict[str, list[int]] = field(default_factory=dict)
    grids: dict[str, Tensor] = field(default_factory=dict)
    best: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    schedules: dict[str, NoiseSchedule] = field(default_factory=dict)

    def add(self, r: Measured, t_los: list[int], t_his: list[int]) -> None:
        self.t_los[r.name], self.t_his[r.name], self.schedules[r.name] = t_los, t_his, r.schedule
        grid = self.grids[r.name] = window_auroc_grid(r.test.records, r.labels, t_los, t_his)
        i, j = np.unravel_index(np.nanargmax(grid.numpy()), grid.shape)
        self.best[r.name] = (t_los[i], t_his[j], float(grid[i, j]))

    def plot(self, fig: Any, axes: Any, names: Sequence[str]) -> None:
        """One heat map per model in ``names``, alpha_bar under each T2, with one colour bar; none (a note instead)
        if ``names`` is empty (no image model held enough of both kinds to measure)."""
        if not names:
            for ax in np.ravel(axes):
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no model with enough of both kinds to measure", ha="center", va="center",
                        transform=ax.transAxes)
            return
        for ax, name in zip(axes, names):
            grid, t_los, t_his = self.grids[name].numpy(), self.t_los[name], self.t_his[name]
            im = ax.imshow(grid, vmin=0.5, vmax=1.0, cmap="viridis", origin="lower", aspect="auto")
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="white" if v < 0.8 else "black")
            ab = self.schedules[name].alpha_bar_64
            ax.set_xticks(range(len(t_his)), [f"{t}\n({float(ab[t]):.4g})" for t in t_his], fontsize=7, rotation=45, ha="right")
            ax.set_yticks(range(len(t_los)), t_los, fontsize=7)
            ax.set(title=name, xlabel=r"$T_2$ (and $\bar\alpha_{T_2}$)", ylabel=r"$T_1$")
        fig.colorbar(im, ax=axes, label="AUROC of Hal", shrink=0.8)


def mixture_window_sweeps(s: Setup, specs: Mapping[str, MixtureModelSpec], mixtures: Mapping[str, Measured]
                          ) -> WindowSweeps:
    """The mixtures' window sweeps: T1 from 0 to 50 and T2 from 1 to 99, deeper (to 200 and 299) where the
    run recorded 300 steps."""
    sweeps = WindowSweeps()
    for name, r in mixtures.items():
        deep = record_up_to(specs[name], s.window) >= 300
        sweeps.add(r, [0, 1, 2, 5, 10, 20, 50] + ([100, 200] if deep else []),
                   [1, 4, 9, 19, 49, 99] + ([199, 299] if deep else []))
    return sweeps


def print_schedule_reading(s: Setup, mixtures: Mapping[str, Measured], sweeps: WindowSweeps) -> None:
    """Where the two schedules reach the same alpha_bar, how often each 1D model hallucinates, and each mixture's
    AUROC at the chosen window beside the sweep's best."""
    official_ab, standard_ab = NoiseSchedule(OFFICIAL).alpha_bar_64, NoiseSchedule(STANDARD).alpha_bar_64
    for t in (9, 99):
        t_std = int((standard_ab <= official_ab[t]).nonzero()[0])
        say(f"alpha_bar = {float(official_ab[t]):.3f}: reached at t = {t} by the official schedule, at t = "
            f"{t_std} by the standard one")
    official, standard = (float(mixtures[name].labels.float().mean()) for name in (OFFICIAL_1D, STANDARD_1D))
    say(f"the same data and training, two schedules: {official:.2%} of the official-schedule model's samples "
        f"hallucinated, {standard:.2%} of the standard-schedule model's "
        f"({official / max(standard, 1e-12):.0f}x fewer)")
    for name, r in mixtures.items():
        t_lo, t_hi, best = sweeps.best[name]
        say(f"{name}: AUROC {r.aurocs['Hal']:.3f} at the chosen window {s.window}; best in the sweep "
            f"{best:.3f} at ({t_lo}, {t_hi}), alpha_bar at t=9: {float(r.schedule.alpha_bar_64[9]):.4f}")


def print_image_aurocs(measured: Sequence[Measured]) -> None:
    """The image models' AUROC table, Hal against random, and Hal against chance in standard errors."""
    if not measured:
        return
    print_auroc_table(measured)
    say("Hal minus random: " + "; ".join(f"{r.name}: {r.aurocs['Hal'] - r.aurocs['random']:+.3f}"
                                         for r in measured))
    chance = []
    for r in measured:
        se = hal_standard_error(r)
        chance.append(f"{r.name}: " + (f"{(r.aurocs['Hal'] - 0.5) / se:+.1f}" if se > 0 else "perfect separation"))
    say("Hal's AUROC minus 0.5 (chance), in standard errors: " + "; ".join(chance))


def print_image_sweeps(s: Setup, measured: Sequence[Measured], sweeps: WindowSweeps) -> None:
    for r in measured:
        t_lo, t_hi, best = sweeps.best[r.name]
        say(f"{r.name}: AUROC {r.aurocs['Hal']:.3f} at the chosen window {s.window}; best in the sweep "
            f"{best:.3f} at ({t_lo}, {t_hi})")


def matched_windows(s: Setup, images: Mapping[str, Measured]) -> dict[str, tuple[int, float]]:
    """Per image data set: the window carried over in alpha_bar (:func:`matched_window_end`, no labels used)
    and Hal's AUROC there, printed."""
    t_lo, t_end = s.window
    official_end = float(NoiseSchedule(OFFICIAL).alpha_bar_64[t_end])
    matched = {}
    for dataset, r in images.items():
        if r.scores:
            t2 = matched_window_end(r.schedule, s.window)
            matched[dataset] = (t2, det.auroc(det.hal_from_records(r.test.records, (t_lo, t2)), r.labels))
            say(f"{r.name}: AUROC {matched[dataset][1]:.3f} at the window matched in alpha_bar, "
                f"({t_lo}, {t2}): alpha_bar_{t2} = {float(r.schedule.alpha_bar_64[t2]):.4f}, the last step at or "
                f"above the official schedule's {official_end:.4f} at t = {t_end} (no labels used)")
    return matched
