"""mi_lib: the small library behind *Mode Interpolation*, an executable account of how diffusion models
hallucinate (Aithal, Maini, Lipton, Kolter, NeurIPS 2024).

Modules, one idea each: ``schedule`` (forward process), ``nets`` (denoisers), ``data`` (Gaussian mixtures
with closed-form noised scores), ``train``, ``sampling`` (one reverse loop), ``metrics`` (labels, Hal),
``cache``, ``results``, ``runtime`` (device, seeds, progress), ``plotting``.
"""

from .cache import cached, config_key
from .data import DATASETS, GaussianMixture, diamond_2d, grid_2d, make_dataset, mixture_1d
from .metrics import DEFAULT_K, WindowVariance, mean_var_zscores, out_of_support, out_of_support_mass
from .nets import MLPConfig, MLPDenoiser, shared_timestep, sinusoidal_embedding
from .results import Stopwatch, print_results, save_results
from .runtime import default_device, describe_device, progress_bar, require_cuda, seed_everything
from .sampling import ReverseStep, SampleResult, reverse_process, sample, timesteps
from .schedule import COSINE, OFFICIAL, SCHEDULE_PRESETS, STANDARD, NoiseSchedule, ScheduleConfig, broadcast_to
from .train import TrainConfig, TrainResult, diffusion_loss, train

__version__ = "0.1.0"

__all__ = [
    "COSINE", "DATASETS", "DEFAULT_K", "OFFICIAL", "SCHEDULE_PRESETS", "STANDARD",
    "GaussianMixture", "MLPConfig", "MLPDenoiser", "NoiseSchedule", "ReverseStep", "SampleResult",
    "ScheduleConfig", "Stopwatch", "TrainConfig", "TrainResult", "WindowVariance",
    "broadcast_to", "cached", "config_key", "default_device", "describe_device", "diamond_2d",
    "diffusion_loss", "grid_2d", "make_dataset", "mean_var_zscores", "mixture_1d", "out_of_support",
    "out_of_support_mass", "print_results", "progress_bar", "require_cuda", "reverse_process", "sample",
    "save_results", "seed_everything", "shared_timestep", "sinusoidal_embedding", "timesteps", "train",
]
