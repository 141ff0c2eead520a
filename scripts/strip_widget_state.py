"""Drop the widget state that a headless run stores in a notebook's metadata (and, for the book's copies,
hide papermill's injected-parameters cell).

    python scripts/strip_widget_state.py chapters/*.ipynb          # what `make outputs` runs after papermill
    python scripts/strip_widget_state.py --book _build/src/.../*.ipynb  # what `make render` runs on the book's copies

nbclient (under papermill) saves the state of every widget a kernel creates in ``metadata.widgets``, even
of widgets that are closed and that no output shows. With ``MI_STATIC_WIDGETS=1`` a chapter's ``mi.interact``
draws plain output, so that state is orphaned: some 10 KB per chapter of nothing, and in the HTML book it makes
the page load require.js and the widget manager from two CDNs to show no widget. A notebook with an output that
does show a widget keeps its state. Everything else is kept as it was (nbformat's own layout, as papermill
writes it). `make outputs` runs this on the committed chapters, `make render` on the book's copies, where
``--book`` also tags the cell papermill injects with ``-p`` ("injected-parameters", in a paper-scale run) with
``remove-cell``: the reader sees the chapter's own parameters cell, not a second one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

VIEW = "application/vnd.jupyter.widget-view+json"  # an output that shows a widget


def strip(path: Path) -> bool:
    """Remove ``metadata.widgets`` from the notebook at ``path`` unless an output shows a widget; True if removed."""
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    if "widgets" not in nb.metadata:
        return False
    if any(VIEW in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", [])):
        return False  # a widget on show needs its state
    del nb.metadata["widgets"]
    nbformat.write(nb, path)
    return True


def hide_injected(path: Path) -> bool:
    """Tag papermill's injected-parameters cell with ``remove-cell`` (Jupyter Book drops it); True if one was."""
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    hidden = False
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            hidden = True
    if hidden:
        nbformat.write(nb, path)
    return hidden


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--book", action="store_true", help="also hide papermill's injected-parameters cell (the book's copies)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if strip(path):
            print(f"{path}: widget state removed")
        if args.book and hide_injected(path):
            print(f"{path}: papermill's injected parameters hidden")


if __name__ == "__main__":
    main()
