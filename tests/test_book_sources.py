"""scripts/book_sources.py: the book shows a chapter's paper-scale run only while its code is the chapter's, and
says on every page which scale, device and commit it shows."""

import importlib.util
import json
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book_sources", ROOT / "scripts" / "book_sources.py")
book_sources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_sources)


def _chapter(code: str, printed: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(code, outputs=[nbformat.v4.new_output("stream", name="stdout", text=printed)])
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title\n\n> box"), nbformat.v4.new_code_cell('scale = "ci"'), cell])


def _setup(tmp_path):
    chapters, executed, results = tmp_path / "chapters", tmp_path / "executed", tmp_path / "results"
    for folder in (chapters, executed, results):
        folder.mkdir()
    nbformat.write(_chapter("print(1)", "ci output\n"), chapters / "01_x.ipynb")
    entry = lambda device, commit: {"device": device, "commit": commit, "date": "2026-12-05", "numbers": {}}  # noqa: E731
    (results / "01_x.json").write_text(json.dumps({"ci": entry("CPU (2 threads, 2 cores)", "aaa"), "paper": entry("NVIDIA H200", "bbb")}))
    return chapters / "01_x.ipynb", executed, results


def _banner(nb):
    (cell,) = [c for c in nb.cells if "scale-banner" in c.metadata.get("tags", [])]
    assert nb.cells.index(cell) == 1  # under the title
    return cell.source


def test_without_a_paper_run_the_committed_chapter_is_shown_as_ci_scale(tmp_path):
    chapter, executed, results = _setup(tmp_path)
    nb, scale = book_sources.pick(chapter, executed, results)
    assert scale == "ci" and "ci output" in nb.cells[-1].outputs[0].text
    assert "CI-scale run** (CPU (2 threads, 2 cores), commit `aaa`" in _banner(nb) and "paper-scale run of this chapter exists" not in _banner(nb)


def test_a_current_paper_run_is_shown_and_a_stale_one_is_not(tmp_path):
    chapter, executed, results = _setup(tmp_path)
    paper = _chapter("print(1)", "paper output\n")  # the same code, run at paper scale: papermill adds its parameters cell
    injected = nbformat.v4.new_code_cell('scale = "paper"')
    injected.metadata["tags"] = ["injected-parameters"]
    paper.cells.insert(2, injected)
    nbformat.write(paper, executed / "01_x.ipynb")
    nb, scale = book_sources.pick(chapter, executed, results)
    assert scale == "paper" and "paper output" in nb.cells[-1].outputs[0].text
    assert "paper-scale run** (NVIDIA H200, commit `bbb`" in _banner(nb)

    nbformat.write(_chapter("print(2)", "ci output\n"), chapter)  # the chapter's code changed after the paper run
    nb, scale = book_sources.pick(chapter, executed, results)
    assert scale == "ci" and "ci output" in nb.cells[-1].outputs[0].text
    assert "A paper-scale run of this chapter exists (NVIDIA H200, commit `bbb`" in _banner(nb) and "not shown" in _banner(nb)


def test_the_script_writes_every_chapter(tmp_path):
    chapter, executed, results = _setup(tmp_path)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "book_sources.py"), str(tmp_path / "out"), str(chapter),
                          "--executed", str(executed), "--results", str(results)], capture_output=True, text=True, check=True)
    assert out.stdout == "01_x.ipynb: ci scale\n" and (tmp_path / "out" / "01_x.ipynb").exists()
