"""How many of mi_lib's files one piece of the book passes through (issue 21's measure of the layout).

Two calls, each traced with ``sys.setprofile`` on a cold, private cache at toy size:

- **a chapter-2 histogram**: :func:`mi_lib.mixture_samples` of a 1D spec (fit the model, draw the samples);
- **one recursion generation**: :func:`mi_lib.recursive_training` of one generation on a 2D mixture.

For each it prints the mi_lib files entered (package-relative, in order of first entry) and the distinct arrows
between them (a function of one file calling a function of another: the hops a reader follows). Run:
``.venv/bin/python benchmarks/call_path.py``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

import mi_lib as mi

PACKAGE = Path(mi.__file__).resolve().parent


def trace(call: Callable[[], object]) -> tuple[list[str], set[tuple[str, str]]]:
    """The mi_lib files ``call`` enters, in order of first entry, and the distinct (caller, callee) file pairs."""
    files: list[str] = []
    arrows: set[tuple[str, str]] = set()

    def profile(frame, event, arg):
        if event != "call":
            return
        path = Path(frame.f_code.co_filename)
        if not path.is_relative_to(PACKAGE):
            return
        name = path.relative_to(PACKAGE).as_posix()
        caller = frame.f_back
        caller_name = None
        if caller is not None and Path(caller.f_code.co_filename).is_relative_to(PACKAGE):
            caller_name = Path(caller.f_code.co_filename).relative_to(PACKAGE).as_posix()
        if name not in files:
            files.append(name)
        if caller_name is not None and caller_name != name:
            arrows.add((caller_name, name))

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return files, arrows


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as cache:
        settings = mi.Settings(progress=False, cache_dir=Path(cache))
        spec = mi.MixtureModelSpec(
            n_train=256, model=mi.MLPConfig(width=16, depth=1, time_dim=16),
            train=mi.TrainConfig(steps=20, batch_size=64), schedule=mi.ScheduleConfig("linear", 20, 1e-3, 0.2))
        histogram = lambda: mi.mixture_samples(spec, 512, settings)  # noqa: E731

        mixture = mi.grid_2d()
        data = mixture.sample(64, torch.Generator().manual_seed(0), stratified=True)[0]
        config = mi.RecursionConfig(
            generations=1, n_keep=48, oversample=1.5, filter="hal", hal_window=(0, 4),
            model=mi.MLPConfig(data_dim=2, width=16, depth=1, time_dim=16), train=mi.TrainConfig(steps=15, batch_size=32),
            schedule=mi.ScheduleConfig("linear", 20, 1e-3, 0.2))
        generation = lambda: mi.recursive_training(data, config, settings, mixture=mixture)  # noqa: E731

        for title, call in (("chapter-2 histogram (mixture_samples)", histogram), ("one recursion generation", generation)):
            files, arrows = trace(call)
            print(f"{title}: {len(files)} mi_lib files, {len(arrows)} arrows between them")
            print("    " + " -> ".join(files))


if __name__ == "__main__":
    main()
