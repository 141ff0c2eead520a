"""Where code runs: device choice, progress bars and widgets. Notebooks and scripts call these; library functions
infer their device from their inputs (or their :class:`mi_lib.Settings`) and take explicit seeds."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from . import environment

__all__ = ["default_device", "require_cuda", "describe_device", "progress_bar", "interact"]


def default_device() -> torch.device:
    """The GPU if one is visible, else the CPU. For notebooks and scripts only."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def require_cuda(feature: str) -> torch.device:
    """The CUDA device, or one clear RuntimeError naming the GPU-only ``feature`` that asked for it."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"{feature} needs a CUDA GPU, and torch sees none (torch {torch.__version__})")
    return torch.device("cuda")


def describe_device(device: torch.device | str) -> str:
    """A human-readable name: the GPU's model, or the CPU with its thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"


@contextmanager
def progress_bar(total: int, desc: str, disable: bool = False, initial: int = 0) -> Iterator:
    """A tqdm bar (a widget in notebooks, text elsewhere) starting at ``initial`` (a resumed training), or none
    where ``disable`` (callers pass ``not settings.progress``: :class:`mi_lib.Settings`)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, disable=disable, leave=False, file=sys.stderr, mininterval=0.5, initial=initial)
    try:
        yield bar
    finally:
        bar.close()


def interact(function: Callable[..., Any], **controls: Any) -> Any:
    """``ipywidgets.interact(function, **controls)`` for the chapters: controls to turn in a live kernel.

    When the environment variable ``MI_STATIC_WIDGETS`` is 1 (headless runs: papermill, nbval, the book
    build), ``function`` is instead called once with each control's initial value and its output is shown
    as ordinary cell output. Executing a cell whose output goes into a widget can deadlock nbclient
    (jupyter/nbclient#312: reproduced here with a mosaic of images under papermill), and a published page
    could not rerun the callback anyway. Returns what ``ipywidgets.interact`` does (``function``, its controls
    in ``.widget``), or ``function``'s result when static."""
    import ipywidgets

    if not environment.static_widgets():
        return ipywidgets.interact(function, **controls)
    # manual=True builds the controls from the same abbreviations as interact, without calling function
    probe = ipywidgets.interactive(function, {"manual": True}, **controls)
    values = {w._kwarg: w.get_interact_value() for w in probe.kwargs_widgets}
    probe.close()
    return function(**values)
