"""The one place mi_lib reads the environment: every variable it looks at, what it does, and its one parser.

A run is configured by a chapter's parameters and its :class:`mi_lib.Settings`; these variables are for the machines
that run chapters (the Makefile, scripts/paper_scale.sh, a Colab session) and never change a printed number unless
noted. The first five are read once, at the boundary, by :meth:`mi_lib.Settings.from_environment` (a chapter's
setup cell, a script), and reach the library as arguments:

* ``MI_CACHE_DIR`` -- the cache of trained models and samples (default ``./.mi_cache``; :mod:`mi_lib.storage.cache`).
* ``MI_RESULTS_DIR`` -- where ``results/<chapter>.json`` goes (default: the book's ``results/``; :mod:`mi_lib.storage.results`).
* ``MI_PROGRESS`` -- 0 turns every progress bar off (headless runs).
* ``MI_FAST_TRAIN``, ``MI_FAST_SAMPLE`` -- the fast paths of the runs mi_lib starts itself (parsed by
  :func:`mi_lib.settings.parse_fast_options`); they change results in their last bits, so they enter cache keys and
  results files.

The others describe the process rather than a run, and are asked where they act:

* ``MI_STATIC_WIDGETS`` -- 1 draws each widget once, statically (papermill, nbval, the book; :func:`mi_lib.interact`).
* ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``, ``MKL_CBWR`` -- torch's CPU kernels, read by torch itself; mi_lib
  records them in every cache key (:func:`cpu_numerics`).
* ``TRITON_INTERPRET`` -- Triton's interpreter (1: the fused sampler's kernel runs on a CPU, for its tests).

A switch that is not one of 0/1 (or false/true, off/on, no/yes) is one ValueError naming the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CPU_NUMERICS_VARS", "ON", "OFF", "cache_dir", "results_dir", "progress", "static_widgets", "fast_text", "cpu_numerics",
           "triton_interpret", "switch"]

CPU_NUMERICS_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")
#: The words of a switch (lower case): on, and off.
ON, OFF = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


def switch(name: str, default: bool) -> bool:
    """The on/off variable ``name`` (unset or empty: ``default``), or one ValueError naming it."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ON + OFF:
        raise ValueError(f"${name}={os.environ[name]!r}: set it to 0 or 1")
    return value in ON


def cache_dir() -> Path:
    """``$MI_CACHE_DIR``, else ``./.mi_cache``."""
    return Path(os.environ.get("MI_CACHE_DIR") or ".mi_cache")


def results_dir() -> Path | None:
    """``$MI_RESULTS_DIR``, or None where it is not set."""
    value = os.environ.get("MI_RESULTS_DIR")
    return Path(value) if value else None


def progress() -> bool:
    """False where ``MI_PROGRESS=0``."""
    return switch("MI_PROGRESS", True)


def static_widgets() -> bool:
    """True where ``MI_STATIC_WIDGETS=1``."""
    return switch("MI_STATIC_WIDGETS", False)


def fast_text(name: str) -> str:
    """The raw value of ``$MI_FAST_TRAIN`` / ``$MI_FAST_SAMPLE`` (``name``), stripped; "" where unset."""
    if name not in ("MI_FAST_TRAIN", "MI_FAST_SAMPLE"):
        raise ValueError(f"not a fast-path variable: {name!r}")
    return os.environ.get(name, "").strip()


def cpu_numerics() -> dict[str, str]:
    """Those of :data:`CPU_NUMERICS_VARS` that are set: part of every cache key (a result computed under other
    kernels differs in its last bits, and a recursion or a training amplifies them), absent when none is set."""
    return {var: os.environ[var] for var in CPU_NUMERICS_VARS if os.environ.get(var)}


def triton_interpret() -> bool:
    """True where ``TRITON_INTERPRET=1`` (Triton reads it itself; the fused sampler asks whether to run on a CPU)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"
