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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import environment
from .runtime import default_device

__all__ = ["COMPILE_MODES", "PRECISIONS", "Settings", "parse_fast_options"]

PRECISIONS = ("float32", "tf32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_TRUE, _FALSE = environment.ON, (*environment.OFF, "")  # "fused=" is off
_FAST_KEYS = {"train": ("precision", "compile", "fused", "graph", "batch"), "sample": ("precision", "compile", "fused")}
_DEFAULTS = {"precision": "float32", "compile": False, "fused": False, "graph": False, "batch": False}


def parse_fast_options(kind: str, value: str | Mapping[str, Any], *, source: str | None = None) -> dict[str, Any]:
    """The fast paths of a training (``kind="train"``) or sampling run (``kind="sample"``) as keyword arguments of
    :func:`mi_lib.train` / :func:`mi_lib.sample`, holding only what differs from the default (so
    ``precision=float32`` is the same as nothing: ``{}``). ``value`` is a mapping or its text, a comma-separated list
    of ``key=value``: ``precision`` (one of :data:`PRECISIONS`), ``compile`` (0/1 or a mode of
    :data:`COMPILE_MODES`), ``fused`` (0/1: for training, Adam's fused kernel; for sampling, the fused sampler of
    :mod:`mi_lib.diffusion.fused`, or its launch configuration ROWSxWARPS, which implies 1) and, for training, ``graph``
    (0/1: :func:`mi_lib.train`'s CUDA-graph step) and ``batch`` (0/1: :func:`mi_lib.mixture_models` trains the
    models it is asked for together; :meth:`Settings.train_options` leaves it out of a trainer's keywords). Anything else
    is one ValueError naming ``source`` (say ``"$MI_FAST_TRAIN"``); whether the options suit the device is
    checked where they are used (:func:`mi_lib.diffusion.fast.check_fast_options`)."""
    if kind not in _FAST_KEYS:
        raise ValueError(f"kind must be one of {sorted(_FAST_KEYS)}, got {kind!r}")
    if isinstance(value, Mapping):
        value = ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in value.items())
    if not isinstance(value, str):
        raise TypeError(f"fast options must be a mapping or a string, got {type(value).__name__}")
    where = f"{source or kind + ' fast options'}={value!r}"
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, text = (x.strip() for x in item.partition("="))
        if not sep or key not in _FAST_KEYS[kind]:
            raise ValueError(f"{where}: {item!r} is not one of {', '.join(k + '=...' for k in _FAST_KEYS[kind])}")
        if key in options:
            raise ValueError(f"{where}: {key} is given twice")
        low = text.lower()
        if key == "precision":
            if text not in PRECISIONS:
                raise ValueError(f"{where}: precision must be one of {PRECISIONS}, got {text!r}")
            options[key] = text
        elif key == "compile":
            if low in _TRUE or low in _FALSE:
                options[key] = low in _TRUE
            elif text in COMPILE_MODES:
                options[key] = True if text == "default" else text
            else:
                raise ValueError(f"{where}: compile must be 0, 1 or one of {COMPILE_MODES}, got {text!r}")
        elif key == "fused" and kind == "sample" and re.fullmatch(r"\d+x\d+", low):  # the kernel's launch configuration
            options[key] = low
        else:  # fused, graph, batch
            if low not in _TRUE + _FALSE:
                more = " or a launch configuration ROWSxWARPS such as 128x8" if key == "fused" and kind == "sample" else ""
                raise ValueError(f"{where}: {key} must be 0 or 1{more}, got {text!r}")
            options[key] = low in _TRUE
    return {key: value for key, value in options.items() if value != _DEFAULTS[key]}


@dataclass(frozen=True)
class Settings:
    """``device``: where trainings and sampling runs go (a name or a :class:`torch.device`). ``progress``: progress
    bars. ``cache_dir``: the on-disk cache of models and samples (:mod:`mi_lib.storage.cache`). ``results_dir``: where
    :func:`mi_lib.save_results` writes (None: the book's ``results/``). ``fast_train`` / ``fast_sample``: the fast
    paths of trainings and sampling runs, a mapping or its text such as ``"precision=bf16,compile=1"``
    (:func:`parse_fast_options`), held as the mapping of what differs from the default. A bad value is
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
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be a torch.device or its name ('cpu', 'cuda', 'cuda:1', 'mps'), got "
                             f"{self.device!r}") from None
        for name, value in (("device", device), ("cache_dir", Path(self.cache_dir)),
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
        """The keywords of :func:`mi_lib.train` / :func:`mi_lib.train_many` that ``fast_train`` asks for: all but
        ``batch``, which says whether to batch, not how to train."""
        return {key: value for key, value in self.fast_train.items() if key != "batch"}

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
