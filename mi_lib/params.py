"""A chapter's parameters as a reader, or papermill, passes them: each helper returns the value the chapter needs,
or raises one ValueError that names the parameter (and, for lists, shows a command that works), before any work.

papermill's ``-y "means: [1, 2, 4]"`` gives a list, ``-p means "[1, 2, 4]"`` the string of one, ``-p means 1,2,4``
a comma-separated string and ``-p n_train_list 20000`` a single number; all of these are accepted.
:func:`positive_int` is the library's one check of a count argument (imported by core modules: this module
imports no other part of mi_lib, nor torch).
"""

from __future__ import annotations

import ast
import math
import numbers
from typing import Any

__all__ = ["choice_parameter", "number_parameter", "positive_int", "sequence_parameter"]

_EXAMPLES = {float: "[1.0, 2.0, 3.0]", int: "[0, 9]", str: "[none, hal]"}
_NAMES = {float: "numbers", int: "integers", str: "names"}


def sequence_parameter(value: Any, name: str, item: type = float, *, length: int | None = None) -> tuple:
    """``value`` as a tuple of ``item`` (float, int or str), ``length`` long if given.

    Accepts a list or tuple, a single value, or a string: the text of a Python list (``"[1, 2, 4]"``) or
    comma-separated values (``"1,2,4"``, ``"none,hal"``). Anything else -- a value of another type, a string
    that is neither, an int parameter given 2.5, the wrong length -- is one ValueError naming ``name``."""
    if item not in _EXAMPLES:
        raise TypeError(f"item must be float, int or str, got {item!r}")
    shape = f"{length} {_NAMES[item]}" if length else f"a list of {_NAMES[item]}"
    example = _EXAMPLES[item] if length in (None, 2) else "[" + ", ".join(["0"] * length) + "]"
    hint = (f"{name} must be {shape} (from papermill: -y \"{name}: {example}\" or -p {name} \"{example}\"), "
            f"got {value!r}")
    items = value
    if isinstance(value, str):
        text = value.strip()
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            items = [part.strip() for part in text.strip("[]()").split(",") if part.strip()]
        if isinstance(items, str):
            items = [items]
    if not isinstance(items, (list, tuple)):
        items = [items]
    out = []
    for x in items:
        if item is str:
            ok = isinstance(x, str) and x != ""
        elif isinstance(x, str):  # a number written as text inside a comma-separated string
            try:
                x = item(x)
                ok = True
            except ValueError:
                ok = False
        elif item is int:
            ok = isinstance(x, int) and not isinstance(x, bool)
        else:
            ok = isinstance(x, (int, float)) and not isinstance(x, bool)
            x = float(x) if ok else x
        if not ok:
            raise ValueError(hint)
        out.append(x)
    if not out or (length is not None and len(out) != length) or (item is float and not all(math.isfinite(x) for x in out)):
        raise ValueError(hint)
    return tuple(out)


def number_parameter(value: Any, name: str, kind: type = float, *, at_least: float | None = None,
                     above: float | None = None, below: float | None = None, at_most: float | None = None) -> Any:
    """``value`` as a finite ``kind`` (float or int) within the bounds given, else one ValueError naming ``name``.

    An int parameter takes only an int, a numpy one too (``1e4`` is a float: write ``10_000``); a float parameter
    takes an int too.
    A bool is neither (``True`` is no count), nor is a string: papermill's ``-p k 4`` already passes a number."""
    if kind not in (float, int):
        raise TypeError(f"kind must be float or int, got {kind!r}")
    bounds = [f"{op} {bound:g}" for op, bound in ((">=", at_least), (">", above), ("<", below), ("<=", at_most))
              if bound is not None]
    wanted = ("an int" if kind is int else "a finite number") + (f" {' and '.join(bounds)}" if bounds else "")
    ok = (isinstance(value, numbers.Integral) or (kind is float and isinstance(value, float) and math.isfinite(value))) \
        and not isinstance(value, bool)
    ok = ok and (at_least is None or value >= at_least) and (above is None or value > above) \
        and (below is None or value < below) and (at_most is None or value <= at_most)
    if not ok:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return float(value) if kind is float else int(value)


def choice_parameter(value: Any, name: str, choices: tuple) -> Any:
    """``value`` if it is one of ``choices`` (compared by type and value: ``True`` is not ``1``), else one ValueError."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1 (a Python or numpy int; a bool is no count), else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
