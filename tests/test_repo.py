"""The repository's conventions: one repository URL, chapters that follow the book's rules, a README whose
tables match the recorded results, and a CI script that runs the README's test command."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the book toolchain (requirements.txt) is not installed")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def _config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_one_repository_url():
    url = _config()["repository"]["url"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'Homepage = "{url}"' in pyproject
    for path in CHAPTERS:
        sources = "\n".join(c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code")
        found = set(re.findall(r'REPOSITORY = "([^"]+)"', sources))
        assert found == {url}, f"{path.name} installs mi_lib from {found}, _config.yml says {url}"
    assert url in (ROOT / "README.md").read_text()
    from mi_lib.storage.checkpoints import CHECKPOINT_URL

    owner_repo = url.removeprefix("https://github.com/")
    assert CHECKPOINT_URL.startswith(f"https://raw.githubusercontent.com/{owner_repo}/"), CHECKPOINT_URL


def test_every_chapter_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    assert CHAPTERS, "no chapters found"
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in toc


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_conventions(path):
    nb = nbformat.read(path, 4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "a chapter opens with its title"
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = code[0]
    assert "parameters" in params.metadata.get("tags", []), "the first code cell is the papermill parameters cell"
    assert re.search(r'^scale = "ci"', params.source, re.M), "committed notebooks are at CI scale"
    assert re.search(r"^seed = \d+", params.source, re.M)
    assert "find_spec(\"mi_lib\")" in code[1].source, "the second code cell installs mi_lib when it is missing"
    assert "injected-parameters" not in json.dumps([c.metadata for c in nb.cells]), "commit the notebook without papermill's injected cell"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, "committed chapters carry their CI-scale outputs"
    assert not [o for o in outputs if o.output_type == "error"]
    # executed headless with MI_PROGRESS=0 (make, paper_scale.sh): a stored progress bar is a frozen '0%' widget
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets, "stored widget output: re-execute the chapter with MI_PROGRESS=0 (as make outputs does)"
    assert "widgets" not in nb.metadata, "stored widget state (no output shows it): make outputs drops it, or scripts/strip_widget_state.py"
    assert "save_results(" in "\n".join(c.source for c in code), "a chapter records its claims"
    lines = sum(len(c.source.splitlines()) for c in code)
    assert lines <= 150, f"{lines} lines of code (at most 150, issue 21): move loops and figures into the chapter's module"


def _wide_lines(nb) -> list[str]:
    """Code lines and printed output lines wider than the book's column (mi_lib.storage.results.LINE_WIDTH)."""
    from mi_lib.storage.results import LINE_WIDTH

    lines = []
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        lines += cell.source.splitlines()
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.output_type == "stream" else output.get("data", {}).get("text/plain", "")
            if "image/png" not in output.get("data", {}):
                lines += text.splitlines()
    return [line for line in lines if len(line) > LINE_WIDTH]


def test_figures_are_drawn_at_most_the_books_width():
    """Every literal figure width in the chapters and their modules is at most mi_lib.plotting.BOOK_WIDTH: the
    browser check (scripts/check_book.py) sees only the scale the book renders, this sees the code of both."""
    from mi_lib.plotting import BOOK_WIDTH

    sources = {p.name: "\n".join(c.source for c in nbformat.read(p, 4).cells if c.cell_type == "code") for p in CHAPTERS}
    sources |= {p.name: p.read_text() for p in (ROOT / "mi_lib").rglob("*.py")}
    widths = {(name, float(w)) for name, src in sources.items() for w in re.findall(r"figsize=\(([0-9.]+)\s*,", src)}
    assert len(widths) > 10, "the pattern finds the chapters' figure sizes"
    too_wide = sorted((name, w) for name, w in widths if w > BOOK_WIDTH)
    assert not too_wide, f"figures wider than plotting.BOOK_WIDTH ({BOOK_WIDTH} in): {too_wide}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_code_and_printed_lines_fit_the_books_column(path):
    """No code line or printed line is wider than the column (a printed table would wrap mid-row in the book;
    mi_lib.say wraps prose)."""
    wide = _wide_lines(nbformat.read(path, 4))
    assert not wide, f"{len(wide)} line(s) wider than the column, the first: {wide[0]!r}"


def test_the_line_width_check_can_fail():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="a | b\n" + "-" * 89 + "\n")])])
    assert _wide_lines(nb) == ["-" * 89]


def test_strip_widget_state_drops_only_the_widget_state(tmp_path):
    source = ROOT / "chapters" / "01_forward_process.ipynb"
    nb = nbformat.read(source, 4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"m1": {"model_name": "IntSliderModel"}}, "version_major": 2}}
    path = tmp_path / source.name
    nbformat.write(nb, path)
    script = [sys.executable, str(ROOT / "scripts" / "strip_widget_state.py"), str(path)]
    result = subprocess.run(script, capture_output=True, text=True)
    assert result.returncode == 0 and "widget state removed" in result.stdout, result.stdout + result.stderr
    stripped = nbformat.read(path, 4)
    assert "widgets" not in stripped.metadata
    del nb.metadata["widgets"]
    assert stripped == nb
    assert subprocess.run(script, capture_output=True, text=True).stdout == ""  # nothing left to remove: file untouched
    # an output that shows a widget needs the state: kept
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    shown = nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "m1"}, "text/plain": "IntSlider()"})
    next(c for c in nb.cells if c.cell_type == "code").outputs.append(shown)
    nbformat.write(nb, path)
    assert subprocess.run(script, capture_output=True, text=True).stdout == ""
    assert "widgets" in nbformat.read(path, 4).metadata


def test_make_outputs_refreshes_the_committed_chapters_as_nbval_runs_them(make_n):
    """make outputs runs each chapter as nbval does (static widgets, no progress bars, no injected parameters),
    strips the widget state from the run and only then copies it over the committed notebook."""
    nb = "chapters/01_forward_process.ipynb"
    steps = make_n("outputs", f"CHAPTERS={nb}")
    nbval = make_n("test-nbval")
    for setting in ("MPLBACKEND=module://matplotlib_inline.backend_inline", "MI_STATIC_WIDGETS=1", "MI_PROGRESS=0", "MKL_CBWR=COMPATIBLE"):
        assert setting in steps and setting in nbval, setting
    assert f"for nb in {nb};" in steps and "papermill $nb _build/outputs/$(basename $nb)" in steps and "-p scale" not in steps
    assert steps.index("papermill") < steps.index("scripts/strip_widget_state.py _build/outputs/") < steps.index("cp _build/outputs/")


def test_readme_tables_are_up_to_date():
    pages = [str(ROOT / "README.md"), str(ROOT / "results.md")]  # the README and the book's results page carry the same tables
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_table.py"), "--check", *pages], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # the README's durations are the measured ones (scripts/clean_clone_timings.sh), never typed: its markers must stay
    readme = (ROOT / "README.md").read_text()
    assert "<!-- durations:start -->" in readme and "- `make test`: " in readme.split("<!-- durations:start -->")[1]


def printed_results(path: Path) -> dict[str, str]:
    """The ``name = value`` lines that mi.print_results printed in a committed notebook's outputs."""
    cells = [c for c in nbformat.read(path, 4).cells if c.cell_type == "code" and "mi.print_results(" in c.source]
    text = "".join(o.get("text", "") for c in cells for o in c.outputs if o.output_type == "stream")
    return dict(re.findall(r"^(\S+) += (\S+)$", text, re.M))


def test_the_ci_column_is_what_the_committed_chapters_print(results_table):
    """The tables' CI-scale figures (results/<chapter>.json, entry "ci", written by `make outputs`) are the numbers
    each committed notebook prints, which nbval compares with a fresh run on every test: the column cannot go stale
    without a test failing. A row the CI run does not measure is one declared paper-scale only."""
    from mi_lib.storage.results import format_number

    for chapter, claims in results_table.CLAIMS.items():
        entries = json.loads((ROOT / "results" / f"{chapter}.json").read_text())
        assert "ci" in entries, f"results/{chapter}.json has no CI-scale entry: run `make outputs CHAPTERS=chapters/{chapter}.ipynb`"
        printed, numbers = printed_results(ROOT / "chapters" / f"{chapter}.ipynb"), entries["ci"]["numbers"]
        for key, *_ in claims:
            paper_only = key in results_table.PAPER_SCALE_ONLY.get(chapter, set())
            assert (key in numbers) != paper_only, (
                f"{chapter}: {key} is declared paper-scale only but the CI run measures it" if paper_only else
                f"{chapter}: the CI run does not measure {key}: run `make outputs CHAPTERS=chapters/{chapter}.ipynb`, "
                f"or declare it in PAPER_SCALE_ONLY")
            if key in numbers:
                assert printed.get(key) == format_number(numbers[key]), (
                    f"{chapter}: results/{chapter}.json says {key} = {format_number(numbers[key])}, the committed notebook "
                    f"prints {printed.get(key)}: run `make outputs CHAPTERS=chapters/{chapter}.ipynb`")


def test_the_ci_column_check_can_fail(tmp_path):
    """printed_results reads what a chapter printed; a figure that differs from the JSON is caught above."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("mi.print_results(numbers)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="tails_inner    = 49\nmoved_density_ratio = 0.0692\n")])])
    nbformat.write(nb, tmp_path / "x.ipynb")
    assert printed_results(tmp_path / "x.ipynb") == {"tails_inner": "49", "moved_density_ratio": "0.0692"}


def claim_rows(table, chapter: str) -> list[str]:
    """The rows of one chapter's claims in scripts/results_table.py's tables (not its header)."""
    return [line for line in table.chapter_table(chapter).splitlines() if line.startswith("| ") and not line.startswith("| claim |")]


def test_results_rows_show_only_runs_with_the_parameters_they_describe(tmp_path, results_table):
    """Chapter 7's digits rows (section 07b) describe MNIST; a paper-scale run on the 8x8 digits must not fill them."""
    table = results_table
    keys = [row[0] for row in table.CLAIMS["07b_recursive_digits"]]
    entry = {"numbers": {k: 0.25 for k in keys}, "device": "GPU", "wall_time_s": 1.0, "commit": "abc", "params": {"digits_data": "8x8"}}
    path = tmp_path / "results" / "07b_recursive_digits.json"
    path.write_text(json.dumps({"paper": entry}))
    rows = claim_rows(table, "07b_recursive_digits")
    n_mnist = sum(len(row) == 4 for row in table.CLAIMS["07b_recursive_digits"])
    assert n_mnist == 7 and len(rows) == len(keys)
    assert sum("not run with digits_data=mnist (ran digits_data=8x8)" in r for r in rows) == n_mnist
    assert sum("0.25" in r for r in rows) == len(rows) - n_mnist
    entry["params"]["digits_data"] = "mnist"
    path.write_text(json.dumps({"paper": entry}))
    assert all("0.25" in line for line in claim_rows(table, "07b_recursive_digits"))


def test_results_rows_a_run_left_out_say_so(tmp_path, results_table):
    """GPU window 2 runs chapter 6 with n_images=0: its image rows say they are not in that run, the rest show it."""
    table = results_table
    keys = [row[0] for row in table.CLAIMS["06_detection"]]
    numbers = {k: 0.5 for k in keys if "shapes" not in k and "hands" not in k}
    entry = {"numbers": numbers, "device": "GPU", "wall_time_s": 1.0, "commit": "abc", "params": {"n_images": 0, "seed": 0}}
    (tmp_path / "results" / "06_detection.json").write_text(json.dumps({"paper": entry}))
    rows = claim_rows(table, "06_detection")
    assert len(rows) == len(keys) and 0 < len(numbers) < len(keys)
    assert sum("| not in this run (its parameters left it out) |" in r for r in rows) == len(keys) - len(numbers)
    assert sum("| 0.500 |" in r for r in rows) == len(numbers)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci.splitlines(), ".ci/run runs the README's test command as a line of its own"
    assert "make test" in readme


def test_data_stays_lean_and_documented():
    """data/ holds only what must ship: each file a few MB at most, and each named in its folder's README or
    manifest.json (or data/README.md), which say where it came from."""
    files = [p for p in (ROOT / "data").rglob("*") if p.is_file() and p.name not in ("README.md", "manifest.json")]
    assert files, "data/ is empty"
    # a paper-scale UNet checkpoint is 6.3 MB (scripts/make_checkpoints.py PAPER_SPECS); the project's limit is 60 MB
    too_big = [f"{p.relative_to(ROOT)} ({p.stat().st_size / 1e6:.1f} MB)" for p in files if p.stat().st_size > 8_000_000]
    assert not too_big, f"files over 8 MB in data/: {too_big}"
    assert sum(p.stat().st_size for p in files) < 60_000_000, "data/ as a whole should stay under 60 MB"
    top = (ROOT / "data" / "README.md").read_text()
    for p in files:
        notes = [p.parent / "README.md", p.parent / "manifest.json"]
        documented = top + "".join(n.read_text() for n in notes if n.is_file())
        assert p.name in documented, f"{p.relative_to(ROOT)} is named in no README or manifest"


def test_results_tables_name_the_fast_paths_of_their_run(tmp_path, results_table):
    table = results_table
    keys = [row[0] for row in table.CLAIMS["06_detection"]]
    entry = {"numbers": {k: 0.5 for k in keys}, "device": "GPU", "wall_time_s": 1.0, "commit": "abc", "params": {}}
    path = tmp_path / "results" / "06_detection.json"
    path.write_text(json.dumps({"paper": entry}))
    runs = table.chapter_table("06_detection").splitlines()[2]
    assert runs.startswith("Paper scale: GPU, 1 s, `abc`. CI scale: not yet run")
    entry["fast"] = {"sample": {"precision": "bf16"}, "train": {"compile": "reduce-overhead", "fused": True}}
    path.write_text(json.dumps({"paper": entry}))
    runs = table.chapter_table("06_detection").splitlines()[2]
    assert runs.startswith("Paper scale: GPU (sample: precision=bf16; train: compile=reduce-overhead, fused=True), 1 s, `abc`.")


def test_results_tables_say_how_many_generations_a_recursion_run_had(tmp_path, results_table):
    """Chapter 7's rows say "the last generation": the line above them gives each run's sizes from its parameters,
    so the CI column is not read as the paper's 5 generations of 100k kept of 102.5k."""
    keys = [row[0] for row in results_table.CLAIMS["07_recursive_training"]]
    params = {"generations": 3, "n_keep": 5_000, "n_candidates": 6_250}
    ci = {"numbers": {k: 0.5 for k in keys}, "device": "CPU", "wall_time_s": 1.0, "commit": "abc", "params": params}
    paper = {**ci, "device": "GPU", "params": {"generations": 5, "n_keep": 100_000, "n_candidates": 102_500}}
    (tmp_path / "results" / "07_recursive_training.json").write_text(json.dumps({"paper": paper, "ci": ci}))
    runs = results_table.chapter_table("07_recursive_training").splitlines()[2]
    assert runs == ("Paper scale: GPU, 1 s, `abc`; 5 generations, 100,000 of 102,500 candidates kept. "
                    "CI scale: CPU, 1 s, `abc`; 3 generations, 5,000 of 6,250 candidates kept."), runs


def test_the_books_copies_hide_papermills_injected_parameters_and_show_the_setup_collapsed(tmp_path):
    """A paper-scale run's notebook carries papermill's injected-parameters cell: --book tags it remove-cell (the
    reader sees the chapter's own parameters cell once). The committed chapters collapse their Colab install and
    setup cells (hide-input): prose, figures and numbers first, the plumbing one click away."""
    nb = nbformat.read(ROOT / "chapters" / "01_forward_process.ipynb", 4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all("hide-input" in c.metadata.get("tags", []) for c in code[1:3]) and "hide-input" not in code[0].metadata.get("tags", [])
    injected = nbformat.v4.new_code_cell('scale = "paper"', metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(nb.cells.index(code[0]) + 1, injected)
    path = tmp_path / "01.ipynb"
    nbformat.write(nb, path)
    script = [sys.executable, str(ROOT / "scripts" / "strip_widget_state.py")]
    assert subprocess.run([*script, str(path)], capture_output=True, text=True).stdout == ""  # without --book: untouched
    out = subprocess.run([*script, "--book", str(path)], capture_output=True, text=True)
    assert "injected parameters hidden" in out.stdout
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, 4).cells if c.cell_type == "code"]
    assert tags[1] == ["injected-parameters", "remove-cell"] and "remove-cell" not in tags[0]


def test_the_seed_sweeps_pin_the_chapters_cpu_kernels():
    """scripts/grid_recursion_seeds.py and digits_recursion.py set the Makefile's CPU_NUMERICS before torch loads, so
    that their seed s is the chapter's run with seed = s (a recursion turns the last bits of other kernels into other
    numbers)."""
    line = next(l for l in (ROOT / "Makefile").read_text().splitlines() if l.startswith("CPU_NUMERICS :="))
    pinned = dict(item.split("=", 1) for item in line.split(":=", 1)[1].split())
    assert set(pinned) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"}
    for script in ("grid_recursion_seeds.py", "digits_recursion.py"):
        text = (ROOT / "scripts" / script).read_text()
        assert f"CPU_NUMERICS = {json.dumps(pinned)}" in text, script
        assert text.index("os.environ.setdefault(_var, _value)") < text.index("\nimport torch"), script


#: mi_lib's layers, lowest first, each a folder of the package (the foundation and presentation are its top level):
#: a module imports from its own layer or the ones below, never from above, and none imports a chapter's module
#: (mi_lib/experiments sits on top of them all). The same list is in mi_lib/__init__.py's docstring.
LAYERS = {
    "foundation": ("environment.py", "params.py", "runtime.py", "settings.py"),
    "storage": ("storage/cache.py", "storage/checkpoints.py", "storage/results.py"),
    "data sets": ("datasets/mixtures.py", "datasets/shapes.py", "datasets/hands.py", "datasets/digits.py"),
    "diffusion core": ("diffusion/schedule.py", "diffusion/noise.py", "diffusion/nets.py", "diffusion/unet.py", "diffusion/exact.py",
                       "diffusion/fast.py", "diffusion/fused.py", "diffusion/sampling.py", "diffusion/train.py", "diffusion/models.py"),
    "measurements": ("measure/metrics.py", "measure/detection.py"),
    "presentation": ("plotting.py",),
}


def test_mi_lib_imports_itself_relatively_and_its_folders_init_hold_only_a_docstring():
    """What the cache's import walk (mi_lib.storage.cache.code_modules) relies on: it follows relative imports only,
    and does not hash the __init__.py a folder's import runs on the way."""
    import ast

    package = ROOT / "mi_lib"
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        absolute = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and getattr(n, "level", 0) == 0
                    and any(name.split(".")[0] == "mi_lib" for name in ([n.module or ""] if isinstance(n, ast.ImportFrom) else [a.name for a in n.names]))]
        assert not absolute, f"{path.relative_to(ROOT)} imports mi_lib by its absolute name (line {absolute[0].lineno})"
        if path.name == "__init__.py" and path.parent != package:
            assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant), \
                f"{path.relative_to(ROOT)} should hold only its docstring"


def test_mi_lib_imports_only_downward_through_its_layers():
    from mi_lib.storage.cache import PACKAGE, _imports

    rank = {module: i for i, modules in enumerate(LAYERS.values()) for module in modules}
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py" and p.parent.name != "experiments"}
    assert modules == set(rank), f"every module has a layer: {sorted(modules ^ set(rank))}"
    for layer, members in LAYERS.items():  # a layer is one folder (the top level holds two)
        assert len({m.rpartition("/")[0] for m in members}) == 1, f"the {layer} layer spans folders"
    for module in sorted(modules):
        path = PACKAGE / module
        for imported in _imports(path, path.stat().st_mtime_ns, PACKAGE) - {"__init__.py"}:
            assert not imported.startswith("experiments/"), f"mi_lib/{module} imports a chapter's module"
            if not imported.endswith("/__init__.py"):  # a folder's __init__ holds only its docstring
                assert rank[imported] <= rank[module], f"mi_lib/{module} ({list(LAYERS)[rank[module]]}) imports mi_lib/{imported}, a layer above"
    docstring = (PACKAGE / "__init__.py").read_text()
    for layer in LAYERS:
        assert layer in docstring, f"mi_lib/__init__.py's docstring does not name the layer {layer!r}"
