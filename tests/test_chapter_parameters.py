"""A chapter's parameters cell takes what a reader types; its setup cell must turn a bad value into one clear
error before any training or sampling (or accept the harmless variants papermill produces: a list for a tuple,
an int for a list). These tests execute only the parameters cell and the setup cell (the third code cell; the
second installs mi_lib in Colab), with one parameter changed, in a fresh namespace: no kernel, no sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="the book toolchain (requirements.txt) is not installed")

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def setup_namespace(chapter: str, into: dict[str, Any] | None = None, **parameters: Any) -> dict[str, Any]:
    """Run the chapter's parameters cell, override ``parameters`` (as papermill would), run its setup cell, in
    ``into`` if given (so that a caller still sees what the cells made when the setup cell raises)."""
    code = [c for c in nbformat.read(CHAPTERS / f"{chapter}.ipynb", 4).cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []) and "find_spec" in code[1].source
    namespace: dict[str, Any] = {} if into is None else into
    exec(compile(code[0].source, f"{chapter}[parameters]", "exec"), namespace)
    unknown = set(parameters) - set(namespace)
    assert not unknown, f"{chapter} has no parameters {unknown}"
    namespace.update(parameters)
    exec(compile(code[2].source, f"{chapter}[setup]", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    "chapter, parameters, message",
    [
        ("01_forward_process", dict(pure_noise_tv=0.0), "pure_noise_tv"),
        ("01_forward_process", dict(scale="CI"), "scale must be one of"),
        ("02_mode_interpolation_1d", dict(k=2.0), "k must be at least 3"),
        ("02_mode_interpolation_1d", dict(n_samples=1e4), "n_samples must be an int"),
        ("02_mode_interpolation_1d", dict(scale="paper", n_train_list=[25_000]), "at least two sizes"),
        ("03_mode_interpolation_2d", dict(max_order=1), "max_order must be"),
        ("03_mode_interpolation_2d", dict(between=0.5), "between must lie in"),
        ("04_score_smoothness", dict(k=2.5), "k must be at least 3"),
        ("04_score_smoothness", dict(n_samples=1_000), "at least 2,500"),
        ("04_score_smoothness", dict(smoothing_widths=[0.05, 0.1]), "smoothing_widths must hold 0.0"),
        ("05_shapes_hands", dict(hal_window=None), "hal_window must be"),
        ("05_shapes_hands", dict(hal_window=(3, 3)), "hal_window must be"),
        ("06_detection", dict(window=(3, 3)), "window must be"),
        ("06_detection", dict(window=(0, 1000)), "window must be"),
        ("07_recursive_training", dict(filters=("none", "hal")), "must include 'none', 'random' and 'hal'"),
        ("07b_recursive_digits", dict(scale="Paper"), "scale must be"),
        ("07b_recursive_digits", dict(digits_generations=1), "digits_generations must be"),
        ("07b_recursive_digits", dict(filters=("none", "best")), "filters must be one of"),
        ("07b_recursive_digits", dict(filters=("none", "hal")), "must include 'none' and 'real'"),
        ("07c_recursive_shapes", dict(filters=("hall",)), "filters must be one of"),
    ],
)
def test_a_bad_parameter_is_one_clear_error_in_the_setup_cell(chapter, parameters, message):
    with pytest.raises(ValueError, match=message):
        setup_namespace(chapter, **parameters)


@pytest.mark.parametrize("chapter, parameters", [
    ("02_mode_interpolation_1d", dict(means="[1, 2, oops]")),
    ("02_mode_interpolation_1d", dict(n_train_list=[20_000, 2.5])),
    ("04_score_smoothness", dict(score_times="0,2,x")),
    ("05_shapes_hands", dict(hal_window="0")),
    ("06_detection", dict(window=[0.5, 9])),
    ("07_recursive_training", dict(filters=[1, 2])),
    ("07b_recursive_digits", dict(digits_seeds="three")),
])
def test_a_malformed_list_names_the_parameter_and_the_command_that_works(chapter, parameters):
    """papermill's -p passes a string: a list parameter given one that is no list is one ValueError naming the
    parameter and showing the -y / -p forms that work (not a TypeError from deep inside the chapter)."""
    (name,) = parameters
    with pytest.raises(ValueError, match=rf"{name} must be .*from papermill: -y"):
        setup_namespace(chapter, **parameters)


def test_harmless_variants_are_accepted_as_papermill_passes_them():
    # -p passes strings: the text of a list, or comma-separated values
    s = setup_namespace("02_mode_interpolation_1d", means="[1, 2, 4, 5]", moved_means="1,2,5", n_train_list="2000, 20000")["setup"]
    assert s.means == [1.0, 2.0, 4.0, 5.0] and s.moved_means == [1.0, 2.0, 5.0] and s.n_train_list == [2_000, 20_000]
    # chapters 5-7b check their parameters in their module (mi_lib.experiments): the checked values are `setup`'s
    assert setup_namespace("06_detection", window="(0, 19)")["setup"].window == (0, 19)
    assert setup_namespace("07_recursive_training", filters="none,random,hal")["setup"].filters == ("none", "random", "hal")
    assert setup_namespace("05_shapes_hands", hal_window=[0, 19])["setup"].hal_window == (0, 19)  # papermill: a list
    ns = setup_namespace("06_detection", window=[0, 149])
    depths = [ns["ch6"].record_up_to(spec, ns["setup"].window) for spec in ns["specs"].values()]
    assert ns["setup"].window == (0, 149) and min(depths) == 150  # recorded deep enough for the window
    assert setup_namespace("02_mode_interpolation_1d", n_train_list=20_000)["setup"].n_train_list == [20_000]
    assert setup_namespace("02_mode_interpolation_1d", n_train_list=[20_000, 2_000])["setup"].n_train_list == [2_000, 20_000]
    ns = setup_namespace("07b_recursive_digits", filters="none,real", digits_seeds=3)
    assert ns["setup"].filters == ("none", "real") and ns["setup"].seeds == (3,)


def test_positive_int_is_the_librarys_one_count_check():
    import ast

    import numpy as np

    from mi_lib import params
    from mi_lib.params import positive_int

    assert positive_int(3, "n") == 3 and type(positive_int(np.int64(3), "n")) is int
    for bad in (0, -1, True, 2.0, "3", None):
        with pytest.raises(ValueError, match=f"^n must be a positive int, got {bad!r}$"):
            positive_int(bad, "n")
    with pytest.raises(ValueError, match=r"^UNetConfig.groups must be a positive int, got 0$"):
        positive_int(0, "UNetConfig.groups")
    # core modules import it: params itself imports neither torch nor any other part of mi_lib (no cycles)
    tree = ast.parse(Path(params.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] if n.level == 0 else "." for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"torch", "mi_lib", "."}, imported
