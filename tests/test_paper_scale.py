"""The paper-scale path on the lent GPU machine: scripts/paper_scale.sh there (make gpu-wheels' wheels), make book-paper here."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import nbformat
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_wheels  # noqa: E402


def test_paper_scale_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "paper_scale.sh")], check=True)


def test_paper_scale_checks_its_arguments_before_installing(tmp_path):
    """An unknown or ambiguous chapter, or a window that is not prepared: one clear error, before the (here bogus) wheels."""
    (tmp_path / "whl").mkdir()
    (tmp_path / "whl" / "bogus-1.0-py3-none-any.whl").write_text("not a wheel")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "WHEELS": str(tmp_path / "whl")}
    for args, message in ((["no_such_chapter"], "no single chapter matches 'no_such_chapter'"), (["07"], "no single chapter matches '07'"),
                          (["--window", "9"], "window 9 is not one of 1-7"), (["--window", "1", "02"], "usage: --window N")):
        out = subprocess.run(["bash", "scripts/paper_scale.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
    assert not (tmp_path / "out").exists()


def test_book_paper_renders_without_executing(make_n):
    steps = make_n("book-paper", "FROM=some/run.tar.gz")
    assert "scripts/paper_unpack.py some/run.tar.gz" in steps
    assert "jupyter-book build _build/src/paper" in steps and "cp -r _build/jb/paper/_build/html _build/html-paper" in steps
    # the tables are rewritten before the render: the book's results page shows the new numbers
    assert steps.index("scripts/results_table.py --write README.md results.md") < steps.index("jupyter-book build _build/src/paper")
    assert "papermill" not in steps
    # the book's copies lose their orphaned widget state before the render (else a page loads a widget manager for nothing)
    assert steps.index("scripts/strip_widget_state.py --book _build/src/paper/chapters/") < steps.index("jupyter-book build _build/src/paper")


def test_book_renders_the_committed_chapters_and_book_executed_runs_them_first(make_n):
    steps = make_n("book")
    assert "papermill" not in steps and "scripts/book_sources.py _build/executed/ci/chapters chapters/01_forward_process.ipynb" in steps
    assert "cp -r _build/jb/ci/_build/html _build/html" in steps
    paper = make_n("book", "SCALE=paper")
    assert "papermill" not in paper and "cp results/executed/01_forward_process.ipynb" in paper
    executed = make_n("book-executed")
    assert executed.index("papermill") < executed.index("jupyter-book build _build/src/ci")
    assert "make book SCALE=ci" in make_n("test")  # the test command renders what nbval has just checked


def _closure(roots: list[str]) -> set[str]:
    """Distributions the GPU machine gets from .whl (as make gpu-wheels follows them, from this venv's metadata)."""
    seen, queue = set(), list(roots)
    env = gpu_wheels.target_env("3.12")
    from packaging.requirements import Requirement

    while queue:
        name = gpu_wheels.norm(queue.pop())
        if name in seen or name in gpu_wheels.GPU_HAS:
            continue
        seen.add(name)
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                queue.append(req.name)
    return seen


def _catches_import_error(node: ast.Try) -> bool:
    names = {n.id for h in node.handlers if h.type is not None for n in ast.walk(h.type) if isinstance(n, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def test_optional_imports_are_told_apart():
    tree = ast.parse("try:\n    import sklearn\nexcept ImportError:\n    pass\ntry:\n    import yaml\nexcept ValueError:\n    pass")
    tries = [t for t in ast.walk(tree) if isinstance(t, ast.Try)]
    assert [_catches_import_error(t) for t in tries] == [True, False]


def test_every_import_of_the_chapters_and_mi_lib_is_on_the_gpu_machine_or_in_the_wheels():
    sources = [c.source for nb in sorted((ROOT / "chapters").glob("*.ipynb")) for c in nbformat.read(nb, 4).cells if c.cell_type == "code"]
    sources += [p.read_text() for p in sorted((ROOT / "mi_lib").glob("*.py"))]
    modules = set()
    for src in sources:
        tree = ast.parse("\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))))
        # an import in the body of `try: ... except ImportError:` is optional (a fallback): it may be missing
        optional = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) and _catches_import_error(t)
                    for stmt in t.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                modules |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    carried = _closure(gpu_wheels.ROOTS)
    dists = md.packages_distributions()
    missing = []
    for module in sorted(modules - set(sys.stdlib_module_names) - {"mi_lib"}):
        names = {gpu_wheels.norm(d) for d in dists.get(module, [module])}
        if not names & (gpu_wheels.GPU_HAS | carried):
            missing.append(f"{module} ({', '.join(sorted(names))})")
    assert not missing, f"imported but neither on the GPU machine nor in make gpu-wheels' ROOTS: {missing}"


def _run_folder(base: Path, name: str, rows: list[tuple[str, str]], numbers: dict[str, float]) -> Path:
    run = base / name / "paper-scale"
    for sub in ("executed", "results", "cache"):
        (run / sub).mkdir(parents=True)
    (run / "run.txt").write_text("date: x\nscale: paper\ncommit: abc (git)\n")
    (run / "timing.tsv").write_text("chapter\tstatus\tseconds\n" + "".join(f"{c}\t{s}\t10\n" for c, s in rows) + "total\tok\t25\n")
    for chapter, _ in rows:
        nbformat.write(nbformat.v4.new_notebook(metadata={"run": name}), run / "executed" / f"{chapter}.ipynb")
        (run / "results" / f"{chapter}.json").write_text(json.dumps({"paper": {"numbers": {"x": numbers[chapter]}}}))
    (run / "cache" / f"model-{name}.pt").write_bytes(b"0")
    return run


def test_unpack_merges_ok_runs_only_and_keeps_other_scales(tmp_path):
    first = _run_folder(tmp_path, "a", [("02_x", "ok"), ("03_y", "failed(1)")], {"02_x": 1.0, "03_y": 2.0})
    second = _run_folder(tmp_path, "b", [("02_x", "timeout")], {"02_x": 3.0})
    with tarfile.open(tmp_path / "b.tar.gz", "w:gz") as tar:
        tar.add(second, arcname="paper-scale")
    results, executed, cache = tmp_path / "results", tmp_path / "executed", tmp_path / "cache"
    results.mkdir()
    (results / "02_x.json").write_text(json.dumps({"ci": {"numbers": {"x": 9.0}}}))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_unpack.py"), str(first.parent), str(tmp_path / "b.tar.gz"),
                          "--results", str(results), "--executed", str(executed), "--cache", str(cache)], capture_output=True, text=True)
    # chapters/ has notebooks that these runs lack: the script says which, after doing its work
    assert out.returncode == 1 and "no executed notebook yet for" in out.stderr, out.stdout + out.stderr
    merged = json.loads((results / "02_x.json").read_text())
    assert merged == {"ci": {"numbers": {"x": 9.0}}, "paper": {"numbers": {"x": 1.0}}}  # the ok run, not the timed-out one
    assert not (results / "03_y.json").exists()  # a failed chapter brings no results
    assert nbformat.read(executed / "02_x.ipynb", 4).metadata["run"] == "a"
    assert nbformat.read(executed / "03_y.ipynb", 4).metadata["run"] == "a"  # shown with its error: no ok run has it
    assert sorted(p.name for p in cache.iterdir()) == ["model-a.pt", "model-b.pt"]
    assert re.search(r"device time of these runs: 50 s in 2 call", out.stdout)


def test_unpack_cache_only_touches_nothing_else(tmp_path):
    run = _run_folder(tmp_path, "a", [("02_x", "ok")], {"02_x": 1.0})
    results, executed = tmp_path / "results", tmp_path / "executed"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_unpack.py"), str(run), "--cache-only", "--cache", str(tmp_path / "cache"),
                    "--results", str(results), "--executed", str(executed)], check=True, capture_output=True)
    assert (tmp_path / "cache" / "model-a.pt").exists()
    assert not list(results.glob("*")) and not list(executed.glob("*"))


def test_unpack_joins_parts_keeps_the_furthest_training_state_and_drops_finished_ones(tmp_path):
    """A tarball over 15 MiB comes back as .part-00-of-03, ...; of two states of one training (*.partial.pt) the
    one further on is kept, whatever the order of FROM; one whose model came back is dropped."""
    import torch

    files, cache = tmp_path / "files", tmp_path / "cache"
    files.mkdir()
    for name, step in (("a", 30), ("b", 10)):  # call b's state is behind call a's (say, an older run unpacked again)
        run = _run_folder(tmp_path, name, [("02_x", "timeout")], {"02_x": 1.0})
        torch.save({"step": step}, run / "cache" / "job.partial.pt")
        tarball = files / f"paper-scale-2026010{ord(name) - 96}-000000.tar.gz"
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(run, arcname="paper-scale")
        if name == "b":  # this call's tarball came back in three parts
            data = tarball.read_bytes()
            third = len(data) // 3 + 1
            for i in range(3):
                (files / f"{tarball.name}.part-{i:02d}-of-03").write_bytes(data[i * third : (i + 1) * third])
            tarball.unlink()
    unpack = [sys.executable, str(ROOT / "scripts" / "paper_unpack.py"), "--cache-only", "--cache", str(cache)]
    out = subprocess.run([*unpack, str(files)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "02_x" in out.stdout and out.stdout.count("timeout") == 2  # both calls read, the parted one too
    assert torch.load(cache / "job.partial.pt", weights_only=True)["step"] == 30
    assert sorted(p.name for p in cache.iterdir()) == ["job.partial.pt", "model-a.pt", "model-b.pt"]
    done = _run_folder(tmp_path, "c", [("02_x", "ok")], {"02_x": 1.0})
    (done / "cache" / "job.pt").write_bytes(b"the trained model")
    out = subprocess.run([*unpack, str(done)], check=True, capture_output=True, text=True)
    assert not (cache / "job.partial.pt").exists() and (cache / "job.pt").exists() and "dropped" in out.stdout
    for lost in ("part-02-of-03", "part-00-of-03"):  # a part left behind, the last or the first: one clear error
        (files / f"paper-scale-20260102-000000.tar.gz.{lost}").unlink()
        bad = subprocess.run([*unpack, str(files)], capture_output=True, text=True)
        assert bad.returncode != 0 and "not all 3 of them" in bad.stderr


def _tiny_repo(tmp_path: Path, body: str, parameters: str = 'scale = "ci"', script=lambda text: text) -> Path:
    """A copy of scripts/paper_scale.sh (edited by ``script``) beside one tiny chapter: its ``parameters`` cell, then ``body``."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "chapters").mkdir()
    (repo / "scripts" / "paper_scale.sh").write_text(script((ROOT / "scripts" / "paper_scale.sh").read_text()))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, repo / "chapters" / "00_tiny.ipynb")
    return repo


def _env(tmp_path: Path, **env: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TMPDIR": str(tmp_path), "SCALE": "ci",
            "WHEELS": str(tmp_path / "no-wheels"), "MI_CACHE_DIR": str(tmp_path / "cache"), **env}


def _paper_scale(repo: Path, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the script as the device tool runs a command: in a process group of its own, killed when it returns."""
    with subprocess.Popen(["bash", str(repo / "scripts" / "paper_scale.sh"), *args], env=_env(tmp_path, **env), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as call:
        stdout, stderr = call.communicate(timeout=120)
        try:
            os.killpg(call.pid, signal.SIGKILL)  # whatever the command left running in its group
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(call.args, call.returncode, stdout, stderr)


def test_a_window_runs_the_benchmark_then_its_chapters_with_their_parameters(tmp_path):
    """The window path end to end on a CPU: a stand-in benchmark writes bench.json and the fast paths, which the
    runner sources; the chapter gets the window's fixed parameter and records make gpu-wheels' commit stamp (the
    device's .git may be stale); bench.json comes back."""
    repo = _tiny_repo(tmp_path, parameters='scale = "ci"\nn_samples = None',
                      body="import os\nfrom mi_lib.storage.results import git_commit\n"
                           "print('n_samples', n_samples, 'fast', os.environ.get('MI_FAST_SAMPLE'), 'commit', git_commit())",
                      script=lambda text: text.replace(" 03_mode_interpolation_2d 04_score_smoothness", "").replace("02_mode_interpolation_1d", "00_tiny"))
    (repo / "benchmarks").mkdir()
    (repo / "benchmarks" / "bench.py").write_text(
        "import json, sys\nargs = sys.argv\n"
        "json.dump({'info': {'device': 'stand-in', 'short': True}}, open(args[args.index('--json') + 1], 'w'))\n"
        f"open({str(tmp_path / 'bench-runs')!r}, 'a').write('ran\\n')\n"
        "open(args[args.index('--env-out') + 1], 'w').write(\"export MI_FAST_SAMPLE='fused=1,precision=bf16'\\nexport MI_FAST_TRAIN='fused=1,graph=1'\\n\")\n"
    )
    (tmp_path / "whl").mkdir()
    (tmp_path / "whl" / "COMMIT").write_text("0123456789ab-dirty\n")
    for call in ("first", "again"):  # a second call on the warm machine takes the first call's choice, benchmarks nothing
        out = _paper_scale(repo, tmp_path, "--window", "1", OUT=str(tmp_path / ("out" if call == "first" else "out2")), SCALE="paper",
                           WHEELS=str(tmp_path / "whl"), MI_CACHE_DIR=str(tmp_path / "cache"))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "fast paths: MI_FAST_TRAIN='fused=1,graph=1' MI_FAST_SAMPLE='fused=1,precision=bf16'" in out.stdout
        assert (tmp_path / "bench-runs").read_text() == "ran\n", call
    (tarball,) = (tmp_path / "out").glob("paper-scale-*.tar.gz")
    with tarfile.open(tarball) as tar:
        executed = nbformat.reads(tar.extractfile("paper-scale/executed/00_tiny.ipynb").read().decode(), 4)
        assert json.loads(tar.extractfile("paper-scale/bench.json").read())["info"]["device"] == "stand-in"
        timing = tar.extractfile("paper-scale/timing.tsv").read().decode()
        assert "scale: paper\ncommit: 0123456789ab-dirty (stamp" in tar.extractfile("paper-scale/run.txt").read().decode()
    assert "n_samples 20000000 fast fused=1,precision=bf16 commit 0123456789ab-dirty" in executed.cells[-1].outputs[0]["text"]
    assert "bench\tok" in timing and "00_tiny\tok" in timing and "total\tok" in timing
    assert (tmp_path / "out" / "timing.tsv").read_text() == timing


def test_bad_fast_paths_stop_the_run_before_any_chapter(tmp_path):
    out = _paper_scale(ROOT, tmp_path, "01", OUT=str(tmp_path / "out"), MI_FAST_SAMPLE="no_such_option=1")
    assert out.returncode == 2 and "no_such_option" in out.stdout and "nothing run" in out.stdout, out.stdout + out.stderr
    (tarball,) = (tmp_path / "out").glob("paper-scale-*.tar.gz")
    with tarfile.open(tarball) as tar:
        assert "executed/01_forward_process.ipynb" not in " ".join(tar.getnames())


def test_pack_brings_back_the_oldest_models_first_in_parts_that_unpack_joins(tmp_path):
    """A recursion's early generations are what a later session needs first: with room for two of three new models,
    the two trained first come back; a tarball over PART_KB comes back in parts (the device tool's 16 MiB a file)."""
    repo = _tiny_repo(tmp_path, body=(
        "import os, time\nfrom pathlib import Path\n"
        "cache = Path(os.environ['MI_CACHE_DIR']); cache.mkdir(parents=True, exist_ok=True)\n"
        "for name, later in [('first', 1), ('third', 3), ('second', 2)]:\n"
        "    path = cache / f'recursion-model-{name}.pt'\n"
        "    path.write_bytes(os.urandom(1024 * 1024))\n"
        "    os.utime(path, (time.time() + later, time.time() + later))\n"
        "(cache / 'samples-abc.pt').write_bytes(b'a sample set stays behind')\n"
    ))
    out = _paper_scale(repo, tmp_path, "00", OUT=str(tmp_path / "out"), OUT_KB="2600", PART_KB="1024")
    assert out.returncode == 0 and "not brought back (no room): recursion-model-third.pt" in out.stdout, out.stdout + out.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files[-1] == "timing.tsv" and all(re.fullmatch(r"paper-scale-[0-9-]+\.tar\.gz\.part-0[0-2]-of-03", f) for f in files[:-1]), files
    cache = tmp_path / "back"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_unpack.py"), str(tmp_path / "out"), "--cache-only", "--cache", str(cache)],
                   check=True, capture_output=True)
    assert sorted(p.name for p in cache.iterdir()) == ["recursion-model-first.pt", "recursion-model-second.pt"]


def test_unpack_keeps_the_numbers_of_a_claim_that_failed_but_not_of_a_crash(tmp_path, results_table):
    """A chapter stopped by an AssertionError after writing its results (a claim that did not hold at paper scale)
    brings its numbers, marked claim_failed; one stopped by any other error brings none."""
    run = _run_folder(tmp_path, "a", [("02_x", "failed(1)"), ("03_y", "failed(1)")], {"02_x": 1.0, "03_y": 2.0})
    for chapter, ename in (("02_x", "AssertionError"), ("03_y", "RuntimeError")):
        nb = nbformat.v4.new_notebook(metadata={"run": "a"})
        cell = nbformat.v4.new_code_cell("assert x > 1, 'more data should mean less interpolation'")
        cell.outputs = [nbformat.v4.new_output("error", ename=ename, evalue="more data should mean less interpolation", traceback=[])]
        nb.cells = [cell]
        nbformat.write(nb, run / "executed" / f"{chapter}.ipynb")
    results = tmp_path / "results"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_unpack.py"), str(run), "--results", str(results),
                          "--executed", str(tmp_path / "executed"), "--cache", str(tmp_path / "cache")], capture_output=True, text=True)
    assert "a claim failed after the results were written" in out.stdout, out.stdout + out.stderr
    merged = json.loads((results / "02_x.json").read_text())["paper"]
    assert merged["numbers"] == {"x": 1.0} and merged["claim_failed"] == "more data should mean less interpolation"
    assert not (results / "03_y.json").exists()

    # the README's table says so above the chapter's rows, which keep their numbers
    entry = {"numbers": {row[0]: 0.5 for row in results_table.CLAIMS["02_mode_interpolation_1d"]}, "device": "GPU", "wall_time_s": 1.0,
             "commit": "abc", "claim_failed": "more data should mean\n less interpolation"}
    (results / "02_mode_interpolation_1d.json").write_text(json.dumps({"paper": entry}))
    lines = results_table.chapter_table("02_mode_interpolation_1d").splitlines()
    assert lines[2].startswith("Paper scale: GPU, 1 s, `abc`; **claim failed**: more data should mean less interpolation. CI scale:")
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| claim |")]
    assert len(rows) == len(entry["numbers"]) and all("| 0.500 |" in r for r in rows), rows


def test_a_run_killed_at_any_point_leaves_only_whole_files_and_the_next_run_goes_on(tmp_path):
    """The device tool kills a command's process group at its time limit, at no point of our choosing. Killed at
    several points of a run whose chapter writes a cache entry and its results (as mi_lib does: atomically), every
    file left behind is whole (each cache entry loads, each tarball reads, each JSON parses), and the same command
    run again finishes, reusing the entry the killed run completed."""
    repo = _tiny_repo(tmp_path, body=(
        "import json, os, time\nfrom pathlib import Path\nimport torch\n"
        "cache = Path(os.environ['MI_CACHE_DIR']); cache.mkdir(parents=True, exist_ok=True)\n"
        "entry = cache / 'mixture-model-tiny.pt'\n"
        "existed = entry.exists()\n"
        "if not existed:\n"
        "    time.sleep(1.5)\n"
        "    tmp = cache / '.mixture-model-tiny.tmp'; torch.save({'w': torch.zeros(100_000)}, tmp); os.replace(tmp, entry)\n"
        "    time.sleep(1.5)\n"
        "out = Path(os.environ['MI_RESULTS_DIR']) / '00_tiny.json'; tmp = out.with_suffix('.json.tmp')\n"
        "tmp.write_text(json.dumps({scale: {'numbers': {'x': 1.0}}})); tmp.replace(out)\n"
        "print('chapter done at scale', scale, 'reused' if existed and torch.load(entry)['w'].numel() else 'made')"
    ))
    env = _env(tmp_path, OUT=str(tmp_path / "out"))
    for kill_after in (0.5, 2.5, 5.0, None):  # None: once the entry is there (a slow machine gets there late)
        call = subprocess.Popen(["bash", str(repo / "scripts" / "paper_scale.sh"), "00"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        if kill_after is None:
            deadline = time.monotonic() + 90
            while not (tmp_path / "cache" / "mixture-model-tiny.pt").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            kill_after = 0.8
        time.sleep(kill_after)
        try:
            os.killpg(call.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        call.wait()
        for path in (tmp_path / "cache").glob("*.pt"):
            torch.load(path, weights_only=True)  # whole, or absent
        for tarball in (tmp_path / "out").glob("paper-scale-*.tar.gz"):
            with tarfile.open(tarball) as tar:
                tar.getnames()
        for result in tmp_path.glob("paper-scale.*/paper-scale/results/*.json"):
            json.loads(result.read_text())
    assert (tmp_path / "cache" / "mixture-model-tiny.pt").exists()
    out = _paper_scale(repo, tmp_path, "00", OUT=str(tmp_path / "out-last"))
    assert out.returncode == 0, out.stdout + out.stderr
    (tarball,) = (tmp_path / "out-last").glob("paper-scale-*.tar.gz")
    with tarfile.open(tarball) as tar:
        executed = nbformat.reads(tar.extractfile("paper-scale/executed/00_tiny.ipynb").read().decode(), 4)
        assert json.loads(tar.extractfile("paper-scale/results/00_tiny.json").read()) == {"ci": {"numbers": {"x": 1.0}}}
    assert "chapter done at scale ci reused" in executed.cells[-1].outputs[0]["text"]
