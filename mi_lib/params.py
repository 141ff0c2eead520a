"""A chapter's parameters as a reader, or papermill, passes them: one helper turns a list parameter into the
tuple the chapter needs, or into one ValueError that names the parameter and shows a command that works.

papermill's ``-y "means: [1, 2, 4]"`` gives a list, ``-p means "[1, 2, 4]"`` the string of one, ``-p means 1,2,4``
a comma-separated string and ``-p n_train_list 20000`` a single number; all of these are accepted.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["sequence_parameter"]

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
    if not out or (length is not None and len(out) != length):
        raise ValueError(hint)
    return tuple(out)
