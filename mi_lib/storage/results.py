"""Chapter results: the numbers a chapter claims, written to ``results/<chapter>.json`` with how they were
produced (scale, device, wall time, commit, versions), and printed rounded for the reader (and for nbval).

The folder is the settings' ``results_dir`` if set (from ``$MI_RESULTS_DIR``: the Makefile points test runs at
``_build/``), else ``results/`` at the root of the book (the folder holding ``_toc.yml``), else ``./results``.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

from ..runtime import describe_device
from ..settings import Settings

__all__ = ["LINE_WIDTH", "results_dir", "save_results", "format_number", "print_results", "say", "Stopwatch", "seed_sweep"]

#: The widest printed line: what fits the book's column at the theme's default width (``_static/book.css``).
LINE_WIDTH = 88

#: The committed seed sweeps (``results/seeds/<chapter>.json``, written by the scripts in ``scripts/``), in the
#: repository beside the package (absent when mi_lib is installed on its own, as in Colab).
SEEDS_DIR = Path(__file__).resolve().parents[2] / "results" / "seeds"


def seed_sweep(chapter: str) -> dict[str, Any] | None:
    """The committed seed sweep of ``chapter`` (the figures its seed-to-seed statements rest on), or None where
    the repository's results/seeds/ is not at hand."""
    path = SEEDS_DIR / f"{chapter}.json"
    return json.loads(path.read_text()) if path.exists() else None


def results_dir(settings: Settings = Settings()) -> Path:
    """Where results JSON files go (see module docstring)."""
    if settings.results_dir is not None:
        return settings.results_dir
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder / "results"
    return here / "results"


#: What a run itself writes: the chapters (their outputs), the numbers and the tables made from them. A change there
#: does not make a run's code "dirty": the notebook that ran is the one committed with its numbers.
RUN_OUTPUTS = ("chapters/*.ipynb", "results", "README.md", "results.md")


def git_commit() -> str:
    """The checkout's commit (12 hex digits), ``-dirty`` when tracked files other than :data:`RUN_OUTPUTS` have
    uncommitted changes (the library, scripts, data: what a run's numbers depend on besides its notebook), or
    "unknown". So chapters refreshed one after another each get the commit of the code they ran."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5)
        excluded = [f":(top,exclude){path}" for path in RUN_OUTPUTS]
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", *excluded],
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Stopwatch:
    """Wall time since creation: ``Stopwatch().seconds``."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def format_number(x: Any, digits: int = 3) -> str:
    """A number rounded to ``digits`` significant digits, in plain or scientific notation as fits."""
    if not isinstance(x, float) or x == 0 or not math.isfinite(x):  # ints, bools, strings, None as they are
        return str(x)
    exponent = math.floor(math.log10(abs(x)))
    if -3 <= exponent < 6:
        return f"{round(x, digits - 1 - exponent):.{max(0, digits - 1 - exponent)}f}"
    return f"{x:.{digits - 1}e}"


def say(text: str) -> None:
    """Print ``text`` for the reader, each of its lines wrapped at :data:`LINE_WIDTH` characters (continuations
    indented by four spaces), so no printed line is wider than the book's column; a line that fits is printed as it
    is. (A table is printed with ``print``, its rows narrower than the column: a wrapped row would be unreadable.)"""
    for line in text.split("\n"):
        fits = len(line) <= LINE_WIDTH
        print(line if fits else textwrap.fill(line, width=LINE_WIDTH, subsequent_indent="    ", break_on_hyphens=False))


def print_results(numbers: dict[str, Any], digits: int = 3) -> None:
    """Print ``name = value`` lines, numbers rounded to ``digits`` significant digits."""
    width = max((len(k) for k in numbers), default=0)
    for key, value in numbers.items():
        print(f"{key:<{width}} = {format_number(value, digits)}")


def save_results(
    chapter: str, numbers: dict[str, Any], *, scale: str, settings: Settings, wall_time_s: float, params: dict[str, Any] | None = None
) -> Path:
    """Write ``numbers`` (JSON-able) for ``chapter`` at ``scale`` with provenance -- among it the device and the
    fast paths (:mod:`mi_lib.diffusion.fast`) of the ``settings`` the numbers were computed with -- into ``results_dir``;
    return the file's path. The file holds one entry per scale, so a CI-scale run never overwrites paper-scale
    figures."""
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a mi_lib.Settings, got {type(settings).__name__}")
    path = results_dir(settings) / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[scale] = {
        "numbers": numbers,
        "params": params or {},
        "device": describe_device(settings.device),
        "wall_time_s": round(wall_time_s, 2),
        "commit": git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if fast := settings.fast():  # the fast paths switched on for the runs behind these numbers
        existing[scale]["fast"] = fast
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
