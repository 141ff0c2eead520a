"""Drop the widget state that a headless run stores in a notebook's metadata.

    python scripts/strip_widget_state.py chapters/*.ipynb      # what `make outputs` runs after papermill

nbclient (under papermill) saves the state of every widget a kernel creates in ``metadata.widgets``, even
of widgets that are closed and that no output shows. With ``MI_STATIC_WIDGETS=1`` a chapter's ``mi.interact``
draws plain output, so that state is orphaned: some 10 KB per chapter of nothing. Everything else in the
notebook is kept as it was (nbformat's own layout, as papermill writes it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat


def strip(path: Path) -> bool:
    """Remove ``metadata.widgets`` from the notebook at ``path``; True if there was any to remove."""
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    if "widgets" not in nb.metadata:
        return False
    del nb.metadata["widgets"]
    nbformat.write(nb, path)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if strip(path):
            print(f"{path}: widget state removed")


if __name__ == "__main__":
    main()
