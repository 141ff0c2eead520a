"""Recursive training: each generation is trained on samples of the one before, optionally filtered.

Generation 0 is trained on real data (a tensor, or the model of a :class:`~mi_lib.diffusion.models.MixtureModelSpec`
or :class:`~mi_lib.diffusion.models.ImageModelSpec`, which reuses a shipped or cached checkpoint). The network is the
official MLP for vectors or a UNet for images (``config.model``); image runs clamp x0_hat while sampling
(``config.clip_x0``, as :func:`mi_lib.diffusion.models.image_samples` does). Generation g draws ``n_candidates`` samples with Hal (one
streaming pass of :func:`mi_lib.diffusion.sampling.sample`), keeps ``n_keep`` of them by the filter, and generation g+1
is trained on the kept ones. Filters: ``"none"`` keeps candidates 0..n_keep-1 (with per-sample seeding these
are exactly the samples a plain ``sample(model, n_keep, seed=...)`` gives, so no-filter sees no oversampling),
``"random"`` a uniformly random n_keep of them, ``"hal"`` the n_keep with the lowest Hal -- the official
code's 2D filter (102,500 candidates, 100,000 kept, Hal over t = 9..0). One control, ``"real"``, trains
generation g+1 on n_keep real training points drawn afresh instead of on samples (its ``kept`` is
0..n_keep-1, the model's plain output, measured but not trained on): with warm-started generations it shows
how much of a drift is the extra training rather than the recursion.

Seeds. Generation g's training seed (initial weights and batches), sampling seed and filter seed are derived
by hashing (``config.seed``, g, purpose); they do not depend on the filter, so the three filters are compared
on the same seeds, and generation 0 (model and candidates) is the same for all of them.

Caching. Every generation's model (state dict, losses, wall time) is fitted or loaded by
:func:`mi_lib.diffusion.models.fit_or_load`, the path every trained model takes, and its candidates (x0, Hal, wall time)
are stored with :func:`mi_lib.storage.cache.cached`; the keys hold the source of this module and all it imports. A model's key holds what it was trained on -- the real data for
generation 0, else the key of generation g-1's candidates plus the filter that chose from them (for the
``"real"`` control: the real data, its draw's seed and generation g-1's candidates key, which names the weights
a warm start begins from) -- so keys form a chain: more generations reuse the earlier ones, and any upstream
change gives new keys downstream. Candidates are keyed by their model's weights as well, and a model records
the content hash of the data it was trained on: a later session that draws a parent's candidates differently
trains the child again rather than reuse a model or a draw that belongs to another chain.

Measurements (:func:`mi_lib.measure.metrics.mixture_report`) are for Gaussian mixtures: hallucination share, modes covered, and
distances of the per-mode mass vector to its exact value under the true distribution.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..datasets.mixtures import GaussianMixture
from ..diffusion.models import ImageModelSpec, MixtureModelSpec, fit_or_load, image_model, initial_model, loaded, mixture_model, trained_payload
from ..diffusion.nets import MLPConfig, MLPDenoiser
from ..diffusion.sampling import check_clip, sample
from ..diffusion.schedule import OFFICIAL, NoiseSchedule, ScheduleConfig
from ..diffusion.train import StaleTrainingState, TrainConfig, TrainResult, data_fingerprint, train, weights_fingerprint
from ..diffusion.unet import UNetConfig, UNetDenoiser
from ..measure.metrics import DEFAULT_K, mixture_report, true_cell_mass
from ..params import number_parameter, positive_int
from ..runtime import progress_bar
from ..settings import Settings
from ..storage.cache import cached, config_key

__all__ = ["FILTERS", "GenerationResult", "GenerationSeeds", "RecursionConfig", "RecursionResult", "generation_seeds",
           "recursive_training", "select"]

#: The modules whose source is in the generations' cache keys: this one and all it imports.
CODE = "experiments/recursion.py"

#: The filters applied to each generation's candidates, and the ``"real"`` control (see the module's docstring).
FILTERS = ("none", "random", "hal", "real")


@dataclass(frozen=True)
class RecursionConfig:
    """A recursive-training run. Defaults are the official 2D experiment's: 5 generations, 102,500
    candidates (``n_keep * oversample``) of which 100,000 are kept, Hal over t = 9..0, the official MLP,
    100,000 training steps at batch 10,000, the official schedule.

    ``train.seed`` is not used: each generation's training seed is derived from ``seed`` (see
    :func:`generation_seeds`). ``warm_start=True`` starts generation g from generation g-1's weights instead
    of from scratch (a departure from the paper, which retrains from scratch; it makes CPU runs feasible).
    ``model`` is an :class:`MLPConfig` (vectors) or a :class:`UNetConfig` (images); ``clip_x0`` clamps x0_hat
    while sampling (None: no clamp; use :data:`mi_lib.diffusion.models.IMAGE_CLIP_X0` for images in [-1, 1]). With
    ``train.ema_decay`` set, a generation's model -- what samples, and what the next one warm-starts from -- is
    the EMA weights, as in :func:`mi_lib.diffusion.models.image_model`.
    ``train_0`` is generation 0's training when it is trained here on data (None: ``train``), e.g. a long
    training from scratch on real data followed by short warm-started generations; a spec passed as generation
    0 carries its own training, so ``train_0`` must then be None."""

    generations: int = 5
    n_keep: int = 100_000
    oversample: float = 1.025
    filter: str = "hal"
    hal_window: tuple[int, int] = (0, 9)
    model: MLPConfig | UNetConfig = field(default_factory=lambda: MLPConfig(data_dim=2))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100_000, batch_size=10_000))
    schedule: ScheduleConfig = OFFICIAL
    warm_start: bool = False
    seed: int = 0
    clip_x0: float | None = None
    train_0: TrainConfig | None = None

    def __post_init__(self) -> None:
        for name in ("generations", "n_keep"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"RecursionConfig.{name}"))
        if self.filter not in FILTERS:
            raise ValueError(f"unknown filter {self.filter!r}; choose one of {FILTERS}")
        number_parameter(self.oversample, "RecursionConfig.oversample", float, at_least=1)
        object.__setattr__(self, "oversample", float(self.oversample))
        window = tuple(self.hal_window)
        if len(window) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in window) or not 0 <= window[0] <= window[1] < self.schedule.T:
            raise ValueError(f"RecursionConfig.hal_window must be (t_lo, t_hi) ints with 0 <= t_lo <= t_hi < T={self.schedule.T}, got {self.hal_window!r}")
        object.__setattr__(self, "hal_window", window)
        number_parameter(self.seed, "RecursionConfig.seed", int, at_least=0)
        for name, kind, what in (("model", (MLPConfig, UNetConfig), "an MLPConfig or a UNetConfig"), ("train", TrainConfig, "a TrainConfig"),
                                 ("schedule", ScheduleConfig, "a ScheduleConfig")):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"RecursionConfig.{name} must be {what}, got {type(getattr(self, name)).__name__}")
        if self.train_0 is not None and not isinstance(self.train_0, TrainConfig):
            raise TypeError(f"RecursionConfig.train_0 must be a TrainConfig or None, got {type(self.train_0).__name__}")
        check_clip(self.clip_x0)
        if not isinstance(self.warm_start, bool):
            raise TypeError(f"RecursionConfig.warm_start must be a bool, got {self.warm_start!r}")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: (data_dim,) for an MLP, (C, H, W) for a UNet."""
        return (self.model.data_dim,) if isinstance(self.model, MLPConfig) else tuple(self.model.sample_shape)

    @property
    def n_candidates(self) -> int:
        """Samples drawn per generation: round(n_keep * oversample), at least n_keep."""
        return max(self.n_keep, round(self.n_keep * self.oversample))

    def replace(self, **changes: Any) -> RecursionConfig:
        """A copy with some fields changed (``dataclasses.replace``), e.g. ``config.replace(filter="none")``."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GenerationSeeds:
    """The seeds of one generation: ``train`` (initial weights and batches), ``sample`` (the candidates'
    noise) and ``filter`` (the random filter's choice)."""

    train: int
    sample: int
    filter: int


def _derive(seed: int, generation: int, purpose: str) -> int:
    # "mi_lib.recursion" is a fixed salt (the module's first name): changing it would change every seed
    digest = hashlib.sha256(f"mi_lib.recursion/{seed}/{generation}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2  # 62 bits: a valid torch and noise seed


def generation_seeds(seed: int, generation: int) -> GenerationSeeds:
    """Generation ``generation``'s seeds, a fixed function of (``seed``, ``generation``): the same for
    every filter, network and size, so runs that differ only in the filter share them."""
    generation = number_parameter(generation, "generation", int, at_least=0)
    return GenerationSeeds(*(_derive(seed, generation, p) for p in ("train", "sample", "filter")))


def select(hal: Tensor, n_keep: int, filter: str, seed: int = 0) -> Tensor:
    """Indices of the candidates a filter keeps, in ascending order. hal: (N,) -> (n_keep,) long.

    ``"none"``: 0..n_keep-1; ``"random"``: a uniformly random n_keep-subset drawn with ``seed``; ``"hal"``:
    the n_keep lowest Hal values (ties go to the lower index); ``"real"`` (the control, whose next generation
    trains on real data, not on these): 0..n_keep-1, as ``"none"``."""
    if filter not in FILTERS:
        raise ValueError(f"unknown filter {filter!r}; choose one of {FILTERS}")
    n = hal.shape[0]
    if not 1 <= n_keep <= n:
        raise ValueError(f"n_keep must be in 1..{n} (the number of candidates), got {n_keep}")
    if filter in ("none", "real"):
        return torch.arange(n_keep)
    if filter == "random":
        chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_keep]
    else:
        chosen = torch.argsort(hal.cpu(), stable=True)[:n_keep]
    return chosen.sort().values


@dataclass
class GenerationResult:
    """One generation. ``model`` (eval mode, on the run's device) was trained on the previous generation's
    kept samples (generation 0: on real data); ``candidates`` (N, ...) and ``hal`` (N,) are its samples with
    N = n_candidates, ``kept`` (n_keep,) the indices the filter chose (the next generation's training set is
    ``candidates[kept]``, except for the ``"real"`` control, which trains on real points). ``report`` measures the model's output (candidates 0..n_keep-1, the same draw for
    every filter), ``kept_report`` the kept set; both None without a mixture. ``source`` says where the
    model came from: "shipped", "trained" (now) or "cached"; ``samples_cached`` whether the candidates were."""

    generation: int
    seeds: GenerationSeeds
    model: MLPDenoiser | UNetDenoiser
    losses: Tensor
    train_wall_time_s: float
    source: str
    candidates: Tensor
    hal: Tensor
    sample_wall_time_s: float
    samples_cached: bool
    kept: Tensor
    model_key: str
    samples_key: str
    report: dict[str, Any] | None = None
    kept_report: dict[str, Any] | None = None

    @property
    def kept_x0(self) -> Tensor:
        """The kept samples, (n_keep, ...): the next generation's training data."""
        return self.candidates[self.kept]

    @property
    def samples(self) -> Tensor:
        """The model's plain output, (n_keep, ...): candidates 0..n_keep-1."""
        return self.candidates[: self.kept.shape[0]]


@dataclass
class RecursionResult:
    """A run's configuration and its generations, in order."""

    config: RecursionConfig
    generations: list[GenerationResult]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict of scalars per generation (for tables and results files)."""
        out = []
        for g in self.generations:
            row: dict[str, Any] = {"generation": g.generation, "filter": self.config.filter}
            for prefix, report in (("", g.report), ("kept_", g.kept_report)):
                if report is not None:
                    row.update({f"{prefix}{k}": v for k, v in report.items() if not isinstance(v, Tensor)})
            row.update(train_s=g.train_wall_time_s, sample_s=g.sample_wall_time_s, source=g.source)
            out.append(row)
        return out


def recursive_training(
    first: Tensor | MixtureModelSpec | ImageModelSpec,
    config: RecursionConfig,
    settings: Settings = Settings(),
    *,
    mixture: GaussianMixture | None = None,
    chunk_size: int | None = None,
    k: float = DEFAULT_K,
) -> RecursionResult:
    """Run ``config.generations`` generations of recursive training; see the module docstring.

    ``first`` is generation 0's training data, (N, *config.sample_shape) on any device, or a
    :class:`MixtureModelSpec` / :class:`ImageModelSpec` whose model (shipped, cached or trained by
    :func:`mi_lib.diffusion.models.mixture_model` / :func:`~mi_lib.diffusion.models.image_model`) is generation 0; its network
    and schedule must be ``config.model`` and ``config.schedule``. ``mixture`` (default: the spec's) turns on
    :func:`mixture_report` at ``k`` sigma for every generation. Training and sampling run as ``settings`` say
    (device, fast paths, cache folder, progress bars); ``chunk_size`` bounds the sampling batch and does not change
    any result. Everything is cached (see the module docstring); one progress bar counts generations, with inner
    bars for training and sampling."""
    mixture = _check_inputs(first, config, settings, mixture)
    real = None  # the "real" control draws each later generation's training set from the real data
    if config.filter == "real" and config.generations > 1:
        real = first.training_data() if isinstance(first, (MixtureModelSpec, ImageModelSpec)) else first
        if config.n_keep > len(real):
            raise ValueError(f"the 'real' control needs n_keep <= {len(real)} (the real training points), got {config.n_keep}")
    schedule = NoiseSchedule(config.schedule)
    cells = true_cell_mass(mixture, k) if mixture is not None else None
    results: list[GenerationResult] = []
    data, parent = first, {}  # what generation g trains on, and its part of the model's cache key
    with progress_bar(total=config.generations, desc=f"generations ({config.filter})", disable=not settings.progress) as bar:
        for g in range(config.generations):
            seeds = generation_seeds(config.seed, g)
            init = results[-1].model if config.warm_start and results else None
            result = _draw_candidates(_generation_model(g, first, data, parent, init, seeds, config, schedule, settings),
                                      g, seeds, config, schedule, settings, chunk_size)
            if mixture is not None:
                result.report = mixture_report(result.samples, mixture, k, true_cells=cells)
                result.kept_report = mixture_report(result.kept_x0, mixture, k, true_cells=cells)
                bar.set_postfix(hallucination=f"{100 * result.report['hallucination']:.2f}%", refresh=False)
            results.append(result)
            bar.update(1)
            data, parent = _next_training_set(result, first, real, seeds, config)
    return RecursionResult(config, results)


def _check_inputs(first: Tensor | MixtureModelSpec | ImageModelSpec, config: RecursionConfig, settings: Settings,
                  mixture: GaussianMixture | None) -> GaussianMixture | None:
    """One clear error for bad arguments, before any work; returns the mixture to measure against (None: none)."""
    if not isinstance(config, RecursionConfig):
        raise TypeError(f"config must be a RecursionConfig, got {type(config).__name__}")
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a mi_lib.Settings, got {type(settings).__name__}")
    if isinstance(first, (MixtureModelSpec, ImageModelSpec)):
        if first.model != config.model or first.schedule != config.schedule:
            raise ValueError("the spec's model and schedule must equal config.model and config.schedule")
        if config.train_0 is not None:
            raise ValueError("config.train_0 is for a generation 0 trained on data; a spec carries its own training (spec.train)")
        if isinstance(first, MixtureModelSpec):
            mixture = first.mixture() if mixture is None else mixture
    elif isinstance(first, Tensor):
        shape = config.sample_shape
        if first.dim() != 1 + len(shape) or tuple(first.shape[1:]) != shape or first.shape[0] < 1 or not first.is_floating_point():
            raise ValueError(f"first must be a float tensor of shape (N, {', '.join(map(str, shape))}), got {first.dtype} {tuple(first.shape)}")
    else:
        raise TypeError(f"first must be a tensor of training data, a MixtureModelSpec or an ImageModelSpec, got {type(first).__name__}")
    if mixture is not None and not isinstance(config.model, MLPConfig):
        raise ValueError("mixture measurements need vector samples (an MLPConfig model)")
    return mixture


@dataclass
class _Model:
    """Generation g's model and how it came: its cache key, losses, training seconds, and "shipped", "trained" or
    "cached"."""

    net: nn.Module
    key: str
    losses: Tensor
    train_wall_time_s: float
    source: str


def _generation_model(g: int, first: Tensor | MixtureModelSpec | ImageModelSpec, data: Tensor, parent: dict[str, Any],
                      init: nn.Module | None, seeds: GenerationSeeds, config: RecursionConfig, schedule: NoiseSchedule,
                      settings: Settings) -> _Model:
    """Generation g's model: a spec's (shipped, cached or trained by mixture_model / image_model) for generation 0,
    else trained on ``data`` (warm-started from ``init`` if given) or loaded, through :func:`fit_or_load`."""
    if g == 0 and isinstance(first, (MixtureModelSpec, ImageModelSpec)):
        trained = (mixture_model if isinstance(first, MixtureModelSpec) else image_model)(first, settings)
        key = config_key("recursion-spec-model", {"spec": first, "origin": trained.origin}, code=CODE)
        return _Model(trained.model, key, trained.losses, trained.wall_time_s, trained.source)
    train_config = dataclasses.replace(config.train_0 if g == 0 and config.train_0 is not None else config.train, seed=seeds.train)
    model_config = {
        "data": {"x0": first} if g == 0 else parent,
        "model": config.model,
        "train": train_config,
        "schedule": config.schedule,
        "warm_start": init is not None,
        **settings.training_key(),
    }
    data_sha = data_fingerprint(data)

    def run_training(resume: Path) -> TrainResult:
        net = initial_model(config.model, seeds.train)
        if init is not None:
            net.load_state_dict(init.state_dict())
        return train(net, data.to(settings.device), schedule, train_config, progress=settings.progress, resume=resume,
                     **settings.train_options())

    def fit(resume: Path) -> dict[str, Any]:
        try:
            out = run_training(resume)
        except StaleTrainingState:
            # Generation g's training data are its parent's kept candidates, drawn again in this session
            # (candidates are not always carried between sessions) and not bit for bit the draw the saved
            # state was trained on: that training cannot go on, so it starts over on these data.
            warnings.warn(f"generation {g}: its training data were drawn again and differ from those its saved training "
                          f"state was trained on; training it from the start ({resume.name})", stacklevel=2)
            resume.unlink(missing_ok=True)
            out = run_training(resume)
        return trained_payload(out, data_sha=data_sha)  # with EMA, its weights are the model

    payload, ran = fit_or_load("recursion-model", model_config, fit, settings, code=CODE)
    if payload["data_sha"] != data_sha:  # cached from another draw of the parent's candidates: stale here
        warnings.warn(f"generation {g}: the cached model was trained on another draw of its training data; training it again",
                      stacklevel=3)
        payload, ran = fit_or_load("recursion-model", model_config, fit, settings, code=CODE, refresh=True)
    return _Model(loaded(config.model, payload, settings.device), config_key("recursion-model", model_config, code=CODE),
                  payload["losses"], float(payload["wall_time_s"]), "trained" if ran else "cached")


def _draw_candidates(model: _Model, g: int, seeds: GenerationSeeds, config: RecursionConfig, schedule: NoiseSchedule,
                     settings: Settings, chunk_size: int | None) -> GenerationResult:
    """Generation g's ``n_candidates`` samples with their Hal, in one pass (cached), and the ``n_keep`` its filter keeps."""
    samples_config = {
        "model": model.key,
        "weights": weights_fingerprint(model.net),  # by content: a model trained again never reuses another's draw
        "n": config.n_candidates,
        "seed": seeds.sample,
        "hal_window": config.hal_window,
        "schedule": config.schedule,
        "device": settings.device.type,
    }
    if config.clip_x0 is not None:  # in the key only when set
        samples_config["clip_x0"] = float(config.clip_x0)
    fast = settings.sample_options(fusable=isinstance(model.net, MLPDenoiser))
    if fast:  # likewise
        samples_config["fast"] = fast
    drawn = []

    def draw() -> dict[str, Any]:
        drawn.append(True)
        start = time.perf_counter()
        out = sample(model.net, schedule, config.n_candidates, seed=seeds.sample, chunk_size=chunk_size, hal_window=config.hal_window,
                     progress=settings.progress, clip_x0=config.clip_x0, **fast)
        return {"x0": out.x0, "hal": out.hal, "wall_time_s": time.perf_counter() - start}

    value = cached("recursion-samples", samples_config, draw, root=settings.cache_dir, code=CODE)
    return GenerationResult(
        generation=g,
        seeds=seeds,
        model=model.net,
        losses=model.losses,
        train_wall_time_s=model.train_wall_time_s,
        source=model.source,
        candidates=value["x0"],
        hal=value["hal"],
        sample_wall_time_s=float(value["wall_time_s"]),
        samples_cached=not drawn,
        kept=select(value["hal"], config.n_keep, config.filter, seeds.filter),
        model_key=model.key,
        samples_key=config_key("recursion-samples", samples_config, code=CODE),
    )


def _next_training_set(result: GenerationResult, first: Tensor | MixtureModelSpec | ImageModelSpec, real: Tensor | None,
                       seeds: GenerationSeeds, config: RecursionConfig) -> tuple[Tensor, dict[str, Any]]:
    """What generation g+1 trains on, and its part of that model's cache key: generation g's kept candidates, or for
    the "real" control n_keep real training points drawn afresh."""
    if real is not None:
        pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(seeds.filter))[: config.n_keep].sort().values
        parent = {"real": {"spec": first} if isinstance(first, (MixtureModelSpec, ImageModelSpec)) else {"x0": first},
                  "n_keep": config.n_keep, "filter_seed": seeds.filter,
                  "previous": result.samples_key}  # names generation g's weights, which a warm start begins from
        return real[pick], parent
    parent = {"candidates": result.samples_key, "filter": config.filter, "n_keep": config.n_keep}
    if config.filter == "random":
        parent["filter_seed"] = seeds.filter
    return result.kept_x0, parent
