"""mi_lib: the small library behind *Mode Interpolation*, an executable account of how diffusion models
hallucinate (Aithal, Maini, Lipton, Kolter, NeurIPS 2024).

Modules, one idea each, in layers listed lowest first (a module imports only from its own layer and those
listed before it; ``tests/test_repo.py`` holds the list and checks it):

- **foundation**: ``environment`` (the one module that reads environment variables, and the list of them),
  ``params`` (argument checks), ``runtime`` (device, seeds, progress, widgets), ``noise`` (per-sample
  counter-based Gaussian noise), ``cache`` (results keyed by their config and the code that computes them),
  ``fast`` (precision / compile fast paths), ``settings`` (how mi_lib's own runs go: device, fast paths, cache
  folder, progress; passed down as an argument, never read from the environment on the way);
- **data sets**: ``data`` (Gaussian mixtures with closed-form noised scores), ``shapes`` and ``hands`` (image
  data sets with rule-based counters), ``digits`` (real 8x8 and MNIST digits for
  chapter 7b, whose classifier lives with it; imported on demand: ``from mi_lib import digits``);
- **diffusion core**: ``schedule`` (forward process), ``nets`` (the MLP denoiser), ``unet`` (the image denoiser),
  ``fused`` (the MLP's fused sampling loop), ``sampling`` (one reverse loop, and Hal as it samples), ``train``,
  ``exact`` (denoisers from the true score);
- **measurements**: ``metrics`` (labels, gaps, segments, intervals), ``detection`` (scoring samples and judging
  the scores);
- **trained models**: ``models`` (shipped, cached or trained models through one fit-or-load path);
- **recursion**: ``recursion`` (recursive training with filters);
- **presentation**: ``plotting``, ``results``.

On top: ``experiments``, one module per chapter with its experiment code and scales (``from mi_lib.experiments
import mitigations``, chapter 8); nothing below imports it.
"""

from . import detection, hands, shapes
from .cache import cached, config_key
from .data import DATASETS, GaussianMixture, diamond_2d, grid_2d, make_dataset, mixture_1d
from .exact import ExactDenoiser
from .metrics import (
    DEFAULT_K,
    DensityRatio,
    ModeSegments,
    density_ratio,
    gap_lengths,
    gap_mass,
    mean_var_zscores,
    mode_segments,
    nearest_segment,
    out_of_support,
    out_of_support_mass,
    true_gap_mass,
    wilson_interval,
)
from .models import IMAGE_DATASETS, IMAGE_SCALES, ImageModelSpec, image_model_spec, MixtureModelSpec, TrainedModel, image_model, image_samples, mixture_model, mixture_models, mixture_samples
from .nets import MLPConfig, MLPDenoiser, shared_timestep, sinusoidal_embedding
from .params import choice_parameter, number_parameter, sequence_parameter
from .recursion import RecursionConfig, RecursionResult, mixture_report, recursive_training
from .results import Stopwatch, print_results, save_results, say
from .runtime import default_device, describe_device, interact, progress_bar, require_cuda, seed_everything
from .settings import Settings
from .sampling import ReverseStep, SampleResult, WindowVariance, reverse_process, sample, timesteps
from .sampling import initial_noise
from . import noise
from .fast import FastDenoiser
from .settings import PRECISIONS
from .schedule import COSINE, OFFICIAL, SCHEDULE_PRESETS, STANDARD, NoiseSchedule, ScheduleConfig, broadcast_to
from .train import NonFiniteLoss, TrainConfig, TrainResult, diffusion_loss, train, train_many
from .unet import UNetConfig, UNetDenoiser

__version__ = "0.1.0"

__all__ = [
    "COSINE", "DATASETS", "DEFAULT_K", "OFFICIAL", "SCHEDULE_PRESETS", "STANDARD",
    "ExactDenoiser", "GaussianMixture", "MLPConfig", "MLPDenoiser", "MixtureModelSpec", "ModeSegments",
    "NoiseSchedule", "ReverseStep", "SampleResult", "ScheduleConfig", "Stopwatch", "TrainConfig",
    "TrainResult", "TrainedModel", "UNetConfig", "UNetDenoiser", "WindowVariance",
    "broadcast_to", "cached", "config_key", "default_device", "describe_device", "diamond_2d",
    "detection", "diffusion_loss", "gap_mass", "grid_2d", "hands", "make_dataset", "mean_var_zscores", "mixture_1d",
    "mixture_model", "mixture_models", "mixture_samples", "mode_segments", "nearest_segment", "out_of_support",
    "out_of_support_mass", "print_results", "say", "progress_bar", "require_cuda", "reverse_process", "sample",
    "save_results", "seed_everything", "shapes", "shared_timestep", "sinusoidal_embedding", "timesteps",
    "train", "train_many", "NonFiniteLoss", "true_gap_mass", "sequence_parameter", "number_parameter", "choice_parameter", "DensityRatio", "density_ratio", "gap_lengths", "wilson_interval",
    "noise", "initial_noise", "PRECISIONS", "FastDenoiser",
    "IMAGE_DATASETS", "IMAGE_SCALES", "ImageModelSpec", "image_model", "image_model_spec", "image_samples", "interact",
    "RecursionConfig", "Settings", "RecursionResult", "mixture_report", "recursive_training",
]
