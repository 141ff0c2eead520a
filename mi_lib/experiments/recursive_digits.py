"""Chapter 7b, *Recursive training on real digits*: the recursion of chapter 7 on handwritten digits, judged by a
digit classifier's FID-like score (the classifier is this module's: :func:`train_classifier`; the digits come from
:mod:`mi_lib.datasets.digits`).

At CI scale the 1,797 shipped 8x8 UCI digits go through the official MLP (64 values a digit); at paper scale
28x28 MNIST through a UNet. Every filter ("none", "random", "hal", and "real": each generation fine-tuned on real
digits instead, the control for the extra training) runs on the same seeds. :func:`measure` scores every
generation against held-out digits, beside a floor (real training digits) and two null models that know
nothing about handwriting; :func:`print_seed_sweep` reads the committed sweep (``scripts/digits_recursion.py``)
behind the drift bar.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from scipy import linalg
from torch import Tensor, nn

from .. import plotting
from ..datasets import digits
from ..datasets.shapes import from_model_range, to_model_range
from ..diffusion.models import IMAGE_CLIP_X0, IMAGE_SCALES
from ..diffusion.nets import MLPConfig
from ..diffusion.schedule import OFFICIAL, STANDARD
from ..diffusion.train import TrainConfig
from ..diffusion.unet import UNetConfig
from ..params import choice_parameter, number_parameter, positive_int, sequence_parameter
from ..runtime import progress_bar
from ..settings import Settings
from ..storage.results import say
from .recursion import FILTERS, RecursionConfig, RecursionResult, recursive_training

__all__ = ["DIGIT_RUNS", "Setup", "Digits", "Measures", "setup", "load", "run", "measure", "print_measures",
           "plot_fid_and_classes", "digit_mosaic", "print_seed_sweep", "claimed_numbers",
           "ClassifierConfig", "CLASSIFIER_PRESETS", "DigitClassifier", "train_classifier", "classifier_features", "predict",
           "accuracy", "frechet_distance", "label_histogram", "digits_report", "gaussian_null", "midpoint_null", "noise_null", "N_CLASSES"]

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


# ------------------------------------------------------------------------------ the judge: a digit classifier
# There is no Inception network to download, so the chapter trains its own: train_classifier fits a small MLP, with
# conv layers in front for MNIST (DigitClassifier, CLASSIFIER_PRESETS), on real digits, deterministically in its seed
# on the CPU. Its penultimate activations (classifier_features) play the part of Inception's pool features in the
# Frechet distance (frechet_distance, the FID formula), and its predicted labels (predict, label_histogram) tell which
# digits are still drawn: mode collapse shows as classes that vanish. digits_report does all of it for a batch of
# generated images; gaussian_null and midpoint_null are baselines for it.
#: Digit classes 0..9.
N_CLASSES = 10
_SLOPE = 0.1  # LeakyReLU: no feature can die (a constant feature makes the covariances singular)


def _flat(images: Tensor | np.ndarray, name: str = "images", side: int | None = None) -> Tensor:
    """Images (N, 1, S, S), (N, S, S) or (N, S*S) -> (N, S*S) float32 on the CPU, checked."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(images).__name__}")
    shape = tuple(images.shape)
    if (len(shape) == 4 and shape[1] == 1 and shape[2] == shape[3]) or (len(shape) == 3 and shape[1] == shape[2]):
        flat = images.reshape(shape[0], -1)
    elif len(shape) == 2 and math.isqrt(shape[1]) ** 2 == shape[1] and shape[1] > 0:
        flat = images
    else:
        raise ValueError(f"{name} must have shape (N, 1, S, S), (N, S, S) or (N, S*S), got {shape}")
    if flat.shape[0] < 1:
        raise ValueError(f"{name} is empty: shape {shape}")
    if side is not None and flat.shape[1] != side * side:
        raise ValueError(f"{name} must be {side}x{side} images ({side * side} values each), got shape {shape}")
    flat = flat.detach().to("cpu", torch.float32)
    if not torch.isfinite(flat).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return flat


@dataclass(frozen=True)
class ClassifierConfig:
    """:class:`DigitClassifier`'s architecture and :func:`train_classifier`'s optimisation: an MLP side*side
    (or the conv layers' output) -> hidden -> features -> 10 with LeakyReLU (slope 0.1), AdamW at ``lr`` with
    ``weight_decay`` for ``steps`` steps of ``batch_size`` images. ``conv`` puts one 3x3 conv (padding 1) +
    LeakyReLU + 2x2 max-pool per entry, with that many channels, in front of the MLP (``side`` must be
    divisible by 2**len(conv)). The defaults (about 0.5 s on one CPU thread) reach ~97% held-out accuracy on
    the 8x8 digits; :data:`CLASSIFIER_PRESETS` ``["mnist"]`` is the convolutional one for 28x28 MNIST."""

    side: int = 8
    hidden: int = 128
    features: int = 32
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    conv: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("side", "hidden", "features", "steps", "batch_size"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"ClassifierConfig.{name}"))  # a numpy int is stored as int
        if isinstance(self.conv, list):  # a list would make the frozen config unhashable
            object.__setattr__(self, "conv", tuple(self.conv))
        if not isinstance(self.conv, tuple) or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.conv):
            raise ValueError(
                f"ClassifierConfig.conv must be a tuple of positive ints (channels per conv layer), got {self.conv!r}")
        if self.side % 2 ** len(self.conv):
            raise ValueError(f"ClassifierConfig.side={self.side} must be divisible by 2**len(conv)={2 ** len(self.conv)} "
                             "(one 2x2 pool per conv layer)")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ValueError(f"ClassifierConfig needs lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")


#: The classifier per data set: "8x8" the MLP defaults (UCI digits, ~97% held out); "mnist" two conv layers in
#: front of the MLP for 28x28 MNIST. ``scripts/digit_classifiers.py`` measures why: on 8,500 training and 1,500
#: held-out digits of :func:`load_mnist_10k` the conv preset reached 97.9% (33 s on two CPU threads) and an MLP
#: on the raw pixels 94.8%, whose features hardly told a 3x3 blur of real digits from the digits themselves
#: (FID-like score 3.7 -> 14.8, where the conv features go from 9.1 to 338).
CLASSIFIER_PRESETS: dict[str, ClassifierConfig] = {
    "8x8": ClassifierConfig(),
    "mnist": ClassifierConfig(side=28, hidden=128, features=32, steps=1_500, conv=(16, 32)),
}


class DigitClassifier(nn.Module):
    """A small MLP on flattened images in [0, 1], after ``config.conv`` conv layers when set: ``model(x) ->
    logits`` (N, 10); ``model.features(x)`` the penultimate activations (N, config.features). Inputs are
    (N, side*side) or any image shape that flattens to it."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        if not isinstance(config, ClassifierConfig):
            raise TypeError(f"config must be a ClassifierConfig, got {type(config).__name__}")
        self.config = config
        layers: list[nn.Module] = []
        channels = 1
        for width in config.conv:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(_SLOPE), nn.MaxPool2d(2)]
            channels = width
        self.convs = nn.Sequential(*layers)
        inputs = channels * (config.side // 2 ** len(config.conv)) ** 2
        self.body = nn.Sequential(
            nn.Linear(inputs, config.hidden),
            nn.LeakyReLU(_SLOPE),
            nn.Linear(config.hidden, config.features),
            nn.LeakyReLU(_SLOPE),
        )
        self.head = nn.Linear(config.features, N_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        side = self.config.side
        if self.config.conv:
            x = self.convs(x.reshape(x.shape[0], 1, side, side))
        return self.body(x.reshape(x.shape[0], -1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def train_classifier(
    images: Tensor, labels: Tensor, config: ClassifierConfig = ClassifierConfig(), *, seed: int = 0, progress: bool = False
) -> DigitClassifier:
    """Fit a :class:`DigitClassifier` to ``images`` in [0, 1] ((N, 1, S, S), (N, S, S) or (N, S*S), S =
    ``config.side``) and ``labels`` (N,) in 0..9, on the CPU. Weights and batches depend on ``seed`` only
    (the global RNG is untouched), so a run is repeatable on one machine and thread count. Returns the model
    in eval mode."""
    x = _flat(images, side=config.side)
    if not isinstance(labels, Tensor) or labels.shape != (x.shape[0],) or labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor of shape ({x.shape[0]},), got {getattr(labels, 'shape', type(labels))}")
    y = labels.to("cpu", torch.long)
    if int(y.min()) < 0 or int(y.max()) >= N_CLASSES:
        raise ValueError(f"labels must be in 0..{N_CLASSES - 1}, got values in {int(y.min())}..{int(y.max())}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier(config)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n, b = x.shape[0], min(config.batch_size, x.shape[0])
    per_epoch = n // b
    order = torch.empty(0, dtype=torch.long)
    model.train()
    with progress_bar(total=config.steps, desc="classifier", disable=not progress) as bar:
        for step in range(config.steps):
            k = step % per_epoch
            if k == 0:
                order = torch.randperm(n, generator=gen)
            idx = order[k * b : (k + 1) * b]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
    return model.eval()


def _check_classifier(classifier: DigitClassifier) -> None:
    if not isinstance(classifier, DigitClassifier):
        raise TypeError(f"classifier must be a DigitClassifier (from train_classifier), got {type(classifier).__name__}")


@torch.no_grad()
def classifier_features(classifier: DigitClassifier, images: Tensor | np.ndarray) -> Tensor:
    """The penultimate-layer features of images in [0, 1]: (N, classifier.config.features) float32 on the CPU."""
    _check_classifier(classifier)
    return classifier.eval().features(_flat(images, side=classifier.config.side))


@torch.no_grad()
def predict(classifier: DigitClassifier, images: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """Predicted digits of images in [0, 1] and the classifier's confidence in them (the top softmax
    probability): ((N,) long, (N,) float32)."""
    _check_classifier(classifier)
    probs = classifier.eval()(_flat(images, side=classifier.config.side)).softmax(dim=1)
    confidence, label = probs.max(dim=1)
    return label, confidence


def accuracy(classifier: DigitClassifier, images: Tensor | np.ndarray, labels: Tensor) -> float:
    """Share of images whose predicted digit equals ``labels`` (N,)."""
    predicted, _ = predict(classifier, images)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels must have shape {tuple(predicted.shape)}, got {tuple(labels.shape)}")
    return float((predicted == labels.to(predicted.device)).double().mean())


def _features_f64(features: Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(features, Tensor):
        features = features.detach().cpu().numpy()
    if not isinstance(features, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(features).__name__}")
    if features.ndim != 2 or features.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, F), got {features.shape}")
    if features.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for a covariance, got {features.shape[0]}")
    f = features.astype(np.float64)
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return f


def frechet_distance(features_a: Tensor | np.ndarray, features_b: Tensor | np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N_a, F) and (N_b, F), the FID
    formula: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with unbiased covariances, in float64.

    The matrix square root is ``scipy.linalg.sqrtm``; when the product is near-singular it may come back
    non-finite (then both covariances get 1e-6 on the diagonal, as pytorch-fid does) or with round-off
    imaginary parts, which are dropped when below 1e-6 of the trace of S_a + S_b (a larger one raises
    ValueError: then the features are unfit). Like FID, the value is biased upward at small N, so compare
    values computed at the same sample sizes. Each set needs at least 2 samples."""
    a, b = _features_f64(features_a, "features_a"), _features_f64(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must have the same width, got {a.shape[1]} and {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    scale = max(float(np.trace(cov_a) + np.trace(cov_b)), 1e-12)
    with warnings.catch_warnings():  # a singular product is handled below, not worth a warning
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            offset = 1e-6 * np.eye(a.shape[1])
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        if np.abs(covmean.imag).max() > 1e-6 * scale:
            raise ValueError(f"sqrtm(S_a S_b) has an imaginary part of {np.abs(covmean.imag).max():.3g}: "
                             "the covariances are too ill-conditioned")
        covmean = covmean.real
    diff = mu_a - mu_b
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # round-off can leave identical sets at -1e-12


def label_histogram(labels: Tensor | np.ndarray, n_classes: int = N_CLASSES) -> Tensor:
    """Share of ``labels`` (N,) ints in 0..n_classes-1 in each class: (n_classes,) float64 summing to 1."""
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be a 1-D integer tensor, got {getattr(labels, 'dtype', type(labels))} "
                         f"{tuple(getattr(labels, 'shape', ()))}")
    if labels.shape[0] < 1:
        raise ValueError("labels is empty: no histogram")
    if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
        raise ValueError(f"labels must be in 0..{n_classes - 1}, got values in {int(labels.min())}..{int(labels.max())}")
    return torch.bincount(labels.cpu().long(), minlength=n_classes).to(torch.float64) / labels.shape[0]


def digits_report(
    images: Tensor | np.ndarray,
    classifier: DigitClassifier,
    reference_features: Tensor | np.ndarray,
    *,
    model_range: bool = True,
    min_share: float = 0.01,
) -> dict[str, Any]:
    """Measure generated digits against real ones with a trained :class:`DigitClassifier`.

    ``images``: (N, S*S) or (N, 1, S, S) / (N, S, S), in the diffusion range [-1, 1] when ``model_range``
    (the default: what :func:`mi_lib.experiments.recursion.recursive_training` samples; mapped with ``from_model_range``,
    which clamps to [0, 1]), else already in [0, 1]. ``reference_features``: :func:`classifier_features` of
    real digits (held-out ones, for an honest floor). Returns

    - ``n``: number of images;
    - ``fid``: :func:`frechet_distance` between the images' features and the reference (compare values at
      the same N: the estimate is biased upward at small N);
    - ``histogram``: (10,) share of images the classifier puts in each digit (:func:`label_histogram`);
    - ``classes_present``: digits holding at least ``min_share`` of the images (default 1%: a tenth of the
      ~10% each digit has in real data), so a lost digit lowers it;
    - ``confidence``: the classifier's mean top probability (real held-out digits: ~0.97).
    """
    min_share = number_parameter(min_share, "min_share", at_least=0, at_most=1)
    _check_classifier(classifier)
    x = _flat(images, side=classifier.config.side)
    if model_range:
        x = from_model_range(x)
    feats = classifier_features(classifier, x)
    fid = frechet_distance(feats, reference_features)
    labels, confidence = predict(classifier, x)
    histogram = label_histogram(labels)
    return {
        "n": int(x.shape[0]),
        "fid": fid,
        "classes_present": int((histogram >= min_share).sum()),
        "confidence": float(confidence.double().mean()),
        "histogram": histogram,
    }


def _check_null_images(images: Tensor) -> None:
    if images.dim() < 2 or images.shape[0] < 2 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (N >= 2, ...), got {images.dtype} {tuple(images.shape)}")


def gaussian_null(images: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` draws from the Gaussian with the images' mean and full pixel covariance, clamped to the images'
    value range and shaped like them: a model that knows only the first two moments of the digits, a baseline
    for what an FID-like score rewards. ``images``: (N, ...) float -> (n, ...)."""
    _check_null_images(images)
    flat = images.reshape(len(images), -1).to(torch.float64)
    mean = flat.mean(0)
    centred = flat - mean
    eigval, eigvec = torch.linalg.eigh(centred.T @ centred / (len(flat) - 1))  # covariance, PSD up to rounding
    z = torch.randn(n, flat.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    draws = mean + (z * eigval.clamp(min=0).sqrt()) @ eigvec.T
    return draws.clamp(float(flat.min()), float(flat.max())).to(images.dtype).reshape(n, *images.shape[1:])


def midpoint_null(images: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` pixel-wise averages of two different images drawn at random: pure interpolations between real
    digits, a baseline for how an FID-like score judges mode interpolation. ``images``: (N, ...) -> (n, ...)."""
    _check_null_images(images)
    gen = torch.Generator().manual_seed(seed)
    i = torch.randint(len(images), (n,), generator=gen)
    j = (i + torch.randint(1, len(images), (n,), generator=gen)) % len(images)  # never i itself
    return (images[i] + images[j]) / 2


def noise_null(images: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` images of independent pixels, each uniform over the images' value range: no digit at all, the
    score a sanity bar must rule out. ``images``: (N, ...) -> (n, ...)."""
    _check_null_images(images)
    lo, hi = float(images.min()), float(images.max())
    u = torch.rand((n, *images.shape[1:]), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (lo + (hi - lo) * u).to(images.dtype)


# -------------------------------------------------------------------------------------------- the chapter
NULLS = {"Gaussian fit": gaussian_null, "midpoints of two real digits": midpoint_null, "pixel noise": noise_null}


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
    classifier = train_classifier(images[train_idx], labels[train_idx], CLASSIFIER_PRESETS[s.kind], seed=0)
    held_out = accuracy(classifier, images[test_idx], labels[test_idx])
    reference = classifier_features(classifier, images[test_idx])
    data = to_model_range(images[train_idx]).reshape(len(train_idx), *s.config.sample_shape)
    return Digits(source, images, labels, train_idx, test_idx, classifier, held_out, reference, data)


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
    nulls: the digits' Gaussian fit, midpoints of two real digits (pure interpolations) and pixel noise."""
    floor_idx = torch.randperm(len(d.data), generator=torch.Generator().manual_seed(s.seed))[:s.config.n_keep]
    floor = digits_report(d.data[floor_idx], d.classifier, d.reference)
    nulls = {name: digits_report(make(d.data, s.config.n_keep, seed=s.seed), d.classifier, d.reference)
             for name, make in NULLS.items()}
    rows = {key: [digits_report(g.samples, d.classifier, d.reference) for g in r.generations] for key, r in runs.items()}
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
    """Left: each generation's score per filter (the first seed bold), the floor and two nulls. Right: the class
    shares of the last generation of each filter (first seed) beside the held-out digits'."""
    colors, labels = plotting.FILTER_COLORS, plotting.FILTER_LABELS
    first = s.seeds[0]
    for (seed, f), rows in m.rows.items():
        ax0.plot(range(len(rows)), [r["fid"] for r in rows], "o-", color=colors.get(f), alpha=0.9 if seed == first else 0.4,
                 label=labels.get(f, f) if seed == first else None)
    ax0.axhline(m.floor["fid"], color="k", ls=":", lw=1, label="real digits (floor)")
    for name, ls in (("Gaussian fit", "--"), ("midpoints of two real digits", "-.")):  # pixel noise: printed only,
        ax0.axhline(m.nulls[name]["fid"], color="0.5", ls=ls, lw=1, label=f"null: {name}")  # far off this scale
    ax0.set(title=f"FID-like score of each generation's digits ({s.kind})", xlabel="generation",
            ylabel="Fréchet distance (classifier features)", xticks=range(s.generations))
    ax0.legend(fontsize=8)
    width = 0.8 / (len(s.filters) + 1)
    real_hist = label_histogram(d.labels[d.test_idx])
    ax1.bar(np.arange(10) - 0.4 + width / 2, 100 * real_hist.numpy(), width, color="0.6", label="held-out real")
    for j, f in enumerate(s.filters):
        h = m.rows[(first, f)][-1]["histogram"]
        ax1.bar(np.arange(10) - 0.4 + width * (j + 1.5), 100 * h.numpy(), width, color=colors.get(f),
                label=f"{f}, gen {s.generations - 1}")
    ax1.set(title=f"digits the classifier sees (seed {first})", xlabel="digit", ylabel="share of samples (%)", xticks=range(10))
    ax1.legend(fontsize=7, ncol=2)


def digit_mosaic(ax: Axes, s: Setup, x: Tensor, title: str, n: int = 24) -> None:
    """The first ``n`` digits of ``x`` (flattened 8x8 or 28x28 images in [-1, 1]), eight a row: large enough to
    read a stroke in the book's two-column figure."""
    shape = s.config.sample_shape
    side = shape[-1] if len(shape) == 3 else int(round(shape[0] ** 0.5))
    plotting.image_mosaic(ax, from_model_range(x[:n].reshape(-1, 1, side, side)), ncols=8, pad=1)
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
    if "hal" in arms:
        lasts = [entry["fid_last"] for entry in sweep["seeds"].values()]
        below_random = f", below the random filter's on {sum(x['hal'] < x['random'] for x in lasts)}" if "random" in arms else ""
        say(f"the Hal filter's last score below no filter's on {sum(x['hal'] < x['none'] for x in lasts)} of {len(lasts)} seeds"
            + below_random)
    return gaps


def claimed_numbers(s: Setup, d: Digits, m: Measures) -> dict[str, float]:
    """What ``results/07b_recursive_digits.json`` records: generation 0 (one model per seed, the same for every
    filter) and the last generation of every filter, each over the seeds."""
    numbers = {"digits_classifier_accuracy": d.accuracy, "digits_fid_floor": m.floor["fid"],
               "digits_fid_null_gaussian": m.nulls["Gaussian fit"]["fid"],
               "digits_fid_null_midpoints": m.nulls["midpoints of two real digits"]["fid"],
               "digits_fid_null_noise": m.nulls["pixel noise"]["fid"]}
    numbers["digits_fid_g0"] = float(np.mean([m.rows[(seed, s.filters[0])][0]["fid"] for seed in s.seeds]))
    numbers["digits_classes_g0"] = min(m.rows[(seed, s.filters[0])][0]["classes_present"] for seed in s.seeds)
    for f in s.filters:
        numbers[f"digits_fid_{f}_last"] = float(np.mean([m.rows[(seed, f)][-1]["fid"] for seed in s.seeds]))
        numbers[f"digits_classes_{f}_last"] = min(m.rows[(seed, f)][-1]["classes_present"] for seed in s.seeds)
    if "none" in s.filters:
        numbers["digits_fid_none_rise"] = numbers["digits_fid_none_last"] - numbers["digits_fid_g0"]
    return numbers
