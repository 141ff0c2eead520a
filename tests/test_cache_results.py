import json
import os
import shutil

import pytest
import torch

import mi_lib.storage.cache as cache_mod
from mi_lib import MLPConfig, Settings, TrainConfig, cached, config_key, save_results
from mi_lib.storage.results import LINE_WIDTH, format_number, say


def test_cache_hit_miss_and_config_change(tmp_path):
    calls = []

    def compute(v):
        calls.append(v)
        return {"w": torch.full((3,), float(v)), "n": v}

    cfg = {"model": MLPConfig(data_dim=2), "train": TrainConfig(steps=10)}
    a = cached("m", cfg, lambda: compute(1), root=tmp_path)
    b = cached("m", cfg, lambda: compute(2), root=tmp_path)
    assert calls == [1] and torch.equal(a["w"], b["w"]) and b["n"] == 1
    # any change of the config is a different entry
    cfg2 = {"model": MLPConfig(data_dim=2), "train": TrainConfig(steps=11)}
    c = cached("m", cfg2, lambda: compute(3), root=tmp_path)
    assert calls == [1, 3] and c["n"] == 3
    assert config_key("m", cfg) != config_key("m", cfg2)
    # 1 vs 1.0 are different configs
    assert config_key("m", {"x": 1}) != config_key("m", {"x": 1.0})
    # atomic writes leave no temporary files
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    # refresh recomputes
    cached("m", cfg, lambda: compute(4), root=tmp_path, refresh=True)
    assert calls == [1, 3, 4]


def test_cache_is_invalidated_by_code_change(tmp_path, monkeypatch):
    cached("x", {"a": 1}, lambda: 1, root=tmp_path)
    monkeypatch.setattr(cache_mod, "code_fingerprint", lambda **_: "different code")
    assert cached("x", {"a": 1}, lambda: 2, root=tmp_path) == 2


def test_cache_keys_hold_the_pinned_cpu_kernels(tmp_path, monkeypatch):
    """A result computed under other CPU kernels (the chapters' pinned ones, or the CPU's own) is another entry:
    `make outputs` must never commit what an unpinned run left in the cache."""
    for var in cache_mod.CPU_NUMERICS_VARS:
        monkeypatch.delenv(var, raising=False)
    plain = config_key("x", {"a": 1})
    assert cached("x", {"a": 1}, lambda: 1, root=tmp_path) == 1
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    assert cache_mod.cpu_numerics() == {"MKL_CBWR": "COMPATIBLE"} and config_key("x", {"a": 1}) != plain
    assert cached("x", {"a": 1}, lambda: 2, root=tmp_path) == 2
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert cached("x", {"a": 1}, lambda: 3, root=tmp_path) == 3
    for var in cache_mod.CPU_NUMERICS_VARS:
        monkeypatch.delenv(var, raising=False)
    assert config_key("x", {"a": 1}) == plain and cached("x", {"a": 1}, lambda: 4, root=tmp_path) == 1


def test_cache_rejects_a_mismatched_entry(tmp_path):
    cached("x", {"a": 1}, lambda: 1, root=tmp_path)
    (path,) = tmp_path.glob("x-*.pt")
    entry = torch.load(path, weights_only=True)
    entry["config"] = json.dumps({"a": 999})  # as if a hash collision or a hand-edited file
    torch.save(entry, path)
    assert cached("x", {"a": 1}, lambda: 2, root=tmp_path) == 2


def test_cache_keys_distinguish_types(tmp_path):
    assert config_key("m", {"x": 1.0}) != config_key("m", {"x": "1.0"})
    assert cached("m", {"x": 1.0}, lambda: "float", root=tmp_path) == "float"
    assert cached("m", {"x": "1.0"}, lambda: "str", root=tmp_path) == "str"


def test_cache_refuses_values_it_could_not_reload(tmp_path):
    with pytest.raises(TypeError, match="cached values must be"):
        cached("m", {}, lambda: MLPConfig(), root=tmp_path)
    assert not list(tmp_path.glob("*.pt"))  # nothing half-usable was written


def test_cache_returns_cpu_tensors_and_bad_input(tmp_path):
    v = cached("t", {}, lambda: torch.ones(2), root=tmp_path)
    assert v.device.type == "cpu" and torch.equal(v, torch.ones(2))
    hit = cached("t", {}, lambda: pytest.fail("a hit must not compute"), root=tmp_path)
    assert hit.device.type == "cpu" and torch.equal(hit, v)
    with pytest.raises(ValueError, match="plain non-empty"):
        cached("../evil", {}, lambda: 1, root=tmp_path)
    with pytest.raises(TypeError, match="cannot hash"):
        config_key("x", {"f": object()})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cache_returns_a_gpu_value_on_the_cpu_on_a_miss_as_on_a_hit(tmp_path):
    miss = cached("g", {}, lambda: torch.ones(2, device="cuda"), root=tmp_path)
    hit = cached("g", {}, lambda: pytest.fail("a hit must not compute"), root=tmp_path)
    assert miss.device.type == hit.device.type == "cpu" and torch.equal(miss, hit)


def test_save_results_keeps_each_scale(tmp_path, monkeypatch):
    monkeypatch.setenv("MI_RESULTS_DIR", str(tmp_path))  # read at the boundary, by Settings.from_environment
    run = Settings.from_environment("cpu")
    save_results("ch", {"a": 1.0}, scale="paper", settings=run, wall_time_s=2.0)
    path = save_results("ch", {"a": 2.0}, scale="ci", settings=run, wall_time_s=1.0)
    assert path.parent == tmp_path
    data = json.loads(path.read_text())
    assert data["paper"]["numbers"] == {"a": 1.0} and data["ci"]["numbers"] == {"a": 2.0}
    assert {"device", "wall_time_s", "commit", "torch", "date"} <= set(data["ci"])


@pytest.mark.parametrize("x, text", [(0.123456, "0.123"), (1234.5678, "1230"), (1.5e-7, "1.50e-07"), (3, "3"), (0.0, "0.0"), (12.0, "12.0")])
def test_format_number(x, text):
    assert format_number(x) == text


def test_say_wraps_only_the_lines_wider_than_the_column(capsys):
    table = "  a |     b |\n--- | ----- |"  # fits: printed exactly, trailing spaces and all
    say(table)
    assert capsys.readouterr().out == table + "\n"
    prose = " ".join(f"word{i}" for i in range(60))
    say(prose)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 1 and all(len(line) <= LINE_WIDTH for line in lines)
    assert all(line.startswith("    ") for line in lines[1:]) and " ".join(lines).split() == prose.split()


def test_an_unreadable_cache_entry_is_reported_and_computed_again(tmp_path):
    """A truncated entry (as a cache copied back from the GPU machine can be) gives one warning naming the
    file, not torch's zip-archive error, and is computed again and rewritten."""
    calls = []
    value = cached("thing", {"a": 1}, lambda: calls.append(1) or {"x": torch.arange(3)}, root=tmp_path)
    (entry,) = tmp_path.glob("thing-*.pt")
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"{entry.name}: this cache entry cannot be read"):
        again = cached("thing", {"a": 1}, lambda: calls.append(1) or {"x": torch.arange(3)}, root=tmp_path)
    assert len(calls) == 2 and torch.equal(again["x"], value["x"])
    assert torch.equal(cached("thing", {"a": 1}, lambda: calls.append(1), root=tmp_path)["x"], value["x"]) and len(calls) == 2


# ------------------------------------------------------------------------------------ chapter parameters
@pytest.mark.parametrize("value, item, expected", [
    ([1, 2.0, 4], float, (1.0, 2.0, 4.0)),            # papermill -y
    ("[1, 2, 4]", float, (1.0, 2.0, 4.0)),            # papermill -p with a list's text
    ("1,2,4", float, (1.0, 2.0, 4.0)),                # papermill -p, comma-separated
    (20000, int, (20000,)),                           # one value
    ("(0, 9)", int, (0, 9)),
    ("none", str, ("none",)),
    ("none,hal", str, ("none", "hal")),
    (["none", "random"], str, ("none", "random")),
])
def test_sequence_parameter_takes_what_papermill_gives(value, item, expected):
    from mi_lib import sequence_parameter

    assert sequence_parameter(value, "p", item) == expected


@pytest.mark.parametrize("value, item, length", [
    ("[1, 2, oops]", float, None), ([1, "a"], float, None), ([0, 9.5], int, 2), ([0, 1, 2], int, 2), (None, int, 2),
    ([], float, None), ({"a": 1}, float, None), ([True, 2], int, None), ([1, 2], str, None),
])
def test_sequence_parameter_rejects_the_rest_naming_the_parameter(value, item, length):
    from mi_lib import sequence_parameter

    with pytest.raises(ValueError, match=r"means must be .* \(from papermill: -y \"means: "):
        sequence_parameter(value, "means", item, length=length)


def test_number_and_choice_parameters_take_clean_values_and_refuse_the_rest_by_name():
    from mi_lib import choice_parameter, number_parameter

    assert number_parameter(4, "k") == 4.0 and type(number_parameter(4, "k")) is float
    assert number_parameter(10_000, "n", int, at_least=1) == 10_000
    assert number_parameter(0.5, "p", above=0, below=1) == 0.5
    for value, kind, bounds in [(1e4, int, {}), (True, int, {}), ("4", float, {}), (float("nan"), float, {}),
                                (float("inf"), float, {}), (None, float, {}), ([4], float, {}), (0, float, dict(above=0)),
                                (1, float, dict(below=1)), (0, int, dict(at_least=1)), (11, int, dict(at_most=10))]:
        with pytest.raises(ValueError, match=r"^x must be "):
            number_parameter(value, "x", kind, **bounds)
    assert choice_parameter("ci", "scale", ("ci", "paper")) == "ci" and choice_parameter(None, "d", (None, "8x8")) is None
    for value in ("CI", ["ci"], None, 1):
        with pytest.raises(ValueError, match=r"^scale must be one of 'ci', 'paper', got "):
            choice_parameter(value, "scale", ("ci", "paper"))
    with pytest.raises(ValueError, match="flag"):
        choice_parameter(1, "flag", (False, True))  # 1 == True, but a count is no switch


def test_cache_keys_hold_the_code_that_computes_the_value_only(tmp_path):
    """A model's key follows the source of diffusion/models.py and of what it imports: editing a figure helper, the results
    files, the parameter checks, a measurement or a chapter's module retrains nothing; editing the trainer, the
    network, the sampler or the data does. The recursion's keys follow their own closure, which holds metrics."""
    shutil.copytree(cache_mod.PACKAGE, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    models, recursion = "diffusion/models.py", "experiments/recursion.py"

    def fingerprints() -> tuple[str, str]:
        return cache_mod.code_fingerprint(tmp_path, models), cache_mod.code_fingerprint(tmp_path, recursion)

    before = fingerprints()
    assert before[0] == cache_mod.code_fingerprint(code=models)  # the copy hashes as the package does
    assert before[0] != before[1] != cache_mod.code_fingerprint(tmp_path)

    def edit(name: str, expect_models: bool, expect_recursion: bool) -> None:
        edited = tmp_path / name
        original = edited.read_text()
        edited.write_text(original + "\n# an edit\n")
        after = fingerprints()
        assert (after[0] != before[0], after[1] != before[1]) == (expect_models, expect_recursion), name
        edited.write_text(original)

    for name in sorted(cache_mod.PRESENTATION):
        edit(name, False, False)
    for name in ("measure/detection.py", "datasets/digits.py", "diffusion/exact.py", "experiments/mitigations.py",
                 "experiments/detection.py", "experiments/recursive_training.py", "diffusion/__init__.py"):
        edit(name, False, False)
    edit("measure/metrics.py", False, True)
    edit(recursion, False, True)
    for name in ("diffusion/train.py", "diffusion/nets.py", "diffusion/unet.py", "diffusion/sampling.py", "diffusion/schedule.py",
                 "datasets/mixtures.py", "datasets/shapes.py", "diffusion/noise.py", "storage/cache.py"):
        edit(name, True, True)
    assert fingerprints() == before
    with pytest.raises(ValueError, match="not a module"):
        cache_mod.code_modules("nowhere.py")


def test_chapter_8s_runs_follow_the_model_code_and_the_measurements_not_the_chapter(tmp_path):
    """A mitigation run samples a model fitted or loaded by diffusion/models.py and measures it: its key follows the
    trainer and the networks (a retrained model), the sampler and the measurements, not chapter 8's own module."""
    from mi_lib.experiments import mitigations

    shutil.copytree(cache_mod.PACKAGE, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    before = cache_mod.code_fingerprint(tmp_path, mitigations.CODE)
    for name, expected in (("diffusion/train.py", True), ("diffusion/unet.py", True), ("diffusion/sampling.py", True),
                           ("measure/detection.py", True), ("measure/metrics.py", True),
                           ("experiments/mitigations.py", False), ("plotting.py", False)):
        edited = tmp_path / name
        original = edited.read_text()
        edited.write_text(original + "\n# an edit\n")
        assert (cache_mod.code_fingerprint(tmp_path, mitigations.CODE) != before) == expected, name
        edited.write_text(original)


def test_the_import_walk_follows_a_name_a_folder_re_exports(tmp_path):
    """``from . import name`` where name is defined in the folder's __init__.py (not a module): that file is hashed."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from .core import thing\n")
    (tmp_path / "pkg" / "core.py").write_text("thing = 1\n")
    (tmp_path / "pkg" / "user.py").write_text("from . import thing\n")
    assert cache_mod.code_modules("pkg/user.py", tmp_path) == ("pkg/__init__.py", "pkg/core.py", "pkg/user.py")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_commit_stamp_is_dirty_for_code_changes_not_for_what_a_run_writes(tmp_path, monkeypatch):
    import subprocess

    from mi_lib.storage.results import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("mi_lib/core.py", "chapters/01_x.ipynb", "results/01_x.json", "README.md", "results.md", "data/README.md"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("0\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path / "chapters")  # where papermill runs a chapter
    clean = git_commit()
    assert len(clean) == 12 and not clean.endswith("-dirty")
    for path in ("chapters/01_x.ipynb", "results/01_x.json", "README.md", "results.md"):  # a run's own outputs
        (tmp_path / path).write_text("1\n")
    assert git_commit() == clean
    (tmp_path / "data/README.md").write_text("1\n")  # anything else: the code or data the numbers depend on
    assert git_commit() == clean + "-dirty"
    (tmp_path / "data/README.md").write_text("0\n")
    (tmp_path / "mi_lib/core.py").write_text("1\n")
    assert git_commit() == clean + "-dirty"
