"""Pick the notebook the book shows for each chapter, and head it with a banner naming its scale, device and commit.

    python scripts/book_sources.py OUT_DIR chapters/*.ipynb [--executed results/executed] [--results results]

What `make book` runs (nothing is executed). A chapter shows its paper-scale run, ``results/executed/<chapter>.ipynb``
(landed by the GPU campaign), where one exists and is current: its code cells are the committed chapter's, compared by
:func:`code_hash` (papermill's injected-parameters cell left out). Otherwise it shows the committed chapter, whose
CI-scale outputs `make test` re-checks (nbval); where a paper-scale run exists but the chapter's code has changed since,
the banner says so, and that run is not shown. Device, commit and date come from ``results/<chapter>.json`` (the entry of
the scale shown), written by the run itself.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
INJECTED = "injected-parameters"  # the tag papermill gives the cell it inserts for -p / -y


def code_hash(nb: nbformat.NotebookNode) -> str:
    """sha256 of the sources of a notebook's code cells, in order, papermill's injected-parameters cell left out:
    equal for a chapter and any run of it, whatever its outputs or parameters."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code" and INJECTED not in cell.get("metadata", {}).get("tags", []):
            h.update(cell.source.encode())
            h.update(b"\0")
    return h.hexdigest()


def _run(results: Path, chapter: str, scale: str) -> str:
    path = results / f"{chapter}.json"
    entry = json.loads(path.read_text()).get(scale) if path.exists() else None
    if entry is None:
        return "run not recorded in results/"
    return f"{entry.get('device', '?')}, commit `{entry.get('commit', '?')}`, {entry.get('date', '?')}"


def banner(scale: str, run: str, stale: str | None = None) -> nbformat.NotebookNode:
    """The markdown cell put under a chapter's title: which scale the page shows, and the run it comes from."""
    if scale == "paper":
        text = (f"**This page shows the paper-scale run** ({run}): the figures and numbers below come from the paper's "
                "sizes. The same chapter at CI scale is what the tests re-run.")
    else:
        text = (f"**This page shows the CI-scale run** ({run}): small models on a CPU, re-run and compared by the "
                "tests. The [results page](../results.md) sets its numbers beside the paper's and the paper-scale run's.")
    if stale:
        text += f" A paper-scale run of this chapter exists ({stale}), but the chapter's code has changed since, so it is not shown."
    cell = nbformat.v4.new_markdown_cell(f"```{{note}}\n{text}\n```")
    cell.metadata["tags"] = ["scale-banner"]
    return cell


def pick(chapter_path: Path, executed: Path, results: Path) -> tuple[nbformat.NotebookNode, str]:
    """The notebook to show for one committed chapter, with its banner, and the scale it shows."""
    committed = nbformat.read(chapter_path, as_version=4)
    chapter = chapter_path.stem
    paper_path = executed / chapter_path.name
    stale = None
    if paper_path.exists():
        paper = nbformat.read(paper_path, as_version=4)
        if code_hash(paper) == code_hash(committed):
            nb, scale = paper, "paper"
        else:
            nb, scale, stale = committed, "ci", _run(results, chapter, "paper")
    else:
        nb, scale = committed, "ci"
    position = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0  # under the title and its box
    nb.cells.insert(position, banner(scale, _run(results, chapter, scale), stale))
    return nb, scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder the chosen notebooks are written to")
    parser.add_argument("chapters", type=Path, nargs="+")
    parser.add_argument("--executed", type=Path, default=ROOT / "results" / "executed")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.chapters:
        nb, scale = pick(path, args.executed, args.results)
        nbformat.write(nb, args.out / path.name)
        print(f"{path.name}: {scale} scale")


if __name__ == "__main__":
    main()
