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

The runs mi_lib starts itself (:func:`mi_lib.mixture_model`, :func:`~mi_lib.image_model`, their ``*_samples``,
:func:`~mi_lib.recursive_training`) take their fast paths from the :class:`mi_lib.Settings` they are passed
(:func:`mi_lib.settings.parse_fast_options` lists the options); what those ask for enters the cache keys of what
the runs produce (a model trained in bf16 is another model) and the chapter's results file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from ..runtime import require_cuda
from ..settings import COMPILE_MODES, PRECISIONS

__all__ = ["check_fast_options", "precision_flags", "FastDenoiser"]

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
