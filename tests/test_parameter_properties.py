"""Property-based tests of every chapter's parameter checks (Hypothesis).

For every parameter of every chapter, any value of any type -- None, bools, ints, floats with nan and inf,
strings (papermill's ``-p`` text among them), lists, tuples, dicts, nested -- must do one of two things in the
chapter's setup cell:

* be refused with one ValueError whose message names the parameter, before any work; or
* pass, leaving a clean value of the kind the chapter expects (a finite number, an int where the default is
  an int, a str, or a list/tuple of those), so that nothing fails later in deep code.

A TypeError, IndexError, AttributeError... from the setup cell, a ValueError that does not name the parameter,
or a bad value let through is a failure. "No work before the checks": the functions that train or sample are
replaced by stubs that raise ``WorkStarted``; reaching one counts as having passed the checks, and the value as the
setup cell left it up to there (the chapter module's checked ``setup``, else the raw parameter) must then be clean,
so a check placed after the first training call fails the type rule.

The examples are derandomized (the same ones in every run) so that CI is reproducible; ``HYPOTHESIS_PROFILE=deep``
draws ten times as many, at random.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("hypothesis", reason="hypothesis (requirements.txt) is not installed")
nbformat = pytest.importorskip("nbformat", reason="the book toolchain (requirements.txt) is not installed")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from test_chapter_parameters import CHAPTERS, setup_namespace  # noqa: E402

settings.register_profile("ci", max_examples=30, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=300, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


class WorkStarted(Exception):
    """Raised by the stubs of the functions that train or sample: the setup cell got past its checks."""


WORK = {  # module -> the names in it that train or sample
    "mi_lib": ("train", "train_many", "sample", "mixture_model", "mixture_models", "mixture_samples", "image_model",
               "image_samples", "recursive_training"),
    "mi_lib.diffusion.models": ("mixture_model", "mixture_models", "mixture_samples", "image_model", "image_samples"),
    "mi_lib.experiments.recursion": ("recursive_training",),
}


@pytest.fixture(scope="module", autouse=True)
def no_work():
    import importlib

    def stub(*args: Any, **kwargs: Any) -> None:
        raise WorkStarted

    with pytest.MonkeyPatch.context() as mp:
        for module, names in WORK.items():
            for name in names:
                mp.setattr(importlib.import_module(module), name, stub)
        yield


def chapter_parameters() -> list[tuple[str, str, Any]]:
    """(chapter, parameter, default) for every parameter of every chapter's parameters cell."""
    out = []
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        cell = next(c for c in nbformat.read(path, 4).cells if c.cell_type == "code")
        namespace: dict[str, Any] = {}
        exec(cell.source, namespace)
        out += [(path.stem, name, value) for name, value in namespace.items() if not name.startswith("__")]
    return out


PARAMETERS = chapter_parameters()

SCALARS = (st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12)
           | st.sampled_from(["ci", "paper", "CI", "none,random,hal", "[1, 2, 4]", "0,9", "(0, 9)", "1e4", "nan", "", " ",
                              "8x8", "mnist", "official", "cosine", "[]", "[[1]]", "{}", "None", "True"]))
ANY = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
                   | st.dictionaries(st.text(max_size=3), inner, max_size=2), max_leaves=8)


def near(default: Any) -> st.SearchStrategy:
    """Values close to the default: what a reader would type when changing it."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-2, 4 * default + 4)
    if isinstance(default, float):
        return st.floats(-1.0, 4 * default + 1.0, allow_nan=False) | st.integers(-1, 8)
    if isinstance(default, (list, tuple)):
        return st.lists(st.sampled_from(list(default)) | st.integers(-1, 20) | st.floats(-1, 5, allow_nan=False),
                        max_size=len(default) + 1) | st.just(list(default))
    return st.just(default)


def is_clean(value: Any, reference: Any) -> bool:
    """Whether a value the checks let through is of the kind the chapter expects (``reference``: its default's
    value after the setup cell). None stays allowed where the default leaves None (then: from scale)."""
    def scalar(x: Any) -> bool:
        return x is None or isinstance(x, (str, Path)) or (
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))

    if isinstance(reference, bool):
        return isinstance(value, bool)
    if reference is None:
        return scalar(value) or (isinstance(value, (list, tuple)) and all(scalar(x) and x is not None for x in value))
    if isinstance(reference, (int, float)):
        return scalar(value) and value is not None and not isinstance(value, (str, Path)) and (
            isinstance(value, int) or not isinstance(reference, int))
    if isinstance(reference, str):
        return isinstance(value, str)
    if isinstance(reference, (list, tuple)):
        kinds = {type(x) for x in reference}
        return isinstance(value, (list, tuple)) and all(
            type(x) in kinds or (float in kinds and type(x) is int) for x in value) and all(scalar(x) for x in value)
    return True


REFERENCES: dict[str, dict[str, Any]] = {}


def reference(chapter: str) -> dict[str, Any]:
    """The chapter's setup namespace with its default parameters (the kinds a passing value must have)."""
    if chapter not in REFERENCES:
        namespace: dict[str, Any] = {}
        try:
            setup_namespace(chapter, namespace)
        except WorkStarted:  # a setup cell that loads a model after its checks: what it made up to there
            pass
        REFERENCES[chapter] = namespace
    return REFERENCES[chapter]


def check_one(chapter: str, name: str, value: Any, default: Any = None) -> None:
    """The property for one value: refused by name, or passed as a clean value; anything else an AssertionError."""
    namespace: dict[str, Any] = {}
    try:
        setup_namespace(chapter, namespace, **{name: value})
    except ValueError as error:
        assert name in str(error), f"{chapter}: {name}={value!r} refused without naming {name}: {error}"
        return
    except WorkStarted:
        pass  # the checks passed and the chapter began its work: what did they make of the value?
    except Exception as error:  # noqa: BLE001 -- the point: no other error may come out of the setup cell
        raise AssertionError(f"{chapter}: {name}={value!r} raised {type(error).__name__}: {error}") from error
    ref = checked_value(reference(chapter), name, default)
    got = checked_value(namespace, name)
    assert is_clean(got, ref), (
        f"{chapter}: {name}={value!r} passed the checks as {got!r}, not a value of the kind of {ref!r}")


def checked_value(namespace: dict[str, Any], name: str, default: Any = None) -> Any:
    """A parameter after the setup cell: the chapter module's checked ``setup.<name>`` where the chapter has one
    (chapters whose code lives in mi_lib.experiments), else the name as the setup cell left it."""
    setup = namespace.get("setup")
    if setup is not None and hasattr(setup, name) and not callable(setup):
        return getattr(setup, name)
    return namespace.get(name, default)


@pytest.mark.parametrize("chapter, name, default", PARAMETERS, ids=[f"{c}-{n}" for c, n, _ in PARAMETERS])
@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_any_value_is_accepted_cleanly_or_refused_by_name(chapter: str, name: str, default: Any, data: Any) -> None:
    check_one(chapter, name, data.draw(near(default) | ANY, label=name), default)


def test_the_property_fails_on_a_missing_check(monkeypatch):
    """The property must be able to fail: with the number check disabled, a string sigma gets through the setup
    cell (as a TypeError from deep in mi_lib, or as a string) and the property flags it."""
    assert {c for c, _, _ in PARAMETERS} == {p.stem for p in CHAPTERS.glob("*.ipynb")}
    check_one("02_mode_interpolation_1d", "sigma", "0.05")  # refused by name
    check_one("02_mode_interpolation_1d", "sigma", 0.07)  # accepted
    import mi_lib

    from mi_lib.experiments import mode_interpolation_1d, shapes_hands  # chapters 2 and 5 check in their modules

    unchecked = lambda value, name, kind=float, **bounds: value  # noqa: E731
    for module in (mi_lib, mode_interpolation_1d, shapes_hands):
        monkeypatch.setattr(module, "number_parameter", unchecked)
    with pytest.raises(AssertionError, match="sigma='0.05' raised TypeError"):
        check_one("02_mode_interpolation_1d", "sigma", "0.05")
    with pytest.raises(AssertionError, match="passed the checks as True"):
        check_one("05_shapes_hands", "n_show", True)
    # a value that reaches the chapter's work (chapter 4's setup cell loads its model) is checked all the same
    from mi_lib.experiments import score_smoothness

    monkeypatch.setattr(score_smoothness, "sequence_parameter", lambda value, name, kind=float: value)
    with pytest.raises(AssertionError, match="score_times=.* passed the checks as"):
        check_one("04_score_smoothness", "score_times", (2.5, 3.5))
