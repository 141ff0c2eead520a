"""The paper-scale path on the lent GPU machine: scripts/paper_scale.sh there, make book-paper here."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import torch
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_wheels  # noqa: E402


def test_paper_scale_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "paper_scale.sh")], check=True)


def test_paper_scale_rejects_an_unknown_chapter_before_installing(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "TMPDIR": str(tmp_path), "WHEELS": str(tmp_path / "none")}
    out = subprocess.run(["bash", "scripts/paper_scale.sh", "no_such_chapter"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "no single chapter matches 'no_such_chapter'" in out.stderr


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


def _tiny_repo(tmp_path: Path, sleep_s: float = 0, body: str | None = None, parameters: str = 'scale = "ci"') -> Path:
    """A copy of scripts/paper_scale.sh beside one tiny chapter: its ``parameters`` cell, then ``body`` (default:
    sleep ``sleep_s`` seconds and print the scale)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "chapters").mkdir()
    (repo / "scripts" / "paper_scale.sh").write_text((ROOT / "scripts" / "paper_scale.sh").read_text())
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    body = body if body is not None else f"import time\ntime.sleep({sleep_s})\nprint('chapter done at scale', scale)"
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, repo / "chapters" / "00_tiny.ipynb")
    return repo


def _paper_scale(repo: Path, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the script as the device tool runs a command: in a process group of its own, killed when it returns."""
    import signal

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TMPDIR": str(tmp_path), "SCALE": "ci",
           "WHEELS": str(tmp_path / "no-wheels"), "MI_CACHE_DIR": str(tmp_path / "cache"), "LIVE": str(tmp_path / "live"), **env}
    with subprocess.Popen(["bash", str(repo / "scripts" / "paper_scale.sh"), *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as call:
        stdout, stderr = call.communicate(timeout=120)
        try:
            os.killpg(call.pid, signal.SIGKILL)  # whatever the command left running in its group
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(call.args, call.returncode, stdout, stderr)


def test_follow_without_a_detached_run_says_so(tmp_path):
    out = _paper_scale(ROOT, tmp_path, "--follow", OUT=str(tmp_path / "out"))
    assert out.returncode == 2 and "no detached run in" in out.stderr
    out = _paper_scale(ROOT, tmp_path, "--follow", "01", OUT=str(tmp_path / "out"))
    assert out.returncode == 2 and "--follow takes no chapters" in out.stderr
    out = _paper_scale(ROOT, tmp_path, "--detach", "no_such_chapter", OUT=str(tmp_path / "out"))
    assert out.returncode == 2 and "no single chapter matches" in out.stderr and not (tmp_path / "live").exists()


def test_a_detached_run_outlives_its_call_and_follow_brings_back_snapshots_then_the_end(tmp_path):
    """--detach returns at once (FOLLOW_S=0) with a snapshot; the run goes on in its own session after the calling
    command's whole process group is killed (as the device tool does when a call returns); --follow then waits for
    it and brings back the final tarball."""
    repo = _tiny_repo(tmp_path, sleep_s=6)
    first = _paper_scale(repo, tmp_path, "--detach", "00", OUT=str(tmp_path / "out1"), FOLLOW_S="0")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "GOES ON" in first.stdout and list((tmp_path / "out1").glob("paper-scale-*.tar.gz"))
    pid = int((tmp_path / "live" / "pid").read_text())
    os.kill(pid, 0)  # still running after its call's process group was killed: a session of its own
    assert os.getsid(pid) == pid
    again = _paper_scale(repo, tmp_path, "--detach", "00", OUT=str(tmp_path / "out2"), FOLLOW_S="0")
    assert again.returncode == 2 and "already going" in again.stderr
    last = _paper_scale(repo, tmp_path, "--follow", OUT=str(tmp_path / "out3"), FOLLOW_S="90")
    assert last.returncode == 0 and "has ENDED (exit 0)" in last.stdout, last.stdout + last.stderr
    (tarball,) = (tmp_path / "out3").glob("paper-scale-*.tar.gz")
    with tarfile.open(tarball) as tar:
        timing = tar.extractfile("paper-scale/timing.tsv").read().decode()
        executed = nbformat.reads(tar.extractfile("paper-scale/executed/00_tiny.ipynb").read().decode(), 4)
    assert "00_tiny\tok" in timing and "total\tok" in timing
    assert "chapter done at scale ci" in executed.cells[-1].outputs[0]["text"]


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

    # the README's table shows the message (a pipe in it would break the row)
    entry = {"numbers": {row[0]: 0.5 for row in results_table.CLAIMS["02_mode_interpolation_1d"]}, "device": "GPU", "wall_time_s": 1.0,
             "commit": "abc", "claim_failed": "more data | less interpolation"}
    (results / "02_mode_interpolation_1d.json").write_text(json.dumps({"paper": entry}))
    rows = [line for line in results_table.results_table().splitlines() if line.startswith("| 02 |")]
    assert rows and all("; **claim failed**: more data / less interpolation |" in r for r in rows), rows


def test_pack_brings_back_the_oldest_models_first_when_room_runs_out(tmp_path):
    """A recursion's early generations are what a later session needs first: with room for two of three new
    models, the two trained first come back."""
    repo = _tiny_repo(tmp_path, body=(
        "import os, time\nfrom pathlib import Path\n"
        "cache = Path(os.environ['MI_CACHE_DIR']); cache.mkdir(parents=True, exist_ok=True)\n"
        "for name, later in [('first', 1), ('third', 3), ('second', 2)]:\n"
        "    path = cache / f'recursion-model-{name}.pt'\n"
        "    path.write_bytes(os.urandom(1024 * 1024))\n"
        "    os.utime(path, (time.time() + later, time.time() + later))\n"
        "print('chapter done at scale', scale)"
    ))
    out = _paper_scale(repo, tmp_path, "00", OUT=str(tmp_path / "out"), OUT_KB="2600")
    assert "not brought back (no room): recursion-model-third.pt" in out.stdout + out.stderr, out.stdout + out.stderr
    (tarball,) = (tmp_path / "out").glob("paper-scale-*.tar.gz")
    with tarfile.open(tarball) as tar:
        models = sorted(Path(name).name for name in tar.getnames() if "-model-" in name)
    assert models == ["recursion-model-first.pt", "recursion-model-second.pt"]


# ------------------------------------------------------------------------------------------- campaign windows
def _window_plan():
    import window_plan  # scripts/, on sys.path above

    return window_plan


def _bench_json(per_million_s: float, steps_per_s: float) -> dict:
    """The parts of bench.py's JSON that window_plan reads: the chosen fast paths and their measured figures."""
    return {"info": {"tail_samples": 1_000_000},
            "chosen": {"MI_FAST_SAMPLE": "fused=1,precision=bf16", "MI_FAST_TRAIN": "fused=1,graph=1"},
            "tail_check": [{"options": {}, "seconds": 20.0}, {"options": {"fused": True, "precision": "bf16"}, "seconds": per_million_s}],
            "figures": {"train_steps_per_s[float32]": 250.0, "train_steps_per_s[float32 + fused Adam + CUDA graph]": steps_per_s}}


def test_window_plan_gives_chapter_2_the_samples_that_fit():
    plan = _window_plan().plan
    fast = _bench_json(per_million_s=0.3, steps_per_s=5_000)
    assert plan(1, fast, left_s=600)[0] == {"02_mode_interpolation_1d": ["-p", "n_samples", "100000000"]}  # 150 s of sampling
    assert plan(1, fast, left_s=400)[0] == {"02_mode_interpolation_1d": ["-p", "n_samples", "50000000"]}
    params, reasons = plan(1, _bench_json(per_million_s=3.0, steps_per_s=250), left_s=400)  # too slow: the default 10 M
    assert params == {} and "10,000,000 samples per model" in reasons[0]
    assert plan(1, None, left_s=600) == ({}, ["no benchmark figures: every chapter at its paper-scale defaults"])
    with pytest.raises(SystemExit, match="window 9 is not prepared"):
        plan(9, fast, left_s=600)


def test_window_chapters_exist():
    names = {p.stem for p in (ROOT / "chapters").glob("*.ipynb")}
    for window, chapters in _window_plan().WINDOWS.items():
        assert set(chapters) <= names, (window, set(chapters) - names)


def test_paper_scale_window_arguments_are_checked_first(tmp_path):
    for args, message in ((["--window", "9"], "window 9 is not prepared"), (["--window", "1", "02"], "takes no chapters"),
                          (["--window", "x"], "takes a window number")):
        out = _paper_scale(ROOT, tmp_path, *args, OUT=str(tmp_path / "out"))
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_a_window_runs_the_benchmark_then_its_chapters_with_the_planned_parameters(tmp_path):
    """The runner's window path end to end on a CPU, at tiny sizes: a stand-in benchmark (the real one is
    tested below) chooses the fast paths, the plan sizes the chapter, papermill gets the extra parameter, and
    bench.json comes back in the tarball."""
    repo = _tiny_repo(tmp_path, parameters='scale = "ci"\nn_samples = None',
                      body="import os\nprint('n_samples', n_samples, 'fast', os.environ.get('MI_FAST_SAMPLE'))")
    plan = (ROOT / "scripts" / "window_plan.py").read_text().replace(
        '1: ["02_mode_interpolation_1d", "03_mode_interpolation_2d", "04_score_smoothness"]', '1: ["00_tiny"]'
    ).replace('params["02_mode_interpolation_1d"]', 'params["00_tiny"]')
    (repo / "scripts" / "window_plan.py").write_text(plan)
    (repo / "benchmarks").mkdir()
    bench = _bench_json(per_million_s=0.3, steps_per_s=5_000)
    (repo / "benchmarks" / "bench.py").write_text(
        "import json, sys\nargs = sys.argv\n"
        f"open(args[args.index('--json') + 1], 'w').write({json.dumps(json.dumps(bench))})\n"
        "open(args[args.index('--env-out') + 1], 'w').write(\"export MI_FAST_SAMPLE='fused=1,precision=bf16'\\nexport MI_FAST_TRAIN='fused=1,graph=1'\\n\")\n"
        "print('chosen: stand-in')\n"
    )
    out = _paper_scale(repo, tmp_path, "--window", "1", OUT=str(tmp_path / "out"), SCALE="paper", BUDGET_S="600")
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: the GPU tests (none in the tiny repo) failed
    assert "fast paths from the benchmark: MI_FAST_TRAIN='fused=1,graph=1' MI_FAST_SAMPLE='fused=1,precision=bf16'" in out.stdout
    (tarball,) = (tmp_path / "out").glob("paper-scale-*.tar.gz")
    with tarfile.open(tarball) as tar:
        executed = nbformat.reads(tar.extractfile("paper-scale/executed/00_tiny.ipynb").read().decode(), 4)
        assert json.loads(tar.extractfile("paper-scale/bench.json").read()) == bench
        timing = tar.extractfile("paper-scale/timing.tsv").read().decode()
    assert "n_samples 100000000 fast fused=1,precision=bf16" in executed.cells[-1].outputs[0]["text"]
    assert "bench\tok" in timing and "00_tiny\tok" in timing


def test_the_short_benchmark_runs_on_a_cpu_and_writes_its_choice(tmp_path):
    """bench.py --short at tiny sizes: the tail check and the choice it writes (the window runner sources it)."""
    env = {**os.environ, "MI_CACHE_DIR": str(tmp_path / "cache"), "MI_PROGRESS": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--short", "--samples", "32", "--tail-samples", "64", "--hal-samples", "32",
           "--train-steps", "2", "--unet-steps", "1", "--unet-samples", "16", "--json", str(tmp_path / "b.json"), "--env-out", str(tmp_path / "b.env")]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["tail_check"][0]["options"] == {} and result["tail_check"][0]["passes"]
    assert set(result["chosen"]) == {"MI_FAST_SAMPLE", "MI_FAST_TRAIN"}
    assert (tmp_path / "b.env").read_text().startswith("export MI_FAST_SAMPLE=")
    # what the runner sources must parse as the fast-path variables mi_lib reads
    from mi_lib.fast import parse_fast_options
    for kind in ("train", "sample"):
        parse_fast_options(kind, result["chosen"][f"MI_FAST_{kind.upper()}"])


def test_a_window_killed_at_any_point_leaves_only_whole_files_and_the_next_run_goes_on(tmp_path):
    """The device tool kills a command's process group at its time limit, at no point of our choosing. Killed at
    several points of a run whose chapter writes a results file and a cache entry (as mi_lib does: atomically),
    every file left behind is whole (each JSON parses, each tarball reads, no temporary file is mistaken for an
    entry), and the same command run again finishes, reusing the entry the killed run completed."""
    import signal
    import time

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
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TMPDIR": str(tmp_path), "SCALE": "ci",
           "WHEELS": str(tmp_path / "no-wheels"), "MI_CACHE_DIR": str(tmp_path / "cache"), "OUT": str(tmp_path / "out")}
    for kill_after in (1.0, 4.0, 7.0, 15.0):  # the last one late enough for the entry, even on a slow machine
        call = subprocess.Popen(["bash", str(repo / "scripts" / "paper_scale.sh"), "00"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
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
    out = _paper_scale(repo, tmp_path, "00", OUT=str(tmp_path / "out-last"), MI_CACHE_DIR=str(tmp_path / "cache"))
    assert out.returncode == 0, out.stdout + out.stderr
    (tarball,) = (tmp_path / "out-last").glob("paper-scale-*.tar.gz")
    with tarfile.open(tarball) as tar:
        executed = nbformat.reads(tar.extractfile("paper-scale/executed/00_tiny.ipynb").read().decode(), 4)
    assert "chapter done at scale ci reused" in executed.cells[-1].outputs[0]["text"]
