"""scripts/compare_results.py: what two runs' results files agree on, and one clear error on bad input."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_results.py"


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)


def write(folder: Path, name: str, numbers: object, scale: str = "ci") -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({scale: {"numbers": numbers}}))


def test_equal_different_and_nan(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "ch", {"same": 1.5, "nan": float("nan"), "off": 1.0, "flag": True})
    write(b, "ch", {"same": 1.5, "nan": float("nan"), "off": 1.1, "flag": 1})
    write(a, "only_a", {"x": 1})
    out = run(a, b)
    assert out.returncode == 0, out.stderr
    assert "ch: 2 of 4 equal; largest relative difference inf" in out.stdout
    assert "off: 1.0 vs 1.1" in out.stdout and "flag: True vs 1" in out.stdout
    assert "nan:" not in out.stdout  # two NaNs are the same record
    assert "only_a: an entry at scale 'ci' only in" in out.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "ch", {"x": 1})
    write(b, "ch", {"x": 1})
    for args, message in [((a, tmp_path / "missing"), "is not a folder"),
                          ((a, b, "--scale", "paper"), "no chapter has an entry at scale 'paper'")]:
        out = run(*args)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    (b / "ch.json").write_text("[1, 2]")
    out = run(a, b)
    assert out.returncode == 2 and "is not a results file" in out.stderr
    (b / "ch.json").write_text("{not json")
    out = run(a, b)
    assert out.returncode == 2 and "is not a readable JSON file" in out.stderr
