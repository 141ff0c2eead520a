"""mi_lib: the small library behind *Mode Interpolation*, an executable account of how diffusion models
hallucinate (Aithal, Maini, Lipton, Kolter, NeurIPS 2024).

The package's folders are its layers, listed lowest first (a module imports only from its own layer and those
listed before it; ``tests/test_repo.py`` holds the list and checks it):

- **foundation** (the package's top level): ``environment`` (the one module that reads environment variables),
  ``params`` (argument checks), ``runtime`` (device, seeds, progress, widgets), ``settings`` (how mi_lib's own
  runs go: device, fast paths, cache folder, progress; passed down as an argument, never read on the way);
- **storage** (``mi_lib/storage``): ``cache`` (results keyed by their config and the code that computes them),
  ``checkpoints`` (the shipped checkpoints and their manifest), ``results`` (the chapters' results files);
- **data sets** (``mi_lib/datasets``): ``mixtures`` (Gaussian mixtures with closed-form noised scores), ``shapes``
  and ``hands`` (image data sets with rule-based counters), ``digits`` (real 8x8 and MNIST digits);
- **diffusion core** (``mi_lib/diffusion``): ``schedule`` (forward process), ``noise`` (per-sample counter-based
  Gaussian noise), ``nets`` (the MLP denoiser), ``unet`` (the image denoiser), ``exact`` (denoisers from the true
  score), ``train``, ``sampling`` (one reverse loop, and Hal as it samples) with its fast paths ``fast`` and
  ``fused``, and ``models`` (shipped, cached or trained models through one fit-or-load path);
- **measurements** (``mi_lib/measure``): ``metrics`` (labels, gaps, segments, intervals, a sample set's report),
  ``detection`` (Hal from the sampler's records, and AUROC);
- **presentation** (top level): ``plotting``.

On top: ``mi_lib/experiments``, one module per chapter with its experiment code and scales (``from mi_lib.experiments
import mitigations``, chapter 8), and ``recursion``, the recursive-training loop of chapter 7's three sections;
nothing below imports it. The names below are the public API, re-exported from those modules.
"""

from .measure import detection
from .datasets import hands, shapes
from .storage.cache import cached, config_key
from .datasets.mixtures import DATASETS, GaussianMixture, diamond_2d, grid_2d, make_dataset, mixture_1d
from .diffusion.exact import ExactDenoiser
from .measure.metrics import (
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
    mixture_report,
    true_gap_mass,
    wilson_interval,
)
from .diffusion.models import IMAGE_DATASETS, IMAGE_SCALES, ImageModelSpec, image_model_spec, MixtureModelSpec, TrainedModel, image_model, image_samples, mixture_model, mixture_models, mixture_samples
from .diffusion.nets import MLPConfig, MLPDenoiser, shared_timestep, sinusoidal_embedding
from .params import choice_parameter, number_parameter, sequence_parameter
from .experiments.recursion import RecursionConfig, RecursionResult, recursive_training
from .storage.results import Stopwatch, format_number, print_results, save_results, say, seed_sweep
from .runtime import default_device, describe_device, interact, progress_bar, require_cuda
from .settings import Settings
from .diffusion.sampling import ReverseStep, SampleResult, WindowVariance, reverse_process, sample, timesteps
from .diffusion.sampling import initial_noise
from .diffusion import noise
from .diffusion.fast import FastDenoiser
from .settings import PRECISIONS
from .diffusion.schedule import COSINE, OFFICIAL, SCHEDULE_PRESETS, STANDARD, NoiseSchedule, ScheduleConfig, broadcast_to
from .diffusion.train import NonFiniteLoss, TrainConfig, TrainResult, diffusion_loss, train, train_many
from .diffusion.unet import UNetConfig, UNetDenoiser

__version__ = "0.1.0"

__all__ = [
    "COSINE", "DATASETS", "DEFAULT_K", "OFFICIAL", "SCHEDULE_PRESETS", "STANDARD", "ExactDenoiser",
    "GaussianMixture", "MLPConfig", "MLPDenoiser", "MixtureModelSpec", "ModeSegments", "NoiseSchedule",
    "ReverseStep", "SampleResult", "ScheduleConfig", "Stopwatch", "TrainConfig", "TrainResult", "TrainedModel",
    "UNetConfig", "UNetDenoiser", "WindowVariance", "broadcast_to", "cached", "config_key", "default_device",
    "describe_device", "diamond_2d", "detection", "diffusion_loss", "gap_mass", "grid_2d", "hands", "make_dataset",
    "mean_var_zscores", "mixture_1d", "mixture_model", "mixture_models", "mixture_samples", "mode_segments",
    "nearest_segment", "out_of_support", "out_of_support_mass", "print_results", "say", "progress_bar",
    "require_cuda", "reverse_process", "sample", "save_results", "shapes", "shared_timestep", "sinusoidal_embedding",
    "timesteps", "train", "train_many", "NonFiniteLoss", "true_gap_mass", "sequence_parameter", "number_parameter",
    "choice_parameter", "DensityRatio", "density_ratio", "gap_lengths", "wilson_interval", "noise", "initial_noise",
    "format_number", "seed_sweep", "PRECISIONS", "FastDenoiser", "IMAGE_DATASETS", "IMAGE_SCALES", "ImageModelSpec",
    "image_model", "image_model_spec", "image_samples", "interact", "RecursionConfig", "Settings", "RecursionResult",
    "mixture_report", "recursive_training"
]
