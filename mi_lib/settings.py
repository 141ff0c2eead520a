"""How mi_lib's own runs are carried out -- where, with which fast paths, cached where, with or without progress
bars -- as one value passed down from the chapter (or script) that starts them, never read from the environment
along the way.

A chapter builds its :class:`Settings` once, in its ``setup()``, with :meth:`Settings.from_environment` (the
variables of the machine running it: ``MI_CACHE_DIR``, ``MI_RESULTS_DIR``, ``MI_PROGRESS``, ``MI_FAST_TRAIN``,
``MI_FAST_SAMPLE``; :mod:`mi_lib.environment`), and passes it to :func:`mi_lib.mixture_model`,
:func:`~mi_lib.image_model`, their ``*_samples``, :func:`~mi_lib.recursive_training` and
:func:`~mi_lib.save_results`. ``Settings()`` is a plain run: the CPU, float32, eager, the cache in ``./.mi_cache``.
Only the fast paths can change a computed number (in its last bits), so only they enter cache keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import environment
from .fast import parse_fast_options, trainer_options
from .runtime import default_device

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """``device``: where trainings and sampling runs go (a name or a :class:`torch.device`). ``progress``: progress
    bars. ``cache_dir``: the on-disk cache of models and samples (:mod:`mi_lib.cache`). ``results_dir``: where
    :func:`mi_lib.save_results` writes (None: the book's ``results/``). ``fast_train`` / ``fast_sample``: the fast
    paths of trainings and sampling runs, a mapping or its text such as ``"precision=bf16,compile=1"``
    (:func:`mi_lib.fast.parse_fast_options`), held as the mapping of what differs from the default. A bad value is
    one error on creation."""

    device: torch.device = torch.device("cpu")
    progress: bool = True
    cache_dir: Path = Path(".mi_cache")
    results_dir: Path | None = None
    fast_train: Mapping[str, Any] = field(default_factory=dict)
    fast_sample: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress must be True or False, got {self.progress!r}")
        for name, value in (("device", torch.device(self.device)), ("cache_dir", Path(self.cache_dir)),
                            ("results_dir", None if self.results_dir is None else Path(self.results_dir)),
                            ("fast_train", parse_fast_options("train", self.fast_train)),
                            ("fast_sample", parse_fast_options("sample", self.fast_sample))):
            object.__setattr__(self, name, value)

    @classmethod
    def from_environment(cls, device: torch.device | str | None = None) -> Settings:
        """The settings of this machine's environment (:mod:`mi_lib.environment`), on ``device`` (default: the GPU
        if one is visible, else the CPU). For a chapter's ``setup()`` and the scripts, the boundary where the
        environment is read."""
        return cls(
            device=default_device() if device is None else device,
            progress=environment.progress(),
            cache_dir=environment.cache_dir(),
            results_dir=environment.results_dir(),
            fast_train=parse_fast_options("train", environment.fast_text("MI_FAST_TRAIN"), source="$MI_FAST_TRAIN"),
            fast_sample=parse_fast_options("sample", environment.fast_text("MI_FAST_SAMPLE"), source="$MI_FAST_SAMPLE"),
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def train_options(self) -> dict[str, Any]:
        """The keywords of :func:`mi_lib.train` that ``fast_train`` asks for."""
        return trainer_options(self.fast_train)

    def sample_options(self, fusable: bool = True) -> dict[str, Any]:
        """The keywords of :func:`mi_lib.sample` that ``fast_sample`` asks for; ``fusable=False`` (a network the
        fused sampler cannot run, a UNet) leaves ``fused`` out."""
        return {k: v for k, v in self.fast_sample.items() if fusable or k != "fused"}

    def training_key(self) -> dict[str, Any]:
        """What a trained model's cache key must hold about how it was trained: the device type, on the CPU the
        thread count (CPU training is not bit-identical across thread counts), and the fast paths switched on
        (none: no key, as before they existed)."""
        return {"device": self.device.type, **({"cpu_threads": torch.get_num_threads()} if self.device.type == "cpu" else {}),
                **({"fast": dict(self.fast_train)} if self.fast_train else {})}

    def fast(self) -> dict[str, dict[str, Any]]:
        """The fast paths switched on, per kind of run (what a results file records); empty when none is."""
        return {kind: dict(options) for kind, options in (("train", self.fast_train), ("sample", self.fast_sample)) if options}
