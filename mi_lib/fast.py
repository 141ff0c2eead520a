"""Fast paths for a denoiser: reduced-precision arithmetic and ``torch.compile``, shared by the sampler and
the trainer. Every option defaults to off (plain float32, eager); each is checked up front and either falls
back to the reference behaviour where the hardware lacks it (documented below) or raises one clear error.

``precision``:
  * ``"float32"`` -- the reference: torch's own settings, untouched (by default matmuls in full float32;
    on Ampere+ GPUs cuDNN convolutions may use TF32, torch's default).
  * ``"tf32"`` -- on CUDA, matmuls and cuDNN convolutions may use TF32 tensor cores (10-bit mantissa
    products, float32 accumulation). On the CPU and on pre-Ampere GPUs this is plain float32.
  * ``"bf16"`` -- the network runs under ``torch.autocast`` in bfloat16 (CPU or CUDA); its output is cast
    back to the input's dtype, so the state x_t, the step arithmetic and Hal stay float32. A GPU without
    bfloat16 raises a RuntimeError.

``compile``: ``False`` (eager), ``True`` (``torch.compile`` with its default mode) or a ``torch.compile``
mode name. The CUDA-graph modes (``"reduce-overhead"``, ``"max-autotune"``) need a GPU and raise a
RuntimeError elsewhere. If ``torch.compile`` itself cannot work on this machine (no C++ compiler, no
Triton, an unsupported Python) the first call raises one RuntimeError saying so and naming the cause; there
is no silent fallback, so a timing taken with ``compile=True`` is a compiled timing. On a CPU the first call
compiles for tens of seconds, and the last, smaller chunk of a sampling run compiles once more.

The runs mi_lib starts itself -- the trainings and sampling runs behind :func:`mi_lib.mixture_model`,
:func:`~mi_lib.image_model`, their ``*_samples`` and :func:`~mi_lib.recursive_training` -- take their fast
paths from the :class:`mi_lib.Settings` they are passed (``fast_train``: ``precision``, ``compile``, ``fused``,
``graph``: :func:`mi_lib.train`'s CUDA-graph step, ``batch``: :func:`mi_lib.mixture_models` trains together what it
can; ``fast_sample``: ``precision``, ``compile``, ``fused``: the one-kernel sampler of :mod:`mi_lib.fused`, for the
MLP's runs only; :func:`parse_fast_options`). A chapter's settings come from ``$MI_FAST_TRAIN`` and
``$MI_FAST_SAMPLE`` (:meth:`mi_lib.Settings.from_environment`), so a paper-scale run can switch them on without
touching a chapter. What they ask for enters the cache keys of what those runs produce (a model trained in bf16 is
another model) and the results files of the chapter (:func:`mi_lib.save_results`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from .environment import OFF, ON  # the words of a switch, one list for the package
from .runtime import require_cuda

__all__ = ["PRECISIONS", "COMPILE_MODES", "check_fast_options", "parse_fast_options", "trainer_options", "precision_flags",
           "FastDenoiser"]

PRECISIONS = ("float32", "tf32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")

Denoiser = Callable[[Tensor, Tensor], Tensor]


def _compile_mode(compile: bool | str) -> str | None:
    """None for eager, else the torch.compile mode name."""
    if compile is False:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str) and compile in COMPILE_MODES:
        return compile
    raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got {compile!r}")


_FAST_KEYS = {"train": ("precision", "compile", "fused", "graph", "batch"), "sample": ("precision", "compile", "fused")}
_DEFAULTS = {"precision": "float32", "compile": False, "fused": False, "graph": False, "batch": False}
_TRUE, _FALSE = ON, (*OFF, "")  # "fused=" is off


def parse_fast_options(kind: str, value: str | Mapping[str, Any], *, source: str | None = None) -> dict[str, Any]:
    """The fast paths of a training (``kind="train"``) or sampling run (``kind="sample"``) as keyword arguments of
    :func:`mi_lib.train` / :func:`mi_lib.sample`, holding only what differs from the default (so
    ``precision=float32`` is the same as nothing: ``{}``). ``value`` is a mapping or its text, a comma-separated list
    of ``key=value``: ``precision`` (one of :data:`PRECISIONS`), ``compile`` (0/1 or a mode of
    :data:`COMPILE_MODES`), ``fused`` (0/1: for training, Adam's fused kernel; for sampling, the fused sampler of
    :mod:`mi_lib.fused`, or its launch configuration ROWSxWARPS, which implies 1) and, for training, ``graph``
    (0/1: :func:`mi_lib.train`'s CUDA-graph step) and ``batch`` (0/1: :func:`mi_lib.mixture_models` trains the
    models it is asked for together; :func:`trainer_options` leaves it out of a trainer's keywords). Anything else
    is one ValueError naming ``source`` (say ``"$MI_FAST_TRAIN"``); whether the options suit the device is
    checked where they are used (:func:`check_fast_options`)."""
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


def trainer_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords of :func:`mi_lib.train` / :func:`mi_lib.train_many` among ``options``
    (:func:`parse_fast_options`'s): all but ``batch``, which says whether to batch, not how to train."""
    return {key: value for key, value in options.items() if key != "batch"}


def check_fast_options(precision: str, compile: bool | str, device: torch.device | str) -> None:
    """Validate ``precision`` and ``compile`` for ``device``: ValueError for an unknown value, RuntimeError
    for a GPU-only option without a GPU (CUDA-graph compile modes, bf16 on a GPU without bfloat16)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    mode = _compile_mode(compile)
    if mode in _CUDA_GRAPH_MODES and device.type != "cuda":
        require_cuda(f"compile={mode!r} (CUDA graphs) on {device}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"precision='bf16' needs a GPU with bfloat16 ({torch.cuda.get_device_name(device)} has none); use 'tf32' or 'float32'")


@contextlib.contextmanager
def precision_flags(precision: str, device: torch.device | str) -> Iterator[None]:
    """Within the block, let CUDA matmuls and convolutions use TF32 if ``precision == "tf32"`` and the
    device is a GPU; restores torch's flags on exit. A no-op otherwise."""
    if precision != "tf32" or torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "bf16":  # no cast cache: it would hold tensors of one run inside a captured CUDA graph
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


class FastDenoiser:
    """``model`` behind the chosen fast paths, with the same interface ``(x, t) -> eps``: eps has x's shape
    (B, ...) and dtype. ``precision="float32", compile=False`` calls ``model`` unchanged.

    Compiling happens on the first call; if it fails while the eager model runs, one RuntimeError names the
    cause (the model's own errors propagate unchanged)."""

    def __init__(self, model: Denoiser, *, precision: str = "float32", compile: bool | str = False, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        check_fast_options(precision, compile, self.device)
        self.model, self.precision = model, precision
        self.mode = _compile_mode(compile)
        self._fn: Denoiser = model if self.mode is None else _compile(model, self.mode)
        self._verified = self.mode is None

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        with precision_flags(self.precision, self.device), _autocast(self.precision, self.device):
            eps = self._fn(x, t) if self._verified else self._first_compiled_call(x, t)
        return eps.to(x.dtype) if self.precision == "bf16" else eps

    def _first_compiled_call(self, x: Tensor, t: Tensor) -> Tensor:
        try:
            eps = self._fn(x, t)
        except Exception as error:
            self.model(x, t)  # the model's own error, if it has one, wins
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            raise RuntimeError(
                f"compile={self.mode!r}: torch.compile cannot compile this denoiser on {self.device} "
                f"(torch {torch.__version__}; {type(error).__name__}: {first_line}); pass compile=False"
            ) from error
        self._verified = True
        return eps


def _compile(model: Denoiser, mode: str) -> Denoiser:
    """``torch.compile(model, mode=mode)``; a RuntimeError if torch.compile is unavailable here. Dynamo
    caches compiled code per model class, so compiling the same model again is cheap."""
    try:
        return torch.compile(model, mode=None if mode == "default" else mode)
    except Exception as error:  # e.g. "Dynamo is not supported on Python 3.x"
        raise RuntimeError(f"compile={mode!r}: torch.compile is unavailable here ({type(error).__name__}: {error}); pass compile=False") from error
