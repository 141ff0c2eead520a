"""A CPU dry run of the GPU campaign's windows: each chapter's notebook, every code cell, executed at
scale "paper" -- the paper's code paths, methods and settings -- with every training cut to a few hundred
steps and every sample count to a few thousand, so a window's chapters are known to run through before GPU
minutes are spent on them. Such models may fail the chapter's claims: only an AssertionError of the claims
cell (the one that records the chapter's numbers) is allowed; any other error fails.

Part of ``make test`` (``make dry-run-paper``, about 5 minutes on 2 cores in two workers), so a landing that breaks a paper-scale
code path fails CI; ``make dry-run-paper K=<the window's chapters>`` runs one window's.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any

import matplotlib
import nbformat
import pytest

from mi_lib.diffusion import models
from mi_lib.diffusion.schedule import ScheduleConfig
from mi_lib.experiments.recursion import RecursionConfig
from mi_lib.diffusion.train import TrainConfig
from mi_lib.diffusion.unet import UNetConfig

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.paper_dry_run

#: Every chapter with a paper scale of its own, by its module (chapter 1 has nothing a GPU runs). The windows
#: (scripts/paper_scale.sh --window): 1 = chapters 2, 3, 4; 2 = 6, 7; 3-5 = 5's UNets, 5, 7c; 6 = 7b; 7 = 8.
CHAPTERS = {
    "02_mode_interpolation_1d": "mode_interpolation_1d",
    "03_mode_interpolation_2d": "mode_interpolation_2d",
    "04_score_smoothness": "score_smoothness",
    "05_shapes_hands": "shapes_hands",
    "06_detection": "detection",
    "07_recursive_training": "recursive_training",
    "07b_recursive_digits": "recursive_digits",
    "07c_recursive_shapes": "recursive_shapes",
    "08_mitigations": "mitigations",
}
IMAGE_CHAPTERS = {"05_shapes_hands", "07b_recursive_digits", "07c_recursive_shapes"}
TINY_UNET = dict(base_channels=8, channel_mults=(1, 2), blocks_per_level=1, patch=2)
#: The image models' schedule here: chapter 5's CI-scale one (200 steps, the paper's 1000 coarsened five-fold). A UNet
#: reverse step costs a CPU about a hundred times an MLP's, so the paper's 1000 steps made three quarters of the dry run;
#: the code path is the same at any T (the CI scale runs this one). The MLPs keep their paper schedules.
SHORT_SCHEDULE: ScheduleConfig = models.IMAGE_SCALES["ci"]["schedule"]
#: UNet trainings here: 50 steps at batch 32 (an MLP's: 300 at 256). The images are clipped at every reverse step, so
#: a barely trained UNet draws grey noise, not overflow.
UNET_TRAIN = dict(steps=50, batch_size=32)
MLP_TRAIN = dict(steps=300, batch_size=256)
#: Sizes a CPU runs in seconds; n_samples stays above chapter 4's floor of 2,500.
SMALL = {"n_train": 2_000, "n_train_1d": 2_000, "n_train_2d": 2_000, "n_samples": 3_000, "n_calibration": 2_000,
         "n_images": 40, "n_train_list": [2_000, 4_000], "generations": 2}
#: The same for the chapters whose models are UNets: images, not points.
SMALL_IMAGES = {**SMALL, "n_samples": 40, "n_keep": 32}


def shrink(value: Any, key: str = "", small: dict[str, Any] = SMALL, cut: dict[str, int] = MLP_TRAIN) -> Any:
    """``value`` (a chapter's paper scale, or part of it) with every training cut to ``cut``'s steps and batch (an
    MLP's: fewer steps leave an untrained network whose ancestral samples overflow; a UNet's :data:`UNET_TRAIN`),
    every UNet made tiny and sampled on :data:`SHORT_SCHEDULE`, and every size in ``small`` replaced."""
    if key in small:
        return {k: 500 for k in value} if isinstance(value, dict) else small[key]  # chapter 8: per data set
    if isinstance(value, TrainConfig):
        return dataclasses.replace(value, **{k: min(getattr(value, k), v) for k, v in cut.items()})
    if isinstance(value, UNetConfig):
        return dataclasses.replace(value, **TINY_UNET)
    if isinstance(value, RecursionConfig):
        unet = isinstance(value.model, UNetConfig)
        cut = UNET_TRAIN if unet else MLP_TRAIN
        return dataclasses.replace(value, generations=min(value.generations, 2), n_keep=32 if unet else 1_000,
                                   model=shrink(value.model), train=shrink(value.train, cut=cut),
                                   train_0=None if value.train_0 is None else shrink(value.train_0, cut=cut),
                                   schedule=SHORT_SCHEDULE if unet else value.schedule)
    if isinstance(value, models.MixtureModelSpec):
        return dataclasses.replace(value, n_train=2_000, train=shrink(value.train))
    if isinstance(value, dict):
        return {k: shrink(v, k, small, cut) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # chapter 8's Scale
        return dataclasses.replace(value, **{f.name: shrink(getattr(value, f.name), f.name) for f in dataclasses.fields(value)
                                             if f.name in ("specs", "training", "n_samples")})
    return value


#: The parameters a window passes a chapter (scripts/paper_scale.sh's PARAMS) that change its code path: run as well.
WINDOW_PARAMS = {
    # window 1 sets n_samples (20M); here a number, not None: the dry run's own, so its samples come from the cache
    "02_mode_interpolation_1d": {"n_samples": SMALL["n_samples"]},
    "06_detection": {"n_images": 0},  # window 2: chapter 6's mixtures alone
}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole dry run, as a GPU window carries one from chapter to chapter: a model that two chapters
    share (chapter 3's grid is chapters 6 and 8's too; a window variant's models are its chapter's) trains once. Under
    pytest-xdist (make test runs two workers), the workers' one: entries are written atomically, so two workers that
    compute the same one both write it whole."""
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "dry-run-cache"
    cache.mkdir(exist_ok=True)
    return cache


#: The chapters, the longest first (two workers share them out as they finish: make test runs pytest-xdist), then the
#: window variants, which find their chapter's models and samples in the shared cache by then.
SLOWEST_FIRST = ("08_mitigations", "06_detection", "07c_recursive_shapes", "02_mode_interpolation_1d", "05_shapes_hands",
                 "03_mode_interpolation_2d", "07b_recursive_digits", "07_recursive_training", "04_score_smoothness")
assert sorted(SLOWEST_FIRST) == sorted(CHAPTERS)
RUNS = [pytest.param(chapter, {}, id=chapter) for chapter in SLOWEST_FIRST] + \
       [pytest.param(chapter, params, id=f"{chapter}-window") for chapter, params in sorted(WINDOW_PARAMS.items())]


@pytest.mark.parametrize("chapter, params", RUNS)
def test_the_chapter_runs_through_at_paper_scale_on_a_cpu(chapter, params, shared_cache, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    for name, value in {"MI_CACHE_DIR": shared_cache, "MI_RESULTS_DIR": tmp_path / "results", "MI_PROGRESS": "0",
                        "MI_STATIC_WIDGETS": "1"}.items():
        monkeypatch.setenv(name, str(value))
    module = importlib.import_module(f"mi_lib.experiments.{CHAPTERS[chapter]}")
    small = SMALL_IMAGES if chapter in IMAGE_CHAPTERS else SMALL
    if chapter == "07b_recursive_digits":  # its scales live per data set; its MNIST judge trained 100 steps
        for kind, run in module.DIGIT_RUNS.items():
            monkeypatch.setitem(module.DIGIT_RUNS, kind, shrink(run, small=small))
        monkeypatch.setitem(module.CLASSIFIER_PRESETS, "mnist", dataclasses.replace(module.CLASSIFIER_PRESETS["mnist"], steps=100))
    else:
        cut = UNET_TRAIN if chapter == "07c_recursive_shapes" else MLP_TRAIN  # 7c's one training is a UNet's
        monkeypatch.setitem(module.SCALES, "paper", shrink(module.SCALES["paper"], small=small, cut=cut))
    if chapter == "08_mitigations":  # one sharpening strength (its strongest, paper-only one), fewer VSM draws
        scale = module.SCALES["paper"]
        monkeypatch.setitem(module.SCALES, "paper", dataclasses.replace(scale, strengths=scale.strengths[-1:]))
        monkeypatch.setattr(module, "VSM_DRAWS", 500)
    # the image models of chapters 5, 6 and 7c: a tiny UNet, trained briefly, on the short schedule
    monkeypatch.setitem(models.IMAGE_SCALES, "paper", dict(model=UNetConfig(**TINY_UNET), schedule=SHORT_SCHEDULE,
                                                           train=TrainConfig(steps=20, batch_size=16, lr=5e-4, ema_decay=0.999)))
    monkeypatch.chdir(ROOT / "chapters")
    cells = [c for c in nbformat.read(ROOT / "chapters" / f"{chapter}.ipynb", 4).cells if c.cell_type == "code"]
    namespace: dict[str, Any] = {}
    exec(compile(cells[0].source, f"{chapter}[parameters]", "exec"), namespace)
    namespace.update(scale="paper", **params)
    for i, cell in enumerate(cells[1:], 1):
        try:
            exec(compile(cell.source, f"{chapter}[{i}]", "exec"), namespace)
        except AssertionError as error:  # only the claims: the cell that records the chapter's numbers, then asserts
            assert "save_results(" in cell.source, f"cell {i} raised {error!r}: only the claims cell may"
    assert namespace["setup"].scale == "paper"
    assert (tmp_path / "results" / f"{chapter}.json").exists(), "the chapter recorded its numbers"
