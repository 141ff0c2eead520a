"""Where trained models come from: a checkpoint shipped in ``data/checkpoints``, the on-disk cache, or a
fresh training run -- through one path, :func:`mixture_model` for the Gaussian mixtures (MLP) and
:func:`image_model` for Simple Shapes and synthetic hands (UNet).

A :class:`MixtureModelSpec` or :class:`ImageModelSpec` names everything a trained model depends on (data set
and its seed, training-set size, network, optimiser, schedule). A shipped checkpoint is used only when its recorded spec equals the
requested one exactly; anything else is trained with :func:`mi_lib.diffusion.train.train` and cached (the cache key
also hashes the source of this module and of every module it imports -- trainer, networks, sampler, data -- so
changed computing code retrains; a changed figure helper or chapter module does not). :func:`fit_or_load` is
that one path from a key to a trained payload, shared with :mod:`mi_lib.experiments.recursion`'s generations. Shipped checkpoints are what lets a chapter
run at CI scale on two CPU cores with a model trained for minutes, not seconds; each is listed in
``data/checkpoints/manifest.json`` (:mod:`mi_lib.storage.checkpoints`) with how it was made and the sample
statistics it produced, which the tests reproduce (so a shipped file can never silently disagree with the code).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..datasets.mixtures import DATASETS, GaussianMixture, make_dataset
from ..params import positive_int
from ..settings import Settings
from ..storage.cache import cache_path, cached, canonical, partial_path
from ..storage.checkpoints import CHECKPOINT_DIR, load_shipped, spec_json, spec_key
from .nets import MLPConfig, MLPDenoiser
from .sampling import SampleResult, sample
from .schedule import OFFICIAL, STANDARD, NoiseSchedule, ScheduleConfig
from .train import TrainConfig, TrainResult, train, train_many
from .unet import UNetConfig, UNetDenoiser

__all__ = [
    "IMAGE_DATASETS", "IMAGE_CLIP_X0", "ImageModelSpec", "IMAGE_SCALES", "image_model_spec", "image_model",
    "image_samples", "MixtureModelSpec", "TrainedModel", "mixture_model", "mixture_models", "mixture_samples",
    "fit_or_load", "initial_model", "loaded", "trained_payload"
]

#: The modules whose source is in this module's cache keys: this one and all it imports (:func:`mi_lib.storage.cache.code_modules`).
CODE = "diffusion/models.py"

@dataclass(frozen=True)
class MixtureModelSpec:
    """Everything a trained mixture model depends on.

    ``dataset`` is a name from :data:`mi_lib.DATASETS`; ``means`` overrides the 1D mode positions and
    ``sigma`` the modes' standard deviation (None: the data set's defaults, filled in on creation).
    ``n_train`` training points are drawn with ``data_seed`` (modes assigned cyclically, as the official
    code does). The model is trained with ``train`` on ``schedule``."""

    dataset: str = "1d"
    means: tuple[float, ...] | None = None
    sigma: float | None = None
    n_train: int = 20_000
    data_seed: int = 0
    model: MLPConfig = field(default_factory=MLPConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: ScheduleConfig = OFFICIAL

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}")
        # resolve defaults so that equal data sets always have equal specs (and keys)
        defaults = inspect.signature(DATASETS[self.dataset]).parameters
        if self.means is not None and self.dataset != "1d":
            raise ValueError(f"means can be set for the '1d' dataset only, not {self.dataset!r}")
        if self.dataset == "1d":
            means = self.means if self.means is not None else defaults["means"].default
            object.__setattr__(self, "means", tuple(float(m) for m in means))
        object.__setattr__(self, "sigma", float(self.sigma if self.sigma is not None else defaults["sigma"].default))
        object.__setattr__(self, "n_train", positive_int(self.n_train, "n_train"))
        if self.model.data_dim != self.mixture().dim:
            raise ValueError(f"model.data_dim={self.model.data_dim} but dataset {self.dataset!r} is {self.mixture().dim}-D")
        if self.train.rho and not self.model.learn_sigma:
            raise ValueError(f"train.rho={self.train.rho!r} (VSM's penalty) needs model=MLPConfig(learn_sigma=True)")

    def mixture(self) -> GaussianMixture:
        """The data distribution."""
        kwargs = {"means": self.means, "sigma": self.sigma}
        return make_dataset(self.dataset, **{k: v for k, v in kwargs.items() if v is not None})

    def training_data(self) -> Tensor:
        """The ``n_train`` training points, (n_train, D) float32 on the CPU, identical on every machine."""
        x, _ = self.mixture().sample(self.n_train, torch.Generator().manual_seed(self.data_seed), stratified=True)
        return x

    def replace(self, **changes: Any) -> MixtureModelSpec:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


#: Image data sets an :class:`ImageModelSpec` can name.
IMAGE_DATASETS = ("shapes", "hands")
#: :func:`image_samples` clamps x0_hat to [-IMAGE_CLIP_X0, IMAGE_CLIP_X0] at every reverse step (images live in [-1, 1]).
IMAGE_CLIP_X0 = 1.0


@dataclass(frozen=True)
class ImageModelSpec:
    """Everything a trained image model depends on: ``n_train`` images of ``dataset`` ("shapes": Simple
    Shapes, :func:`mi_lib.datasets.shapes.make_shapes`; "hands": five-finger synthetic hands,
    :func:`mi_lib.datasets.hands.make_hands`) drawn with ``data_seed`` and mapped to [-1, 1], a :class:`UNetConfig`, the
    optimiser and the schedule. With ``train.ema_decay`` set, the EMA weights are the model that samples.
    The defaults are paper scale (the paper's data sizes; its training settings are not published)."""

    dataset: str = "shapes"
    n_train: int = 5_000
    data_seed: int = 0
    model: UNetConfig = UNetConfig()
    train: TrainConfig = TrainConfig(steps=20_000, batch_size=128, lr=2e-4, ema_decay=0.9995)
    schedule: ScheduleConfig = STANDARD

    def __post_init__(self) -> None:
        if self.dataset not in IMAGE_DATASETS:
            raise ValueError(f"unknown image dataset {self.dataset!r}; choose one of {IMAGE_DATASETS}")
        object.__setattr__(self, "n_train", positive_int(self.n_train, "n_train"))
        if not isinstance(self.model, UNetConfig):
            raise TypeError(f"model must be a UNetConfig, got {type(self.model).__name__}")
        if self.model.sample_shape != (1, 64, 64):
            raise ValueError(f"{self.dataset} images are (1, 64, 64); the model's sample_shape is {self.model.sample_shape}")

    def training_data(self) -> Tensor:
        """The ``n_train`` training images, (n_train, 1, 64, 64) float32 in {-1, 1} on the CPU."""
        from ..datasets.hands import make_hands
        from ..datasets.shapes import make_shapes, to_model_range

        if self.dataset == "shapes":
            images = make_shapes(self.n_train, self.data_seed).images
        else:
            images = make_hands(self.n_train, self.data_seed, n_fingers=5).images
        return to_model_range(images)

    def replace(self, **changes: Any) -> ImageModelSpec:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


ModelSpec = MixtureModelSpec | ImageModelSpec


#: The image models' settings per scale. "ci": a 311k-parameter UNet run on 2x2 patches (32x32 inside) and
#: a 200-step DDPM whose linear betas (5e-4 -> 0.1) are the standard 1000-step ones coarsened 5x, trainable
#: on one CPU core in under an hour -- the checkpoints shipped in data/checkpoints are exactly these.
#: "paper": the :class:`ImageModelSpec` defaults (1.5M-parameter UNet, the standard 1000-step schedule; GPU).
IMAGE_SCALES: dict[str, dict[str, Any]] = {
    "ci": dict(
        model=UNetConfig(base_channels=16, channel_mults=(1, 2, 2), blocks_per_level=1, patch=2),
        train=TrainConfig(steps=6_000, batch_size=64, lr=5e-4, ema_decay=0.999),
        schedule=ScheduleConfig("linear", 200, 5e-4, 0.1),
    ),
    "paper": {},
}


def image_model_spec(dataset: str, scale: str = "paper", *, n_train: int = 5_000, data_seed: int = 0) -> ImageModelSpec:
    """The :class:`ImageModelSpec` of ``dataset`` ("shapes" or "hands") at ``scale`` (:data:`IMAGE_SCALES`):
    the one definition chapters 5-7 and ``scripts/make_checkpoints.py`` share."""
    if scale not in IMAGE_SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(IMAGE_SCALES)}")
    return ImageModelSpec(dataset, n_train=n_train, data_seed=data_seed, **IMAGE_SCALES[scale])


@dataclass
class TrainedModel:
    """A model ready to sample (eval mode, on the requested device), its training loss per step, the
    training wall time, and where it came from: ``source`` is ``"shipped"`` (data/checkpoints) or
    ``"trained"`` (now, or earlier and cached); ``origin`` also names the checkpoint or training device."""

    model: MLPDenoiser | UNetDenoiser
    losses: Tensor
    wall_time_s: float
    source: str
    origin: str


def initial_model(config: MLPConfig | UNetConfig, seed: int) -> MLPDenoiser | UNetDenoiser:
    """A freshly initialised network (an MLP or a UNet, by the config's type) whose weights depend on
    ``seed`` only (the global RNG is untouched)."""
    if not isinstance(config, (MLPConfig, UNetConfig)):
        raise TypeError(f"config must be an MLPConfig or a UNetConfig, got {type(config).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLPDenoiser(config) if isinstance(config, MLPConfig) else UNetDenoiser(config)


def _fast_suffix(options: dict[str, Any]) -> str:
    return "" if not options else " (" + ", ".join(f"{k}={v}" for k, v in sorted(options.items())) + ")"


def train_payload(spec: ModelSpec, settings: Settings = Settings(), resume: Path | None = None) -> dict[str, Any]:
    """Train ``spec`` now, as ``settings`` say; the returned payload is what a checkpoint file stores (the EMA
    weights when ``spec.train.ema_decay`` is set). ``resume``: :func:`mi_lib.diffusion.train.train`'s training-state file."""
    model = initial_model(spec.model, spec.train.seed)
    result = train(model, spec.training_data().to(settings.device), NoiseSchedule(spec.schedule), spec.train, progress=settings.progress,
                   resume=resume, **settings.train_options())
    return trained_payload(result, spec=spec_json(spec))


def trained_payload(result: TrainResult, **extra: Any) -> dict[str, Any]:
    """What a trained model is stored as (a cache entry, a checkpoint file): the weights that sample -- the EMA
    weights when the training kept them, else the live ones -- as CPU tensors, the losses and the wall time,
    plus ``extra``."""
    final = result.ema_model if result.ema_model is not None else result.model
    return {
        "state_dict": {k: v.detach().cpu().clone() for k, v in final.state_dict().items()},
        "losses": result.losses,
        "wall_time_s": result.wall_time_s,
        **extra,
    }


def loaded(config: MLPConfig | UNetConfig, payload: dict[str, Any], device: torch.device | str) -> MLPDenoiser | UNetDenoiser:
    """The network of ``config`` with ``payload``'s weights, on ``device``, in eval mode: ready to sample."""
    model = initial_model(config, 0)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


def fit_or_load(
    name: str,
    key: Any,
    fit: Callable[[Path], dict[str, Any]],
    settings: Settings,
    *,
    code: str | Sequence[str] = CODE,
    refresh: bool = False,
) -> tuple[dict[str, Any], bool]:
    """The one path from a cache key to a trained model's payload (:func:`trained_payload`): the entry cached
    under (``name``, ``key``, ``code``) in ``settings.cache_dir``, else ``fit(resume)``'s, stored. ``resume`` is
    the file where :func:`mi_lib.diffusion.train.train` keeps its resumable state beside the entry, so a training cut off
    (by a GPU window's time limit, say) goes on where it stopped; it is removed once the payload is stored.
    ``refresh=True`` trains again from the start. Returns (payload, whether ``fit`` ran)."""
    resume = partial_path(name, key, root=settings.cache_dir, code=code)
    if refresh:
        resume.unlink(missing_ok=True)
    ran = []
    payload = cached(name, key, lambda: ran.append(True) or fit(resume), root=settings.cache_dir, code=code, refresh=refresh)
    resume.unlink(missing_ok=True)
    return payload, bool(ran)


def mixture_model(
    spec: MixtureModelSpec,
    settings: Settings = Settings(),
    *,
    checkpoints: Path | str | None = CHECKPOINT_DIR,
    refresh: bool = False,
) -> TrainedModel:
    """The model for ``spec``: the shipped checkpoint if one matches exactly, else trained (and cached).

    ``settings`` say where it trains and samples, with which fast paths, and where the cache is;
    ``checkpoints=None`` ignores shipped files; ``refresh=True`` retrains even if cached. A training is cached per
    device type, CPU thread count and fast paths (training differs in the last bits across them)."""
    if not isinstance(spec, MixtureModelSpec):
        raise TypeError(f"spec must be a MixtureModelSpec, got {type(spec).__name__}")
    return _trained_model("mixture-model", spec, settings, checkpoints, refresh)


def mixture_models(
    specs: Sequence[MixtureModelSpec],
    settings: Settings = Settings(),
    *,
    checkpoints: Path | str | None = CHECKPOINT_DIR,
) -> list[TrainedModel]:
    """:func:`mixture_model` of each spec, in order, with the models that must be trained trained together
    when ``settings.fast_train`` holds ``batch=1``: those of one network, schedule and optimiser settings (seeds
    and data may differ) go through :func:`mi_lib.train_many` as one stacked network, and each is cached
    under the key :func:`mixture_model` looks up, so a later call of either finds it. Shipped and cached
    models are loaded as :func:`mixture_model` loads them; without ``batch=1`` this is that function in a loop.
    A batched model's ``wall_time_s`` is its whole batch's."""
    specs = list(specs)
    for spec in specs:
        if not isinstance(spec, MixtureModelSpec):
            raise TypeError(f"specs must be MixtureModelSpecs, got {type(spec).__name__}")
    if settings.fast_train.get("batch"):
        key_of = lambda spec: {"spec": spec, **settings.training_key()}  # noqa: E731  (mixture_model's key)
        pending = [spec for spec in specs
                   if (checkpoints is None or load_shipped(spec, Path(checkpoints), settings.cache_dir) is None)
                   and not cache_path("mixture-model", key_of(spec), root=settings.cache_dir, code=CODE).exists()]
        groups: dict[str, list[MixtureModelSpec]] = {}
        for spec in dict.fromkeys(pending):  # one training per distinct spec
            together = (spec.model, spec.schedule, dataclasses.replace(spec.train, seed=0), min(spec.train.batch_size, spec.n_train))
            groups.setdefault(json.dumps(canonical(list(together)), sort_keys=True), []).append(spec)
        for group in groups.values():
            if len(group) < 2:
                continue  # mixture_model trains it alone below
            results = train_many([initial_model(spec.model, spec.train.seed) for spec in group],
                                 [spec.training_data().to(settings.device) for spec in group], NoiseSchedule(group[0].schedule),
                                 [spec.train for spec in group], progress=settings.progress, **settings.train_options())
            for spec, result in zip(group, results):
                payload = trained_payload(result, spec=spec_json(spec), trained_with=len(group))
                fit_or_load("mixture-model", key_of(spec), lambda _resume: payload, settings)
    return [mixture_model(spec, settings, checkpoints=checkpoints) for spec in specs]


def image_model(
    spec: ImageModelSpec,
    settings: Settings = Settings(),
    *,
    checkpoints: Path | str | None = CHECKPOINT_DIR,
    refresh: bool = False,
) -> TrainedModel:
    """The UNet for ``spec``: the shipped checkpoint if one matches exactly, else trained (and cached), as
    :func:`mixture_model` does for mixtures."""
    if not isinstance(spec, ImageModelSpec):
        raise TypeError(f"spec must be an ImageModelSpec, got {type(spec).__name__}")
    return _trained_model("image-model", spec, settings, checkpoints, refresh)


def _trained_model(name: str, spec: ModelSpec, settings: Settings, checkpoints: Path | str | None, refresh: bool) -> TrainedModel:
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a mi_lib.Settings, got {type(settings).__name__}")
    payload = load_shipped(spec, Path(checkpoints), settings.cache_dir) if checkpoints is not None and not refresh else None
    source = "shipped"
    if payload is None:
        source = "trained"
        payload, _ = fit_or_load(name, {"spec": spec, **settings.training_key()}, lambda resume: train_payload(spec, settings, resume),
                                 settings, refresh=refresh)
    origin = f"shipped:{spec_key(spec)}" if source == "shipped" else f"trained:{settings.device.type}{_fast_suffix(settings.fast_train)}"
    return TrainedModel(loaded(spec.model, payload, settings.device), payload["losses"], float(payload["wall_time_s"]), source, origin)


def mixture_samples(
    spec: MixtureModelSpec,
    n: int,
    settings: Settings = Settings(),
    *,
    seed: int = 0,
    chunk_size: int | None = None,
    hal_window: tuple[int, int] | None = None,
    record_steps: Sequence[int] = (),
) -> SampleResult:
    """``n`` samples (and Hal, if ``hal_window`` is given; the (x_t, x0_hat) of ``record_steps``) from the
    model of ``spec`` (:func:`mixture_model`), drawn as ``settings`` say and cached in their folder.

    DDPM ancestral sampling with fixed-large variance over all T steps, as in the official code. The cache
    key holds the spec, where its model came from, the sampling settings, the fast paths and the device type;
    ``chunk_size`` bounds memory, changes no sample and is not in it."""
    trained = mixture_model(spec, settings)
    return _samples("mixture-samples", spec, trained, n, seed, settings, chunk_size, hal_window, record_steps, None)


def image_samples(
    spec: ImageModelSpec,
    n: int,
    settings: Settings = Settings(),
    *,
    seed: int = 0,
    chunk_size: int | None = 256,
    hal_window: tuple[int, int] | None = None,
    record_steps: Sequence[int] = (),
    clip_x0: float | None = IMAGE_CLIP_X0,
) -> SampleResult:
    """``n`` images (N, 1, 64, 64) in the model's range [-1, 1] (and Hal, records) from the model of
    ``spec``, cached; as :func:`mixture_samples`, DDPM ancestral sampling over all T steps, here with x0_hat
    clamped to [-1, 1] at every step (``clip_x0``, as DDPM and ADM sample images; without it the small
    CI-scale UNets drift far outside the data range)."""
    trained = image_model(spec, settings)
    return _samples("image-samples", spec, trained, n, seed, settings, chunk_size, hal_window, record_steps, clip_x0)


def _samples(
    name: str, spec: ModelSpec, trained: TrainedModel, n: int, seed: int, settings: Settings,
    chunk_size: int | None, hal_window: tuple[int, int] | None, record_steps: Sequence[int], clip_x0: float | None,
) -> SampleResult:
    # chunk_size is not in the key: it bounds memory and changes no sample (mi_lib.diffusion.sampling), so one entry serves
    # every chunk size
    config = {"spec": spec, "origin": trained.origin, "n": n, "seed": seed, "hal_window": hal_window, "device": settings.device.type}
    record_steps = sorted({int(t) for t in record_steps})
    if record_steps:  # a key change only when asked for, so earlier cached samples stay valid
        config["record_steps"] = record_steps
    if clip_x0 is not None:  # likewise
        config["clip_x0"] = float(clip_x0)
    fast = settings.sample_options(fusable=isinstance(trained.model, MLPDenoiser))
    if fast:  # likewise
        config["fast"] = fast

    def compute() -> dict[str, Tensor | None]:
        result = sample(
            trained.model, NoiseSchedule(spec.schedule), n, seed=seed, chunk_size=chunk_size, hal_window=hal_window,
            record_steps=record_steps, progress=settings.progress, clip_x0=clip_x0, **fast,
        )
        return {"x0": result.x0, "hal": result.hal, "records": result.records}

    value = cached(name, config, compute, root=settings.cache_dir, code=CODE)
    return SampleResult(value["x0"], value["hal"], value.get("records", {}))
